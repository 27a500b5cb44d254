/**
 * Port: a small persistent key-value store (NVS through Moddable's Preference on the device, a JSON file on
 * Node). Keys are at most 15 characters and values at most 3999 bytes (the NVS limits: 4000 with the NUL), so the core
 * stores compact JSON strings. Writes are durable when `set` returns (the file adapter writes to a temporary
 * file and renames it), so a power cut leaves either the old or the new value.
 */
export interface KeyValueStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  delete(key: string): void;
}
