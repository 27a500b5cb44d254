/** Port: structured log lines. `fields` are small JSON-safe values. */
export type LogLevel = "debug" | "info" | "warn" | "error";
export interface Log {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}
export const silentLog: Log = { log() {} };
