/**
 * How the rollout engine reads and writes devices' twins: through the clouds' own service APIs, with the
 * vendors' unchanged SDKs, so the same engine pointed at AWS IoT or IoT Hub drives real devices:
 *
 * - AWS: `@aws-sdk/client-iot-data-plane` — GetThingShadow to read, UpdateThingShadow with
 *   {"state":{"desired":patch}} to write — against the endpoint, region and key in cloud.json (the local
 *   cloud's data-plane endpoint, aws-dataplane.ts), one client kept for the engine's life, at most
 *   `concurrency` requests in flight.
 * - Azure: `azure-iothub` — Registry.getTwin and Registry.updateTwin(id, {properties:{desired:patch}}, "*") —
 *   with the service connection string in cloud.json, in one child process per batch
 *   (iothub-sdk-steps.cjs: the SDK has no CA option and reads NODE_EXTRA_CA_CERTS only at process start).
 *   IoT Hub's service API runs only when the cloud was started with `--iothub-host` (it must listen on 443);
 *   without it Azure devices go through the twin service in process (`serviceFleet`), the path the admin
 *   API's PATCH /twins takes.
 *
 * A device with no shadow or twin yet reads as {desired: {}, reported: {}}. Failures are per device: a
 * returned Error, never a thrown one, so one unreachable device does not stop the others.
 *
 * Not here: what to write (rollout-core.ts decides, rollout.ts writes).
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { GetThingShadowCommand, IoTDataPlaneClient, UpdateThingShadowCommand } from "@aws-sdk/client-iot-data-plane";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import type { CloudKind } from "../core/cloud-protocol";
import { isJsonObject, type Json, type JsonObject } from "../core/json";
import type { LocalCloud } from "./local-cloud";

export interface FleetDoc {
  desired: JsonObject;
  reported: JsonObject;
}

export interface FleetTarget {
  id: string;
  cloud: CloudKind;
}

export interface FleetAccess {
  /** Each device's desired and reported state (an Error for a device that could not be read). */
  read(devices: readonly FleetTarget[]): Promise<Map<string, FleetDoc | Error>>;
  /** Merges `desired` into each device's desired state (null members delete). undefined = written. */
  patch(entries: ReadonlyArray<FleetTarget & { desired: JsonObject }>): Promise<Map<string, Error | undefined>>;
  close(): void;
}

function objectOr(v: Json | undefined): JsonObject {
  return isJsonObject(v ?? null) ? (v as JsonObject) : {};
}

function strip(o: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(o)) if (!k.startsWith("$")) out[k] = v;
  return out;
}

async function inBatches<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += n) await Promise.all(items.slice(i, i + n).map(fn));
}

/** The local cloud's services in process (tests, and Azure devices when no IoT Hub API runs). */
export function serviceFleet(cloud: LocalCloud): FleetAccess {
  return {
    async read(devices) {
      const out = new Map<string, FleetDoc | Error>();
      for (const d of devices) {
        try {
          if (d.cloud === "aws") {
            const doc = await cloud.shadows.getShadow(d.id);
            const state = objectOr(doc?.["state"]);
            out.set(d.id, { desired: objectOr(state["desired"]), reported: objectOr(state["reported"]) });
          } else {
            const t = await cloud.twins.getTwin(d.id);
            out.set(d.id, { desired: strip(t.desired), reported: strip(t.reported) });
          }
        } catch (e) {
          out.set(d.id, e instanceof Error ? e : new Error(String(e)));
        }
      }
      return out;
    },
    async patch(entries) {
      const out = new Map<string, Error | undefined>();
      for (const e of entries) {
        try {
          if (e.cloud === "aws") await cloud.shadows.updateDesired(e.id, e.desired);
          else await cloud.twins.updateDesired(e.id, e.desired);
          out.set(e.id, undefined);
        } catch (err) {
          out.set(e.id, err instanceof Error ? err : new Error(String(err)));
        }
      }
      return out;
    },
    close() { /* nothing held */ },
  };
}

export interface SdkFleetOptions {
  /** cloud.json's awsDataPlane. */
  aws: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
  /** cloud.json's IoT Hub service connection string; absent: Azure devices go to `azureFallback`. */
  iothubConnectionString?: string;
  /** The CA that signed the endpoints' certificates (PEM file). */
  caFile: string;
  azureFallback?: FleetAccess;
  /** Requests in flight at once (AWS) and twin steps per child process (Azure). Default 16 / 200. */
  concurrency?: number;
  azureBatch?: number;
}

interface StepResult { ok: boolean; value?: unknown; statusCode?: number | null; message?: string }

function runIotHubSteps(connectionString: string, caFile: string, steps: unknown[]): Promise<StepResult[]> {
  const script = path.join(__dirname, "iothub-sdk-steps.cjs");
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, JSON.stringify({ connectionString, steps })],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile }, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) { reject(new Error(`the azure-iothub client failed: ${err.message} ${stderr}`.trim())); return; }
        try {
          resolve(JSON.parse(stdout) as StepResult[]);
        } catch {
          reject(new Error(`the azure-iothub client printed no result: ${stdout.slice(0, 200)}`));
        }
      });
  });
}

/** AWS through the AWS SDK, Azure through azure-iothub (or `azureFallback`). */
export function sdkFleet(o: SdkFleetOptions): FleetAccess {
  const agent = new https.Agent({ ca: fs.readFileSync(o.caFile), keepAlive: true });
  const client = new IoTDataPlaneClient({
    endpoint: o.aws.endpoint, region: o.aws.region, maxAttempts: 2,
    credentials: { accessKeyId: o.aws.accessKeyId, secretAccessKey: o.aws.secretAccessKey },
    requestHandler: new NodeHttpHandler({ httpsAgent: agent }),
  });
  const n = o.concurrency ?? 16;
  const batch = o.azureBatch ?? 200;
  const payloadOf = (p: Uint8Array | undefined): Json => JSON.parse(Buffer.from(p ?? new Uint8Array()).toString("utf8") || "null") as Json;
  const statusOf = (e: unknown): number | undefined => (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const toError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

  async function azure<T>(items: readonly T[], stepOf: (t: T) => unknown, done: (t: T, r: StepResult | Error) => void): Promise<void> {
    for (let i = 0; i < items.length; i += batch) {
      const chunk = items.slice(i, i + batch);
      let results: StepResult[] | Error;
      try {
        results = await runIotHubSteps(o.iothubConnectionString!, o.caFile, chunk.map(stepOf));
      } catch (e) {
        results = toError(e);
      }
      chunk.forEach((t, k) => done(t, results instanceof Error ? results : results[k] ?? new Error("no result for this step")));
    }
  }

  return {
    async read(devices) {
      const out = new Map<string, FleetDoc | Error>();
      const aws = devices.filter((d) => d.cloud === "aws");
      const az = devices.filter((d) => d.cloud === "azure");
      await inBatches(aws, n, async (d) => {
        try {
          const r = await client.send(new GetThingShadowCommand({ thingName: d.id }));
          const state = objectOr(objectOr(payloadOf(r.payload))["state"]);
          out.set(d.id, { desired: objectOr(state["desired"]), reported: objectOr(state["reported"]) });
        } catch (e) {
          if (statusOf(e) === 404) out.set(d.id, { desired: {}, reported: {} });
          else out.set(d.id, toError(e));
        }
      });
      if (az.length > 0 && o.iothubConnectionString === undefined) {
        if (o.azureFallback === undefined) for (const d of az) out.set(d.id, new Error("no IoT Hub service API (start the cloud with --iothub-host)"));
        else for (const [k, v] of await o.azureFallback.read(az)) out.set(k, v);
      } else {
        await azure(az, (d) => ({ op: "getTwin", id: d.id }), (d, r) => {
          if (r instanceof Error) { out.set(d.id, r); return; }
          if (!r.ok) { out.set(d.id, new Error(`getTwin ${d.id}: ${r.statusCode ?? ""} ${r.message ?? ""}`.trim())); return; }
          const props = objectOr(objectOr(r.value as Json)["properties"]);
          out.set(d.id, { desired: strip(objectOr(props["desired"])), reported: strip(objectOr(props["reported"])) });
        });
      }
      return out;
    },
    async patch(entries) {
      const out = new Map<string, Error | undefined>();
      const aws = entries.filter((d) => d.cloud === "aws");
      const az = entries.filter((d) => d.cloud === "azure");
      await inBatches(aws, n, async (e) => {
        try {
          await client.send(new UpdateThingShadowCommand({ thingName: e.id, payload: Buffer.from(JSON.stringify({ state: { desired: e.desired } })) }));
          out.set(e.id, undefined);
        } catch (err) {
          out.set(e.id, toError(err));
        }
      });
      if (az.length > 0 && o.iothubConnectionString === undefined) {
        if (o.azureFallback === undefined) for (const e of az) out.set(e.id, new Error("no IoT Hub service API (start the cloud with --iothub-host)"));
        else for (const [k, v] of await o.azureFallback.patch(az)) out.set(k, v);
      } else {
        await azure(az, (e) => ({ op: "updateTwin", id: e.id, patch: { properties: { desired: e.desired } }, etag: "*" }), (e, r) => {
          if (r instanceof Error) out.set(e.id, r);
          else out.set(e.id, r.ok ? undefined : new Error(`updateTwin ${e.id}: ${r.statusCode ?? ""} ${r.message ?? ""}`.trim()));
        });
      }
      return out;
    },
    close() {
      client.destroy();
      agent.destroy();
    },
  };
}
