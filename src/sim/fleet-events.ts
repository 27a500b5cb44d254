/**
 * The local cloud's fleet view: what every device last said about itself, the finished updates and newly
 * published releases as events, a live feed of both (for the fleet page's Server-Sent Events) and an
 * operator-configured webhook that receives every event as JSON.
 *
 * Where it looks (it changes nothing it watches):
 * - accepted reported state: `watchStore(store)` sees every shadow and twin record the services store, once it
 *   is durable (cloud-store.ts resolves a put only then), whoever wrote it: a device's MQTT report, the AWS
 *   data plane, an admin update. It listens with the store's `onRecord` (called only for durable records, so
 *   a rejected or failed write is never seen) and reads the classic shadow (`thing`, not `thing~name`) and
 *   the twin;
 * - "last seen": `attachClient(client)` listens (it subscribes to nothing) to the messages the services'
 *   connection already receives from devices — shadow requests, twin requests and reports, method answers,
 *   log and health telemetry; `attachLink` does the same for an Azure device's own mosquitto instance;
 * - releases: `watchBlobs(blobs)` listens with the blob server's `onPublish` (the admin API's PUT /firmware,
 *   the CLI, the demo and the release tool all end in its `publish`) and reads the existing blobs at start. A blob in the
 *   default container named in a seed's convention (AWS `{version}.bin`, Azure `v1_1_0.bin`,
 *   src/core/firmware-url.ts) is a release of that version for that cloud's devices.
 *
 * What a device's reported state means here (the seeds' and src/core's names): the running version is AWS
 * `config.firmware_version` / Azure `firmwareVersion`; the update is `firmwareUpdate` (ota-controller.ts
 * `reported()`: state, from, to, bytes, total, percent, attempt, lastError); the last error is
 * `firmwareUpdate.lastError`, else the agent's `lastError`; desired holds AWS `config.firmware_version` /
 * Azure `updateVersion`. A state starting with "Waiting" (the update policy's WaitingConsent, WaitingWindow)
 * is a pending update; WaitingConsent's `to` is what the operator may install. Everything a device wrote is
 * untrusted: strings are cut to MAX_TEXT characters, numbers must be finite, other shapes read as absent.
 *
 * Events (FleetEvent), each with a sequence number from 1 that keeps counting across restarts when `file` is set:
 * - "updated": the update state became Valid on a version other than the one it came from;
 * - "rolled-back" / "failed": it became RolledBack / Failed (with the error);
 * - "release-published": a release blob appeared or was replaced (with the devices it applies to).
 * Only a change of (state, to) is an event, so a device that re-reports the same Valid after a restart, or a
 * store replayed at start, adds none. Kept in a ring of `ringSize` (default 500); with `file`, also appended
 * to it (one JSON line each, moved to `.1` past 1 MiB) and the ring is refilled from it at start.
 *
 * The webhook: each event is POSTed (JSON, the FleetEvent itself; headers `x-shadow-ota-event` and
 * `x-shadow-ota-delivery: {seq}.{attempt}`) in order, one at a time; a network error, timeout, 408, 429 or 5xx
 * is retried up to `attempts` times in all with doubling delays, any other status is final. Delivery runs
 * beside the cloud and never holds it up: at most `maxQueue` events wait (the oldest are dropped and
 * counted). Counters in `webhookStats()`. With a `secret`, every try is signed after Stripe's scheme
 * (`x-shadow-ota-signature: t=UNIX_SECONDS,v1=HEX`, the HMAC-SHA256 under the secret of `{t}.{body}`, the
 * body's exact bytes; `webhookSignature`, `verifyWebhookSignature`); the secret is never logged or shown.
 *
 * Not here: the HTTP routes and the page (fleet-page/), the rollout engine (rollout*.ts).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { MqttClient } from "mqtt";
import type { CloudKind } from "../core/cloud-protocol";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type Json, type JsonObject } from "../core/json";
import { compareSemver, trySemver } from "../core/semver";
import { silentLog, type Log } from "../ports/log";
import type { BlobInfo, BlobServer } from "./blob-server";
import type { CloudStore } from "./cloud-store";
import type { StoredShadow } from "./shadow-engine";
import type { StoredTwin } from "./twin-engine";

/** Error codes of the fleet view (stable, like every code). */
export const FLEET_CODES = {
  /** The webhook URL is not an absolute http: or https: URL (`detail.url`, cut to 200 characters). */
  FLEET_WEBHOOK_URL_INVALID: "FLEET_WEBHOOK_URL_INVALID",
  /** A webhook option out of range: attempts 1..20, backoffMs 1..60000, timeoutMs 1..120000, maxQueue ≥ 1,
   *  secret a string of 1..1024 UTF-8 bytes (the message never holds the secret). */
  FLEET_WEBHOOK_OPTION_INVALID: "FLEET_WEBHOOK_OPTION_INVALID",
} as const;

/** Longest string taken from a device's reported state. */
export const MAX_TEXT = 200;
export const DEFAULT_EVENT_RING_SIZE = 500;
export const DEFAULT_WEBHOOK_ATTEMPTS = 5;
export const DEFAULT_WEBHOOK_BACKOFF_MS = 250;
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 5000;
export const DEFAULT_WEBHOOK_MAX_QUEUE = 1000;
const MAX_EVENT_FILE_BYTES = 1024 * 1024;
const MAX_BACKOFF_MS = 8000;
/** The header carrying the webhook signature. */
export const WEBHOOK_SIGNATURE_HEADER = "x-shadow-ota-signature";
/** How far a signature's timestamp may be from the receiver's clock by default (Stripe's default: 5 min). */
export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;
const MAX_SECRET_BYTES = 1024;
/** The container whose seed-named blobs are releases (local-cloud.ts DEFAULT_FIRMWARE_CONTAINER). */
const RELEASE_CONTAINER = "firmware";

export interface FleetUpdate {
  state: string;
  from: string | null;
  to: string | null;
  percent: number | null;
  bytes: number | null;
  total: number | null;
  attempt: number | null;
}

export interface FleetError {
  code: string;
  message: string;
}

export interface FleetDevice {
  id: string;
  cloud: CloudKind;
  /** The running version as reported. */
  version: string | null;
  /** The version desired names. */
  desiredVersion: string | null;
  update: FleetUpdate | null;
  lastError: FleetError | null;
  /** ISO-8601: the last message from the device (undefined until one arrives while the cloud runs). */
  lastSeen: string | null;
  /** The newest published release for this device's cloud that is newer than what it runs. */
  available: { version: string; url: string } | null;
  /** The version waiting for the operator's consent (update state WaitingConsent). */
  pendingConsent: string | null;
}

export type FleetEventType = "updated" | "rolled-back" | "failed" | "release-published";

export interface FleetEvent {
  seq: number;
  /** ISO-8601, when the cloud saw it. */
  time: string;
  type: FleetEventType;
  deviceId?: string;
  cloud?: CloudKind;
  from?: string | null;
  to?: string | null;
  /** The running version after the update (device events). */
  version?: string | null;
  error?: FleetError | null;
  release?: { version: string; cloud: CloudKind; name: string; url: string; size: number; devices: string[] };
}

export type FleetChange = { kind: "device"; device: FleetDevice } | { kind: "event"; event: FleetEvent };

export interface WebhookOptions {
  url: string;
  /** Tries per event in all (default 5). */
  attempts?: number;
  /** Delay before the second try, doubled for each next one, at most 8 s (default 250 ms). */
  backoffMs?: number;
  /** Per try (default 5000 ms). */
  timeoutMs?: number;
  /** Events waiting at most (default 1000); the oldest are dropped beyond. */
  maxQueue?: number;
  /** Sign every POST with HMAC-SHA256 under this secret (header WEBHOOK_SIGNATURE_HEADER); never shown. */
  secret?: string;
}

export interface WebhookStats {
  url: string;
  /** Whether POSTs are signed (the secret itself is never shown). */
  signed: boolean;
  delivered: number;
  /** Events given up on after their last try or a final status. */
  failed: number;
  dropped: number;
  queued: number;
  lastError: string | null;
}

export interface FleetEventsOptions {
  log?: Log;
  now?: () => number;
  ringSize?: number;
  /** Append events here and refill the ring from it at start. */
  file?: string;
  webhook?: WebhookOptions;
  /** The devices the cloud knows (id → cloud); shown even before they report. */
  devices?: () => ReadonlyMap<string, CloudKind>;
}

function text(v: Json | undefined): string | null {
  return typeof v === "string" ? v.slice(0, MAX_TEXT) : null;
}

function count(v: Json | undefined): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function member(o: Json | undefined, key: string): Json | undefined {
  return o !== undefined && isJsonObject(o) && Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;
}

function errorOf(v: Json | undefined): FleetError | null {
  if (v === undefined || !isJsonObject(v)) return null;
  const code = text(v["code"]);
  return code === null ? null : { code, message: text(v["message"]) ?? "" };
}

/** The release a blob name stands for in the default container, or undefined. */
export function releaseOfBlob(container: string, name: string): { version: string; cloud: CloudKind } | undefined {
  if (container !== RELEASE_CONTAINER || !name.endsWith(".bin")) return undefined;
  const stem = name.slice(0, -4);
  if (/^v[0-9]/.test(stem)) {
    const v = trySemver(stem.slice(1).split("_").join("."));
    return v === undefined || stem.slice(1).includes(".") ? undefined : { version: v.raw, cloud: "azure" };
  }
  const v = trySemver(stem);
  return v === undefined ? undefined : { version: v.raw, cloud: "aws" };
}

/** The device a device-to-cloud topic on the services' shared connection comes from, or undefined. */
export function deviceOfTopic(topic: string): { deviceId: string; cloud: CloudKind } | undefined {
  const aws = /^\$aws\/things\/([^/]+)\/shadow\//.exec(topic) ?? /^shadow-ota\/things\/([^/]+)\/logs$/.exec(topic);
  if (aws !== null) return { deviceId: aws[1]!, cloud: "aws" };
  const az = /^devices\/([^/]+)\/(?:\$iothub\/(?:twin\/GET|twin\/PATCH\/properties\/reported|methods\/res)\/|messages\/events\/)/.exec(topic);
  return az === null ? undefined : { deviceId: az[1]!, cloud: "azure" };
}

interface Reported {
  version: string | null;
  desiredVersion: string | null;
  update: FleetUpdate | null;
  lastError: FleetError | null;
}

function readReported(cloud: CloudKind, reported: JsonObject | undefined, desired: JsonObject | undefined): Reported {
  const version = cloud === "aws" ? text(member(member(reported, "config"), "firmware_version")) : text(member(reported, "firmwareVersion"));
  const desiredVersion = cloud === "aws" ? text(member(member(desired, "config"), "firmware_version")) : text(member(desired, "updateVersion"));
  const fu = member(reported, "firmwareUpdate");
  let update: FleetUpdate | null = null;
  const state = text(member(fu, "state"));
  if (state !== null) {
    update = {
      state, from: text(member(fu, "from")), to: text(member(fu, "to")), percent: count(member(fu, "percent")),
      bytes: count(member(fu, "bytes")), total: count(member(fu, "total")), attempt: count(member(fu, "attempt")),
    };
  }
  const lastError = errorOf(member(fu, "lastError")) ?? errorOf(member(reported, "lastError"));
  return { version, desiredVersion, update, lastError };
}

export class FleetEvents {
  readonly #log: Log;
  readonly #now: () => number;
  readonly #ringSize: number;
  readonly #file: string | undefined;
  readonly #knownDevices: () => ReadonlyMap<string, CloudKind>;
  readonly #devices = new Map<string, FleetDevice>();
  readonly #events: FleetEvent[] = [];
  #seq = 0;
  /** version → cloud → blob. */
  readonly #releases = new Map<string, Map<CloudKind, BlobInfo>>();
  readonly #listeners = new Set<(c: FleetChange) => void>();
  readonly #links: Array<{ client: MqttClient; listener: (topic: string) => void }> = [];
  readonly #webhook: CheckedWebhook | undefined;
  readonly #queue: FleetEvent[] = [];
  readonly #stats = { delivered: 0, failed: 0, dropped: 0, lastError: null as string | null };
  #delivering = false;
  #abort: AbortController | undefined;
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  /** Unsubscribe functions of the store's and blob server's observers. */
  readonly #unwatch: Array<() => void> = [];
  #closed = false;

  /** Throws FLEET_WEBHOOK_URL_INVALID / FLEET_WEBHOOK_OPTION_INVALID for a bad webhook. */
  constructor(o: FleetEventsOptions = {}) {
    this.#log = o.log ?? silentLog;
    this.#now = o.now ?? Date.now;
    this.#ringSize = o.ringSize ?? DEFAULT_EVENT_RING_SIZE;
    if (!Number.isSafeInteger(this.#ringSize) || this.#ringSize < 1) throw new RangeError("FleetEvents: ringSize must be a positive integer");
    this.#file = o.file;
    this.#knownDevices = o.devices ?? (() => new Map());
    this.#webhook = o.webhook === undefined ? undefined : checkWebhook(o.webhook);
    if (this.#file !== undefined) this.#load(this.#file);
  }

  // ---- inputs ---------------------------------------------------------------------------------------

  /** Reads the store's devices as they are (no events) and from then on sees every record it stores. */
  watchStore(store: Pick<CloudStore, "shadows" | "twins" | "onRecord">): void {
    for (const [key, shadow] of Object.entries(store.shadows)) if (!key.includes("~")) this.#onShadow(key, shadow, false);
    for (const [id, twin] of Object.entries(store.twins)) this.#onTwin(id, twin, false);
    this.#unwatch.push(store.onRecord((r) => {
      if (r.kind === "twin") this.#guard(() => this.#onTwin(r.deviceId, r.twin, true));
      else if (!r.key.includes("~")) this.#guard(() => this.#onShadow(r.key, r.shadow, true));
    }));
  }

  /** Reads the published blobs (no events) and from then on sees every blob published. */
  watchBlobs(blobs: Pick<BlobServer, "list" | "onPublish">): void {
    for (const b of blobs.list()) this.#onBlob(b, false);
    this.#unwatch.push(blobs.onPublish((info) => this.#guard(() => this.#onBlob(info, true))));
  }

  /** Marks devices seen from the messages `client` receives (the services' shared connection). */
  attachClient(client: MqttClient): void {
    this.#listen(client, (topic) => deviceOfTopic(topic));
  }

  /** The same for an Azure device's own broker link (its topics carry no device id). */
  attachLink(deviceId: string, client: MqttClient): void {
    this.#listen(client, () => ({ deviceId, cloud: "azure" }));
  }

  /** A message from `deviceId` arrived now. */
  seen(deviceId: string, cloud: CloudKind): void {
    if (this.#closed) return;
    const d = this.#device(deviceId, cloud);
    d.lastSeen = new Date(this.#now()).toISOString();
    this.#emit({ kind: "device", device: { ...d } });
  }

  // ---- outputs --------------------------------------------------------------------------------------

  /** Every device known to the cloud or seen in the store, sorted by id (copies). */
  devices(): FleetDevice[] {
    for (const [id, cloud] of this.#knownDevices()) this.#device(id, cloud);
    return [...this.#devices.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((d) => ({ ...d }));
  }

  device(id: string): FleetDevice | undefined {
    const d = this.#devices.get(id);
    return d === undefined ? undefined : { ...d };
  }

  /** Events with seq > `after` (default 0), oldest first. */
  events(after = 0): FleetEvent[] {
    return this.#events.filter((e) => e.seq > after);
  }

  /** Releases: version → clouds, newest first. */
  releases(): Array<{ version: string; clouds: CloudKind[] }> {
    return [...this.#releases.entries()]
      .sort((a, b) => compareSemver(b[0], a[0]))
      .map(([version, m]) => ({ version, clouds: [...m.keys()].sort() }));
  }

  /** Calls `listener` with every device change and event from now on; returns the unsubscribe function. */
  subscribe(listener: (c: FleetChange) => void): () => void {
    this.#listeners.add(listener);
    return () => { this.#listeners.delete(listener); };
  }

  webhookStats(): WebhookStats | undefined {
    if (this.#webhook === undefined) return undefined;
    return { url: this.#webhook.url, signed: this.#webhook.secret !== undefined, ...this.#stats, queued: this.#queue.length };
  }

  /** Stops listening (store, blobs, MQTT links), drops waiting webhook deliveries (aborting one in flight). Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const u of this.#unwatch.splice(0)) u();
    for (const l of this.#links.splice(0)) l.client.removeListener("message", l.listener);
    this.#listeners.clear();
    this.#queue.length = 0;
    this.#abort?.abort();
    if (this.#sleep !== undefined) { clearTimeout(this.#sleep.timer); this.#sleep.wake(); }
  }

  // ---- state ----------------------------------------------------------------------------------------

  #guard(f: () => void): void {
    if (this.#closed) return;
    try {
      f();
    } catch (e) {
      this.#log.log("error", "fleet.failed", { message: e instanceof Error ? e.message : String(e) });
    }
  }

  #listen(client: MqttClient, classify: (topic: string) => { deviceId: string; cloud: CloudKind } | undefined): void {
    const listener = (topic: string): void => {
      const d = classify(topic);
      if (d !== undefined) this.#guard(() => this.seen(d.deviceId, d.cloud));
    };
    client.on("message", listener);
    this.#links.push({ client, listener });
  }

  #device(id: string, cloud: CloudKind): FleetDevice {
    let d = this.#devices.get(id);
    if (d === undefined) {
      d = { id, cloud, version: null, desiredVersion: null, update: null, lastError: null, lastSeen: null, available: null, pendingConsent: null };
      this.#devices.set(id, d);
    }
    return d;
  }

  #onShadow(thing: string, shadow: StoredShadow, live: boolean): void {
    const known = this.#knownDevices().get(thing);
    if (known === "azure") return;
    this.#apply(thing, "aws", shadow.exists ? readReported("aws", shadow.state.reported, shadow.state.desired) : readReported("aws", undefined, undefined), live);
  }

  #onTwin(id: string, twin: StoredTwin, live: boolean): void {
    this.#apply(id, "azure", readReported("azure", twin.reported, twin.desired), live);
  }

  #apply(id: string, cloud: CloudKind, r: Reported, live: boolean): void {
    const d = this.#device(id, cloud);
    const before = JSON.stringify(d);
    const prev = d.update;
    d.version = r.version;
    d.desiredVersion = r.desiredVersion;
    d.update = r.update;
    d.lastError = r.lastError;
    d.pendingConsent = r.update !== null && r.update.state === "WaitingConsent" ? r.update.to : null;
    d.available = this.#availableFor(d);
    if (live && r.update !== null && (prev === null || prev.state !== r.update.state || prev.to !== r.update.to)) {
      const u = r.update;
      const type: FleetEventType | undefined = u.state === "Valid" && u.to !== null && u.to !== u.from ? "updated"
        : u.state === "RolledBack" ? "rolled-back" : u.state === "Failed" ? "failed" : undefined;
      if (type !== undefined) {
        this.#event({ type, deviceId: id, cloud, from: u.from, to: u.to, version: r.version, error: type === "updated" ? null : r.lastError });
      }
    }
    if (JSON.stringify(d) !== before) this.#emit({ kind: "device", device: { ...d } });
  }

  #availableFor(d: FleetDevice): FleetDevice["available"] {
    if (d.version === null || trySemver(d.version) === undefined) return null;
    let best: { version: string; url: string } | null = null;
    for (const [version, m] of this.#releases) {
      const blob = m.get(d.cloud);
      if (blob === undefined || compareSemver(version, d.version) <= 0) continue;
      if (best === null || compareSemver(version, best.version) > 0) best = { version, url: blob.url };
    }
    return best;
  }

  #onBlob(b: BlobInfo, live: boolean): void {
    const r = releaseOfBlob(b.container, b.name);
    if (r === undefined) return;
    let m = this.#releases.get(r.version);
    if (m === undefined) { m = new Map(); this.#releases.set(r.version, m); }
    m.set(r.cloud, b);
    const devices: string[] = [];
    for (const copy of this.devices()) {
      const d = this.#devices.get(copy.id)!;
      d.available = this.#availableFor(d);
      if (d.cloud === r.cloud && d.available?.version === r.version) devices.push(d.id);
      if (JSON.stringify(d.available) !== JSON.stringify(copy.available)) this.#emit({ kind: "device", device: { ...d } });
    }
    if (live) this.#event({ type: "release-published", release: { version: r.version, cloud: r.cloud, name: b.name, url: b.url, size: b.size, devices } });
  }

  #event(e: Omit<FleetEvent, "seq" | "time">): void {
    const event: FleetEvent = { seq: ++this.#seq, time: new Date(this.#now()).toISOString(), ...e };
    this.#events.push(event);
    if (this.#events.length > this.#ringSize) this.#events.splice(0, this.#events.length - this.#ringSize);
    if (this.#file !== undefined) this.#append(this.#file, event);
    this.#log.log("info", "fleet.event", { seq: event.seq, type: event.type, deviceId: event.deviceId ?? null });
    this.#emit({ kind: "event", event });
    if (this.#webhook !== undefined) {
      this.#queue.push(event);
      if (this.#queue.length > this.#webhook.maxQueue) {
        this.#queue.splice(0, this.#queue.length - this.#webhook.maxQueue);
        this.#stats.dropped++;
      }
      void this.#deliver();
    }
  }

  #emit(c: FleetChange): void {
    for (const l of this.#listeners) {
      try {
        l(c);
      } catch (e) {
        this.#log.log("error", "fleet.listener-threw", { message: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  #append(file: string, event: FleetEvent): void {
    try {
      let size = 0;
      try { size = fs.statSync(file).size; } catch { size = 0; }
      if (size > MAX_EVENT_FILE_BYTES) fs.renameSync(file, `${file}.1`);
      fs.appendFileSync(file, JSON.stringify(event) + "\n", { mode: 0o600 });
    } catch (e) {
      this.#log.log("warn", "fleet.event-file-failed", { file, message: e instanceof Error ? e.message : String(e) });
    }
  }

  #load(file: string): void {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    let lines: string[];
    try {
      lines = fs.readFileSync(file, "utf8").split("\n");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
      throw e;
    }
    for (const line of lines) {
      if (line.length === 0) continue;
      let v: unknown;
      try { v = JSON.parse(line); } catch { continue; } // a torn last line after a kill
      if (typeof v !== "object" || v === null || typeof (v as FleetEvent).seq !== "number") continue;
      const e = v as FleetEvent;
      this.#events.push(e);
      this.#seq = Math.max(this.#seq, e.seq);
    }
    if (this.#events.length > this.#ringSize) this.#events.splice(0, this.#events.length - this.#ringSize);
  }

  // ---- the webhook ----------------------------------------------------------------------------------

  async #deliver(): Promise<void> {
    if (this.#delivering || this.#webhook === undefined) return;
    this.#delivering = true;
    try {
      while (!this.#closed && this.#queue.length > 0) {
        const event = this.#queue.shift()!;
        await this.#deliverOne(this.#webhook, event);
      }
    } finally {
      this.#delivering = false;
    }
  }

  async #deliverOne(w: CheckedWebhook, event: FleetEvent): Promise<void> {
    const body = JSON.stringify(event);
    for (let attempt = 1; attempt <= w.attempts && !this.#closed; attempt++) {
      let retry: boolean;
      const abort = new AbortController();
      this.#abort = abort;
      const timer = setTimeout(() => abort.abort(), w.timeoutMs);
      try {
        const headers: Record<string, string> = { "content-type": "application/json", "x-shadow-ota-event": event.type, "x-shadow-ota-delivery": `${event.seq}.${attempt}` };
        // Signed per try with the time of that try, so a retry an hour later is not refused as a replay.
        if (w.secret !== undefined) headers[WEBHOOK_SIGNATURE_HEADER] = webhookSignature(w.secret, body, Math.floor(this.#now() / 1000));
        const res = await fetch(w.url, { method: "POST", body, signal: abort.signal, redirect: "manual", headers });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) {
          this.#stats.delivered++;
          return;
        }
        this.#stats.lastError = `HTTP ${res.status}`;
        retry = res.status === 408 || res.status === 429 || res.status >= 500;
      } catch (e) {
        this.#stats.lastError = abort.signal.aborted ? (this.#closed ? "closed" : `no answer within ${w.timeoutMs} ms`) : e instanceof Error ? `${e.message}${e.cause instanceof Error ? `: ${e.cause.message}` : ""}` : String(e);
        retry = true;
      } finally {
        clearTimeout(timer);
        this.#abort = undefined;
      }
      this.#log.log("warn", "fleet.webhook.failed", { seq: event.seq, attempt, error: this.#stats.lastError, retry: retry && attempt < w.attempts });
      if (!retry || attempt === w.attempts || this.#closed) break;
      await new Promise<void>((wake) => {
        const timer = setTimeout(() => { this.#sleep = undefined; wake(); }, Math.min(MAX_BACKOFF_MS, w.backoffMs * 2 ** (attempt - 1)));
        timer.unref();
        this.#sleep = { timer, wake };
      });
    }
    this.#stats.failed++;
  }
}

type CheckedWebhook = Required<Omit<WebhookOptions, "secret">> & { secret: string | undefined };

/**
 * The signature header's value for `body` (the exact bytes POSTed, as a string) sent at `timestamp` (Unix
 * seconds): `t={timestamp},v1={hex HMAC-SHA256(secret, "{timestamp}.{body}")}` — Stripe's `Stripe-Signature`
 * scheme; signing the timestamp with the body lets a receiver refuse a replayed old request.
 */
export function webhookSignature(secret: string, body: string, timestamp: number): string {
  const mac = crypto.createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest("hex");
  return `t=${timestamp},v1=${mac}`;
}

/**
 * A receiver's check of a signed POST: true when `header` (the WEBHOOK_SIGNATURE_HEADER value) holds a
 * `v1` HMAC of `{t}.{body}` under `secret` (compared in constant time) and `t` is within `toleranceSeconds`
 * (default 300) of `nowSeconds`. `body` must be the raw bytes received, not re-serialized JSON.
 */
export function verifyWebhookSignature(secret: string, header: string | undefined, body: string | Uint8Array, nowSeconds: number, toleranceSeconds = DEFAULT_WEBHOOK_TOLERANCE_SECONDS): boolean {
  if (header === undefined) return false;
  let t: number | undefined;
  const macs: string[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    const [k, v] = [part.slice(0, eq).trim(), part.slice(eq + 1).trim()];
    if (k === "t" && /^[0-9]{1,15}$/.test(v)) t = Number(v);
    else if (k === "v1" && /^[0-9a-f]{64}$/.test(v)) macs.push(v);
  }
  if (t === undefined || macs.length === 0 || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = crypto.createHmac("sha256", secret).update(`${t}.`).update(body).digest();
  return macs.some((m) => crypto.timingSafeEqual(Buffer.from(m, "hex"), expected));
}

function checkWebhook(w: WebhookOptions): CheckedWebhook {
  let url: URL | undefined;
  try { url = new URL(w.url); } catch { url = undefined; }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new ShadowOtaError(FLEET_CODES.FLEET_WEBHOOK_URL_INVALID, `webhook URL ${JSON.stringify(String(w.url).slice(0, 200))} is not an absolute http: or https: URL`, { detail: { url: String(w.url).slice(0, 200) } });
  }
  const out = {
    url: url.href, attempts: w.attempts ?? DEFAULT_WEBHOOK_ATTEMPTS, backoffMs: w.backoffMs ?? DEFAULT_WEBHOOK_BACKOFF_MS,
    timeoutMs: w.timeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS, maxQueue: w.maxQueue ?? DEFAULT_WEBHOOK_MAX_QUEUE, secret: w.secret,
  };
  if (out.secret !== undefined && (typeof out.secret !== "string" || out.secret.length === 0 || Buffer.byteLength(out.secret) > MAX_SECRET_BYTES)) {
    throw new ShadowOtaError(FLEET_CODES.FLEET_WEBHOOK_OPTION_INVALID, `webhook secret must be a string of 1..${MAX_SECRET_BYTES} UTF-8 bytes`, { detail: { option: "secret" } });
  }
  const bad = (name: string, v: number, lo: number, hi: number): void => {
    if (!Number.isSafeInteger(v) || v < lo || v > hi) {
      throw new ShadowOtaError(FLEET_CODES.FLEET_WEBHOOK_OPTION_INVALID, `webhook ${name} must be an integer in ${lo}..${hi}, not ${String(v)}`, { detail: { option: name } });
    }
  };
  bad("attempts", out.attempts, 1, 20);
  bad("backoffMs", out.backoffMs, 1, 60_000);
  bad("timeoutMs", out.timeoutMs, 1, 120_000);
  bad("maxQueue", out.maxQueue, 1, 1_000_000);
  return out;
}
