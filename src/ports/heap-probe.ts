/**
 * Port: how much memory the device has left, as the platform tells it. Read by the log mirror
 * (src/core/log-mirror.ts) for every line it sends to the cloud and for its health line.
 *
 * Each member is a byte count, or undefined when the platform does not tell it (a Moddable release build
 * has no instrumentation; no JavaScript platform here tells the largest free block). `sample()` must be
 * cheap and must not throw (an adapter that cannot read a value leaves it undefined).
 *
 * Adapters: src/sim/log-heap.ts (Node: process.memoryUsage), src/device/heap-moddable.ts (Moddable's
 * instrumentation module).
 */
export interface HeapSample {
  /** Bytes the allocator can still hand out (ESP32: heap_caps_get_free_size(MALLOC_CAP_8BIT)). */
  readonly freeHeap?: number;
  /** Bytes the JavaScript engine's heaps hold (XS: slot + chunk heap used; Node: V8 heapUsed). */
  readonly usedBytes?: number;
  /** The largest block one allocation can get (fragmentation), where the platform tells it. */
  readonly largestFreeBlock?: number;
}

export interface HeapProbe {
  sample(): HeapSample;
}

/** A probe that knows nothing (every line then carries `freeHeap: null, usedBytes: null`). */
export const unknownHeap: HeapProbe = { sample: () => ({}) };
