/**
 * In-memory fakes of the ports for core tests (pure TypeScript, no Node imports, so they run on XS too):
 * - FakeMqtt: a transport where the test plays the cloud — it records subscriptions and publishes,
 *   injects messages, triggers connect/disconnect and can make publishes fail.
 * - MemoryKv: a KeyValueStore that enforces the NVS limits (keys <= 15 characters, values <= KV_VALUE_MAX_BYTES = 3999 bytes, as NVS with its NUL).
 * - ManualClock: time moves only when the test calls `advance`.
 * - MemoryLog: keeps the log lines for assertions.
 * Plus `settle()`, which lets queued promise callbacks run (bounded).
 * Not here: timing realism; nothing in here sleeps or reads the real clock.
 */
import { ShadowOtaError } from "../../src/core/errors";
import { KV_VALUE_MAX_BYTES } from "../../src/core/shadow-sync";
import { utf8Decode, utf8Encode } from "../../src/core/utf8";
import type { Clock } from "../../src/ports/clock";
import type { KeyValueStore } from "../../src/ports/kv-store";
import type { Log, LogLevel } from "../../src/ports/log";
import type { MqttTransport, MqttTransportEvents } from "../../src/ports/mqtt-transport";

export interface Published {
  topic: string;
  payload: string;
  qos: 0 | 1 | undefined;
}

export class FakeMqtt implements MqttTransport {
  handlers: MqttTransportEvents | undefined;
  started = false;
  connected = false;
  closed = 0;
  /** Every SUBSCRIBE, in order. */
  subscribed: string[][] = [];
  /** Every publish the core made, in order (payloads decoded as UTF-8). */
  published: Published[] = [];
  /** When set, publishes reject with this error (the message is not recorded). */
  failPublishes: ShadowOtaError | undefined;
  #taken = 0;

  setHandlers(handlers: MqttTransportEvents): void {
    if (this.handlers !== undefined) throw new Error("setHandlers called twice");
    this.handlers = handlers;
  }
  start(): void { this.started = true; }
  subscribe(topics: readonly string[]): Promise<void> {
    if (!this.connected) return Promise.reject(new ShadowOtaError("SYNC_NOT_CONNECTED", "fake: not connected"));
    this.subscribed.push(topics.slice());
    return Promise.resolve();
  }
  publish(topic: string, payload: string | Uint8Array, qos?: 0 | 1): Promise<void> {
    if (!this.connected) return Promise.reject(new ShadowOtaError("SYNC_NOT_CONNECTED", "fake: not connected"));
    if (this.failPublishes !== undefined) return Promise.reject(this.failPublishes);
    this.published.push({ topic, payload: typeof payload === "string" ? payload : utf8Decode(payload), qos });
    return Promise.resolve();
  }
  close(): Promise<void> { this.closed++; this.connected = false; return Promise.resolve(); }

  // --- the test's side -----------------------------------------------------------------------------------
  connect(): void {
    this.connected = true;
    this.handlers!.connected();
  }
  disconnect(reason: Error = new ShadowOtaError("SYNC_TRANSPORT", "fake: connection lost")): void {
    this.connected = false;
    this.handlers!.disconnected(reason);
  }
  /** Delivers a message as the broker would (a string payload is sent as UTF-8). */
  deliver(topic: string, payload: string | Uint8Array | object): void {
    const bytes = payload instanceof Uint8Array ? payload : utf8Encode(typeof payload === "string" ? payload : JSON.stringify(payload));
    this.handlers!.message(topic, bytes);
  }
  /** The publishes since the previous `take`. */
  take(): Published[] {
    const out = this.published.slice(this.#taken);
    this.#taken = this.published.length;
    return out;
  }
  /** The last publish, its payload parsed as JSON (undefined for an empty payload). */
  last(): { topic: string; json: any } {
    const p = this.published[this.published.length - 1];
    if (p === undefined) throw new Error("nothing published");
    return { topic: p.topic, json: p.payload === "" ? undefined : JSON.parse(p.payload) };
  }
}

export class MemoryKv implements KeyValueStore {
  readonly data = new Map<string, string>();
  writes = 0;
  get(key: string): string | undefined { return this.data.get(key); }
  set(key: string, value: string): void {
    if (key.length > 15) throw new Error(`fake NVS: key ${key} longer than 15 characters`);
    if (utf8Encode(value).length > KV_VALUE_MAX_BYTES) throw new Error(`fake NVS: value for ${key} longer than ${KV_VALUE_MAX_BYTES} bytes`);
    this.writes++;
    this.data.set(key, value);
  }
  delete(key: string): void { this.data.delete(key); }
}

export class ManualClock implements Clock {
  now = 0;
  #next = 1;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  monotonicMs(): number { return this.now; }
  epochSeconds(): number { return 1700000000 + Math.floor(this.now / 1000); }
  setTimer(ms: number, fn: () => void): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  cancel(handle: unknown): void { this.#timers.delete(handle as number); }
  get pending(): number { return this.#timers.size; }
  /** Moves time forward, firing due timers in time order (at most 1000 of them). */
  advance(ms: number): void {
    const end = this.now + ms;
    for (let fired = 0; fired < 1000; fired++) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#timers) if (e[1].at <= end && (due === undefined || e[1].at < due[1].at)) due = e;
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = end;
  }
}

export class MemoryLog implements Log {
  readonly lines: Array<{ level: LogLevel; event: string; fields?: Record<string, unknown> }> = [];
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void {
    this.lines.push(fields === undefined ? { level, event } : { level, event, fields });
  }
  has(event: string): boolean { return this.lines.some((l) => l.event === event); }
}

/** Lets pending promise callbacks run (a bounded number of microtask turns). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Follows a report() promise: `result` becomes "resolved" or the rejection's code, `error` the rejection. */
export function track(p: Promise<void>): { result?: string; error?: ShadowOtaError } {
  const out: { result?: string; error?: ShadowOtaError } = {};
  p.then(() => { out.result = "resolved"; }, (e: ShadowOtaError) => { out.result = e.code; out.error = e; });
  return out;
}
