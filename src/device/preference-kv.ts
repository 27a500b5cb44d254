/**
 * KeyValueStore (src/ports/kv-store.ts) over Moddable's Preference (NVS on the ESP32, a JSON file in the
 * desktop simulator). One NVS namespace ("shadowota"), keys at most 15 characters; NVS commits each set.
 */
import Preference from "preference";
import type { KeyValueStore } from "../ports/kv-store";

const DOMAIN = "shadowota";

export class PreferenceStore implements KeyValueStore {
  get(key: string): string | undefined {
    const v = Preference.get(DOMAIN, key);
    return typeof v === "string" ? v : undefined;
  }
  set(key: string, value: string): void {
    if (key.length > 15) throw new RangeError(`key "${key}" is longer than 15 characters (NVS limit)`);
    Preference.set(DOMAIN, key, value);
  }
  delete(key: string): void {
    Preference.delete(DOMAIN, key);
  }
}
