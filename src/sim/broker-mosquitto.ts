/**
 * Launches Debian's mosquitto (2.0.x) as an independent second broker for the local cloud: one process per
 * instance on a free loopback port, with a mutual-TLS listener and an ACL file generated from
 * broker-policy.ts.
 *
 * Listener: cafile/certfile/keyfile from LocalPki, require_certificate, use_identity_as_username (the
 * client certificate's CN becomes the username the ACL sees as `%u` and `user`), allow_anonymous false,
 * max_qos 1 (a QoS 2 publish disconnects, as on Azure), and use_username_as_clientid: mosquitto cannot
 * refuse a client id that differs from the CN as AWS does, so it replaces it with the CN instead — what
 * matters is kept: one identity cannot take over another's session. Consequence: two connections with the
 * same certificate drop each other, so every concurrent service connection needs its own service identity.
 * RETAIN: `retain_available false` — a client publishing with RETAIN set is disconnected and nothing is
 * stored, as AWS IoT Core does (broker-fidelity.ts); IoT Hub ignores the flag instead, which mosquitto cannot
 * do (it cannot clear it the way the aedes broker does), so on an Azure instance this is stricter than IoT Hub.
 * Persistent sessions: `persistent_client_expiration 1h`, AWS's default expiry. AWS's subscription quotas and
 * keepalive range have no mosquitto setting (its `max_keepalive` refuses a larger keepalive with CONNACK 2
 * instead of applying the cloud's value), so they are not enforced here.
 * Limits (BrokerLimits, broker-policy.ts): `max_packet_size` is the cloud's payload limit plus
 * MQTT_HEADER_ALLOWANCE — AWS's 128 KB on the AWS instance, IoT Hub's 256 KB on an Azure device's — and a
 * client sending more is disconnected; `max_connections` is the per-address cap (every client of a loopback
 * instance shares one address). mosquitto 2.0.11 has no setting for a TLS handshake or CONNECT deadline.
 *
 * What the ACL does in 2.0.11 (checked by test/sim/broker-mosquitto.test.ts): a denied publish is dropped
 * silently (a QoS 1 publisher still gets its PUBACK; MQTT 3.1.1 has no reason code to carry the refusal);
 * a SUBSCRIBE is always granted and the read rules are applied to each message delivered, so a device
 * subscribed to another's topics or to `#` simply receives nothing of theirs. Modes:
 * - "aws": every device on one instance, each limited to `$aws/things/{CN}/shadow/...`.
 * - { azureDeviceId }: one instance per Azure device, because IoT Hub's topics carry no device id and
 *   mosquitto 2.0.11's mount_point cannot scope them (it does not strip the mount point on delivery,
 *   upstream bug #2244). AzureMosquittoInstances keeps one such instance per device; the twin service
 *   opens one link to each.
 *
 * Started as root, mosquitto drops to the `mosquitto` user (as its package configures it), so the runtime
 * directory holding the config, ACL and a copy of the server key (0600) is handed to that user; the
 * key in the PKI directory stays root's. The process is killed on close() and when Node exits.
 *
 * Not here: shadow/twin behaviour, mosquitto's persistence, dynamic security, WebSockets.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { ShadowOtaError } from "../core/errors";
import type { Log } from "../ports/log";
import { silentLog } from "../ports/log";
import {
  AWS_MAX_PAYLOAD_BYTES, AZURE_MAX_PAYLOAD_BYTES, BROKER_CODES, DEFAULT_BROKER_LIMITS, MQTT_HEADER_ALLOWANCE, brokerLimits,
  mosquittoAcl, type BrokerLimits,
} from "./broker-policy";
import { CLOUD_SERVICE_IDENTITY, PKI_NAME_PATTERN, type LocalPki } from "./pki";

/** Thrown when no mosquitto executable is found; code BROKER_NOT_INSTALLED. */
export class MosquittoNotInstalledError extends ShadowOtaError {
  constructor(searched: readonly string[]) {
    super(BROKER_CODES.BROKER_NOT_INSTALLED, `mosquitto not installed (looked in ${searched.join(", ")}); apt-get install mosquitto`);
    this.name = "MosquittoNotInstalledError";
  }
}

export type MosquittoMode = "aws" | { azureDeviceId: string };

export interface MosquittoOptions {
  pki: LocalPki;
  mode: MosquittoMode;
  /** Port (default: a free one, picked by binding port 0 first; retried if mosquitto then finds it taken). */
  port?: number;
  /** Loopback address (default "127.0.0.1"). */
  host?: string;
  /** CNs with the cloud services' rights (default ["shadow-ota-cloud"]). */
  serviceIdentities?: readonly string[];
  /** The executable (default: found on PATH, /usr/sbin, /usr/local/sbin). */
  binary?: string;
  /** How long to wait for "mosquitto ... running" (default 5000 ms). */
  startTimeoutMs?: number;
  /** Also log mosquitto's debug lines (every packet; shows denied publishes). Default false. */
  debugLog?: boolean;
  /** Receives every log line at level "debug" as event "mosquitto.log". */
  log?: Log;
  /** `maxConnectionsPerAddress` → max_connections; `maxPacketBytes` overrides the mode's cap (default: the
   *  cloud's payload limit + MQTT_HEADER_ALLOWANCE). The deadlines do not apply (see the header). */
  limits?: Partial<Pick<BrokerLimits, "maxConnectionsPerAddress" | "maxPacketBytes">>;
}

/** The whole-packet cap of an instance: its cloud's payload limit plus headers, unless overridden. */
export function mosquittoPacketLimit(mode: MosquittoMode, override?: number): number {
  return override ?? (mode === "aws" ? AWS_MAX_PAYLOAD_BYTES : AZURE_MAX_PAYLOAD_BYTES) + MQTT_HEADER_ALLOWANCE;
}

const SEARCH_DIRS = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];
const LOG_LINES_KEPT = 2_000;

/** The mosquitto executable, or undefined. */
export function findMosquitto(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...SEARCH_DIRS];
  for (const d of dirs) {
    const candidate = path.join(d, "mosquitto");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not in this directory; keep looking
    }
  }
  return undefined;
}

/** The executable, or throws MosquittoNotInstalledError. */
export function requireMosquitto(): string {
  const bin = findMosquitto();
  if (bin === undefined) throw new MosquittoNotInstalledError(SEARCH_DIRS);
  return bin;
}

// ---- processes to kill when Node exits -------------------------------------------------------------------
const live = new Set<MosquittoBroker>();
let exitHookInstalled = false;
function track(b: MosquittoBroker): void {
  live.add(b);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => { for (const x of live) x.killNow(); });
  }
}

/** uid/gid mosquitto drops to when started as root: `mosquitto`, else `nobody` (mosquitto.conf(5) "user"). */
function dropTarget(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return undefined;
  let passwd: string;
  try {
    passwd = fs.readFileSync("/etc/passwd", "utf8");
  } catch {
    return undefined; // no passwd file: mosquitto cannot drop either
  }
  for (const name of ["mosquitto", "nobody"]) {
    const line = passwd.split("\n").find((l) => l.startsWith(`${name}:`));
    if (line !== undefined) {
      const f = line.split(":");
      return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  }
  return undefined;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function configText(dir: string, host: string, port: number, debug: boolean, limits: { maxPacketBytes: number; maxConnections: number }): string {
  const p = (f: string): string => path.join(dir, f);
  return [
    "# generated by shadow-ota src/sim/broker-mosquitto.ts; do not edit",
    "per_listener_settings false",
    "allow_anonymous false",
    "persistence false",
    "log_dest stderr",
    ...(debug ? ["log_type all"] : ["log_type error", "log_type warning", "log_type notice", "log_type information", "log_type subscribe", "log_type unsubscribe"]),
    "connection_messages true",
    "set_tcp_nodelay true",
    `acl_file ${p("acl")}`,
    `max_packet_size ${limits.maxPacketBytes}`,
    "",
    `listener ${port} ${host}`,
    "protocol mqtt",
    `cafile ${p("ca.pem")}`,
    `certfile ${p("server.cert.pem")}`,
    `keyfile ${p("server.key.pem")}`,
    "require_certificate true",
    "use_identity_as_username true",
    "use_username_as_clientid true",
    "max_qos 1",
    "retain_available false",
    // A persistent session is dropped an hour after its client left (AWS IoT Core's default expiry;
    // mosquitto's smallest unit is the hour).
    "persistent_client_expiration 1h",
    `max_connections ${limits.maxConnections}`,
    "",
  ].join("\n");
}

export class MosquittoBroker {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly mode: MosquittoMode;
  /** The directory holding this instance's config, ACL and key copy (removed on close). */
  readonly runtimeDir: string;
  readonly #child: ChildProcess;
  readonly #lines: string[];
  readonly #exited: Promise<void>;
  #closing: Promise<void> | undefined;

  private constructor(child: ChildProcess, lines: string[], exited: Promise<void>, host: string, port: number, mode: MosquittoMode, dir: string) {
    this.#child = child;
    this.#lines = lines;
    this.#exited = exited;
    this.host = host;
    this.port = port;
    this.url = `mqtts://${host}:${port}`;
    this.mode = mode;
    this.runtimeDir = dir;
  }

  /**
   * Starts an instance and resolves once it listens. Throws MosquittoNotInstalledError,
   * BROKER_OPTION_INVALID, BROKER_START_FAILED (with the log tail in `detail.log`), BROKER_START_TIMEOUT.
   */
  static async start(options: MosquittoOptions): Promise<MosquittoBroker> {
    const bin = options.binary ?? requireMosquitto();
    const host = options.host ?? "127.0.0.1";
    const services = options.serviceIdentities ?? [CLOUD_SERVICE_IDENTITY];
    const names = [...services, ...(options.mode === "aws" ? [] : [options.mode.azureDeviceId])];
    for (const n of names) {
      if (!PKI_NAME_PATTERN.test(n)) throw new ShadowOtaError(BROKER_CODES.BROKER_OPTION_INVALID, `identity ${JSON.stringify(n)} is not a certificate name`);
    }
    if (options.port !== undefined && (!Number.isInteger(options.port) || options.port <= 0 || options.port > 65535)) {
      throw new ShadowOtaError(BROKER_CODES.BROKER_OPTION_INVALID, `port ${options.port} is out of range`);
    }
    const checked = brokerLimits(options.limits);
    if (typeof checked === "string") throw new ShadowOtaError(BROKER_CODES.BROKER_OPTION_INVALID, checked);
    const limits = {
      maxPacketBytes: mosquittoPacketLimit(options.mode, options.limits?.maxPacketBytes),
      maxConnections: options.limits?.maxConnectionsPerAddress ?? DEFAULT_BROKER_LIMITS.maxConnectionsPerAddress,
    };
    const server = options.pki.server();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-mosquitto-"));
    try {
      fs.writeFileSync(path.join(dir, "acl"), mosquittoAcl(options.mode, services), { mode: 0o600 });
      fs.writeFileSync(path.join(dir, "ca.pem"), server.caPem, { mode: 0o644 });
      fs.writeFileSync(path.join(dir, "server.cert.pem"), server.certPem, { mode: 0o644 });
      fs.writeFileSync(path.join(dir, "server.key.pem"), server.keyPem, { mode: 0o600 });
      const owner = dropTarget();
      if (owner !== undefined) {
        for (const f of ["", "acl", "ca.pem", "server.cert.pem", "server.key.pem"]) fs.chownSync(path.join(dir, f), owner.uid, owner.gid);
      }
      // A port picked free can be taken before mosquitto binds it: try a few times (bounded).
      for (let attempt = 0; ; attempt++) {
        const port = options.port ?? await freePort(host);
        const conf = path.join(dir, "mosquitto.conf");
        fs.writeFileSync(conf, configText(dir, host, port, options.debugLog === true, limits), { mode: 0o644 });
        if (owner !== undefined) fs.chownSync(conf, owner.uid, owner.gid);
        try {
          return await MosquittoBroker.#launch(bin, conf, dir, host, port, options);
        } catch (e) {
          const inUse = e instanceof ShadowOtaError && /Address already in use/i.test(String(e.detail?.log ?? ""));
          if (!inUse || options.port !== undefined || attempt >= 2) throw e;
        }
      }
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  static #launch(bin: string, conf: string, dir: string, host: string, port: number, options: MosquittoOptions): Promise<MosquittoBroker> {
    const log = options.log ?? silentLog;
    const timeoutMs = options.startTimeoutMs ?? 5_000;
    const lines: string[] = [];
    const child = spawn(bin, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    return new Promise<MosquittoBroker>((resolve, reject) => {
      let settled = false;
      const tail = (): string => lines.slice(-20).join("\n");
      const finish = (err: ShadowOtaError | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err === undefined) {
          const b = new MosquittoBroker(child, lines, exited, host, port, options.mode, dir);
          track(b);
          log.log("info", "mosquitto.listening", { url: b.url, pid: child.pid ?? -1, mode: typeof options.mode === "string" ? options.mode : `azure:${options.mode.azureDeviceId}` });
          resolve(b);
        } else {
          if (child.exitCode === null) child.kill("SIGKILL");
          void exited.then(() => reject(err));
        }
      };
      const onLine = (line: string): void => {
        lines.push(line);
        if (lines.length > LOG_LINES_KEPT) lines.splice(0, lines.length - LOG_LINES_KEPT);
        log.log("debug", "mosquitto.log", { port, line });
        if (/mosquitto version \S+ running/.test(line)) finish(undefined);
      };
      let partial = "";
      const onData = (chunk: Buffer): void => {
        const parts = (partial + chunk.toString("utf8")).split("\n");
        partial = parts.pop() ?? "";
        for (const l of parts) if (l.length > 0) onLine(l);
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("error", (cause) => finish(new ShadowOtaError(BROKER_CODES.BROKER_START_FAILED, `cannot run ${bin}`, { cause, detail: { log: tail() } })));
      child.once("exit", (code, signal) => {
        if (partial) { onLine(partial); partial = ""; }
        finish(new ShadowOtaError(BROKER_CODES.BROKER_START_FAILED, `mosquitto exited (${signal ?? code}) before listening on ${host}:${port}`, { detail: { log: tail() } }));
      });
      const timer = setTimeout(() => finish(new ShadowOtaError(BROKER_CODES.BROKER_START_TIMEOUT,
        `mosquitto did not listen on ${host}:${port} within ${timeoutMs} ms`, { detail: { timeoutMs, log: tail() } })), timeoutMs);
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** The captured log (the last 2000 lines). */
  logLines(): string[] {
    return this.#lines.slice();
  }

  /** Stops the process (SIGTERM, SIGKILL after 3 s) and removes the runtime directory. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.running) {
        // mosquitto 2.0.11 sets its run flag after installing the signal handlers, so a SIGTERM that lands
        // just after "running" is forgotten: repeat it until the process is gone, then SIGKILL.
        this.#child.kill("SIGTERM");
        const again = setInterval(() => this.#child.kill("SIGTERM"), 100);
        const killer = setTimeout(() => this.#child.kill("SIGKILL"), 3_000);
        await this.#exited;
        clearInterval(again);
        clearTimeout(killer);
      }
      live.delete(this);
      fs.rmSync(this.runtimeDir, { recursive: true, force: true });
    })();
    return this.#closing;
  }

  /** Synchronous last resort for process exit: SIGKILL and remove the runtime directory. */
  killNow(): void {
    if (this.running) this.#child.kill("SIGKILL");
    fs.rmSync(this.runtimeDir, { recursive: true, force: true });
  }
}

/**
 * One dedicated mosquitto instance per Azure device (see the header). `ensure` starts a device's instance
 * once (concurrent calls share the start); the twin service connects to each with its own link.
 */
export class AzureMosquittoInstances {
  readonly #base: Omit<MosquittoOptions, "mode" | "port">;
  readonly #starting = new Map<string, Promise<MosquittoBroker>>();
  readonly #ready = new Map<string, MosquittoBroker>();
  #closed = false;

  constructor(base: Omit<MosquittoOptions, "mode" | "port">) {
    this.#base = base;
  }

  /** The device's instance, started on first use. Throws what MosquittoBroker.start throws. */
  ensure(deviceId: string): Promise<MosquittoBroker> {
    if (this.#closed) return Promise.reject(new ShadowOtaError(BROKER_CODES.BROKER_START_FAILED, "the Azure instances are closed"));
    let p = this.#starting.get(deviceId);
    if (p === undefined) {
      p = MosquittoBroker.start({ ...this.#base, mode: { azureDeviceId: deviceId } });
      this.#starting.set(deviceId, p);
      p.then((b) => this.#ready.set(deviceId, b), () => this.#starting.delete(deviceId));
    }
    return p;
  }

  get(deviceId: string): MosquittoBroker | undefined {
    return this.#ready.get(deviceId);
  }

  /** [deviceId, instance] for every running instance. */
  entries(): Array<[string, MosquittoBroker]> {
    return [...this.#ready.entries()];
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = await Promise.allSettled([...this.#starting.values()]);
    await Promise.all(all.map((r) => (r.status === "fulfilled" ? r.value.close() : undefined)));
    this.#ready.clear();
    this.#starting.clear();
  }
}
