/**
 * ShadowSync (src/core/shadow-sync.ts) and application handlers that call back into it: a handler runs while
 * the sync is still carrying out the actions of one input, and what it asks for (a report from onError,
 * onDesired or onSynced) is taken up after them, so the reported state the device persists and sends is the
 * whole of it, the handler's patch included, and nothing is sent twice or out of order. The test plays the
 * AWS shadow on the fake transport and reads what a reboot would find in the key-value store. Jest subset
 * only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { ShadowSync, SYNC_KV_KEYS, type DesiredChange, type ShadowSyncHandlers } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";
const CONFIG = { cloud: "aws" as const, thingName: "esp32-01", firmwareVersionPath: ["fw"] };

function device(handlers: (sync: () => ShadowSync) => ShadowSyncHandlers, kv = new MemoryKv()) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  let sync: ShadowSync | undefined;
  sync = new ShadowSync({ mqtt, kv, clock: new ManualClock(), log }, CONFIG, handlers(() => sync!));
  sync.start();
  return { mqtt, kv, log, sync };
}
type Dev = ReturnType<typeof device>;

async function connectAndGet(d: Dev, state: JsonObject, version: number): Promise<void> {
  d.mqtt.connect();
  await settle();
  const get = d.mqtt.take().pop()!;
  d.mqtt.deliver(`${P}/get/accepted`, { state, metadata: {}, version, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
  await settle();
}

function updates(d: Dev): JsonObject[] {
  return d.mqtt.take().filter((m) => m.topic === `${P}/update`).map((m) => JSON.parse(m.payload).state.reported);
}

/** What a rebooted device would read as its reported state. */
function persisted(kv: MemoryKv): JsonObject {
  return JSON.parse(kv.get(SYNC_KV_KEYS.REPORTED)!);
}

describe("a handler that reports while the sync is carrying out an input", () => {
  it("onError reporting on an invalid desired version: both the lastError and the handler's patch are persisted", async () => {
    const d = device((sync) => ({
      onDesired: () => undefined,
      onError: (e: ShadowOtaError) => { void sync().report({ seen: e.code }).catch(() => undefined); },
    }));
    await connectAndGet(d, { reported: {} }, 5);
    d.mqtt.take();
    d.mqtt.deliver(`${P}/update/delta`, { state: { fw: "1.x" }, metadata: {}, version: 6, timestamp: 2 });
    await settle();
    const reported = persisted(d.kv);
    expect(reported).toEqual({
      lastError: { code: "SYNC_FIRMWARE_VERSION_INVALID", message: expect.stringContaining('desired firmware version "1.x"') },
      seen: "SYNC_FIRMWARE_VERSION_INVALID",
    });
    // What a reboot finds is the same.
    const after = new ShadowSync({ mqtt: new FakeMqtt(), kv: d.kv, clock: new ManualClock(), log: new MemoryLog() }, CONFIG, { onDesired: () => undefined });
    expect(after.getState().reported).toEqual(reported);
    // The lastError report goes first, the handler's after it (one at a time).
    const first = updates(d);
    expect(first).toEqual([{ lastError: reported.lastError }]);
  });

  it("onDesired reporting what it applied: persisted and sent after the get response is taken in", async () => {
    const kv = new MemoryKv();
    const d = device((sync) => ({
      onDesired: (c: DesiredChange) => { void sync().report({ applied: c.delta }).catch(() => undefined); },
    }), kv);
    await connectAndGet(d, { desired: { interval: 30 }, reported: {} }, 5);
    expect(persisted(kv)).toEqual({ applied: { interval: 30 } });
    const sent = d.mqtt.take();
    expect(sent.map((m) => m.topic)).toEqual([`${P}/update`]);
    expect(JSON.parse(sent[0]!.payload).state.reported).toEqual({ applied: { interval: 30 } });
  });

  it("onSynced reporting at each connect: persisted and sent once per connect", async () => {
    let n = 0;
    const d = device((sync) => ({
      onDesired: () => undefined,
      onSynced: () => { n += 1; void sync().report({ boots: n }).catch(() => undefined); },
    }));
    await connectAndGet(d, { reported: {} }, 5);
    expect(updates(d)).toEqual([{ boots: 1 }]);
    expect(persisted(d.kv)).toEqual({ boots: 1 });
  });
});
