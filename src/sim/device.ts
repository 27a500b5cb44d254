/**
 * A simulated shadow-ota device on Node: the same app the ESP32 runs (src/core/device-app.ts: ShadowSync +
 * DeviceAgent + OtaController) over the Node adapters — mqtt.js over mutual TLS, a JSON-file key-value
 * store standing in for NVS, Node's clock, HTTPS downloads (src/node/https-source.ts) — and the native OTA
 * module over a flash file (src/native/ota-slot.ts) with ESP-IDF's partition table, otadata and bootloader
 * rules.
 *
 * Power-on is real: the flash file is opened, the simulated bootloader picks the app (rolling back a
 * pending image that was never confirmed), and the version that runs is the booted slot's app descriptor.
 * Nothing else survives a restart: `restart()` (the Restart port, called by the controller after staging an
 * update or marking an image invalid) tears everything down and powers on again from the flash file and
 * the key-value file. On first power-on the flash file is created with a factory image of `firmwareVersion`.
 * The power-ons after restarts and power cuts of every SimDevice in one process take turns: at most one
 * per turn of the event loop (see queuePowerOn), so devices that restart together cannot hold back the
 * sockets and timers of the others.
 *
 * The simulated firmware's behaviour comes from its image: an image carrying the marker
 * `SHADOW-OTA-SIM:selftest=fail` (src/tools/esp-image.ts readImageMarker) fails its application check,
 * so the self-test marks it invalid and the device rolls back.
 *
 * Faults: `powerCutAtByte(n)` cuts the power once the download has handed `n` more bytes to the slot
 * (the cut lands within the next few flash operations, at a random one); `powerCutAfterOps(k)` after `k`
 * byte-level flash operations. The device then powers on again after `powerOffMs`. Network cuts, stalls
 * and bad answers are the blob server's faults (src/sim/blob-server.ts).
 *
 * As a process:
 *
 *   tsx src/sim/device.ts --id esp32-01 [--cloud aws|azure] [--version 1.0.0] [--cloud-dir .cloud-data] [--data-dir DIR]
 *
 * reads the broker, blob server and certificates from `{cloud-dir}/cloud.json` (written by a running local
 * cloud) and runs until SIGINT/SIGTERM. A restart is a process restart: the process exits with
 * EXIT_RESTART and its supervisor (the same command; see deviceMain) starts it again.
 *
 * Not here: the broker, the cloud services, the blob server.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { CloudKind } from "../core/cloud-protocol";
import type { DeviceAgentOptions } from "../core/device-agent";
import { DeviceApp, type DeviceAppConfig } from "../core/device-app";
import { ShadowOtaError } from "../core/errors";
import type { JsonObject } from "../core/json";
import type { OtaControllerConfig } from "../core/ota-controller";
import { urlHost } from "../core/firmware-url";
import { HostOtaSlot, type BootResult } from "../native/ota-slot";
import { consoleLog } from "../node/console-log";
import { FileKvStore } from "../node/file-kv";
import { HttpsByteSource } from "../node/https-source";
import { NodeMqttTransport } from "../node/mqtt-node";
import { sasCredentialSource } from "../node/sas-credentials";
import { NodeClock } from "../node/node-clock";
import { buildImage, readImageMarker } from "../tools/esp-image";
import { createFlashFile } from "../tools/flash-file";
import { nodeHeap } from "./log-heap";
import type { ByteSource } from "../ports/byte-source";
import type { Clock } from "../ports/clock";
import type { Log } from "../ports/log";
import type { MqttTransport, MqttTransportEvents } from "../ports/mqtt-transport";
import type { AppDescriptor, OtaBeginOptions, OtaImageState, OtaPartitionInfo, OtaSlot } from "../ports/ota-slot";
import { publicKeyDer } from "../tools/image-sign";

/** Where each seed keeps the firmware version: desired path, reported path. */
export const SEED_PATHS: Readonly<Record<CloudKind, { desired: string[]; reported: string[] }>> = {
  aws: { desired: ["config", "firmware_version"], reported: ["config", "firmware_version"] },
  azure: { desired: ["updateVersion"], reported: ["firmwareVersion"] },
};

/** The simulated firmware's project name (esp_app_desc_t.project_name of every image it accepts). */
export const SIM_PROJECT_NAME = "shadow-ota";
/** The marker of an image whose simulated self-test fails. */
export const SELFTEST_FAIL_MARKER = "SHADOW-OTA-SIM:selftest=fail";
/** Exit status of a device process that wants to be started again (a restart). */
export const EXIT_RESTART = 75;
/**
 * Node flags of a device process (deviceMain's supervisor starts the device with them). New-space
 * semi-spaces of 1 MB instead of 16: V8 then collects the download's short-lived buffers (each TLS record
 * and the HTTP parser's copy) every couple of MB instead of every 32, so the process's memory, like a
 * device's, does not grow with the image (`npm run bench` measures it).
 */
export const DEVICE_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=1"];

/** What a device needs to reach its cloud (LocalCloud.credentials() returns it). */
export interface DeviceConnection {
  /** Thing name (AWS) or device id (Azure); also the MQTT client id and the certificate's CN. */
  id: string;
  cloud: CloudKind;
  host: string;
  port: number;
  /** PEM: the CA to trust, the client certificate and its key. */
  ca: string;
  cert: string;
  key: string;
  /** Azure only: connect with SAS tokens from this device connection string (HostName=…;DeviceId=…;
   *  SharedAccessKey=…) instead of the certificate — the Azure seed's flow (src/node/sas-credentials.ts). */
  connectionString?: string;
}

/** Where firmware comes from: the blob server's base URL (ending in "/") and the CA that signed it. */
export interface FirmwareSource {
  baseUrl: string;
  /** PEM of the only CA trusted for downloads (default: the broker's `ca`). */
  ca?: string;
  /** Hosts the device may download from (default: the base URL's host). */
  allowedHosts?: string[];
  /** The HTTPS adapter's timeouts (default 10 s each). */
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
}

export interface SimDeviceOptions extends DeviceConnection {
  /** NVS stand-in `{dataDir}/nvs.log` (a log like NVS, src/node/file-kv.ts), flash `{dataDir}/flash.bin`. */
  dataDir: string;
  /** The version of the factory image written on first power-on (default "1.0.0"). */
  firmwareVersion?: string;
  /** The factory image's size in bytes (default 64 KiB). */
  factoryImageSize?: number;
  /** Where updates come from. Without it every update is refused (no allowed host). */
  firmware?: FirmwareSource;
  /** Controller settings over the simulator's defaults (naming by seed, project "shadow-ota"). */
  ota?: Partial<OtaControllerConfig>;
  /** The simulator's "built-in" signing key: a P-256 public key file (PEM or DER, `npm run image -- keygen`),
   *  read at each power-on into `ota.signingKey`. docs/signing.md. */
  signingKeyFile?: string;
  acceptConfig?: DeviceAgentOptions["acceptConfig"];
  /** Sees every firmware version handed to the OTA controller. */
  onFirmwareRequested?: (request: { version: string; running: string; newer: boolean }) => void;
  /** A byte source instead of HTTPS (tests). */
  source?: ByteSource;
  /** Time allowed for each cloud request, and for each SUBACK / PUBACK (the transport's ackTimeoutMs) (default 10 s). */
  requestTimeoutMs?: number;
  /** Pause between a power cut and the next power-on (default 200 ms). */
  powerOffMs?: number;
  /** Log lines to the cloud (src/core/log-mirror.ts; heap figures from process.memoryUsage, log-heap.ts).
   *  Default {}: on, with the mirror's defaults (warn and above, 30 a minute, a health line every 5 min). */
  logs?: NonNullable<DeviceAppConfig["logs"]> | false;
  /** The device app's clock (tests step the log mirror's time with it). Default: Node's. */
  clock?: Clock;
  /** Called after each power-on with what booted. */
  onBoot?: (boot: BootResult, app: DeviceApp) => void;
  /** A restart asked for by the firmware. Default: power on again in this process. The CLI device exits. */
  onRestart?: (reason: string) => void;
  log?: Log;
}

/**
 * Power-ons waiting for their turn, in order, and whether a drain is scheduled. A power-on is tens of
 * milliseconds of synchronous work (the flash file, the NVS log, the app), and a fleet whose updates finish
 * together restarts together. Run back to back in one process (their restarts all resumed in the same
 * check phase), the restarts of 300 devices in one bench worker were one stretch of 8 s of CPU in which the
 * loop never polled a socket; at 667 devices per worker such a stretch outlasts the broker's 10 s handshake
 * deadline and the devices' own connect, ack and download deadlines, so the connections in flight fail
 * together and the retries, self-test timeouts and rollbacks that follow restart more devices
 * (docs/local-cloud.md, "Scale"). One per turn, the loop polls sockets and runs timers between two.
 */
const powerOnQueue: Array<() => void> = [];
let powerOnDraining = false;

/** Runs `fn` in a later turn of the event loop, after every power-on queued before it, one per turn. */
function queuePowerOn(fn: () => void): void {
  powerOnQueue.push(fn);
  if (powerOnDraining) return;
  powerOnDraining = true;
  // An immediate set from inside an immediate runs in the next turn, after that turn's I/O poll.
  const drain = (): void => {
    powerOnQueue.shift()?.();
    if (powerOnQueue.length > 0) setImmediate(drain);
    else powerOnDraining = false;
  };
  setImmediate(drain);
}

export class SimDevice {
  readonly id: string;
  readonly cloud: CloudKind;
  readonly flashPath: string;
  readonly #o: SimDeviceOptions;
  readonly #log: Log;
  readonly #errors: ShadowOtaError[] = [];
  #app!: DeviceApp;
  #slot!: FaultySlot;
  #boot!: BootResult;
  #connected = false;
  #waiters = new Set<() => void>();
  #closed = false;
  #cycling: Promise<void> | undefined;
  /** Power-ons so far (1 after start). */
  boots = 0;
  /** Body bytes received from the firmware source, all power-ons together. */
  bytesDownloaded = 0;
  /** Download requests made (opens), all power-ons together. */
  downloadRequests = 0;
  /** Why each restart or power cut happened, in order. */
  readonly restarts: string[] = [];

  private constructor(o: SimDeviceOptions) {
    this.#o = o;
    this.id = o.id;
    this.cloud = o.cloud;
    this.#log = o.log ?? consoleLog({ base: { device: o.id } });
    fs.mkdirSync(o.dataDir, { recursive: true });
    this.flashPath = path.join(o.dataDir, "flash.bin");
    if (!fs.existsSync(this.flashPath)) {
      const image = buildImage({ version: o.firmwareVersion ?? "1.0.0", projectName: SIM_PROJECT_NAME, size: o.factoryImageSize ?? 64 * 1024, seed: 7 });
      createFlashFile(this.flashPath, { images: { factory: image } });
    }
  }

  /** Builds the device and powers it on (the sync connects, gets and reports on its own). */
  static start(options: SimDeviceOptions): SimDevice {
    const d = new SimDevice(options);
    d.#powerOn();
    return d;
  }

  get app(): DeviceApp { return this.#app; }
  get sync(): DeviceApp["sync"] { return this.#app.sync; }
  get agent(): DeviceApp["agent"] { return this.#app.agent; }
  get ota(): DeviceApp["ota"] { return this.#app.ota; }
  /** What the simulated bootloader chose at the last power-on. */
  get lastBoot(): BootResult { return this.#boot; }
  /** The running firmware version (the booted slot's descriptor). */
  get runningVersion(): string { return this.#app.ota.runningVersion; }
  get connected(): boolean { return this.#connected; }
  /** True from a restart or power cut until the next power-on (the old app is being closed). */
  get restarting(): boolean { return this.#cycling !== undefined; }
  /** Bytes the download handed to the slot in this power-on. */
  get bytesWritten(): number { return this.#slot.bytesWritten; }

  /** The errors the sync raised so far (also reported in `reported.lastError` where that makes sense). */
  get errors(): readonly ShadowOtaError[] { return this.#errors; }

  /** The device's view: desired and reported as it knows them. */
  state(): { desired: JsonObject; reported: JsonObject; version: number; connected: boolean } {
    return this.#app.sync.getState();
  }

  /** Cuts the power once the download has handed `bytes` more bytes to the slot (in this power-on). */
  powerCutAtByte(bytes: number, seed = 1): void {
    this.#slot.cutAtByte = this.#slot.bytesWritten + bytes;
    this.#slot.cutSeed = seed;
  }

  /** Cuts the power after `ops` more byte-level flash operations. */
  powerCutAfterOps(ops: number, seed = 1): void {
    this.#slot.host.armPowerCut(ops, seed);
  }

  /**
   * Resolves when `predicate(state)` holds, checked after every message, report, connection change and
   * power-on; rejects after `timeoutMs` with the last state in the message (bounded: no polling loop).
   */
  waitFor(predicate: (s: ReturnType<SimDevice["state"]>) => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        let ok = false;
        try { ok = predicate(this.state()); } catch { ok = false; }
        if (!ok) return false;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`${this.id}: ${what} not reached within ${timeoutMs} ms; state ${JSON.stringify(this.state())}`));
      }, timeoutMs);
      if (!check()) this.#waiters.add(check);
    });
  }

  /** The Restart port: the firmware asked for a restart. */
  restart(reason: string): void {
    this.restarts.push(reason);
    if (this.#o.onRestart !== undefined) { this.#o.onRestart(reason); return; }
    this.#cycle(reason, 0);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#cycling;
    await this.#app.close();
    this.#slot.host.close();
    for (const w of [...this.#waiters]) w();
  }

  // ---- power ---------------------------------------------------------------------------------------

  #powerOn(): void {
    const o = this.#o;
    const host = new HostOtaSlot({ flashPath: this.flashPath });
    this.#boot = host.boot();
    this.boots++;
    this.#slot = new FaultySlot(host, () => this.#powerLost());
    const marker = readRunningMarker(this.flashPath, this.#boot.partition);
    const nvs = path.join(o.dataDir, "nvs.log");
    const legacy = path.join(o.dataDir, "nvs.json"); // before the log: FileKvStore reads and converts it
    if (!fs.existsSync(nvs) && fs.existsSync(legacy)) fs.renameSync(legacy, nvs);
    const kv = new FileKvStore(nvs);
    const log = this.#log;
    const transport = new NodeMqttTransport({
      host: o.host, port: o.port, clientId: o.id, ca: o.ca,
      ...(o.connectionString === undefined ? { cert: o.cert, key: o.key } : { credentials: sasCredentialSource(o.connectionString) }),
      backoff: { initialMs: 200, maxMs: 5_000 }, log,
      ...(o.requestTimeoutMs === undefined ? {} : { ackTimeoutMs: o.requestTimeoutMs }),
    });
    const mqtt = new ObservedTransport(transport, (connected) => {
      if (connected !== undefined) this.#connected = connected;
      this.#wake();
    });
    const paths = SEED_PATHS[o.cloud];
    const baseUrl = o.firmware?.baseUrl ?? "https://firmware.invalid/firmware/";
    const host0 = urlHost(baseUrl);
    const allowedHosts = o.firmware === undefined ? [] : o.firmware.allowedHosts ?? (host0 === undefined ? [] : [host0]);
    const inner = o.source ?? new HttpsByteSource({ ca: o.firmware?.ca ?? o.ca, allowedHosts, connectTimeoutMs: o.firmware?.connectTimeoutMs ?? 10_000, idleTimeoutMs: o.firmware?.idleTimeoutMs ?? 10_000 });
    const source: ByteSource = {
      open: async (req) => {
        this.downloadRequests++;
        const resp = await inner.open(req);
        return {
          status: resp.status, start: resp.start, total: resp.total, etag: resp.etag,
          read: async (maxBytes?: number) => {
            const chunk = await resp.read(maxBytes);
            if (chunk !== undefined) this.bytesDownloaded += chunk.length;
            return chunk;
          },
          abort: () => resp.abort(),
        };
      },
    };
    const ota: OtaControllerConfig = {
      source: { naming: o.cloud, baseUrl, allowedHosts },
      projectName: SIM_PROJECT_NAME,
      chipId: 0,
      selfTestWindowMs: 30_000,
      ...o.ota,
    };
    if (o.signingKeyFile !== undefined) ota.signingKey = publicKeyDer(fs.readFileSync(o.signingKeyFile));
    const self = this;
    this.#app = DeviceApp.start(
      { mqtt, kv, clock: o.clock ?? new NodeClock(), log, slot: this.#slot, source, restart: { restart: (reason: string) => self.restart(reason) }, heap: nodeHeap },
      {
        cloud: o.cloud, thingName: o.id, firmwareVersionPath: paths.desired, reportedFirmwarePath: paths.reported, ota,
        ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
        ...(o.acceptConfig === undefined ? {} : { acceptConfig: o.acceptConfig }),
        ...(o.logs === false ? {} : { logs: o.logs ?? {} }),
      },
      {
        appCheck: () => (marker === SELFTEST_FAIL_MARKER ? "the simulated firmware's self-test fails (image marker)" : true),
        onDesired: () => this.#wake(),
        onError: (e) => { this.#errors.push(e); this.#wake(); },
        ...(o.onFirmwareRequested === undefined ? {} : { onFirmwareRequested: o.onFirmwareRequested }),
      },
    );
    log.log("info", "device.boot", { version: this.runningVersion, partition: this.#boot.partition.label, state: this.#boot.state ?? null, rolledBack: this.#boot.rolledBack, ota: this.#app.ota.state });
    o.onBoot?.(this.#boot, this.#app);
    this.#wake();
  }

  #powerLost(): void {
    this.restarts.push("power cut");
    this.#cycle("power cut", this.#o.powerOffMs ?? 200);
  }

  /** Tears the running app down and powers on again after `offMs`. One cycle at a time. */
  #cycle(reason: string, offMs: number): void {
    if (this.#closed || this.#cycling !== undefined) return;
    this.#log.log("info", "device.restart", { reason });
    this.#cycling = (async () => {
      await new Promise((r) => setImmediate(r)); // let the caller's stack unwind first
      await this.#app.close();
      this.#slot.host.close();
      this.#connected = false;
      if (offMs > 0) await new Promise((r) => setTimeout(r, offMs));
      if (this.#closed) return;
      await new Promise<void>((resolve, reject) => queuePowerOn(() => {
        try {
          if (!this.#closed) this.#powerOn();
          resolve();
        } catch (e) {
          reject(e);
        }
      }));
    })().catch((e: unknown) => {
      this.#log.log("error", "device.restart-failed", { message: e instanceof Error ? e.message : String(e) });
    }).finally(() => { this.#cycling = undefined; });
  }

  #wake(): void {
    // Reports settle asynchronously: look again once the current callbacks are done.
    setImmediate(() => { for (const w of [...this.#waiters]) w(); });
  }
}

/** The marker of the image in `partition` (read from the flash file as the firmware would read itself). */
function readRunningMarker(flashPath: string, partition: OtaPartitionInfo): string | undefined {
  const fd = fs.openSync(flashPath, "r");
  try {
    const head = Buffer.alloc(512);
    fs.readSync(fd, head, 0, head.length, partition.address);
    return readImageMarker(new Uint8Array(head.buffer, head.byteOffset, head.length));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The OtaSlot the controller gets: the host slot, plus the power-cut fault by download bytes. When the
 * power fails (a native call throws OTA_POWER_LOST) it tells the device, which powers on again.
 */
class FaultySlot implements OtaSlot {
  bytesWritten = 0;
  cutAtByte: number | undefined;
  cutSeed = 1;
  #lost = false;

  constructor(readonly host: HostOtaSlot, readonly onPowerLost: () => void) {}

  #guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ShadowOtaError && e.code === "OTA_POWER_LOST" && !this.#lost) {
        this.#lost = true;
        this.onPowerLost();
      }
      throw e;
    }
  }

  begin(o?: OtaBeginOptions): OtaPartitionInfo { return this.#guard(() => this.host.begin(o)); }
  resume(offset: number, o?: OtaBeginOptions): number { return this.#guard(() => this.host.resume(offset, o)); }
  write(chunk: Uint8Array): AppDescriptor | undefined {
    if (this.cutAtByte !== undefined && this.bytesWritten + chunk.length >= this.cutAtByte) {
      // Within the next few byte-level operations (programs of this chunk, or the erase before them).
      this.host.armPowerCut(1 + (this.cutSeed % 7), this.cutSeed);
      this.cutAtByte = undefined;
    }
    const d = this.#guard(() => this.host.write(chunk));
    this.bytesWritten += chunk.length;
    return d;
  }
  accept(): void { this.#guard(() => this.host.accept()); }
  end(): void { this.#guard(() => this.host.end()); }
  abort(): void { this.host.abort(); }
  setBootPartition(): void { this.#guard(() => this.host.setBootPartition()); }
  runningPartition(): OtaPartitionInfo { return this.host.runningPartition(); }
  runningState(): OtaImageState | undefined { return this.host.runningState(); }
  markValid(): void { this.#guard(() => this.host.markValid()); }
  markInvalidAndReboot(): void { this.#guard(() => this.host.markInvalidAndReboot()); }
  runningDescriptor(): AppDescriptor | undefined { return this.host.runningDescriptor(); }
  candidateDescriptor(): AppDescriptor | undefined { return this.host.candidateDescriptor(); }
}

/** A transport that passes everything through and also tells `onEvent` about connection changes and messages. */
class ObservedTransport implements MqttTransport {
  constructor(readonly inner: MqttTransport, readonly onEvent: (connected?: boolean) => void) {}
  setHandlers(h: MqttTransportEvents): void {
    this.inner.setHandlers({
      connected: () => { h.connected(); this.onEvent(true); },
      disconnected: (reason) => { h.disconnected(reason); this.onEvent(false); },
      message: (topic, payload) => { h.message(topic, payload); this.onEvent(); },
    });
  }
  start(): void { this.inner.start(); }
  subscribe(topics: readonly string[]): Promise<void> { return this.inner.subscribe(topics); }
  publish(topic: string, payload: string | Uint8Array, qos?: 0 | 1): Promise<void> { return this.inner.publish(topic, payload, qos); }
  close(): Promise<void> { return this.inner.close(); }
}

// ------------------------------------------------------------------------------------------------------
// As a process

/** What a running local cloud writes to `{dataDir}/cloud.json` for devices and the CLI to find it. */
export interface CloudConnectionInfo {
  host: string;
  /** The MQTT port for AWS devices (and for Azure devices on aedes). */
  mqttPort: number;
  /** Azure devices on mosquitto each have their own broker: device id → port. */
  azurePorts?: Record<string, number>;
  /** The directory of the local CA (ca.cert.pem, clients/{id}.cert.pem|.key.pem). */
  certsDir: string;
  /** The admin HTTP API (see admin-http.ts). */
  adminUrl?: string;
  /** The blob server's firmware base URL (ends with "/"). */
  blobUrl?: string;
  /** Which cloud each known device uses. */
  devices?: Record<string, CloudKind>;
}

export const CLOUD_INFO_FILE = "cloud.json";

function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** The env variable that marks the device process itself (without it, deviceMain supervises). */
const CHILD_ENV = "SHADOW_OTA_DEVICE_CHILD";

export function deviceMain(argv: string[]): void {
  const id = argValue(argv, "--id");
  if (id === undefined) {
    console.error("usage: tsx src/sim/device.ts --id THING [--cloud aws|azure] [--version 1.0.0] [--cloud-dir .cloud-data] [--data-dir DIR] [--mqtt-port N]");
    process.exit(2);
  }
  if (process.env[CHILD_ENV] !== "1") { supervise(); return; }
  const cloudDir = path.resolve(argValue(argv, "--cloud-dir") ?? ".cloud-data");
  const infoFile = path.join(cloudDir, CLOUD_INFO_FILE);
  let info: CloudConnectionInfo;
  try {
    info = JSON.parse(fs.readFileSync(infoFile, "utf8")) as CloudConnectionInfo;
  } catch (e) {
    console.error(`cannot read ${infoFile} (is the local cloud running? npm run cloud -- start): ${(e as Error).message}`);
    process.exit(1);
  }
  const cloud = (argValue(argv, "--cloud") ?? info.devices?.[id] ?? "aws") as CloudKind;
  if (cloud !== "aws" && cloud !== "azure") { console.error(`--cloud must be aws or azure, not ${String(cloud)}`); process.exit(2); }
  // --mqtt-port: connect elsewhere than the cloud's broker, e.g. to a fault proxy (npm run cloud -- proxy).
  const portArg = argValue(argv, "--mqtt-port");
  if (portArg !== undefined && !/^[0-9]{1,5}$/.test(portArg)) { console.error(`--mqtt-port must be a port number, not ${portArg}`); process.exit(2); }
  const port = portArg !== undefined ? Number(portArg) : cloud === "azure" ? info.azurePorts?.[id] ?? info.mqttPort : info.mqttPort;
  const read = (f: string): string => fs.readFileSync(path.join(info.certsDir, f), "utf8");
  const ca = read("ca.cert.pem");
  let device: SimDevice | undefined;
  const stop = (code: number): void => {
    const d = device;
    if (d === undefined) process.exit(code);
    else void d.close().then(() => process.exit(code), () => process.exit(code));
  };
  device = SimDevice.start({
    id, cloud, host: info.host, port, ca, cert: read(`clients/${id}.cert.pem`), key: read(`clients/${id}.key.pem`),
    dataDir: path.resolve(argValue(argv, "--data-dir") ?? path.join(".device-data", id)),
    firmwareVersion: argValue(argv, "--version") ?? "1.0.0",
    ...(info.blobUrl === undefined ? {} : { firmware: { baseUrl: info.blobUrl, ca } }),
    onRestart: () => stop(EXIT_RESTART),
  });
  process.on("SIGINT", () => stop(0));
  process.on("SIGTERM", () => stop(0));
}

/** Runs the device as a child process and starts it again whenever it exits with EXIT_RESTART (bounded). */
function supervise(): void {
  let child: ReturnType<typeof spawn> | undefined;
  let restarts = 0;
  const run = (): void => {
    child = spawn(process.execPath, [...DEVICE_NODE_FLAGS, ...process.execArgv, ...process.argv.slice(1)], { stdio: "inherit", env: { ...process.env, [CHILD_ENV]: "1" } });
    child.on("exit", (code, signal) => {
      if (code === EXIT_RESTART && restarts++ < 1000) { console.error(`device: restarting (${restarts})`); run(); return; }
      process.exit(code ?? (signal === null ? 1 : 0));
    });
  };
  const forward = (sig: NodeJS.Signals): void => { child?.kill(sig); };
  process.on("SIGINT", () => forward("SIGINT"));
  process.on("SIGTERM", () => forward("SIGTERM"));
  run();
}

if (require.main === module) deviceMain(process.argv.slice(2));
