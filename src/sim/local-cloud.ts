/**
 * The local cloud in one object: the local CA (pki.ts), an MQTT broker over mutual TLS on loopback
 * (embedded aedes by default, or Debian's mosquitto), the AWS shadow service and the Azure twin service as
 * MQTT clients of that broker (shadow-service.ts, twin-service.ts), their store (cloud-store.ts), the
 * firmware blob server over HTTPS (blob-server.ts) and the admin HTTP API (admin-http.ts). Used by the demo
 * (`npm start`), the CLI (`npm run cloud -- start`) and the end-to-end tests.
 *
 *   const cloud = await LocalCloud.start({ devices: [{ id: "esp32-01", cloud: "aws" }] });
 *   const creds = cloud.credentials("esp32-01");       // host, port, CA/cert/key PEM for the device
 *   await cloud.shadows.updateDesired("esp32-01", { config: { interval: 30 } });
 *   cloud.publishFirmware("firmware", "1.1.0.bin", bytes);  // at cloud.blobBaseUrl + "1.1.0.bin"
 *   await cloud.close();
 *
 * Brokers:
 * - "aedes": one broker for every device; Azure devices' `$iothub/...` topics are scoped per connection by
 *   the broker's rewriting, and both services share one service connection.
 * - "mosquitto": one instance for the AWS devices, and one more instance per Azure device (mosquitto
 *   2.0.11 cannot scope `$iothub/...` per connection); the twin service opens a dedicated link to each.
 *
 * What it writes: `{dataDir}/cloud-store.json` + `cloud-store.log` (shadows and twins, kept across restarts and
 * kill -9: snapshot and log of changes, cloud-store.ts) and its lock
 * `{dataDir}/cloud-store.lock` while running (a second cloud on the same directory fails with CLOUD_STORE_LOCKED),
 * `{dataDir}/blobs/{container}/{name}` (published firmware, kept across restarts), `{dataDir}/cloud.json`
 * (where devices and the CLI find the broker, the certificates, the blob server and the admin API; 0600
 * because it holds the admin token), and the certificates under `certsDir`. Restarting on the same
 * directories keeps every shadow, twin, blob, CA and device certificate, and (given `port` / `blobPort`) the
 * MQTT and blob ports. The blob server's certificate is the brokers' (SERVER_NAMES), so a device trusts both
 * with the one local CA.
 *
 * Not here: the rules of shadows and twins (the engines), device behaviour (src/core, src/sim/device.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import type { CloudKind } from "../core/cloud-protocol";
import { ShadowOtaError } from "../core/errors";
import type { Clock } from "../ports/clock";
import { writeFileAtomic } from "../node/atomic-file";
import { silentLog, type Log } from "../ports/log";
import { AdminHttpServer } from "./admin-http";
import { AwsDataPlaneServer, generateAccessKey } from "./aws-dataplane";
import { IOTHUB_OWNER_POLICY, IotHubRestServer } from "./iothub-rest";
import * as crypto from "node:crypto";
import * as net from "node:net";
import { NodeClock } from "../node/node-clock";
import { AedesBroker } from "./broker-aedes";
import { BlobServer, type BlobInfo } from "./blob-server";
import { AzureMosquittoInstances, MosquittoBroker } from "./broker-mosquitto";
import type { BrokerLimits } from "./broker-policy";
import { CLOUD_CODES } from "./cloud-errors";
import { CloudStore } from "./cloud-store";
import { LogService } from "./log-service";
import { FleetEvents, type WebhookOptions } from "./fleet-events";
import { CLOUD_INFO_FILE, type CloudConnectionInfo, type DeviceConnection } from "./device";
import { CLOUD_SERVICE_IDENTITY, LocalPki, isReservedIdentity, type PkiOptions } from "./pki";
import type { ShadowEngineOptions } from "./shadow-engine";
import { ShadowService } from "./shadow-service";
import { TwinService, type TwinThrottle } from "./twin-service";

export type BrokerKind = "aedes" | "mosquitto";

export const DEFAULT_DATA_DIR = ".cloud-data";
export const DEFAULT_CERTS_DIR = path.join("certs", "generated");

export interface LocalCloudOptions {
  /** Store and cloud.json (default .cloud-data). */
  dataDir?: string;
  /** The local CA and every certificate (default certs/generated). */
  certsDir?: string;
  broker?: BrokerKind;
  /** Loopback address (default 127.0.0.1). */
  host?: string;
  /** MQTT port of the main broker (default 0: any free port). */
  port?: number;
  /** Devices to issue certificates for (and, on mosquitto, start Azure instances for) at start. */
  devices?: ReadonlyArray<{ id: string; cloud: CloudKind }>;
  /** Admin HTTP port (default 0: any free port); false: no admin API. */
  adminPort?: number | false;
  clock?: Clock;
  log?: Log;
  /** Shadow limits (depth, sizes, rate). */
  shadowEngine?: ShadowEngineOptions;
  /** How long a direct method waits for the device (default 30 s). */
  methodTimeoutMs?: number;
  /** Rates of devices' twin GETs and reported PATCHes (twin-service.ts DEFAULT_TWIN_THROTTLE: IoT Hub S1's);
   *  `false` turns the throttle off (a fleet benchmark of Azure devices). */
  twinThrottle?: Partial<TwinThrottle> | false;
  pki?: PkiOptions;
  /** HTTPS port of the firmware blob server (default 0: any free port); false: no blob server. */
  blobPort?: number | false;
  /** Blob server behaviour for every response: throttle (bytes per second), chunked transfer. */
  blobs?: { bytesPerSecond?: number; chunked?: boolean };
  /** The brokers' limits against hostile clients (broker-policy.ts DEFAULT_BROKER_LIMITS per member);
   *  mosquitto takes maxConnectionsPerAddress and maxPacketBytes only. */
  brokerLimits?: Partial<BrokerLimits>;
  /** HTTPS port of the AWS IoT data-plane shadow API (aws-dataplane.ts; default 0: any free port); false: none. */
  awsDataPlanePort?: number | false;
  /** IoT Hub's service REST API for twins and direct methods (iothub-rest.ts), off by default: the
   *  azure-iothub SDK always connects to port 443 of its HostName, so `port` defaults to 443 and `host`
   *  (default: `host`) is what connection strings name — a loopback address or name. */
  iothub?: { host?: string; port?: number } | false;
  /** Device log lines (log-service.ts): lines kept per device (default 1000); `files`: also append them to
   *  `{dataDir}/logs/{id}.jsonl` (default false). */
  deviceLogs?: { ringSize?: number; files?: boolean };
  /** Where each fleet event (a finished update, a published release; fleet-events.ts) is POSTed as JSON. */
  webhook?: WebhookOptions;
}

/** The blob container the seeds' firmware lives in by default. */
export const DEFAULT_FIRMWARE_CONTAINER = "firmware";

/** cloud.json: what devices and the CLI read. */
export type CloudInfo = CloudConnectionInfo & {
  adminToken?: string;
  /** Base URL of the default firmware container, ending with "/" (the blob server's CA is the local CA). */
  blobUrl?: string;
  /** The AWS IoT data-plane endpoint and the access key generated at this start (SigV4, service iotdata). */
  awsDataPlane?: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
  /** IoT Hub's service API: its URL and a service connection string (policy iothubowner, key made at this start). */
  iothub?: { url: string; hostName: string; connectionString: string };
  /** The hub host name Azure devices put in their SAS user name and token (the IoT Hub API's host, else `host`). */
  azureHubHost?: string;
};

export type DeviceCredentials = DeviceConnection;

/** Connects a service client (mqtt.js over mutual TLS with the cloud's service certificate). */
async function connectService(pki: LocalPki, host: string, port: number, clientId: string): Promise<MqttClient> {
  const c = pki.client(CLOUD_SERVICE_IDENTITY);
  return mqtt.connectAsync({
    protocol: "mqtts", host, port, clientId, ca: c.caPem, cert: c.certPem, key: c.keyPem,
    rejectUnauthorized: true, clean: true, reconnectPeriod: 500, connectTimeout: 10_000, protocolVersion: 4,
  });
}

/** The Azure devices' SAS keys kept in {dataDir}/iothub-device-keys.json; an unreadable file is an error (never
 *  silently replaced: devices hold those keys). */
function loadSasKeys(dataDir: string, hubHost: string): { hubHost: string; keys: Map<string, string>; file: string } {
  const file = path.join(dataDir, "iothub-device-keys.json");
  const keys = new Map<string, string>();
  if (fs.existsSync(file)) {
    const v = JSON.parse(fs.readFileSync(file, "utf8")) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ShadowOtaError(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID, `${file} is not an object of device keys`);
    for (const [id, key] of Object.entries(v)) if (typeof key === "string") keys.set(id, key);
  }
  return { hubHost, keys, file };
}

export class LocalCloud {
  readonly host: string;
  readonly dataDir: string;
  readonly certsDir: string;
  readonly brokerKind: BrokerKind;
  readonly pki: LocalPki;
  readonly store: CloudStore;
  readonly shadows: ShadowService;
  readonly twins: TwinService;
  /** The devices' mirrored log lines (tail them here, through the admin API or `npm run cloud -- logs tail`). */
  readonly logs: LogService;
  readonly #broker: AedesBroker | MosquittoBroker;
  readonly #azure: AzureMosquittoInstances | undefined;
  readonly #clients: MqttClient[];
  readonly #devices = new Map<string, CloudKind>();
  readonly #log: Log;
  #admin: AdminHttpServer | undefined;
  #fleet: FleetEvents | undefined;
  #blobs: BlobServer | undefined;
  #dataPlane: { server: AwsDataPlaneServer; accessKeyId: string; secretAccessKey: string } | undefined;
  #iothub: { server: IotHubRestServer; hostName: string; key: string } | undefined;
  /** Azure devices' symmetric keys (SAS) and the hub host their tokens name; shared with the aedes broker. */
  #sas: { hubHost: string; keys: Map<string, string>; file: string } = { hubHost: "", keys: new Map(), file: "" };
  #closed = false;

  private constructor(init: {
    host: string; dataDir: string; certsDir: string; brokerKind: BrokerKind; pki: LocalPki; store: CloudStore;
    shadows: ShadowService; twins: TwinService; logs: LogService; broker: AedesBroker | MosquittoBroker;
    azure: AzureMosquittoInstances | undefined; clients: MqttClient[]; log: Log;
  }) {
    this.host = init.host;
    this.dataDir = init.dataDir;
    this.certsDir = init.certsDir;
    this.brokerKind = init.brokerKind;
    this.pki = init.pki;
    this.store = init.store;
    this.shadows = init.shadows;
    this.twins = init.twins;
    this.logs = init.logs;
    this.#broker = init.broker;
    this.#azure = init.azure;
    this.#clients = init.clients;
    this.#log = init.log;
  }

  static async start(options: LocalCloudOptions = {}): Promise<LocalCloud> {
    const host = options.host ?? "127.0.0.1";
    const dataDir = path.resolve(options.dataDir ?? DEFAULT_DATA_DIR);
    const certsDir = path.resolve(options.certsDir ?? DEFAULT_CERTS_DIR);
    const brokerKind = options.broker ?? "aedes";
    const log = options.log ?? silentLog;
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const pki = LocalPki.open(certsDir, options.pki ?? {});
    let known: ReadonlyMap<string, CloudKind> = new Map();
    const fleet = new FleetEvents({ log, file: path.join(dataDir, "fleet-events.jsonl"), devices: () => known, ...(options.webhook === undefined ? {} : { webhook: options.webhook }) });
    const store = CloudStore.open(dataDir, { log });
    const clients: MqttClient[] = [];
    let broker: AedesBroker | MosquittoBroker | undefined;
    let azure: AzureMosquittoInstances | undefined;
    let blobs: BlobServer | undefined;
    let dataPlane: AwsDataPlaneServer | undefined;
    let iothub: IotHubRestServer | undefined;
    try {
      const limits = options.brokerLimits === undefined ? {} : { limits: options.brokerLimits };
      const brokerOptions = { pki, host, log, ...limits, ...(options.port === undefined ? {} : { port: options.port }) };
      const sas = loadSasKeys(dataDir, host);
      const sasClock = options.clock ?? new NodeClock();
      broker = brokerKind === "aedes"
        ? await AedesBroker.start({ ...brokerOptions, sasAuth: { hubHost: () => sas.hubHost, keyFor: (id) => sas.keys.get(id), now: () => sasClock.epochSeconds() }, cloudOf: (id) => known.get(id) })
        : await MosquittoBroker.start({ ...brokerOptions, mode: "aws" });
      if (brokerKind === "mosquitto") azure = new AzureMosquittoInstances({ pki, host, log, ...limits });
      const main = await connectService(pki, host, broker.port, `${CLOUD_SERVICE_IDENTITY}-${process.pid}`);
      clients.push(main);
      const serviceOptions = { store, log, ...(options.clock === undefined ? {} : { clock: options.clock }) };
      const shadows = await ShadowService.start(main, {
        ...serviceOptions, ...(options.shadowEngine === undefined ? {} : { engine: options.shadowEngine }),
      });
      // On aedes the twin service shares the main connection (device topics arrive as devices/{id}/...);
      // on mosquitto it serves only the per-device links added by addDevice.
      const twins = await TwinService.start(brokerKind === "aedes" ? main : null, {
        ...serviceOptions, ...(options.methodTimeoutMs === undefined ? {} : { methodTimeoutMs: options.methodTimeoutMs }),
        ...(options.twinThrottle === undefined ? {} : { throttle: options.twinThrottle }),
      });
      const dl = options.deviceLogs ?? {};
      const logs = await LogService.start(main, {
        log, ...(dl.ringSize === undefined ? {} : { ringSize: dl.ringSize }), ...(dl.files === true ? { dir: path.join(dataDir, "logs") } : {}),
      });
      const cloud: LocalCloud = new LocalCloud({ host, dataDir, certsDir, brokerKind, pki, store, shadows, twins, logs, broker, azure, clients, log });
      cloud.#sas = sas;
      cloud.#fleet = fleet;
      known = cloud.#devices;
      fleet.watchStore(store);
      fleet.attachClient(main);
      for (const d of options.devices ?? []) await cloud.addDevice(d.id, d.cloud);
      if (options.blobPort !== false) {
        const server = pki.server();
        // The chain (leaf + CA), as real endpoints send it: Moddable's SecureSocket checks the server name
        // only on a certificate whose issuer is also in the chain (ssl_cert.js verify), so a lone leaf fails.
        blobs = await BlobServer.start({
          dir: path.join(dataDir, "blobs"), cert: `${server.certPem}${pki.caPem}`, key: server.keyPem, ca: pki.caPem, host, log,
          port: options.blobPort ?? 0, ...options.blobs,
        });
        cloud.#blobs = blobs;
        fleet.watchBlobs(blobs);
      }
      if (options.awsDataPlanePort !== false) {
        const key = generateAccessKey();
        const server = pki.server();
        dataPlane = await AwsDataPlaneServer.start({
          shadows, keys: [key], host, port: options.awsDataPlanePort ?? 0, certPem: server.certPem, keyPem: server.keyPem,
          clock: options.clock ?? new NodeClock(), log,
        });
        cloud.#dataPlane = { ...key, server: dataPlane };
      }
      if (options.iothub !== undefined && options.iothub !== false) {
        const hubHost = options.iothub.host ?? host;
        const key = crypto.randomBytes(32).toString("base64");
        const server = hubHost === "localhost" || hubHost === "127.0.0.1" || hubHost === "::1" ? pki.server()
          : pki.issueServerCertificate(net.isIP(hubHost) !== 0 ? { ip: [hubHost], dns: [] } : { dns: [hubHost], ip: [] });
        iothub = await IotHubRestServer.start({
          twins, hubHost, policies: new Map([[IOTHUB_OWNER_POLICY, key]]), host: hubHost, port: options.iothub.port ?? 443,
          isDevice: (id) => cloud.#devices.get(id) === "azure", isOnline: (id) => cloud.deviceOnline(id),
          certPem: server.certPem, keyPem: server.keyPem, clock: options.clock ?? new NodeClock(), log,
        });
        cloud.#iothub = { server: iothub, hostName: hubHost, key };
        sas.hubHost = hubHost;
      }
      if (options.adminPort !== false) {
        cloud.#admin = await AdminHttpServer.start({ cloud, host, port: options.adminPort ?? 0, log });
      }
      cloud.#writeInfo();
      log.log("info", "cloud.started", { broker: brokerKind, host, port: broker.port, admin: cloud.#admin?.url ?? null, blobs: blobs?.url ?? null });
      return cloud;
    } catch (e) {
      fleet.close();
      await blobs?.close();
      await dataPlane?.close();
      await iothub?.close();
      for (const c of clients) await c.endAsync(true).catch(() => undefined);
      await azure?.close();
      await broker?.close();
      await store.close();
      throw e;
    }
  }

  /** The main broker's MQTT port (AWS devices; Azure devices too on aedes). */
  get mqttPort(): number {
    return this.#broker.port;
  }

  get adminUrl(): string | undefined {
    return this.#admin?.url;
  }

  /** The admin API's bearer token (also in cloud.json). */
  get adminToken(): string | undefined {
    return this.#admin?.token;
  }

  /** The fleet page's address with the admin token in its fragment (docs/fleet-page.md), or undefined without an admin API. */
  get fleetPageUrl(): string | undefined {
    return this.#admin === undefined ? undefined : `${this.#admin.url}/fleet#token=${this.#admin.token}`;
  }

  /** The fleet view: devices' update states, finished updates and releases as events, the webhook (fleet-events.ts). */
  get fleet(): FleetEvents {
    return this.#fleet!;
  }

  /** The firmware blob server. Throws CLOUD_BLOB_SERVER_DISABLED when started with `blobPort: false`. */
  get blobs(): BlobServer {
    if (this.#blobs === undefined) throw new ShadowOtaError(CLOUD_CODES.CLOUD_BLOB_SERVER_DISABLED, "the local cloud runs without its blob server (blobPort: false)");
    return this.#blobs;
  }

  /** True unless started with `blobPort: false`. */
  get hasBlobServer(): boolean {
    return this.#blobs !== undefined;
  }

  /** The default firmware container's base URL, e.g. `https://127.0.0.1:PORT/firmware/` (ends with "/").
   *  Throws CLOUD_BLOB_SERVER_DISABLED without a blob server. */
  get blobBaseUrl(): string {
    return this.blobs.baseUrl(DEFAULT_FIRMWARE_CONTAINER);
  }

  /** The CA (PEM) that signed the blob server's certificate: the local CA, as for the brokers. */
  get blobCa(): string {
    return this.blobs.caPem;
  }

  /**
   * Publishes (or replaces) a firmware blob at `{blob server}/{container}/{name}`; returns its size, ETag
   * and URL. Throws CLOUD_BLOB_NAME_INVALID, CLOUD_BLOB_TOO_LARGE, CLOUD_BLOB_SERVER_DISABLED.
   */
  publishFirmware(container: string, name: string, bytes: Uint8Array): BlobInfo {
    this.#checkOpen();
    return this.blobs.publish(container, name, bytes);
  }

  /** Known devices: id → cloud. */
  get devices(): ReadonlyMap<string, CloudKind> {
    return this.#devices;
  }

  /**
   * Makes a device known: issues (or reuses) its certificate, and for an Azure device on mosquitto starts
   * its dedicated broker and links the twin service to it. Idempotent. Throws PKI_* for a bad name,
   * CLOUD_DEVICE_ID_RESERVED for the cloud's own identities (isReservedIdentity in pki.ts).
   */
  async addDevice(id: string, cloud: CloudKind): Promise<DeviceCredentials> {
    this.#checkOpen();
    if (typeof id === "string" && isReservedIdentity(id)) {
      throw new ShadowOtaError(CLOUD_CODES.CLOUD_DEVICE_ID_RESERVED, `device id ${id} is reserved for the local cloud's own services`, { detail: { id } });
    }
    const known = this.#devices.get(id);
    if (known !== undefined && known !== cloud) {
      throw new ShadowOtaError(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID, `device ${id} is already registered for ${known}`, { detail: { id, cloud: known } });
    }
    this.pki.client(id);
    if (cloud === "azure" && !this.#sas.keys.has(id)) {
      this.#sas.keys.set(id, crypto.randomBytes(32).toString("base64"));
      writeFileAtomic(this.#sas.file, JSON.stringify(Object.fromEntries(this.#sas.keys), null, 2) + "\n", { mode: 0o600 });
    }
    if (known === undefined && cloud === "azure" && this.#azure !== undefined) {
      const instance = await this.#azure.ensure(id);
      const link = await connectService(this.pki, this.host, instance.port, `${CLOUD_SERVICE_IDENTITY}-${id}`);
      this.#clients.push(link);
      await this.twins.attachDeviceLink(id, link);
      await this.logs.attachLink(id, link);
      this.#fleet?.attachLink(id, link);
    }
    this.#devices.set(id, cloud);
    if (this.#admin !== undefined) this.#writeInfo();
    return this.credentials(id);
  }

  /**
   * Whether an Azure device is connected and subscribed to direct methods (`$iothub/methods/POST/#`), as
   * IoT Hub decides before sending it a direct method; undefined on mosquitto, whose clients the cloud
   * cannot see.
   */
  deviceOnline(id: string): boolean | undefined {
    if (!(this.#broker instanceof AedesBroker)) return undefined;
    const clients = (this.#broker.aedes as unknown as { clients: Record<string, { subscriptions: Record<string, unknown> } | undefined> }).clients;
    const c = Object.prototype.hasOwnProperty.call(clients, id) ? clients[id] : undefined;
    if (c === undefined) return false;
    const methods = `devices/${id}/$iothub/methods/POST/`;
    return Object.keys(c.subscriptions).some((t) => t.startsWith(methods));
  }

  /**
   * An Azure device's connection string, `HostName={hub};DeviceId={id};SharedAccessKey={key}`, for devices
   * that authenticate with SAS tokens instead of their certificate (aedes only: mosquitto cannot check a
   * token). The key is made at the device's first addDevice and kept in {dataDir}/iothub-device-keys.json
   * (0600). Throws CLOUD_DEVICE_ID_INVALID for a device that is not an Azure one.
   */
  deviceConnectionString(id: string): string {
    const key = this.#devices.get(id) === "azure" ? this.#sas.keys.get(id) : undefined;
    if (key === undefined) throw new ShadowOtaError(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID, `${id} is not an Azure device of this cloud`, { detail: { id } });
    return `HostName=${this.#sas.hubHost};DeviceId=${id};SharedAccessKey=${key}`;
  }

  /** What a device needs to connect. Throws CLOUD_DEVICE_ID_INVALID for an unknown device. */
  credentials(id: string): DeviceCredentials {
    const cloud = this.#devices.get(id);
    if (cloud === undefined) throw new ShadowOtaError(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID, `unknown device ${id}: addDevice() it first`, { detail: { id } });
    const c = this.pki.client(id);
    return { id, cloud, host: this.host, port: this.#portFor(id, cloud), ca: c.caPem, cert: c.certPem, key: c.keyPem };
  }

  /** The connection file's content (also written to {dataDir}/cloud.json). */
  info(): CloudInfo {
    const azurePorts: Record<string, number> = {};
    for (const [id, b] of this.#azure?.entries() ?? []) azurePorts[id] = b.port;
    const info: CloudInfo = {
      host: this.host, mqttPort: this.mqttPort, azurePorts, certsDir: this.certsDir,
      devices: Object.fromEntries(this.#devices),
    };
    if (this.#admin !== undefined) { info.adminUrl = this.#admin.url; info.adminToken = this.#admin.token; }
    if (this.#blobs !== undefined) info.blobUrl = this.#blobs.baseUrl(DEFAULT_FIRMWARE_CONTAINER);
    info.azureHubHost = this.#sas.hubHost;
    if (this.#dataPlane !== undefined) {
      const { server, accessKeyId, secretAccessKey } = this.#dataPlane;
      info.awsDataPlane = { endpoint: server.url, region: "us-east-1", accessKeyId, secretAccessKey };
    }
    if (this.#iothub !== undefined) {
      const { server, hostName, key } = this.#iothub;
      info.iothub = { url: server.url, hostName, connectionString: `HostName=${hostName};SharedAccessKeyName=${IOTHUB_OWNER_POLICY};SharedAccessKey=${key}` };
    }
    return info;
  }

  /** Stops the admin API, the blob server, the services, their connections and the brokers. Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#fleet?.close();
    await this.#admin?.close();
    await this.#blobs?.close();
    await this.#dataPlane?.server.close();
    await this.#iothub?.server.close();
    await this.twins.close().catch((e: unknown) => this.#log.log("warn", "cloud.close.twins", { error: String(e) }));
    await this.shadows.close().catch((e: unknown) => this.#log.log("warn", "cloud.close.shadows", { error: String(e) }));
    await this.logs.close().catch((e: unknown) => this.#log.log("warn", "cloud.close.logs", { error: String(e) }));
    for (const c of this.#clients) await c.endAsync(true).catch(() => undefined);
    await this.#azure?.close();
    await this.#broker.close();
    await this.store.close(); // waits for commits in flight, compacts the log into cloud-store.json
    fs.rmSync(path.join(this.dataDir, CLOUD_INFO_FILE), { force: true });
  }

  #portFor(id: string, cloud: CloudKind): number {
    if (cloud === "azure" && this.#azure !== undefined) {
      const b = this.#azure.get(id);
      if (b === undefined) throw new ShadowOtaError(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID, `no broker instance for Azure device ${id}`, { detail: { id } });
      return b.port;
    }
    return this.mqttPort;
  }

  #writeInfo(): void {
    writeFileAtomic(path.join(this.dataDir, CLOUD_INFO_FILE), JSON.stringify(this.info(), null, 2) + "\n", { mode: 0o600 });
  }

  #checkOpen(): void {
    if (this.#closed) throw new ShadowOtaError(CLOUD_CODES.CLOUD_SERVICE_CLOSED, "the local cloud is closed");
  }
}
