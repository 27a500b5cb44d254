/**
 * `npm start`: the main job, on the embedded default. Starts the local cloud (local CA, aedes over mutual
 * TLS on 127.0.0.1, AWS shadow and Azure twin services) and two simulated devices running the firmware's
 * platform-neutral core over the Node adapters — `esp32-01` on the AWS seed (desired
 * `config.firmware_version`) and `esp32-az-01` on the Azure seed (desired `updateVersion`) — then walks
 * through a sync: devices report what they run, the cloud sets desired configuration and a new firmware
 * version, devices apply the configuration and hand the firmware version to their OTA hook, an Azure direct
 * method, a device reboot and a cloud restart with everything kept. Exits 0 when every step was observed,
 * 1 (naming the step) when one was not within its time limit.
 *
 *   npm start                        aedes, data in .cloud-data/demo and .device-data/demo (wiped first)
 *   npm start -- --broker mosquitto  the same against Debian's mosquitto
 *   npm start -- --keep              keep the cloud and devices running afterwards (Ctrl-C stops them)
 *
 * Not here yet: the firmware download itself (the OTA flow is a later issue): the hook prints the request.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { getPath } from "../core/config-diff";
import type { JsonObject } from "../core/json";
import type { Log, LogLevel } from "../ports/log";
import { SimDevice } from "./device";
import { LocalCloud, type BrokerKind } from "./local-cloud";

const out = (line: string): void => { process.stdout.write(line + "\n"); };

/** Prints the device events a person wants to see, one line each. */
function deviceLog(id: string): Log {
  const shown: Record<string, (f: Record<string, unknown>) => string> = {
    "sync.desired": (f) => `desired change received (version ${String(f["version"])}, ${String(f["changed"])} leaf/leaves${f["firmwareVersion"] ? `, firmware ${String(f["firmwareVersion"])}` : ""})`,
    "agent.report.config": (f) => `applies desired configuration and reports it (${(f["keys"] as string[]).join(", ")})`,
    "agent.report.firmware": () => "reports its running firmware version",
    "agent.report.error": () => "reports an error in reported.lastError",
    "sync.resync": (f) => `re-sends ${String(f["paths"])} reported leaf/leaves the cloud lacks`,
  };
  return {
    log(level: LogLevel, event: string, fields: Record<string, unknown> = {}) {
      const show = shown[event];
      if (show !== undefined) out(`    ${id}: ${show(fields)}`);
      else if (level === "error") out(`    ${id}: error ${event} ${JSON.stringify(fields)}`);
    },
  };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`step not observed within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

export async function demo(argv: string[]): Promise<number> {
  const broker = (arg(argv, "--broker") ?? "aedes") as BrokerKind;
  if (broker !== "aedes" && broker !== "mosquitto") { out("--broker must be aedes or mosquitto"); return 2; }
  const keep = argv.includes("--keep");
  const dataDir = path.resolve(".cloud-data", "demo");
  const deviceDir = path.resolve(".device-data", "demo");
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(deviceDir, { recursive: true, force: true });
  const t0 = Date.now();
  const devicesSpec = [{ id: "esp32-01", cloud: "aws" as const }, { id: "esp32-az-01", cloud: "azure" as const }];
  let cloud = await LocalCloud.start({ broker, dataDir, devices: devicesSpec, methodTimeoutMs: 10_000 });
  const port = cloud.mqttPort;
  out(`shadow-ota demo — local cloud on ${broker}, mutual TLS, mqtts://${cloud.host}:${port}; CA and device certificates in ${path.relative(process.cwd(), cloud.certsDir)}`);
  const devices = new Map<string, SimDevice>();
  const requested: string[] = [];
  const startDevice = (id: string): SimDevice => {
    const c = cloud.credentials(id);
    const d = SimDevice.start({
      id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
      dataDir: path.join(deviceDir, id), firmwareVersion: "1.0.0", log: deviceLog(id),
      onFirmwareRequested: (r) => {
        requested.push(`${id}@${r.version}`);
        out(`    ${id}: firmware ${r.version} requested (running ${r.running}, ${r.newer ? "newer" : "not newer"}) → handed to the OTA hook; this build reports the request only`);
      },
    });
    devices.set(id, d);
    return d;
  };
  const awsReported = async (): Promise<JsonObject | undefined> =>
    ((await cloud.shadows.getShadow("esp32-01"))?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined;
  const azReported = async (): Promise<JsonObject> => (await cloud.twins.getTwin("esp32-az-01")).reported;
  const step = (n: number, text: string): void => out(`\n[${n}] ${text}`);
  let failed: Error | undefined;
  try {
    step(1, "two simulated devices (firmware 1.0.0) connect with their client certificates, subscribe, get their twin and report");
    for (const d of devicesSpec) startDevice(d.id);
    await until("esp32-01 reported config.firmware_version 1.0.0", async () => (getPath((await awsReported()) ?? {}, ["config", "firmware_version"]) === "1.0.0" ? true : undefined));
    await until("esp32-az-01 reported firmwareVersion 1.0.0", async () => ((await azReported())["firmwareVersion"] === "1.0.0" ? true : undefined));
    out(`    cloud sees esp32-01 reported ${JSON.stringify(await awsReported())}`);
    out(`    cloud sees esp32-az-01 reported ${JSON.stringify(await azReported())}`);

    step(2, "the cloud sets esp32-01's desired state: config.interval 30, config.firmware_version 1.1.0 (AWS seed)");
    await cloud.shadows.updateDesired("esp32-01", { config: { interval: 30, firmware_version: "1.1.0" } });
    await until("esp32-01 reported config.interval 30", async () => (getPath((await awsReported()) ?? {}, ["config", "interval"]) === 30 ? true : undefined));
    const doc = (await cloud.shadows.getShadow("esp32-01"))!;
    out(`    shadow version ${String(doc["version"])}; delta left: ${JSON.stringify((doc["state"] as JsonObject)["delta"] ?? {})} (cleared once the device runs 1.1.0)`);

    step(3, "the cloud patches esp32-az-01's twin: updateVersion 1.1.0, telemetry.interval 15 (Azure seed), then calls the direct method firmwareUpdate {version: 1.2.0}");
    await cloud.twins.updateDesired("esp32-az-01", { updateVersion: "1.1.0", telemetry: { interval: 15 } });
    await until("esp32-az-01 reported telemetry.interval 15", async () => (getPath(await azReported(), ["telemetry", "interval"]) === 15 ? true : undefined));
    const reply = await cloud.twins.invokeMethod("esp32-az-01", "firmwareUpdate", { version: "1.2.0" });
    out(`    direct method answered ${reply.status} ${JSON.stringify(reply.payload)}`);
    if (reply.status !== 200) throw new Error(`direct method answered ${reply.status}`);

    step(4, "a hostile desired firmware version (\"1.3.0/../../x\") is refused and reported, never handed on");
    await cloud.shadows.updateDesired("esp32-01", { config: { firmware_version: "1.3.0/../../x" } });
    const err = await until("esp32-01 reported lastError", async () => (await awsReported())?.["lastError"] as JsonObject | undefined);
    out(`    cloud sees esp32-01 reported.lastError ${JSON.stringify(err)}`);

    step(5, "esp32-01 reboots (same NVS file) and the cloud restarts (same store): nothing is lost, devices reconnect by themselves");
    await devices.get("esp32-01")!.close();
    const version = (await cloud.shadows.getShadow("esp32-01"))!["version"];
    await cloud.close();
    cloud = await LocalCloud.start({ broker, dataDir, devices: devicesSpec, port, methodTimeoutMs: 10_000 });
    out(`    cloud restarted on port ${cloud.mqttPort}; esp32-01's shadow is at version ${String((await cloud.shadows.getShadow("esp32-01"))!["version"])} (was ${String(version)})`);
    const rebooted = startDevice("esp32-01");
    await rebooted.waitFor((s) => s.connected && s.version >= (version as number), 20_000, "esp32-01 re-synced");
    if (broker === "aedes") await devices.get("esp32-az-01")!.waitFor((s) => s.connected, 20_000, "esp32-az-01 reconnected");
    out(`    esp32-01 re-synced at shadow version ${rebooted.state().version}; reported state intact: ${JSON.stringify(await awsReported())}`);

    out(`\ndone in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${requested.length} firmware requests handed to the OTA hook (${requested.join(", ")})`);
  } catch (e) {
    failed = e as Error;
    out(`\nFAILED: ${failed.message}`);
  }
  if (keep && failed === undefined) {
    out(`\nstill running; try: npm run cloud -- shadow get esp32-01 --data-dir ${path.relative(process.cwd(), dataDir)}   (Ctrl-C stops)`);
    await new Promise<void>((resolve) => { process.once("SIGINT", () => resolve()); process.once("SIGTERM", () => resolve()); });
  }
  for (const d of devices.values()) await d.close();
  await cloud.close();
  return failed === undefined ? 0 : 1;
}

if (require.main === module) {
  demo(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => { console.error(e); process.exit(1); });
}
