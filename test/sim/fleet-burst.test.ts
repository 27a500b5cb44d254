/**
 * Setting desired on every device at once through the real services (aedes on loopback, the real store):
 * 400 shadows and 200 twins updated in one tick must not hold the event loop for the whole burst. Counted,
 * not timed: a setImmediate heartbeat must turn many times while the burst is in flight (the services run
 * engines and publishes as TickBudget steps, at most `maxSteps` per turn, and the store commits in groups);
 * the loop's largest delay (perf_hooks monitorEventLoopDelay) is printed, bounded only generously.
 */
import * as path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";

import { CloudStore } from "../../src/sim/cloud-store";
import { ShadowService } from "../../src/sim/shadow-service";
import { TickBudget } from "../../src/sim/tick-budget";
import { TwinService } from "../../src/sim/twin-service";
import { ManualClock } from "../core/fake-ports";
import { connectPlain, endClient, Inbox, startPlainAedes, tempDir } from "./cloud-fixtures";

test("400 shadows and 200 twins set at once: the loop keeps turning, every update is stored and delivered", async () => {
  const broker = await startPlainAedes();
  const store = CloudStore.open(tempDir("fleet-burst"));
  const client = await connectPlain(broker.url, "cloud-burst");
  const budget = new TickBudget(8, 32);
  const shadows = await ShadowService.start(client, { store, clock: new ManualClock(), budget, engine: { rateLimitPerSecond: 0 } });
  const twins = await TwinService.start(client, { store, clock: new ManualClock(), budget });
  const device = await connectPlain(broker.url, "dev-burst");
  try {
    const inbox = new Inbox(device);
    await device.subscribeAsync(["$aws/things/thing-399/shadow/update/delta", "devices/az-199/$iothub/twin/PATCH/properties/desired/#"], { qos: 1 });
    let beats = 0;
    let beating = true;
    const beat = (): void => { beats++; if (beating) setImmediate(beat); };
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    setImmediate(beat);
    const start = beats;
    const updates: Array<Promise<unknown>> = [];
    for (let i = 0; i < 400; i++) updates.push(shadows.updateDesired(`thing-${i}`, { config: { firmware_version: "1.1.0", i } }));
    for (let i = 0; i < 200; i++) updates.push(twins.updateDesired(`az-${i}`, { updateVersion: "1.1.0" }));
    expect(beats).toBe(start); // nothing ran yet: every update is queued, none decided in the caller's tick
    await Promise.all(updates);
    const during = beats - start;
    beating = false;
    delay.disable();
    // 600 engine runs + 600 publishes, at most 32 steps per turn: at least 37 turns of the loop.
    expect(budget.steps).toBeGreaterThanOrEqual(1200);
    expect(budget.longestSliceSteps).toBeLessThanOrEqual(32);
    expect(during).toBeGreaterThanOrEqual(Math.floor(1200 / 32) - 1);
    expect(store.writes).toBe(600);
    expect(store.commits).toBeLessThan(600); // group commit
    await inbox.next((m) => m.topic === "$aws/things/thing-399/shadow/update/delta");
    await inbox.next((m) => m.topic.startsWith("devices/az-199/$iothub/twin/PATCH/properties/desired/"));
    expect(CloudStore.read(path.dirname(store.path)).shadows["thing-0"]?.state.desired).toEqual({ config: { firmware_version: "1.1.0", i: 0 } });
    const maxMs = delay.max / 1e6;
    console.log(`fleet-burst: 600 updates, ${during} loop turns, ${store.commits} commits, longest slice ${budget.longestSliceMs.toFixed(1)} ms / ${budget.longestSliceSteps} steps, event-loop delay max ${maxMs.toFixed(1)} ms`);
    expect(maxMs).toBeLessThan(5_000); // generous: a guard against one long block, not a timing target
  } finally {
    await shadows.close();
    await twins.close();
    await endClient(client);
    await endClient(device);
    await store.close();
    await broker.close();
  }
}, 60_000);
