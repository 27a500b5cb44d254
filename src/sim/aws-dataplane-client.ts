/**
 * The CLI's shadow commands through the unchanged AWS SDK (`@aws-sdk/client-iot-data-plane`), configured from
 * the running cloud's cloud.json exactly as a user configures it for AWS — endpoint, region, access key and
 * an HTTPS agent trusting the CA — so `npm run cloud -- shadow …` exercises the same code path a script
 * pointed at AWS IoT would. Results come back as {status, json} like the admin API's, refusals as
 * `{"code": exception name, "status", "message"}` with the service's message.
 *
 * Not here: argument parsing (cli.ts), the server side (aws-dataplane.ts).
 */
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import {
  DeleteThingShadowCommand,
  GetThingShadowCommand,
  IoTDataPlaneClient,
  ListNamedShadowsForThingCommand,
  UpdateThingShadowCommand,
} from "@aws-sdk/client-iot-data-plane";
import { NodeHttpHandler } from "@smithy/node-http-handler";

export interface DataPlaneInfo {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export type ShadowCommand =
  | { op: "get"; thing: string; shadowName?: string }
  | { op: "set-desired"; thing: string; desired: unknown; shadowName?: string }
  | { op: "delete"; thing: string; shadowName?: string }
  | { op: "list"; thing: string };

/** Runs one shadow command against `info` (CA from `caFile`). Network failures are thrown, refusals returned. */
export async function runShadowCommand(info: DataPlaneInfo, caFile: string, cmd: ShadowCommand): Promise<{ status: number; json: unknown }> {
  const agent = new https.Agent({ ca: fs.readFileSync(path.resolve(caFile)) });
  const client = new IoTDataPlaneClient({
    endpoint: info.endpoint, region: info.region, maxAttempts: 1,
    credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey },
    requestHandler: new NodeHttpHandler({ httpsAgent: agent }),
  });
  const named = (n: string | undefined): { shadowName?: string } => (n === undefined ? {} : { shadowName: n });
  const payloadOf = (p: Uint8Array | undefined): unknown => JSON.parse(Buffer.from(p ?? new Uint8Array()).toString("utf8") || "null");
  try {
    switch (cmd.op) {
      case "get":
        return { status: 200, json: payloadOf((await client.send(new GetThingShadowCommand({ thingName: cmd.thing, ...named(cmd.shadowName) }))).payload) };
      case "set-desired": {
        const payload = Buffer.from(JSON.stringify({ state: { desired: cmd.desired } }));
        return { status: 200, json: payloadOf((await client.send(new UpdateThingShadowCommand({ thingName: cmd.thing, payload, ...named(cmd.shadowName) }))).payload) };
      }
      case "delete":
        return { status: 200, json: payloadOf((await client.send(new DeleteThingShadowCommand({ thingName: cmd.thing, ...named(cmd.shadowName) }))).payload) };
      case "list": {
        const results: string[] = [];
        let nextToken: string | undefined;
        for (let page = 0; page < 1000; page++) { // a guard only: pages of 100 names
          const r = await client.send(new ListNamedShadowsForThingCommand({ thingName: cmd.thing, ...(nextToken === undefined ? {} : { nextToken }) }));
          results.push(...(r.results ?? []));
          nextToken = r.nextToken;
          if (nextToken === undefined) break;
        }
        return { status: 200, json: { thingName: cmd.thing, results } };
      }
    }
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === undefined) throw e; // no answer from the service: not a refusal
    return { status, json: { code: (e as Error).name, status, message: (e as Error).message } };
  } finally {
    client.destroy();
    agent.destroy();
  }
}
