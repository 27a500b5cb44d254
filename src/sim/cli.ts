/**
 * `npm run cloud -- <command>`: runs the local cloud, or talks to a running one through its admin HTTP API
 * (address and token from {data-dir}/cloud.json) — the shadow commands through the AWS SDK against its AWS IoT
 * data-plane endpoint instead (aws-dataplane-client.ts), the code path a script for AWS takes.
 *
 *   start [--broker aedes|mosquitto] [--device ID:aws|azure]… [--port N] [--blob-port N]   run the cloud until Ctrl-C
 *         [--iothub-host H]         also IoT Hub's service API on H:443 (azure-iothub needs 443; root or
 *                                   CAP_NET_BIND_SERVICE); the twin commands then go through azure-iothub
 *         [--webhook URL]           POST every fleet event there (docs/fleet-page.md); prints the fleet page's address
 *         [--webhook-secret S]      sign those POSTs (HMAC-SHA256); better from SHADOW_OTA_WEBHOOK_SECRET (not in ps)
 *   device --id ID [--version 1.0.0]                                      run a simulated device (src/sim/device.ts)
 *   devices                                                               list known devices
 *   devices add ID aws|azure                                              issue a device certificate
 *   shadow get THING [--name N]                                           print a shadow document
 *   shadow set-desired THING JSON [--name N]                              update desired (JSON: the desired object)
 *   shadow delete THING [--name N]
 *   shadow list THING                                                     the thing's named shadows
 *   twin get ID                                                           print a device twin
 *   twin set-desired ID JSON                                              patch the twin's desired properties
 *   twin method ID NAME [JSON] [--timeout S]                              invoke a direct method
 *   firmware publish FILE [--name NAME] [--container C]                   upload an image to the blob server
 *                                                                         (NAME defaults to FILE's base name)
 *   firmware list                                                         name, size, ETag and URL of every blob
 *   firmware delete NAME [--container C]
 *   firmware fault NAME JSON [--container C] [--times N|always] [--after N]   arm a BlobFault (blob-server.ts)
 *   firmware clear-faults NAME [--container C]
 *   proxy [--device ID] [--rules JSON|@FILE] [--port N] [--seed N]        a fault-injecting MQTT proxy in front of the
 *                                                                         broker (src/sim/mqtt-fault-proxy.ts); devices
 *                                                                         reach it with `device --mqtt-port N`
 *   rollout start --version V (--devices a,b | --all) --waves 1,10,50,100% --max-failure 5% [--window 02:00-04:00]
 *                 [--wave-deadline-ms N]                                  a staged rollout (src/sim/rollout.ts)
 *   rollout status [ID] | rollout pause|resume|cancel [ID]                 ID defaults to the newest rollout
 *   install DEVICE                                                        accept the update DEVICE waits to install
 *   logs tail DEVICE [--lines N] [--follow] [--json]                      the device's last N (default 20) log lines
 *                                                                         mirrored to the cloud; --follow keeps
 *                                                                         printing new ones (polls every 500 ms)
 *
 * --container defaults to "firmware", the container whose URL is `blobUrl` in cloud.json.
 * Common option: --data-dir DIR (default .cloud-data). Exit status: 0 ok, 1 the cloud refused or is not
 * reachable (its {code, message} printed), 2 usage.
 * Not here: the cloud itself (local-cloud.ts), the HTTP routes (admin-http.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { CloudKind } from "../core/cloud-protocol";
import { consoleLog } from "../node/console-log";
import { runShadowCommand, type DataPlaneInfo, type ShadowCommand } from "./aws-dataplane-client";
import { runTwinCommand, type TwinCommand } from "./iothub-rest-client";
import type { Json } from "../core/json";
import { CLOUD_INFO_FILE, deviceMain } from "./device";
import { DEFAULT_DATA_DIR, DEFAULT_FIRMWARE_CONTAINER, LocalCloud, type BrokerKind } from "./local-cloud";
import { MAX_TAIL_LIMIT, formatLogRecord, type LogRecord } from "./log-service";
import { PROXY_CODES, runProxyCommand } from "./mqtt-fault-proxy";
import { ShadowOtaError } from "../core/errors";

export interface CliIo {
  print(line: string): void;
  error(line: string): void;
  /** Ends a `--follow` (without it, a follow runs until the process is stopped). */
  signal?: AbortSignal;
}

/** Options that take no value. */
const FLAGS = new Set(["--follow", "--json", "--all"]);

const USAGE = `usage: npm run cloud -- <command> [--data-dir DIR]
  start [--broker aedes|mosquitto] [--device ID:aws|azure]... [--port N] [--blob-port N] [--iothub-host H] [--webhook URL [--webhook-secret S]]
  device --id ID [--version X.Y.Z]
  devices | devices add ID aws|azure
  shadow get THING [--name N] | shadow set-desired THING JSON [--name N] | shadow delete THING [--name N] | shadow list THING
  twin get ID | twin set-desired ID JSON | twin method ID NAME [JSON] [--timeout S]
  firmware publish FILE [--name NAME] [--container C] | firmware list | firmware delete NAME [--container C]
  firmware fault NAME JSON [--container C] [--times N|always] [--after N] | firmware clear-faults NAME [--container C]
  logs tail DEVICE [--lines N] [--follow] [--json]
  rollout start --version V (--devices a,b | --all) --waves 1,10,50,100% --max-failure 5% [--window HH:MM-HH:MM] [--wave-deadline-ms N]
  rollout status [ID] | rollout pause|resume|cancel [ID] | install DEVICE
  proxy [--device ID] [--rules JSON|@FILE] [--port N] [--seed N]`;

/** Splits argv into positional words and --options (an option takes the next word; --device may repeat). */
export function parseArgs(argv: readonly string[]): { words: string[]; options: Map<string, string[]> } {
  const words: string[] = [];
  const options = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (FLAGS.has(a)) {
      options.set(a, ["true"]);
    } else if (a.startsWith("--")) {
      const v = argv[i + 1];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      options.set(a, [...(options.get(a) ?? []), v]);
      i++;
    } else words.push(a);
  }
  return { words, options };
}

class UsageError extends Error {}

function parseJsonArg(text: string | undefined, what: string): unknown {
  if (text === undefined) throw new UsageError(`${what} is missing`);
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`${what} is not JSON: ${text}`);
  }
}

interface Admin { url: string; token: string }

function readAdmin(dataDir: string): Admin {
  const file = path.join(dataDir, CLOUD_INFO_FILE);
  let info: { adminUrl?: string; adminToken?: string };
  try {
    info = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    throw new Error(`no running local cloud: ${file} is missing (start one with: npm run cloud -- start)`);
  }
  if (info.adminUrl === undefined || info.adminToken === undefined) throw new Error(`${file} has no admin API address`);
  return { url: info.adminUrl, token: info.adminToken };
}

/** The AWS IoT data-plane endpoint and key from cloud.json, with the CA file; undefined when the cloud runs without it. */
function readDataPlane(dataDir: string): { info: DataPlaneInfo; caFile: string } | undefined {
  let info: { awsDataPlane?: DataPlaneInfo; certsDir?: string };
  try {
    info = JSON.parse(fs.readFileSync(path.join(dataDir, CLOUD_INFO_FILE), "utf8"));
  } catch {
    return undefined; // readAdmin says what is missing
  }
  if (info.awsDataPlane === undefined || info.certsDir === undefined) return undefined;
  return { info: info.awsDataPlane, caFile: path.join(info.certsDir, "ca.cert.pem") };
}

/** IoT Hub's service connection string from cloud.json, with the CA file; undefined when the cloud runs without the API. */
function readIotHub(dataDir: string): { connectionString: string; caFile: string } | undefined {
  let info: { iothub?: { connectionString?: string }; certsDir?: string };
  try {
    info = JSON.parse(fs.readFileSync(path.join(dataDir, CLOUD_INFO_FILE), "utf8"));
  } catch {
    return undefined; // readAdmin says what is missing
  }
  if (info.iothub?.connectionString === undefined || info.certsDir === undefined) return undefined;
  return { connectionString: info.iothub.connectionString, caFile: path.join(info.certsDir, "ca.cert.pem") };
}

/** One admin request; `body` is sent as JSON, a Uint8Array as application/octet-stream. */
async function call(admin: Admin, method: string, p: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  let res: Response;
  const binary = body instanceof Uint8Array;
  try {
    res = await fetch(admin.url + p, {
      method, headers: { authorization: `Bearer ${admin.token}`, "content-type": binary ? "application/octet-stream" : "application/json" },
      ...(body === undefined ? {} : { body: binary ? body : JSON.stringify(body) }),
    });
  } catch (e) {
    throw new Error(`the local cloud at ${admin.url} does not answer (${(e as Error).message}); is it still running?`);
  }
  return { status: res.status, json: await res.json() };
}

/** Runs one command; resolves to the exit status. `start` resolves only when the cloud stops. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let words: string[];
  let options: Map<string, string[]>;
  try {
    ({ words, options } = parseArgs(argv));
  } catch (e) {
    io.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const opt = (k: string): string | undefined => options.get(k)?.at(-1);
  const dataDir = path.resolve(opt("--data-dir") ?? DEFAULT_DATA_DIR);
  const nameQuery = opt("--name") === undefined ? "" : `?name=${encodeURIComponent(opt("--name")!)}`;
  const enc = encodeURIComponent;
  try {
    const [cmd, sub, a, b, c] = words;
    let request: [string, string, unknown?] | undefined;
    switch (cmd) {
      case "start":
        return await runStart(options, dataDir, io);
      case "device":
        deviceMain([...argv]);
        return await new Promise<number>(() => undefined); // runs until a signal ends the process
      case "proxy":
        return await runProxy(options, dataDir, io);
      case "logs":
        if (sub === "tail" && a !== undefined && b === undefined) return await runLogsTail(a, options, dataDir, io);
        break;
      case "rollout":
        return await runRollout(sub, a, options, dataDir, io);
      case "install":
        if (sub !== undefined && a === undefined) request = ["POST", `/devices/${enc(sub)}/install`];
        break;
      case "devices":
        if (sub === undefined) request = ["GET", "/devices"];
        else if (sub === "add" && a !== undefined && (b === "aws" || b === "azure")) request = ["POST", "/devices", { id: a, cloud: b }];
        break;
      case "shadow": {
        if (a === undefined) break;
        // Through the AWS SDK against the cloud's AWS IoT data-plane endpoint, as a script for AWS would.
        const dp = readDataPlane(dataDir);
        const shadowName = opt("--name") === undefined ? {} : { shadowName: opt("--name")! };
        const cmd: ShadowCommand | undefined = sub === "get" || sub === "delete" ? { op: sub, thing: a, ...shadowName }
          : sub === "set-desired" ? { op: sub, thing: a, desired: parseJsonArg(b, "JSON"), ...shadowName }
          : sub === "list" ? { op: "list", thing: a } : undefined;
        if (cmd !== undefined && dp !== undefined) {
          const r = await runShadowCommand(dp.info, dp.caFile, cmd);
          const text = JSON.stringify(r.json, null, 2);
          if (r.status >= 400) { io.error(text); return 1; }
          io.print(text);
          return 0;
        }
        if (sub === "get") request = ["GET", `/things/${enc(a)}/shadow${nameQuery}`];
        else if (sub === "set-desired") request = ["POST", `/things/${enc(a)}/shadow${nameQuery}`, { state: { desired: parseJsonArg(b, "JSON") } }];
        else if (sub === "delete") request = ["DELETE", `/things/${enc(a)}/shadow${nameQuery}`];
        break;
      }
      case "twin": {
        if (a === undefined) break;
        // Through azure-iothub against the cloud's IoT Hub service API when it runs one (start --iothub-host).
        const hub = readIotHub(dataDir);
        const timeoutText = opt("--timeout");
        const tcmd: TwinCommand | undefined = sub === "get" ? { op: "get", id: a }
          : sub === "set-desired" ? { op: "set-desired", id: a, desired: parseJsonArg(b, "JSON") as Json }
          : sub === "method" && b !== undefined ? {
            op: "method", id: a, methodName: b, payload: (c === undefined ? null : parseJsonArg(c, "method payload")) as Json,
            ...(timeoutText === undefined ? {} : { responseTimeoutInSeconds: Number(timeoutText) }),
          } : undefined;
        if (tcmd !== undefined && hub !== undefined) {
          const r = await runTwinCommand(hub.connectionString, hub.caFile, tcmd);
          const text = JSON.stringify(r.json, null, 2);
          if (r.status >= 400) { io.error(text); return 1; }
          io.print(text);
          return 0;
        }
        if (sub === "get") request = ["GET", `/twins/${enc(a)}`];
        else if (sub === "set-desired") request = ["PATCH", `/twins/${enc(a)}`, { properties: { desired: parseJsonArg(b, "JSON") } }];
        else if (sub === "method" && b !== undefined) {
          const timeout = opt("--timeout");
          request = ["POST", `/twins/${enc(a)}/methods`, {
            methodName: b, payload: c === undefined ? null : parseJsonArg(c, "method payload"),
            ...(timeout === undefined ? {} : { responseTimeoutInSeconds: Number(timeout) }),
          }];
        }
        break;
      }
      case "firmware": {
        const container = enc(opt("--container") ?? DEFAULT_FIRMWARE_CONTAINER);
        if (sub === "list" && a === undefined) request = ["GET", "/firmware"];
        else if (sub === "publish" && a !== undefined) {
          let bytes: Buffer;
          try {
            bytes = fs.readFileSync(a);
          } catch (e) {
            throw new Error(`cannot read ${a}: ${(e as Error).message}`);
          }
          request = ["PUT", `/firmware/${container}/${enc(opt("--name") ?? path.basename(a))}`, new Uint8Array(bytes)];
        } else if (sub === "delete" && a !== undefined) request = ["DELETE", `/firmware/${container}/${enc(a)}`];
        else if (sub === "clear-faults" && a !== undefined) request = ["DELETE", `/firmware/${container}/${enc(a)}/faults`];
        else if (sub === "fault" && a !== undefined) {
          const times = opt("--times");
          const after = opt("--after");
          request = ["POST", `/firmware/${container}/${enc(a)}/faults`, {
            fault: parseJsonArg(b, "fault JSON"),
            ...(times === undefined ? {} : { times: times === "always" ? "always" : Number(times) }),
            ...(after === undefined ? {} : { after: Number(after) }),
          }];
        }
        break;
      }
    }
    if (request === undefined) throw new UsageError(cmd === undefined ? "no command" : `unknown or incomplete command: ${words.join(" ")}`);
    const r = await call(readAdmin(dataDir), ...request);
    const text = JSON.stringify(r.json, null, 2);
    if (r.status >= 400) { io.error(text); return 1; }
    io.print(text);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) { io.error(`${e.message}\n${USAGE}`); return 2; }
    io.error((e as Error).message);
    return 1;
  }
}

/** `logs tail`: the last `--lines` lines, then (with --follow) every new one until io.signal aborts. */
async function runLogsTail(device: string, options: Map<string, string[]>, dataDir: string, io: CliIo): Promise<number> {
  const linesOpt = options.get("--lines")?.at(-1) ?? "20";
  if (!/^[0-9]{1,4}$/.test(linesOpt) || Number(linesOpt) > MAX_TAIL_LIMIT) throw new UsageError(`--lines must be 0..${MAX_TAIL_LIMIT}, not ${linesOpt}`);
  const want = Number(linesOpt);
  const follow = options.has("--follow");
  const json = options.has("--json");
  const admin = readAdmin(dataDir);
  const show = (records: LogRecord[]): void => { for (const r of records) io.print(json ? JSON.stringify(r) : formatLogRecord(r)); };
  const page = async (after: number): Promise<{ lines: LogRecord[]; next: number; missed: number } | number> => {
    const r = await call(admin, "GET", `/devices/${encodeURIComponent(device)}/logs?after=${after}&limit=${MAX_TAIL_LIMIT}`);
    if (r.status >= 400) { io.error(JSON.stringify(r.json, null, 2)); return 1; }
    return r.json as { lines: LogRecord[]; next: number; missed: number };
  };
  const first = await page(0);
  if (typeof first === "number") return first;
  show(want === 0 ? [] : first.lines.slice(-want));
  let next = first.next;
  const stopped = (): boolean => io.signal?.aborted === true;
  while (follow && !stopped()) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 500);
      io.signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
    });
    if (stopped()) break;
    const p = await page(next);
    if (typeof p === "number") return p;
    if (p.missed > 0) io.error(`(${p.missed} lines left the cloud's buffer before they could be shown)`);
    show(p.lines);
    next = p.next;
  }
  return 0;
}

/** `rollout …`: the admin API's /rollouts routes (src/sim/rollout-http.ts); ID defaults to the newest rollout. */
async function runRollout(sub: string | undefined, id: string | undefined, options: Map<string, string[]>, dataDir: string, io: CliIo): Promise<number> {
  const opt = (k: string): string | undefined => options.get(k)?.at(-1);
  let request: [string, string, unknown?];
  if (sub === "start" && id === undefined) {
    const version = opt("--version");
    const waves = opt("--waves");
    const maxFailure = opt("--max-failure");
    const devices = opt("--devices");
    const all = options.has("--all");
    if (version === undefined || waves === undefined || maxFailure === undefined) throw new UsageError("rollout start needs --version, --waves and --max-failure");
    if ((devices === undefined) === !all) throw new UsageError("rollout start needs --devices a,b or --all (one of them)");
    const deadline = opt("--wave-deadline-ms");
    if (deadline !== undefined && !/^[0-9]{1,12}$/.test(deadline)) throw new UsageError(`--wave-deadline-ms must be a whole number, not ${deadline}`);
    const window = opt("--window");
    request = ["POST", "/rollouts", {
      version, waves, maxFailure, ...(all ? { all: true } : { devices: devices!.split(",").map((d) => d.trim()).filter((d) => d !== "") }),
      ...(window === undefined ? {} : { window }), ...(deadline === undefined ? {} : { waveDeadlineMs: Number(deadline) }),
    }];
  } else if (sub === "status" || sub === "pause" || sub === "resume" || sub === "cancel") {
    const admin = readAdmin(dataDir);
    let target = id;
    if (target === undefined) {
      const list = await call(admin, "GET", "/rollouts");
      const rollouts = (list.json as { rollouts?: Array<{ id: string }> }).rollouts ?? [];
      if (list.status >= 400 || rollouts.length === 0) { io.error(list.status >= 400 ? JSON.stringify(list.json, null, 2) : "no rollout yet"); return 1; }
      target = rollouts[rollouts.length - 1]!.id;
    }
    const p = `/rollouts/${encodeURIComponent(target)}`;
    request = sub === "status" ? ["GET", p] : ["POST", `${p}/${sub}`];
  } else throw new UsageError(`unknown or incomplete command: rollout ${sub ?? ""}`.trim());
  const r = await call(readAdmin(dataDir), ...request);
  if (r.status >= 400) {
    io.error(JSON.stringify(r.json, null, 2));
    return (r.json as { code?: string }).code === "ROLLOUT_REQUEST_INVALID" ? 2 : 1;
  }
  io.print(JSON.stringify(r.json, null, 2));
  return 0;
}

/** `proxy`: see runProxyCommand (mqtt-fault-proxy.ts); a bad rule or option is a usage error. */
async function runProxy(options: Map<string, string[]>, dataDir: string, io: CliIo): Promise<number> {
  const num = (k: string): number | undefined => {
    const v = options.get(k)?.at(-1);
    if (v !== undefined && !/^[0-9]{1,10}$/.test(v)) throw new UsageError(`${k} must be a non-negative integer, not ${v}`);
    return v === undefined ? undefined : Number(v);
  };
  const device = options.get("--device")?.at(-1);
  const rules = options.get("--rules")?.at(-1);
  const port = num("--port");
  const seed = num("--seed");
  try {
    await runProxyCommand({
      dataDir, print: io.print, ...(io.signal === undefined ? {} : { signal: io.signal }),
      ...(device === undefined ? {} : { device }), ...(rules === undefined ? {} : { rules }),
      ...(port === undefined ? {} : { port }), ...(seed === undefined ? {} : { seed }),
    });
  } catch (e) {
    if (e instanceof ShadowOtaError && (e.code === PROXY_CODES.PROXY_RULE_INVALID || e.code === PROXY_CODES.PROXY_OPTION_INVALID)) {
      throw new UsageError(`${e.code}: ${e.message}`);
    }
    throw e;
  }
  return 0;
}

async function runStart(options: Map<string, string[]>, dataDir: string, io: CliIo): Promise<number> {
  const broker = (options.get("--broker")?.at(-1) ?? "aedes") as BrokerKind;
  if (broker !== "aedes" && broker !== "mosquitto") throw new UsageError(`--broker must be aedes or mosquitto, not ${broker}`);
  const devices = (options.get("--device") ?? []).map((d) => {
    const [id, cloud] = d.split(":");
    if (id === undefined || id === "" || (cloud !== "aws" && cloud !== "azure")) throw new UsageError(`--device wants ID:aws or ID:azure, not ${d}`);
    return { id, cloud: cloud as CloudKind };
  });
  const port = options.get("--port")?.at(-1);
  const blobPort = options.get("--blob-port")?.at(-1);
  const iothubHost = options.get("--iothub-host")?.at(-1);
  const webhook = options.get("--webhook")?.at(-1);
  // The secret is never printed; the environment keeps it out of `ps` (docs/fleet-page.md).
  const secret = options.get("--webhook-secret")?.at(-1) ?? process.env["SHADOW_OTA_WEBHOOK_SECRET"];
  if (webhook === undefined && options.has("--webhook-secret")) throw new UsageError("--webhook-secret needs --webhook URL");
  const cloud = await LocalCloud.start({
    broker, dataDir, devices, log: consoleLog({ base: { component: "cloud" } }), deviceLogs: { files: true },
    ...(port === undefined ? {} : { port: Number(port) }),
    ...(blobPort === undefined ? {} : { blobPort: Number(blobPort) }),
    ...(iothubHost === undefined ? {} : { iothub: { host: iothubHost } }),
    ...(webhook === undefined ? {} : { webhook: { url: webhook, ...(secret === undefined ? {} : { secret }) } }),
  });
  io.print(`local cloud (${broker}) on mqtts://${cloud.host}:${cloud.mqttPort}, admin API ${cloud.adminUrl}, firmware at ${cloud.blobBaseUrl}; connection file ${path.join(dataDir, CLOUD_INFO_FILE)}`);
  io.print(`fleet page: ${cloud.fleetPageUrl}${webhook === undefined ? "" : `; fleet events are POSTed to ${webhook}${secret === undefined ? "" : " (signed)"}`}`);
  io.print("Ctrl-C stops it.");
  return new Promise<number>((resolve) => {
    const stop = (): void => { void cloud.close().then(() => resolve(0)); };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}

if (require.main === module) {
  runCli(process.argv.slice(2), { print: (l) => console.log(l), error: (l) => console.error(l) }).then(
    (code) => process.exit(code),
    (e: unknown) => { console.error(e); process.exit(1); });
}
