/**
 * The CLI's twin commands through the unchanged `azure-iothub` SDK against the cloud's IoT Hub service API,
 * run the way a user runs such a script: a Node process given only the service connection string from
 * cloud.json, with the local CA in NODE_EXTRA_CA_CERTS (the SDK has no CA option, and Node reads that
 * variable only at start, hence the child process: src/sim/iothub-sdk-steps.cjs). Results come back as
 * {status, json} like the admin API's; refusals as `{"code", "status", "message"}` with IoT Hub's error code.
 *
 * Not here: argument parsing (cli.ts), the server side (iothub-rest.ts).
 */
import { execFile } from "node:child_process";
import * as path from "node:path";
import type { Json } from "../core/json";

export type TwinCommand =
  | { op: "get"; id: string }
  | { op: "set-desired"; id: string; desired: Json }
  | { op: "method"; id: string; methodName: string; payload: Json; responseTimeoutInSeconds?: number };

const STEPS = path.join(__dirname, "iothub-sdk-steps.cjs");

/** Runs one twin command; throws when the child cannot run at all (not for a refusal). */
export function runTwinCommand(connectionString: string, caFile: string, cmd: TwinCommand): Promise<{ status: number; json: unknown }> {
  const step = cmd.op === "get" ? { op: "getTwin", id: cmd.id }
    : cmd.op === "set-desired" ? { op: "updateTwin", id: cmd.id, patch: { properties: { desired: cmd.desired } }, etag: "*" }
    : { op: "invoke", id: cmd.id, methodName: cmd.methodName, payload: cmd.payload, ...(cmd.responseTimeoutInSeconds === undefined ? {} : { responseTimeoutInSeconds: cmd.responseTimeoutInSeconds }) };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [STEPS, JSON.stringify({ connectionString, steps: [step] })],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile }, timeout: 330_000, maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) { reject(new Error(`the azure-iothub client failed: ${err.message} ${stderr}`.trim())); return; }
        let r: { ok: boolean; value?: unknown; statusCode?: number | null; body?: string | null; message?: string };
        try {
          r = (JSON.parse(stdout) as typeof r[])[0]!;
        } catch {
          reject(new Error(`the azure-iothub client printed no result: ${stdout.slice(0, 200)} ${stderr.slice(0, 200)}`));
          return;
        }
        if (r.ok) { resolve({ status: 200, json: r.value }); return; }
        if (typeof r.statusCode !== "number") { reject(new Error(`no answer from the IoT Hub API: ${r.message ?? "unknown error"}`)); return; }
        // IoT Hub's body: {"Message":"ErrorCode:{Code};{message}", …}
        let code = "Error";
        let message = r.message ?? "";
        try {
          const m = /^ErrorCode:([^;]*);(.*)$/s.exec(String((JSON.parse(r.body ?? "{}") as { Message?: string }).Message ?? ""));
          if (m !== null) { code = m[1]!; message = m[2]!; }
        } catch { /* not IoT Hub's body: keep the SDK's message */ }
        resolve({ status: r.statusCode, json: { code, status: r.statusCode, message } });
      });
  });
}
