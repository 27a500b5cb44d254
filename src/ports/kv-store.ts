/**
 * Port: a small persistent key-value store (NVS through Moddable's Preference on the device; on Node a
 * log-structured file like NVS itself, src/node/file-kv.ts). Keys are at most 15 characters and values at
 * most 3999 bytes (the NVS limits: 4000 with the NUL), so the core stores compact JSON strings. A write is
 * durable when `set` returns, and a power cut leaves either the old or the new value (NVS: an entry whose
 * CRC does not match is ignored; the file adapter does the same with its log entries).
 */
export interface KeyValueStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  delete(key: string): void;
}
