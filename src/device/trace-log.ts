/**
 * Log (src/ports/log.ts) over XS's `trace()`: one line per event, `level event {fields}`, which xsbug shows
 * and, without a debugger, goes to the serial console (ESP32) or stdout (desktop simulator).
 *
 * Fields are printed with JSON.stringify; a value it cannot print (a cycle, a BigInt) prints as
 * "[unprintable]" instead of throwing, because a log call must never break the caller.
 * Not here: levels filtering beyond `minLevel`, buffering, remote logging.
 */
import type { Log, LogLevel } from "../ports/log";

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

export function formatLogLine(level: LogLevel, event: string, fields?: Record<string, unknown>): string {
  let rest = "";
  if (fields !== undefined) {
    try {
      rest = " " + JSON.stringify(fields);
    } catch {
      rest = " [unprintable]";
    }
  }
  return `${level} ${event}${rest}\n`;
}

export class TraceLog implements Log {
  readonly #min: number;
  constructor(minLevel: LogLevel = "info") {
    this.#min = RANK[minLevel];
  }
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void {
    if (RANK[level] < this.#min) return;
    // Looked up on globalThis rather than named: keeps this file type-checkable without xs.d.ts, so the
    // Node tests can import formatLogLine (XS defines `trace` as a global function).
    (globalThis as unknown as { trace: (text: string) => void }).trace(formatLogLine(level, event, fields));
  }
}
