/**
 * Polls `probe` every 50 ms until it returns something other than undefined, at most `timeoutMs`; a probe
 * that throws counts as "not yet" and its last error goes into the timeout's message. Bounded: the sim
 * tests' one way to wait for something the cloud or a device does.
 */
export async function waitUntil<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, what = "condition"): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms${last === undefined ? "" : `: ${String(last)}`}`);
}
