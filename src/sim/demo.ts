/**
 * `npm start`: the main job — a fleet update on loopback. Starts the local cloud (local CA, aedes over
 * mutual TLS on 127.0.0.1 — or Debian's mosquitto — the AWS shadow and Azure twin services and the HTTPS
 * firmware blob server) and four simulated devices on firmware 1.0.0, each running the firmware's device
 * app (ShadowSync + DeviceAgent + OtaController) over the Node adapters, the HTTPS byte source and the
 * native OTA slot on a flash file (src/sim/device.ts):
 *
 *   esp32-01     AWS seed (desired config.firmware_version, blob {base}1.1.0.bin)    plain update
 *   esp32-02     AWS seed                                                             power cut mid-download
 *   esp32-az-01  Azure seed (desired updateVersion, blob {container}/v1_1_0.bin)     plain update
 *   esp32-az-02  Azure seed, its own container "canary" whose 1.1.0 fails its self-test → rollback
 *
 * Steps: devices connect and report 1.0.0; desired configuration is applied and reported; a hostile desired
 * version is refused into reported.lastError; 1.1.0 (real ESP32 app images, 512 KiB) is published and set as
 * desired on all four, and the downloads are shown live (a progress bar per device with cli-progress when
 * stdout is a terminal, plain lines otherwise); the cloud restarts and keeps every shadow, twin and reported
 * update state. The blob server is throttled (THROTTLE_BPS per response) so the progress can be followed;
 * the run takes well under a minute.
 *
 * It ends with a summary table and exits 0 only when every device ended as expected: esp32-az-02 back on
 * 1.0.0 with firmwareUpdate.state RolledBack and lastError OTA_SELF_TEST_FAILED, the others on 1.1.0 and
 * Valid, esp32-02 restarted by the power cut and downloaded at most image + 4 KiB (the controller reads
 * no further than the next sector boundary and persists there, so a cut costs at most that sector).
 * Otherwise exit 1, naming what was not observed.
 *
 *   npm start                        aedes, data in .cloud-data/demo and .device-data/demo (wiped first)
 *   npm start -- --broker mosquitto  the same against Debian's mosquitto
 *   npm start -- --keep              keep the cloud and devices running afterwards (Ctrl-C stops them)
 *
 * Not here: timing claims (the seconds and KiB/s in the table are what this run took with the throttle;
 * throughput figures come from `npm run bench`, bench/ota-e2e.bench.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import cliProgress from "cli-progress";
import { getPath } from "../core/config-diff";
import { awsBlobName, azureBlobName } from "../core/firmware-url";
import type { JsonObject } from "../core/json";
import type { OtaState } from "../core/ota-controller";
import { HttpsByteSource } from "../node/https-source";
import type { ByteSource } from "../ports/byte-source";
import type { Log, LogLevel } from "../ports/log";
import { buildImage } from "../tools/esp-image";
import { runShadowCommand } from "./aws-dataplane-client";
import { SELFTEST_FAIL_MARKER, SimDevice } from "./device";
import { LocalCloud, type BrokerKind } from "./local-cloud";

const out = (line: string): void => { process.stdout.write(line + "\n"); };

/** The new firmware's size: a real ESP32 app image (header, segments, descriptor, SHA-256). */
export const IMAGE_SIZE = 512 * 1024;
/** Per-response throttle of the blob server (bytes per second): about 4 s per 512 KiB download. */
export const THROTTLE_BPS = 128 * 1024;
/** esp32-02 loses power once this many bytes of the new image are in its slot. */
const POWER_CUT_AT = Math.floor(IMAGE_SIZE * 0.4);
const SECTOR = 4096;
const FROM = "1.0.0";
const TO = "1.1.0";
/** The longest the update step may take before the demo gives up on a device. */
const UPDATE_LIMIT_MS = 75_000;

type Role = "update" | "power-cut" | "rollback";
interface FleetEntry { id: string; cloud: "aws" | "azure"; role: Role }

export const FLEET: readonly FleetEntry[] = [
  { id: "esp32-01", cloud: "aws", role: "update" },
  { id: "esp32-02", cloud: "aws", role: "power-cut" },
  { id: "esp32-az-01", cloud: "azure", role: "update" },
  { id: "esp32-az-02", cloud: "azure", role: "rollback" },
];
/** The container the rollback device's firmware comes from (so only it gets the failing image). */
const CANARY_CONTAINER = "canary";

/** What the demo saw of one device's update (from its log events and its byte source). */
interface Track {
  desiredAt?: number;
  firstOpenAt?: number;
  stagedAt?: number;
  finalAt?: number;
  /** Largest chunk its byte source handed over (the "chunk in flight" of the power-cut bound). */
  maxChunk: number;
  opens: Array<{ status: number; start: number }>;
}

// ---- the live view -------------------------------------------------------------------------------

/** Where progress and device events go while the downloads run. */
interface ProgressView {
  line(text: string): void;
  /** `state` is the controller's state; `note` what else the bar shows (offline, running version). */
  update(id: string, durable: number, total: number, state: OtaState, note: string): void;
  stop(): void;
}

const KIB = 1024;

/** cli-progress bars, one per device, events printed above them. */
class TtyView implements ProgressView {
  readonly #multi: cliProgress.MultiBar;
  readonly #bars = new Map<string, cliProgress.SingleBar>();
  constructor(ids: readonly string[], total: number) {
    this.#multi = new cliProgress.MultiBar({
      format: "  {device} |{bar}| {percentage}% {value}/{total} KiB  {state}",
      barsize: 32, hideCursor: true, clearOnComplete: false, stopOnComplete: false, autopadding: true, fps: 10,
    }, cliProgress.Presets.shades_classic);
    const width = Math.max(...ids.map((i) => i.length));
    for (const id of ids) this.#bars.set(id, this.#multi.create(Math.round(total / KIB), 0, { device: id.padEnd(width), state: "Idle" }));
  }
  line(text: string): void { this.#multi.log(text + "\n"); }
  update(id: string, durable: number, total: number, state: OtaState, note: string): void {
    const bar = this.#bars.get(id);
    if (bar === undefined) return;
    bar.setTotal(Math.round(total / KIB));
    bar.update(Math.floor(durable / KIB), { state: `${state}${note}` });
  }
  stop(): void { this.#multi.stop(); }
}

/** Plain lines: events as they happen, progress at every quarter. */
class PlainView implements ProgressView {
  readonly #shown = new Map<string, number>();
  line(text: string): void { out(text); }
  update(id: string, durable: number, total: number, state: OtaState): void {
    if (state !== "Downloading" || total <= 0) return;
    const quarter = Math.floor((durable * 4) / total);
    if (quarter <= (this.#shown.get(id) ?? 0) || quarter >= 4) return;
    this.#shown.set(id, quarter);
    out(`    ${id}: ${quarter * 25}% (${durable}/${total} bytes in the slot)`);
  }
  stop(): void { /* nothing to tear down */ }
}

// ---- helpers -------------------------------------------------------------------------------------

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

async function reportedOf(cloud: LocalCloud, id: string): Promise<JsonObject> {
  if (cloud.devices.get(id) === "azure") return (await cloud.twins.getTwin(id)).reported;
  const doc = await cloud.shadows.getShadow(id);
  return ((doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
}

/** The running version as the cloud sees it (the seeds keep it in different places). */
function reportedVersion(r: JsonObject, cloud: "aws" | "azure"): unknown {
  return cloud === "azure" ? r["firmwareVersion"] : getPath(r, ["config", "firmware_version"]);
}

/** Desired state of an AWS thing through the AWS SDK against the cloud's data-plane endpoint — what a user's
 *  script for AWS IoT does (aws-dataplane-client.ts); in-process only when the cloud runs without one. */
async function setShadowDesired(cloud: LocalCloud, thing: string, desired: JsonObject): Promise<void> {
  const dp = cloud.info().awsDataPlane;
  if (dp === undefined) { await cloud.shadows.updateDesired(thing, desired); return; }
  const r = await runShadowCommand(dp, path.join(cloud.certsDir, "ca.cert.pem"), { op: "set-desired", thing, desired });
  if (r.status !== 200) throw new Error(`UpdateThingShadow ${thing} refused: ${JSON.stringify(r.json)}`);
}

async function setDesiredVersion(cloud: LocalCloud, e: FleetEntry, version: string): Promise<void> {
  if (e.cloud === "azure") await cloud.twins.updateDesired(e.id, { updateVersion: version });
  else await setShadowDesired(cloud, e.id, { config: { firmware_version: version } });
}

/** HttpsByteSource (the real adapter) that also notes the largest chunk it handed over. */
function measuredSource(ca: string, host: string, track: Track): ByteSource {
  const inner = new HttpsByteSource({ ca, allowedHosts: [host], connectTimeoutMs: 10_000, idleTimeoutMs: 10_000 });
  return {
    open: async (req) => {
      const resp = await inner.open(req);
      return {
        status: resp.status, start: resp.start, total: resp.total, etag: resp.etag,
        read: async (maxBytes?: number) => {
          const chunk = await resp.read(maxBytes);
          if (chunk !== undefined && chunk.length > track.maxChunk) track.maxChunk = chunk.length;
          return chunk;
        },
        abort: () => resp.abort(),
      };
    },
  };
}

function pad(cells: readonly string[], widths: readonly number[], right: ReadonlySet<number>): string {
  return cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
}

function table(head: readonly string[], rows: readonly string[][], right: ReadonlySet<number>): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [pad(head, widths, right), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map((r) => pad(r, widths, right))];
}

// ---- the demo ------------------------------------------------------------------------------------

export async function demo(argv: string[]): Promise<number> {
  const broker = (arg(argv, "--broker") ?? "aedes") as BrokerKind;
  if (broker !== "aedes" && broker !== "mosquitto") { out("--broker must be aedes or mosquitto"); return 2; }
  const keep = argv.includes("--keep");
  const tty = process.stdout.isTTY === true;
  const dataDir = path.resolve(".cloud-data", "demo");
  const deviceDir = path.resolve(".device-data", "demo");
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(deviceDir, { recursive: true, force: true });
  const t0 = Date.now();
  const devicesSpec = FLEET.map((e) => ({ id: e.id, cloud: e.cloud }));
  let cloud = await LocalCloud.start({ broker, dataDir, devices: devicesSpec, methodTimeoutMs: 10_000 });
  const port = cloud.mqttPort;
  out(`shadow-ota demo — local cloud on ${broker}, mutual TLS, mqtts://${cloud.host}:${port}; firmware blobs at ${cloud.blobBaseUrl}; certificates in ${path.relative(process.cwd(), cloud.certsDir)}`);
  out(`fleet page (docs/fleet-page.md; its address changes when the cloud restarts in step 5, --keep prints the last): ${cloud.fleetPageUrl}`);

  const devices = new Map<string, SimDevice>();
  const tracks = new Map<string, Track>(FLEET.map((e) => [e.id, { maxChunk: 0, opens: [] }]));
  let view: ProgressView | undefined;
  const say = (text: string): void => { if (view === undefined) out(text); else view.line(text); };

  /** The device events a person wants to see, one line each; the update's timestamps. */
  const deviceLog = (id: string): Log => {
    const track = tracks.get(id)!;
    const shown: Record<string, (f: Record<string, unknown>) => string | undefined> = {
      "agent.report.config": (f) => `applies desired configuration and reports it (${(f["keys"] as string[]).join(", ")})`,
      "agent.report.error": () => "reports an error in reported.lastError",
      "ota.download.open": (f) => {
        track.opens.push({ status: Number(f["status"]), start: Number(f["start"]) });
        track.firstOpenAt ??= Date.now();
        return `GET ${String(f["to"])} → ${String(f["status"])}${Number(f["start"]) > 0 ? `, resuming at byte ${String(f["start"])}` : ""} (${String(f["total"])} bytes, attempt ${String(f["attempt"])})`;
      },
      "ota.power-lost": (f) => `power lost while writing (${String(f["durable"])} bytes durable)`,
      "ota.resume": (f) => `resumes the download of ${String(f["to"])} from ${String(f["durable"])} durable bytes`,
      "ota.staged": (f) => { track.stagedAt = Date.now(); return `image ${String(f["to"])} verified (${String(f["bytes"])} bytes) and set to boot`; },
      "device.restart": (f) => `restarts (${String(f["reason"])})`,
      "device.boot": (f) => (devices.has(id) ? `boots ${String(f["version"])} from ${String(f["partition"])}${f["state"] === null ? "" : ` (${String(f["state"])})`}${f["rolledBack"] === true ? ", rolled back by the bootloader" : ""}` : undefined),
      "ota.valid": (f) => `self-test passed: ${String(f["version"])} marked valid`,
      "ota.self-test.failed": (f) => `self-test of ${String(f["version"])} failed (${String(f["code"])}): marked invalid, rebooting`,
    };
    return {
      log(level: LogLevel, event: string, fields: Record<string, unknown> = {}) {
        const show = shown[event];
        const text = show === undefined ? (level === "error" ? `error ${event} ${JSON.stringify(fields)}` : undefined) : show(fields);
        if (text !== undefined) say(`    ${id}: ${text}`);
      },
    };
  };

  const startDevice = (e: FleetEntry): SimDevice => {
    const c = cloud.credentials(e.id);
    const baseUrl = e.role === "rollback" ? cloud.blobs.baseUrl(CANARY_CONTAINER) : cloud.blobBaseUrl;
    const d = SimDevice.start({
      id: e.id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
      dataDir: path.join(deviceDir, e.id), firmwareVersion: FROM, log: deviceLog(e.id),
      firmware: { baseUrl, ca: c.ca },
      source: measuredSource(c.ca, cloud.host, tracks.get(e.id)!),
      powerOffMs: 500,
    });
    devices.set(e.id, d);
    return d;
  };

  const step = (n: number, text: string): void => out(`\n[${n}] ${text}`);
  const problems: string[] = [];
  let failed: Error | undefined;
  try {
    step(1, `four simulated devices (firmware ${FROM}) connect with their client certificates, get their twin and report what they run`);
    for (const e of FLEET) startDevice(e);
    for (const e of FLEET) {
      await until(`${e.id} reported firmware ${FROM}`, async () => (reportedVersion(await reportedOf(cloud, e.id), e.cloud) === FROM ? true : undefined), 30_000);
    }
    out(`    the cloud sees ${FLEET.map((e) => `${e.id} (${e.cloud})`).join(", ")} on ${FROM}`);

    step(2, "desired configuration: config.interval 30 (AWS shadows), telemetry.interval 15 (Azure twins)");
    for (const e of FLEET) {
      if (e.cloud === "aws") await setShadowDesired(cloud, e.id, { config: { interval: 30 } });
      else await cloud.twins.updateDesired(e.id, { telemetry: { interval: 15 } });
    }
    for (const e of FLEET) {
      const p = e.cloud === "aws" ? ["config", "interval"] : ["telemetry", "interval"];
      const want = e.cloud === "aws" ? 30 : 15;
      await until(`${e.id} reported ${p.join(".")} ${want}`, async () => (getPath(await reportedOf(cloud, e.id), p) === want ? true : undefined));
    }

    step(3, "a hostile desired firmware version (\"1.3.0/../../x\") is refused and reported, never downloaded");
    await setShadowDesired(cloud, "esp32-01", { config: { firmware_version: "1.3.0/../../x" } });
    const err = await until("esp32-01 reported lastError", async () => (await reportedOf(cloud, "esp32-01"))["lastError"] as JsonObject | undefined);
    out(`    cloud sees esp32-01 reported.lastError ${JSON.stringify(err)}`);

    step(4, `firmware ${TO}: ${IMAGE_SIZE / KIB} KiB ESP32 images published (${cloud.blobBaseUrl}${awsBlobName(TO)}, ${azureBlobName(TO)}; a self-test-failing build in container "${CANARY_CONTAINER}" for esp32-az-02), blob server throttled to ${THROTTLE_BPS / KIB} KiB/s per download; desired ${TO} on all four; esp32-02 loses power at ${POWER_CUT_AT} bytes`);
    const good = buildImage({ version: TO, projectName: "shadow-ota", size: IMAGE_SIZE, seed: 11 });
    const bad = buildImage({ version: TO, projectName: "shadow-ota", size: IMAGE_SIZE, seed: 11, marker: SELFTEST_FAIL_MARKER });
    cloud.blobs.publish("firmware", awsBlobName(TO), good);
    cloud.blobs.publish("firmware", azureBlobName(TO), good);
    cloud.blobs.publish(CANARY_CONTAINER, azureBlobName(TO), bad);
    cloud.blobs.bytesPerSecond = THROTTLE_BPS;
    devices.get("esp32-02")!.powerCutAtByte(POWER_CUT_AT, 3);
    view = tty ? new TtyView(FLEET.map((e) => e.id), IMAGE_SIZE) : new PlainView();
    for (const e of FLEET) {
      tracks.get(e.id)!.desiredAt = Date.now();
      await setDesiredVersion(cloud, e, TO);
    }
    const settled = (e: FleetEntry): boolean => {
      const d = devices.get(e.id)!;
      const s: OtaState = d.ota.state;
      return s === "Failed" || (e.role === "rollback" ? s === "RolledBack" && d.runningVersion === FROM : s === "Valid" && d.runningVersion === TO);
    };
    const end = Date.now() + UPDATE_LIMIT_MS;
    for (;;) {
      for (const e of FLEET) {
        const d = devices.get(e.id)!;
        const r = d.ota.record;
        const t = tracks.get(e.id)!;
        if (t.finalAt === undefined && settled(e)) t.finalAt = Date.now();
        view.update(e.id, r.durable, r.total ?? IMAGE_SIZE, d.ota.state, `${d.connected ? "" : " (offline)"} · runs ${d.runningVersion}`);
      }
      if (FLEET.every((e) => tracks.get(e.id)!.finalAt !== undefined) || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    view.stop();
    view = undefined;
    for (const e of FLEET) {
      const want = e.role === "rollback" ? "RolledBack" : "Valid";
      await until(`the cloud sees ${e.id} firmwareUpdate.state ${want}`, async () => (((await reportedOf(cloud, e.id))["firmwareUpdate"] as JsonObject | undefined)?.["state"] === want ? true : undefined), 10_000)
        .catch((e2: unknown) => problems.push((e2 as Error).message.replace(/^step not observed within \d+ ms: /, "")));
    }

    step(5, "the cloud restarts (same store and ports): shadows, twins and every device's reported update state survive; devices reconnect by themselves");
    const before = new Map<string, string>();
    for (const e of FLEET) before.set(e.id, JSON.stringify((await reportedOf(cloud, e.id))["firmwareUpdate"] ?? null));
    const blobPort = cloud.blobs.port;
    await cloud.close();
    cloud = await LocalCloud.start({ broker, dataDir, devices: devicesSpec, port, blobPort, methodTimeoutMs: 10_000 });
    for (const e of FLEET) {
      const now = JSON.stringify((await reportedOf(cloud, e.id))["firmwareUpdate"] ?? null);
      if (now !== before.get(e.id)) problems.push(`${e.id}: reported.firmwareUpdate changed across the cloud restart (${before.get(e.id)} → ${now})`);
    }
    // On mosquitto each Azure device has its own broker instance, started again on a new port: only the
    // AWS devices (and, on aedes, every device) can reconnect to the address they know.
    for (const e of FLEET) {
      if (broker === "mosquitto" && e.cloud === "azure") continue;
      await devices.get(e.id)!.waitFor((s) => s.connected, 20_000, `${e.id} reconnected`);
    }
    out(`    cloud restarted on port ${cloud.mqttPort}; every reported firmwareUpdate is as before; devices reconnected`);
  } catch (e) {
    failed = e as Error;
  } finally {
    view?.stop();
  }

  // ---- summary and verdict -----------------------------------------------------------------------
  const rows: string[][] = [];
  for (const e of FLEET) {
    const d = devices.get(e.id);
    const t = tracks.get(e.id)!;
    if (d === undefined) continue;
    const r = d.ota.record;
    const result = `${d.ota.state}${r.lastError === undefined ? "" : ` ${r.lastError.code}`}${e.role === "power-cut" && d.restarts.includes("power cut") ? " (power cut, resumed)" : ""}`;
    const secs = t.desiredAt !== undefined && t.finalAt !== undefined ? ((t.finalAt - t.desiredAt) / 1000).toFixed(1) : "-";
    const dl = t.firstOpenAt !== undefined && t.stagedAt !== undefined ? (t.stagedAt - t.firstOpenAt) / 1000 : undefined;
    const rate = dl !== undefined && dl > 0 ? (d.bytesDownloaded / KIB / dl).toFixed(0) : "-";
    const extra = d.bytesDownloaded - IMAGE_SIZE;
    rows.push([e.id, e.cloud, FROM, TO, d.runningVersion, result, secs, rate, `${d.bytesDownloaded} / ${IMAGE_SIZE}${extra === 0 ? "" : ` (${extra > 0 ? "+" : ""}${extra})`}`]);

    // What each device must have ended as.
    if (e.role === "rollback") {
      if (d.runningVersion !== FROM) problems.push(`${e.id}: runs ${d.runningVersion}, expected ${FROM} after the rollback`);
      if (d.ota.state !== "RolledBack") problems.push(`${e.id}: firmwareUpdate.state ${d.ota.state}, expected RolledBack`);
      if (r.lastError?.code !== "OTA_SELF_TEST_FAILED") problems.push(`${e.id}: lastError ${r.lastError?.code ?? "none"}, expected OTA_SELF_TEST_FAILED`);
    } else {
      if (d.runningVersion !== TO) problems.push(`${e.id}: runs ${d.runningVersion}, expected ${TO}`);
      if (d.ota.state !== "Valid") problems.push(`${e.id}: firmwareUpdate.state ${d.ota.state}, expected Valid`);
    }
    if (e.role === "power-cut") {
      const bound = IMAGE_SIZE + SECTOR;
      if (!d.restarts.includes("power cut")) problems.push(`${e.id}: no power cut happened during the download`);
      if (!t.opens.some((o) => o.status === 206 && o.start > 0)) problems.push(`${e.id}: no resumed (206) download after the power cut`);
      if (d.bytesDownloaded > bound) problems.push(`${e.id}: downloaded ${d.bytesDownloaded} bytes, more than image + 4 KiB (${bound})`);
      if (d.bytesDownloaded < IMAGE_SIZE) problems.push(`${e.id}: downloaded ${d.bytesDownloaded} bytes, less than the image`);
    }
  }
  out("\nsummary (seconds: desired set → final state; KiB/s: bytes downloaded / first request → image staged, with the throttle):");
  for (const line of table(["device", "cloud", "from", "to", "runs", "result", "seconds", "KiB/s", "downloaded / image bytes"], rows, new Set([6, 7]))) out(`  ${line}`);
  const pc = devices.get("esp32-02");
  if (pc !== undefined) {
    const t = tracks.get("esp32-02")!;
    out(`  power cut: esp32-02 downloaded ${pc.bytesDownloaded - IMAGE_SIZE} bytes more than the image (bound: one sector, ${SECTOR}; largest read ${t.maxChunk} bytes)`);
  }

  if (failed !== undefined) problems.unshift(failed.message);
  if (problems.length === 0) {
    out(`\ndone in ${((Date.now() - t0) / 1000).toFixed(1)} s: all ${FLEET.length} devices ended as expected (3 on ${TO} Valid, esp32-02 resumed after its power cut, esp32-az-02 rolled back to ${FROM})`);
  } else {
    out(`\nFAILED: not observed:`);
    for (const p of problems) out(`  - ${p}`);
  }
  if (keep && problems.length === 0) {
    out(`\nstill running; try: npm run cloud -- shadow get esp32-01 --data-dir ${path.relative(process.cwd(), dataDir)}   (Ctrl-C stops)`);
    out(`fleet page: ${cloud.fleetPageUrl}`);
    await new Promise<void>((resolve) => { process.once("SIGINT", () => resolve()); process.once("SIGTERM", () => resolve()); });
  }
  for (const d of devices.values()) await d.close();
  await cloud.close();
  return problems.length === 0 ? 0 : 1;
}

if (require.main === module) {
  demo(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => { console.error(e); process.exit(1); });
}
