/**
 * The local cloud's device log service: records the log lines devices mirror to their cloud
 * (src/core/log-mirror.ts) and lets the admin API and the CLI tail them.
 *
 * What it hears, as an MQTT client of the local broker (the service identity may read every topic):
 * - AWS: `shadow-ota/things/{thing}/logs` (the broker lets a device publish only on its own);
 * - Azure: `devices/{deviceId}/messages/events/{property bag}`, IoT Hub's device-to-cloud telemetry, on the
 *   shared aedes broker or on each Azure device's own mosquitto instance (`attachLink`). Telemetry whose
 *   bag does not say `kind=log` or `kind=health` is another application's and is not recorded.
 *
 * What it keeps, bounded whatever devices send:
 * - per device a ring of the last `ringSize` lines (default 1000), each with a cloud-side sequence number
 *   (`cloudSeq`, from 1, never reused while the service runs, so a tail can resume with `after`), the time
 *   it arrived and the device's own JSON line; a payload over `maxLineBytes` (default 16 KiB: a device's
 *   lines are at most about 5 KB) or that is not a JSON object is recorded as a short stand-in saying so;
 * - optionally a file per device, `{dir}/{deviceId}.jsonl`, one record a line, moved to `.jsonl.1` (the
 *   previous one dropped) when it passes `maxFileBytes` (default 1 MiB).
 *
 * Not here: authorization (the broker's ACL, broker-policy.ts), what the device sends (log-mirror.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { MqttClient } from "mqtt";
import type { CloudKind } from "../core/cloud-protocol";
import { ShadowOtaError } from "../core/errors";
import { DEFAULT_LOG_TOPIC_PREFIX } from "../core/log-mirror";
import { isJsonObject, type Json, type JsonObject } from "../core/json";
import { silentLog, type Log } from "../ports/log";
import { CLOUD_CODES } from "./cloud-errors";
import { PKI_NAME_PATTERN } from "./pki";
import { subscribeChecked } from "./service-link";

/** What the service subscribes to on a shared broker. */
export const LOG_SUBSCRIPTIONS: readonly string[] = [`${DEFAULT_LOG_TOPIC_PREFIX}/things/+/logs`, "devices/+/messages/events/#"];

export const DEFAULT_LOG_RING_SIZE = 1000;
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;
export const DEFAULT_MAX_LOG_FILE_BYTES = 1024 * 1024;
/** Most lines one tail returns. */
export const MAX_TAIL_LIMIT = 1000;

export interface LogRecord {
  /** The cloud's sequence number for this device's lines (from 1). */
  cloudSeq: number;
  /** ISO-8601, when the cloud received it. */
  receivedAt: string;
  deviceId: string;
  cloud: CloudKind;
  /** The device's line (log-mirror.ts), or a stand-in {invalid, bytes, message} for a payload it could not take. */
  line: JsonObject;
}

export interface LogServiceOptions {
  ringSize?: number;
  maxLineBytes?: number;
  /** Write `{dir}/{deviceId}.jsonl` too. */
  dir?: string;
  maxFileBytes?: number;
  log?: Log;
  /** Wall clock for `receivedAt` (default Date.now). */
  now?: () => number;
}

/** Which device and cloud a received topic belongs to, or undefined when it is no log line. */
export function classifyLogTopic(topic: string): { deviceId: string; cloud: CloudKind } | undefined {
  const aws = /^([^/]+(?:\/[^/]+)*)\/things\/([^/]+)\/logs$/.exec(topic);
  if (aws !== null && aws[1] === DEFAULT_LOG_TOPIC_PREFIX) return { deviceId: aws[2]!, cloud: "aws" };
  const az = /^devices\/([^/]+)\/messages\/events\/(.*)$/.exec(topic);
  if (az === null) return undefined;
  const props = new Map<string, string>();
  for (const pair of az[2]!.split("&")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) continue;
    try {
      props.set(decodeURIComponent(pair.slice(0, eq)), decodeURIComponent(pair.slice(eq + 1)));
    } catch {
      return undefined; // a malformed escape: not one of ours
    }
  }
  const kind = props.get("kind");
  return kind === "log" || kind === "health" ? { deviceId: az[1]!, cloud: "azure" } : undefined;
}

export class LogService {
  readonly #ring = new Map<string, { records: LogRecord[]; next: number }>();
  readonly #ringSize: number;
  readonly #maxLineBytes: number;
  readonly #dir: string | undefined;
  readonly #maxFileBytes: number;
  readonly #log: Log;
  readonly #now: () => number;
  readonly #links: Array<{ client: MqttClient; listener: (topic: string, payload: Buffer) => void; topics: readonly string[] }> = [];
  #closed = false;

  private constructor(o: LogServiceOptions) {
    this.#ringSize = o.ringSize ?? DEFAULT_LOG_RING_SIZE;
    this.#maxLineBytes = o.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#dir = o.dir;
    this.#maxFileBytes = o.maxFileBytes ?? DEFAULT_MAX_LOG_FILE_BYTES;
    this.#log = o.log ?? silentLog;
    this.#now = o.now ?? Date.now;
    if (!Number.isSafeInteger(this.#ringSize) || this.#ringSize < 1) throw new RangeError("LogService: ringSize must be a positive integer");
    if (this.#dir !== undefined) fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
  }

  /** Starts the service; with `shared` (a connected service client) it subscribes LOG_SUBSCRIPTIONS there. */
  static async start(shared: MqttClient | null, options: LogServiceOptions = {}): Promise<LogService> {
    const s = new LogService(options);
    if (shared !== null) await s.#attach(shared, LOG_SUBSCRIPTIONS, undefined);
    return s;
  }

  /** Hears one Azure device's telemetry on its own broker (mosquitto: one instance per Azure device). */
  async attachLink(deviceId: string, client: MqttClient): Promise<void> {
    await this.#attach(client, [`devices/${deviceId}/messages/events/#`], deviceId);
  }

  /**
   * The device's recorded lines with `cloudSeq` > `after` (default 0), oldest first, at most `limit`
   * (default and maximum 1000); `next` is the `after` to ask with next time; `missed` counts lines that
   * left the ring before this tail could see them.
   */
  tail(deviceId: string, options: { after?: number; limit?: number } = {}): { deviceId: string; lines: LogRecord[]; next: number; missed: number } {
    const after = options.after ?? 0;
    const limit = Math.min(options.limit ?? MAX_TAIL_LIMIT, MAX_TAIL_LIMIT);
    const r = this.#ring.get(deviceId);
    if (r === undefined) return { deviceId, lines: [], next: after, missed: 0 };
    const first = r.records[0]?.cloudSeq ?? r.next;
    const missed = Math.max(0, first - after - 1);
    const lines = r.records.filter((x) => x.cloudSeq > after).slice(0, limit);
    return { deviceId, lines, next: lines.length > 0 ? lines[lines.length - 1]!.cloudSeq : Math.max(after, 0), missed };
  }

  /** Devices that sent at least one line. */
  devices(): string[] {
    return [...this.#ring.keys()];
  }

  /** Stops listening (unsubscribes where connected). Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const l of this.#links.splice(0)) {
      l.client.removeListener("message", l.listener);
      if (l.client.connected) await l.client.unsubscribeAsync(l.topics.slice()).catch(() => undefined);
    }
  }

  async #attach(client: MqttClient, topics: readonly string[], only: string | undefined): Promise<void> {
    if (this.#closed) throw new ShadowOtaError(CLOUD_CODES.CLOUD_SERVICE_CLOSED, "the log service is closed");
    const listener = (topic: string, payload: Buffer): void => {
      const c = classifyLogTopic(topic);
      // The id names a file: only certificate names (the broker's ACL admits no other publisher anyway).
      if (c === undefined || (only !== undefined && c.deviceId !== only) || !PKI_NAME_PATTERN.test(c.deviceId)) return;
      try {
        this.#record(c.deviceId, c.cloud, payload);
      } catch (e) {
        this.#log.log("error", "cloud.logs.record-failed", { deviceId: c.deviceId, message: e instanceof Error ? e.message : String(e) });
      }
    };
    client.on("message", listener);
    try {
      await subscribeChecked(client, topics, 0);
    } catch (e) {
      client.removeListener("message", listener);
      throw e;
    }
    this.#links.push({ client, listener, topics });
  }

  #record(deviceId: string, cloud: CloudKind, payload: Buffer): void {
    let line: JsonObject;
    if (payload.length > this.#maxLineBytes) {
      line = { invalid: "too-large", bytes: payload.length, message: payload.subarray(0, 200).toString("utf8") };
    } else {
      let v: Json | undefined;
      try {
        v = JSON.parse(payload.toString("utf8")) as Json;
      } catch {
        v = undefined;
      }
      line = v !== undefined && isJsonObject(v) ? v : { invalid: "not-a-json-object", bytes: payload.length, message: payload.subarray(0, 200).toString("utf8") };
    }
    if (line["invalid"] !== undefined) this.#log.log("warn", "cloud.logs.invalid-line", { deviceId, reason: String(line["invalid"]), bytes: payload.length });
    let r = this.#ring.get(deviceId);
    if (r === undefined) { r = { records: [], next: 1 }; this.#ring.set(deviceId, r); }
    const record: LogRecord = { cloudSeq: r.next++, receivedAt: new Date(this.#now()).toISOString(), deviceId, cloud, line };
    r.records.push(record);
    if (r.records.length > this.#ringSize) r.records.splice(0, r.records.length - this.#ringSize);
    if (this.#dir !== undefined) this.#append(deviceId, record);
  }

  #append(deviceId: string, record: LogRecord): void {
    const file = path.join(this.#dir!, `${deviceId}.jsonl`);
    let size = 0;
    try {
      size = fs.statSync(file).size;
    } catch {
      size = 0;
    }
    if (size > this.#maxFileBytes) fs.renameSync(file, `${file}.1`);
    fs.appendFileSync(file, JSON.stringify(record) + "\n", { mode: 0o600 });
  }
}

/** One record as a terminal line: `receivedAt device LEVEL message [free F used U] [dropped N]`. */
export function formatLogRecord(r: LogRecord): string {
  const l = r.line;
  const level = typeof l["level"] === "string" ? l["level"].toUpperCase() : "?";
  const message = typeof l["message"] === "string" ? l["message"] : JSON.stringify(l);
  const heap = typeof l["freeHeap"] === "number" || typeof l["usedBytes"] === "number" ? ` [free ${String(l["freeHeap"])} used ${String(l["usedBytes"])}]` : "";
  const dropped = typeof l["dropped"] === "number" ? ` [dropped ${l["dropped"]}]` : "";
  return `${r.receivedAt} ${r.deviceId} ${level.padEnd(5)} ${message}${heap}${dropped}`;
}
