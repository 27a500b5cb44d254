/**
 * Mirrors the device's log lines to its cloud: each line at or above a configured level becomes one
 * JSON message with the device's free heap and used bytes, sent as
 * - AWS IoT: an ordinary MQTT topic `{prefix}/things/{thing}/logs` (the AWS seed's shape). Topics starting
 *   with `$` are reserved by AWS IoT (`$aws/...`), so the prefix may not start with `$`; AWS also caps a
 *   topic at 256 bytes and 7 forward slashes ("AWS IoT Core message broker and protocol limits and
 *   quotas"), which the prefix is checked against. The device's IoT policy must allow iot:Publish on it.
 * - Azure IoT Hub: device-to-cloud telemetry on `devices/{deviceId}/messages/events/{property_bag}`
 *   ("Communicate with an IoT hub using the MQTT protocol"): the bag carries the system properties
 *   `$.ct=application%2Fjson` and `$.ce=utf-8` (so routing queries can read the JSON body) and the
 *   application properties `kind` (log | health) and `level`, each RFC 2396-encoded.
 * Both clouds cap one message (AWS 128 KB, IoT Hub 256 KB); a line here is far below: its `message` is cut
 * to `maxMessageChars` (at most 4096), and a line over the cloud's limit would be dropped, never sent.
 *
 * The line (every member always present unless said):
 *   {"timestamp": ISO-8601 from the wall clock, or null before it is set (epoch < 2001),
 *    "uptimeMs", "seq" (per boot), "level", "kind": "log" | "health", "event", "message" (event + fields as
 *    JSON, cut), "thingName", "freeHeap", "usedBytes" (bytes or null),
 *    "dropped" and "droppedBy" {offline, rateLimited, busy, failed}: only when lines were dropped since the
 *    previous line sent — the count of those lines, so nothing is lost silently,
 *    health lines also: "reconnects", "ota" (state), "otaError" (code or null), "largestFreeBlock" when the
 *    platform tells it}
 *
 * Policy (nothing here ever queues a line: memory stays bounded whatever the link does):
 * - Rate: a token bucket of `burst` tokens refilled at `ratePerMin` per minute on the Clock port's
 *   monotonic time; a line without a token is dropped and counted (`rateLimited`).
 * - Offline (between `disconnected` and `connected` of the transport, and before the first connect): lines
 *   are dropped and counted (`offline`). On reconnect, when lines were dropped, one `log-mirror.dropped`
 *   line (level warn) says how many at once, taking a token like any line.
 * - At most `maxInFlight` publishes pending; more are dropped and counted (`busy`). A publish that fails
 *   counts its line (and the drops it carried) as dropped again (`failed`).
 * - Health: every `healthEveryMs` a `device.health` line (level info, whatever `minLevel`; it takes no
 *   token, so a chatty device still reports its health; offline it is dropped and counted).
 * - The mirror never logs through itself: its own diagnostics go to the inner log only, and a line it
 *   cannot build or send never throws into the caller.
 *
 * Platform-neutral: no timers or clock reads of its own (Clock port), memory from the HeapProbe port,
 * messages through the MqttTransport port (QoS 0: best effort, as logs should be; both clouds accept it).
 * `LogMirror.watch(transport)` wraps the transport the sync uses so the mirror sees connects and drops.
 * Not here: the cloud side (src/sim/log-service.ts), adapters, the device configuration keys.
 */
import type { CloudKind } from "./cloud-protocol";
import { ShadowOtaError } from "./errors";
import { utf8Encode } from "./utf8";
import type { Clock } from "../ports/clock";
import type { HeapProbe } from "../ports/heap-probe";
import type { Log, LogLevel } from "../ports/log";
import type { MqttTransport, MqttTransportEvents } from "../ports/mqtt-transport";

/** Stable codes of the log mirror (a contract). */
export const LOG_CODES = {
  /** A log mirror setting is out of range (level, rate, burst, health period, topic prefix, thing name,
   *  message length, in-flight bound). `detail`: {key, value}. */
  LOG_CONFIG_INVALID: "LOG_CONFIG_INVALID",
} as const;

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

/** The clouds' limits this module respects (see the header). */
export const LOG_LIMITS = {
  /** AWS IoT Core: largest message payload. */
  AWS_MAX_PAYLOAD_BYTES: 128 * 1024,
  /** Azure IoT Hub: largest device-to-cloud message. */
  AZURE_MAX_PAYLOAD_BYTES: 256 * 1024,
  /** AWS IoT Core: longest topic in bytes, most forward slashes in a topic. */
  AWS_MAX_TOPIC_BYTES: 256,
  AWS_MAX_TOPIC_SLASHES: 7,
  /** Longest `message` a line may be configured to carry. */
  MAX_MESSAGE_CHARS: 4096,
} as const;

export const DEFAULT_LOG_TOPIC_PREFIX = "shadow-ota";
export const DEFAULT_LOG_MIN_LEVEL: LogLevel = "warn";
export const DEFAULT_LOG_RATE_PER_MIN = 30;
export const DEFAULT_LOG_BURST = 10;
export const DEFAULT_HEALTH_EVERY_MS = 300_000;
export const DEFAULT_MAX_MESSAGE_CHARS = 512;
export const DEFAULT_MAX_IN_FLIGHT = 16;
/** Shortest health period (0 turns health lines off). */
export const MIN_HEALTH_EVERY_MS = 1_000;

export interface LogMirrorConfig {
  cloud: CloudKind;
  /** AWS thing name / Azure device id (also the topic's). */
  thingName: string;
  /** Lowest level mirrored. Default "warn". */
  minLevel?: LogLevel;
  /** Token refill, lines per minute: 1..6000. Default 30. */
  ratePerMin?: number;
  /** Bucket size (lines sent at once after a quiet spell): 1..1000. Default min(10, ratePerMin). */
  burst?: number;
  /** Health line period in ms; 0 = none, else at least 1000. Default 300,000. */
  healthEveryMs?: number;
  /** AWS topic prefix: 1..64 characters of [A-Za-z0-9_-] in at most 5 slash-separated levels (AWS: 7 slashes a topic), not
   *  starting with `$`. Default "shadow-ota". Ignored for Azure. */
  topicPrefix?: string;
  /** `message` cut to this many characters: 16..4096. Default 512. */
  maxMessageChars?: number;
  /** Publishes pending at once: 1..64. Default 16. */
  maxInFlight?: number;
}

export type ResolvedLogMirrorConfig = Required<LogMirrorConfig>;

/** What the health line says about the rest of the device (DeviceApp fills it in). */
export interface HealthInfo {
  ota?: string;
  otaError?: string | null;
}

export interface LogMirrorPorts {
  clock: Clock;
  heap: HeapProbe;
  /** Where every line also goes, unfiltered (the console / trace). */
  log: Log;
  /** Only `publish` is used; connection state comes through `watch`. */
  mqtt: Pick<MqttTransport, "publish">;
  /** The health line's device facts. */
  health?: () => HealthInfo;
}

export type DropReason = "offline" | "rateLimited" | "busy" | "failed";

function invalid(key: string, value: unknown, why: string): ShadowOtaError {
  const shown = typeof value === "string" ? value.slice(0, 64) : typeof value === "number" ? value : typeof value;
  return new ShadowOtaError(LOG_CODES.LOG_CONFIG_INVALID, `log mirror: ${key} ${why}`, { detail: { key, value: shown } });
}

function intIn(key: string, v: unknown, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw invalid(key, v, `must be an integer ${min}..${max}`);
  return v;
}

const PREFIX = /^[A-Za-z0-9_-]{1,64}(?:\/[A-Za-z0-9_-]{1,64}){0,4}$/;
/** AWS thing names and IoT Hub device ids that can stand in a topic level (no '/', '+', '#', controls). */
const THING = /^[A-Za-z0-9:_.@=,()!*'%$-]{1,128}$/;

/** The topic a line goes to: AWS `{prefix}/things/{thing}/logs`; Azure the telemetry topic with its bag. */
export function logTopic(c: Pick<ResolvedLogMirrorConfig, "cloud" | "thingName" | "topicPrefix">, kind: "log" | "health" = "log", level: LogLevel = "info"): string {
  if (c.cloud === "aws") return `${c.topicPrefix}/things/${c.thingName}/logs`;
  const bag = `$.ct=${encodeURIComponent("application/json")}&$.ce=utf-8&kind=${kind}&level=${level}`;
  return `devices/${c.thingName}/messages/events/${bag}`;
}

/** Validates and fills in the defaults. Throws LOG_CONFIG_INVALID with `detail.key`. */
export function resolveLogMirrorConfig(c: LogMirrorConfig): ResolvedLogMirrorConfig {
  if (c.cloud !== "aws" && c.cloud !== "azure") throw invalid("cloud", c.cloud, 'must be "aws" or "azure"');
  if (typeof c.thingName !== "string" || !THING.test(c.thingName)) throw invalid("thingName", c.thingName, "must be 1..128 characters a topic level can hold (no '/', '+', '#')");
  const minLevel = c.minLevel ?? DEFAULT_LOG_MIN_LEVEL;
  if (!LOG_LEVELS.includes(minLevel)) throw invalid("minLevel", minLevel, `must be one of ${LOG_LEVELS.join(", ")}`);
  const ratePerMin = intIn("ratePerMin", c.ratePerMin, DEFAULT_LOG_RATE_PER_MIN, 1, 6000);
  const burst = intIn("burst", c.burst, Math.min(DEFAULT_LOG_BURST, ratePerMin), 1, 1000);
  const healthEveryMs = intIn("healthEveryMs", c.healthEveryMs, DEFAULT_HEALTH_EVERY_MS, 0, 86_400_000);
  if (healthEveryMs !== 0 && healthEveryMs < MIN_HEALTH_EVERY_MS) throw invalid("healthEveryMs", healthEveryMs, `must be 0 (off) or at least ${MIN_HEALTH_EVERY_MS}`);
  const topicPrefix = c.topicPrefix ?? DEFAULT_LOG_TOPIC_PREFIX;
  if (typeof topicPrefix !== "string" || !PREFIX.test(topicPrefix)) {
    throw invalid("topicPrefix", topicPrefix, "must be 1..5 levels of [A-Za-z0-9_-] (not starting with '$': AWS reserves those topics)");
  }
  const maxMessageChars = intIn("maxMessageChars", c.maxMessageChars, DEFAULT_MAX_MESSAGE_CHARS, 16, LOG_LIMITS.MAX_MESSAGE_CHARS);
  const maxInFlight = intIn("maxInFlight", c.maxInFlight, DEFAULT_MAX_IN_FLIGHT, 1, 64);
  const out: ResolvedLogMirrorConfig = { cloud: c.cloud, thingName: c.thingName, minLevel, ratePerMin, burst, healthEveryMs, topicPrefix, maxMessageChars, maxInFlight };
  if (c.cloud === "aws") {
    const topic = logTopic(out);
    if (utf8Encode(topic).length > LOG_LIMITS.AWS_MAX_TOPIC_BYTES || topic.split("/").length - 1 > LOG_LIMITS.AWS_MAX_TOPIC_SLASHES) {
      throw invalid("topicPrefix", topicPrefix, `makes a topic over AWS's ${LOG_LIMITS.AWS_MAX_TOPIC_BYTES} bytes or ${LOG_LIMITS.AWS_MAX_TOPIC_SLASHES} slashes`);
    }
  }
  return out;
}

/**
 * A token bucket in whole numbers: one token is 60,000 units, each elapsed millisecond adds `ratePerMin`
 * units, the bucket holds `burst` tokens. Starts full. Time that goes backwards adds nothing.
 */
export class TokenBucket {
  #units: number;
  #at: number;
  constructor(readonly ratePerMin: number, readonly burst: number, nowMs: number) {
    this.#units = burst * 60_000;
    this.#at = nowMs;
  }
  /** Whole tokens available at `nowMs`. */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return Math.floor(this.#units / 60_000);
  }
  /** Takes one token when there is one. */
  take(nowMs: number): boolean {
    this.#refill(nowMs);
    if (this.#units < 60_000) return false;
    this.#units -= 60_000;
    return true;
  }
  #refill(nowMs: number): void {
    const elapsed = nowMs - this.#at;
    if (elapsed <= 0) return;
    this.#at = nowMs;
    this.#units = Math.min(this.burst * 60_000, this.#units + elapsed * this.ratePerMin);
  }
}

/** `event {fields}` as one line, cut to `max` characters (a cut line ends with "…"). */
export function formatMessage(event: string, fields: Record<string, unknown> | undefined, max: number): string {
  let text = event;
  if (fields !== undefined) {
    let json: string;
    try {
      json = JSON.stringify(fields) ?? "";
    } catch {
      json = "[unprintable]";
    }
    text += " " + json;
  }
  return text.length <= max ? text : text.slice(0, max - 1) + "…";
}

/** Wall-clock timestamp or null before the clock is set (SNTP not yet done). */
function timestampOf(epochSeconds: number): string | null {
  return epochSeconds >= 978_307_200 ? new Date(epochSeconds * 1000).toISOString() : null; // 2001-01-01
}

function bytesOrNull(v: number | undefined): number | null {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : null;
}

export interface LogMirrorStats {
  /** Lines handed to the transport that it accepted. */
  sent: number;
  /** Lines dropped since the last line sent (what the next line will say). */
  pendingDropped: number;
  /** Every line dropped, by reason, since boot. */
  droppedBy: Record<DropReason, number>;
  reconnects: number;
  online: boolean;
}

export class LogMirror implements Log {
  readonly config: ResolvedLogMirrorConfig;
  readonly #ports: LogMirrorPorts;
  readonly #bucket: TokenBucket;
  readonly #startMs: number;
  #online = false;
  #connects = 0;
  #seq = 0;
  #inFlight = 0;
  #sent = 0;
  #pending: Record<DropReason, number> = { offline: 0, rateLimited: 0, busy: 0, failed: 0 };
  readonly #total: Record<DropReason, number> = { offline: 0, rateLimited: 0, busy: 0, failed: 0 };
  #timer: unknown;
  #closed = false;

  /** Throws LOG_CONFIG_INVALID. Starts offline; `start()` arms the health timer. */
  constructor(ports: LogMirrorPorts, config: LogMirrorConfig) {
    this.config = resolveLogMirrorConfig(config);
    this.#ports = ports;
    this.#startMs = ports.clock.monotonicMs();
    this.#bucket = new TokenBucket(this.config.ratePerMin, this.config.burst, this.#startMs);
  }

  /** The Log port: always to the inner log; mirrored when at or above `minLevel`. Never throws. */
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void {
    this.#ports.log.log(level, event, fields);
    if (this.#closed || RANK[level] === undefined || RANK[level] < RANK[this.config.minLevel]) return;
    this.#emit(level, "log", event, fields, true);
  }

  /**
   * Wraps the transport the sync uses: everything passes through, and the mirror learns of each
   * `connected` and `disconnected` (before the sync does, so lines the sync logs on connect can be sent).
   */
  watch(inner: MqttTransport): MqttTransport {
    const onChange = (up: boolean): void => this.#setOnline(up);
    return {
      setHandlers(h: MqttTransportEvents): void {
        inner.setHandlers({
          connected: () => { onChange(true); h.connected(); },
          disconnected: (reason) => { onChange(false); h.disconnected(reason); },
          message: (topic, payload) => h.message(topic, payload),
        });
      },
      start: () => inner.start(),
      subscribe: (topics) => inner.subscribe(topics),
      publish: (topic, payload, qos) => inner.publish(topic, payload, qos),
      close: () => inner.close(),
    };
  }

  /** Arms the periodic health line (when `healthEveryMs` > 0). */
  start(): void {
    if (this.#closed || this.config.healthEveryMs === 0 || this.#timer !== undefined) return;
    const arm = (): void => {
      this.#timer = this.#ports.clock.setTimer(this.config.healthEveryMs, () => {
        this.#timer = undefined;
        if (this.#closed) return;
        this.health();
        arm();
      });
    };
    arm();
  }

  /** Sends a health line now (dropped and counted when offline). */
  health(): void {
    if (this.#closed) return;
    let info: HealthInfo = {};
    try {
      info = this.#ports.health?.() ?? {};
    } catch (e) {
      this.#ports.log.log("warn", "log-mirror.health-failed", { message: e instanceof Error ? e.message : String(e) });
    }
    const extra: Record<string, unknown> = {
      reconnects: Math.max(0, this.#connects - 1),
      ota: info.ota ?? null,
      otaError: info.otaError ?? null,
    };
    this.#emit("info", "health", "device.health", undefined, false, extra);
  }

  get stats(): LogMirrorStats {
    return {
      sent: this.#sent, pendingDropped: this.#pendingCount(), droppedBy: { ...this.#total },
      reconnects: Math.max(0, this.#connects - 1), online: this.#online,
    };
  }

  /** Stops the health timer; later lines go to the inner log only. Safe twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#ports.clock.cancel(this.#timer);
    this.#timer = undefined;
  }

  #setOnline(up: boolean): void {
    if (up === this.#online) return;
    this.#online = up;
    if (!up) return;
    this.#connects++;
    const n = this.#pendingCount();
    if (n > 0 && !this.#closed) this.#emit("warn", "log", "log-mirror.dropped", { dropped: n }, true);
  }

  #pendingCount(): number {
    const p = this.#pending;
    return p.offline + p.rateLimited + p.busy + p.failed;
  }

  #drop(reason: DropReason, carried?: Record<DropReason, number>): void {
    if (carried !== undefined) for (const k of Object.keys(carried) as DropReason[]) this.#pending[k] += carried[k];
    this.#pending[reason]++;
    this.#total[reason]++;
  }

  #emit(level: LogLevel, kind: "log" | "health", event: string, fields: Record<string, unknown> | undefined, limited: boolean, extra?: Record<string, unknown>): void {
    try {
      const now = this.#ports.clock.monotonicMs();
      if (!this.#online) { this.#drop("offline"); return; }
      if (this.#inFlight >= this.config.maxInFlight) { this.#drop("busy"); return; }
      if (limited && !this.#bucket.take(now)) { this.#drop("rateLimited"); return; }
      const heap = this.#ports.heap.sample();
      const line: Record<string, unknown> = {
        timestamp: timestampOf(this.#ports.clock.epochSeconds()),
        uptimeMs: Math.max(0, now - this.#startMs),
        seq: ++this.#seq,
        level,
        kind,
        event,
        message: formatMessage(event, fields, this.config.maxMessageChars),
        thingName: this.config.thingName,
        freeHeap: bytesOrNull(heap.freeHeap),
        usedBytes: bytesOrNull(heap.usedBytes),
      };
      const carried = this.#pending;
      const dropped = this.#pendingCount();
      if (dropped > 0) {
        line["dropped"] = dropped;
        line["droppedBy"] = { ...carried };
      }
      if (extra !== undefined) {
        for (const k of Object.keys(extra)) line[k] = extra[k];
        const largest = bytesOrNull(heap.largestFreeBlock);
        if (largest !== null) line["largestFreeBlock"] = largest;
      }
      const payload = JSON.stringify(line);
      const limit = this.config.cloud === "aws" ? LOG_LIMITS.AWS_MAX_PAYLOAD_BYTES : LOG_LIMITS.AZURE_MAX_PAYLOAD_BYTES;
      if (utf8Encode(payload).length > limit) { this.#drop("failed"); return; } // cannot happen with maxMessageChars <= 4096
      this.#pending = { offline: 0, rateLimited: 0, busy: 0, failed: 0 };
      this.#inFlight++;
      this.#ports.mqtt.publish(logTopic(this.config, kind, level), payload, 0).then(
        () => { this.#inFlight--; this.#sent++; },
        (e: unknown) => {
          this.#inFlight--;
          this.#drop("failed", carried);
          this.#ports.log.log("debug", "log-mirror.publish-failed", { seq: line["seq"] as number, message: e instanceof Error ? e.message : String(e) });
        });
    } catch (e) {
      this.#drop("failed");
      this.#ports.log.log("warn", "log-mirror.failed", { event, message: e instanceof Error ? e.message : String(e) });
    }
  }
}
