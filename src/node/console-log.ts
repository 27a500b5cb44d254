/**
 * Log (src/ports/log.ts) as JSON lines: one object per line, `{"t","level","event",...base,...fields}`,
 * written to stderr by default (stdout stays free for a tool's output), or to any sink.
 *
 * Fields are made JSON-safe here rather than trusted: an Error becomes {name, message, code?}, a bigint a
 * string, a Uint8Array its length, an object met a second time (a cycle, or a shared reference: a replacer
 * cannot tell them apart) "[circular]"; a field named like a reserved key (t, level,
 * event) is written as `field.<name>` instead of overwriting it. A line that still cannot be serialised is
 * replaced by one that says so, so logging never throws.
 *
 * Not here: rotation, shipping, sampling.
 */
import type { Log, LogLevel } from "../ports/log";

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const RESERVED = new Set(["t", "level", "event"]);

export interface JsonLinesLogOptions {
  /** Where each line goes, without its newline handling (default: process.stderr, newline added). */
  write?: (line: string) => void;
  /** Lines below this level are dropped (default "info"). */
  minLevel?: LogLevel;
  /** Fields added to every line, e.g. {device: "esp32-01"}. */
  base?: Record<string, unknown>;
  /** Timestamp source (default: the real clock). */
  now?: () => Date;
}

export class JsonLinesLog implements Log {
  readonly #write: (line: string) => void;
  readonly #min: number;
  readonly #base: Record<string, unknown>;
  readonly #now: () => Date;

  constructor(options: JsonLinesLogOptions = {}) {
    this.#write = options.write ?? ((line) => { process.stderr.write(line + "\n"); });
    this.#min = ORDER[options.minLevel ?? "info"];
    this.#base = options.base ?? {};
    this.#now = options.now ?? (() => new Date());
  }

  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void {
    if ((ORDER[level] ?? ORDER.error) < this.#min) return;
    const o: Record<string, unknown> = { t: this.#now().toISOString(), level, event };
    for (const src of [this.#base, fields ?? {}]) {
      for (const [k, v] of Object.entries(src)) o[RESERVED.has(k) ? `field.${k}` : k] = v;
    }
    let line: string;
    try {
      line = JSON.stringify(o, safeReplacer());
    } catch (e) {
      line = JSON.stringify({ t: o.t, level, event, logError: `fields not serialisable: ${e instanceof Error ? e.message : String(e)}` });
    }
    this.#write(line);
  }
}

function safeReplacer(): (key: string, value: unknown) => unknown {
  const seen = new WeakSet<object>();
  return function (_key, value) {
    if (typeof value === "bigint") return value.toString();
    if (value instanceof Error) {
      const out: Record<string, unknown> = { name: value.name, message: value.message };
      const code = (value as { code?: unknown }).code;
      if (code !== undefined) out.code = code;
      return out;
    }
    if (value instanceof Uint8Array) return { bytes: value.byteLength };
    if (typeof value === "object" && value !== null) {
      if (seen.has(value)) return "[circular]";
      seen.add(value);
    }
    return value;
  };
}

/** A JSON-lines log on stderr. */
export function consoleLog(options: Omit<JsonLinesLogOptions, "write"> = {}): JsonLinesLog {
  return new JsonLinesLog(options);
}
