/**
 * HeapProbe (src/ports/heap-probe.ts) of the simulated device, from Node's process.memoryUsage():
 * `usedBytes` = V8's heapUsed, `freeHeap` = heapTotal - heapUsed (what V8 has reserved and not yet filled;
 * unlike an ESP32's free heap it grows on demand, so it is a figure to watch for trends, not a limit).
 * Node does not tell the largest free block, so health lines leave it out.
 * Not here: the device's probe (src/device/heap-moddable.ts).
 */
import type { HeapProbe, HeapSample } from "../ports/heap-probe";

export const nodeHeap: HeapProbe = {
  sample(): HeapSample {
    const m = process.memoryUsage();
    return { freeHeap: Math.max(0, m.heapTotal - m.heapUsed), usedBytes: m.heapUsed };
  },
};
