/**
 * HeapProbe (src/ports/heap-probe.ts) over the Moddable SDK's `instrumentation` module
 * (modules/base/instrumentation; manifest.json includes its manifest):
 * - freeHeap   "System Free Memory": on the ESP32 heap_caps_get_free_size(MALLOC_CAP_8BIT) (xsHost.c);
 * - usedBytes  "XS Slot Heap Used" + "XS Chunk Heap Used": what the XS machine's two heaps hold.
 * The SDK fills these in only in builds with instrumentation (mcconfig -d, or -i; the ESP-IDF project then
 * compiles with MODINSTRUMENTATION=1); in a release build `Instrumentation.get` returns undefined and the
 * log mirror sends null. The largest free block (heap_caps_get_largest_free_block) is known to the SDK's
 * C code only (modGetLargestMalloc), not to scripts, so health lines leave it out on the device.
 * Indexes are looked up once by name (`Instrumentation.map`), as the SDK's example does: the numbering
 * differs between platforms and builds.
 */
import Instrumentation from "instrumentation";
import type { HeapProbe, HeapSample } from "../ports/heap-probe";

/** The instruments read here, by the names the SDK's `Instrumentation.map` takes (its typings list them). */
type InstrumentName = "System Free Memory" | "XS Slot Heap Used" | "XS Chunk Heap Used";

function indexOf(name: InstrumentName): number | undefined {
  try {
    return Instrumentation.map(name);
  } catch {
    return undefined;
  }
}

function read(index: number | undefined): number | undefined {
  if (index === undefined) return undefined;
  const v = Instrumentation.get(index);
  return typeof v === "number" && v >= 0 ? v : undefined;
}

export function moddableHeap(): HeapProbe {
  const free = indexOf("System Free Memory");
  const slot = indexOf("XS Slot Heap Used");
  const chunk = indexOf("XS Chunk Heap Used");
  return {
    sample(): HeapSample {
      const s = read(slot);
      const c = read(chunk);
      const out: { freeHeap?: number; usedBytes?: number } = {};
      const f = read(free);
      if (f !== undefined) out.freeHeap = f;
      if (s !== undefined && c !== undefined) out.usedBytes = s + c;
      return out;
    },
  };
}
