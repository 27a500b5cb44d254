/**
 * A simulated shadow-ota device on Node: the same platform-neutral core the ESP32 runs (ShadowSync +
 * DeviceAgent) over the Node adapters (mqtt.js over mutual TLS, a JSON-file key-value store standing in for
 * NVS, Node's clock). One SimDevice is one device; it can run inside the caller's process (tests, the demo)
 * or as its own process:
 *
 *   tsx src/sim/device.ts --id esp32-01 [--cloud aws|azure] [--version 1.0.0] [--cloud-dir .cloud-data]
 *
 * which reads the broker address and certificate paths from `{cloud-dir}/cloud.json` (written by a running
 * local cloud, src/sim/local-cloud.ts) and runs until SIGINT/SIGTERM.
 *
 * Seeds: AWS devices find the desired firmware version at `config.firmware_version` and report it there;
 * Azure devices find it at `updateVersion` and report `firmwareVersion` (the Azure seed's keys).
 *
 * Not here: OTA (a firmware request is handed to `onFirmwareRequested`; without one it is logged), the
 * broker, the cloud services.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DeviceAgent, type DeviceAgentOptions } from "../core/device-agent";
import type { ShadowOtaError } from "../core/errors";
import type { JsonObject } from "../core/json";
import { ShadowSync } from "../core/shadow-sync";
import { consoleLog } from "../node/console-log";
import { FileKvStore } from "../node/file-kv";
import { NodeMqttTransport } from "../node/mqtt-node";
import { NodeClock } from "../node/node-clock";
import type { CloudKind } from "../core/cloud-protocol";
import type { Log } from "../ports/log";
import type { MqttTransport, MqttTransportEvents } from "../ports/mqtt-transport";

/** Where each seed keeps the firmware version: desired path, reported path. */
export const SEED_PATHS: Readonly<Record<CloudKind, { desired: string[]; reported: string[] }>> = {
  aws: { desired: ["config", "firmware_version"], reported: ["config", "firmware_version"] },
  azure: { desired: ["updateVersion"], reported: ["firmwareVersion"] },
};

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
}

export interface SimDeviceOptions extends DeviceConnection {
  /** The device's NVS stand-in lives in `{dataDir}/nvs.json`. */
  dataDir: string;
  /** The running firmware version (default "1.0.0"). */
  firmwareVersion?: string;
  acceptConfig?: DeviceAgentOptions["acceptConfig"];
  onFirmwareRequested?: DeviceAgentOptions["onFirmwareRequested"];
  /** Time allowed for each cloud request (default 10 s). */
  requestTimeoutMs?: number;
  log?: Log;
}

export class SimDevice {
  readonly id: string;
  readonly cloud: CloudKind;
  readonly sync: ShadowSync;
  readonly agent: DeviceAgent;
  readonly #transport: NodeMqttTransport;
  readonly #errors: ShadowOtaError[] = [];
  #connected = false;
  #waiters = new Set<() => void>();

  private constructor(o: SimDeviceOptions) {
    this.id = o.id;
    this.cloud = o.cloud;
    const log = o.log ?? consoleLog({ base: { device: o.id } });
    fs.mkdirSync(o.dataDir, { recursive: true });
    const kv = new FileKvStore(path.join(o.dataDir, "nvs.json"));
    this.#transport = new NodeMqttTransport({
      host: o.host, port: o.port, clientId: o.id, ca: o.ca, cert: o.cert, key: o.key,
      backoff: { initialMs: 200, maxMs: 5_000 }, log,
    });
    const paths = SEED_PATHS[o.cloud];
    const agentOptions: DeviceAgentOptions = {
      firmwareVersion: o.firmwareVersion ?? "1.0.0",
      firmwareVersionPath: paths.desired,
      reportedFirmwarePath: paths.reported,
    };
    if (o.acceptConfig !== undefined) agentOptions.acceptConfig = o.acceptConfig;
    if (o.onFirmwareRequested !== undefined) agentOptions.onFirmwareRequested = o.onFirmwareRequested;
    this.agent = new DeviceAgent(agentOptions, log);
    // The transport's events go to ShadowSync; SimDevice only watches them to wake waitFor().
    const agent = this.agent;
    const handlers = {
      onDesired: (c: Parameters<DeviceAgent["onDesired"]>[0]) => { agent.onDesired(c); this.#wake(); },
      onError: (e: ShadowOtaError) => { this.#errors.push(e); agent.onError(e); this.#wake(); },
    };
    const mqtt = new ObservedTransport(this.#transport, (connected) => {
      if (connected !== undefined) this.#connected = connected;
      this.#wake();
    });
    this.sync = new ShadowSync({ mqtt, kv, clock: new NodeClock(), log }, {
      cloud: o.cloud, thingName: o.id, firmwareVersionPath: paths.desired,
      ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
    }, handlers);
    this.agent.attach(this.sync);
  }

  /** Builds the device and connects it (the sync subscribes, gets and reports on its own). */
  static start(options: SimDeviceOptions): SimDevice {
    const d = new SimDevice(options);
    d.sync.start();
    return d;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** The errors the sync raised so far (also reported in `reported.lastError` where that makes sense). */
  get errors(): readonly ShadowOtaError[] {
    return this.#errors;
  }

  /** The device's view: desired and reported as it knows them. */
  state(): { desired: JsonObject; reported: JsonObject; version: number; connected: boolean } {
    return this.sync.getState();
  }

  /**
   * Resolves when `predicate(state)` holds, checked after every message, report and connection change;
   * rejects after `timeoutMs` with the last state in the message (bounded: no polling loop).
   */
  waitFor(predicate: (s: ReturnType<SimDevice["state"]>) => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (!predicate(this.state())) return false;
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

  async close(): Promise<void> {
    await this.sync.close();
    for (const w of [...this.#waiters]) w();
  }

  #wake(): void {
    // Reports settle asynchronously: look again once the current callbacks are done.
    setImmediate(() => { for (const w of [...this.#waiters]) w(); });
  }

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
  /** Which cloud each known device uses. */
  devices?: Record<string, CloudKind>;
}

export const CLOUD_INFO_FILE = "cloud.json";

function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

export function deviceMain(argv: string[]): void {
  const id = argValue(argv, "--id");
  if (id === undefined) {
    console.error("usage: tsx src/sim/device.ts --id THING [--cloud aws|azure] [--version 1.0.0] [--cloud-dir .cloud-data] [--data-dir DIR]");
    process.exit(2);
  }
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
  const port = cloud === "azure" ? info.azurePorts?.[id] ?? info.mqttPort : info.mqttPort;
  const read = (f: string): string => fs.readFileSync(path.join(info.certsDir, f), "utf8");
  const device = SimDevice.start({
    id, cloud, host: info.host, port,
    ca: read("ca.cert.pem"), cert: read(`clients/${id}.cert.pem`), key: read(`clients/${id}.key.pem`),
    dataDir: path.resolve(argValue(argv, "--data-dir") ?? path.join(".device-data", id)),
    firmwareVersion: argValue(argv, "--version") ?? "1.0.0",
  });
  const stop = (): void => { void device.close().then(() => process.exit(0)); };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if (require.main === module) deviceMain(process.argv.slice(2));
