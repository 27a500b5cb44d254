/**
 * ShadowSync (src/core/shadow-sync.ts) while a get is already out. AWS publishes update/accepted for every
 * accepted update, a service-side desired change included, but no delta when desired goes back to what the
 * device reports (a rollout's revert): the sync then gets the document. While that get is out, a report of
 * the device may time out or be refused with 409, and a refused get may wait for its retry: none of these
 * sends a second get, and the retry timer that a later refusal restarts fires once. The test plays the AWS
 * shadow on the fake transport with a manual clock. Jest subset only (runs on XS too).
 */
import type { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { ShadowSync, type DesiredChange } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle, track } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";

function device(onDesiredDocument?: (d: JsonObject) => void) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const clock = new ManualClock();
  const changes: DesiredChange[] = [];
  const documents: JsonObject[] = [];
  const errors: ShadowOtaError[] = [];
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock, log }, { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: ["fw"] }, {
    onDesired: (c) => { changes.push(c); },
    onError: (e) => { errors.push(e); },
    onDesiredDocument: onDesiredDocument ?? ((d) => { documents.push(d); }),
  });
  sync.start();
  return { mqtt, log, clock, changes, documents, errors, sync };
}
type Dev = ReturnType<typeof device>;

function sent(d: Dev): Array<{ topic: string; json: any }> {
  return d.mqtt.take().map((m) => ({ topic: m.topic.slice(P.length + 1), json: JSON.parse(m.payload) }));
}
function gets(msgs: Array<{ topic: string; json: any }>): string[] {
  return msgs.filter((m) => m.topic === "get").map((m) => m.json.clientToken);
}
function answer(d: Dev, token: string, desired: JsonObject, version: number, reported: JsonObject = {}): void {
  d.mqtt.deliver(`${P}/get/accepted`, { state: { desired, reported }, metadata: {}, version, timestamp: 1, clientToken: token });
}
async function synced(d: Dev, desired: JsonObject = { interval: 10 }, version = 5): Promise<void> {
  d.mqtt.connect();
  await settle();
  answer(d, gets(sent(d))[0]!, desired, version, desired);
  await settle();
}
/** A desired change made elsewhere (the service API): AWS echoes it on update/accepted, without clientToken. */
function acceptedElsewhere(d: Dev, desired: JsonObject, version: number): void {
  d.mqtt.deliver(`${P}/update/accepted`, { state: { desired }, metadata: {}, version, timestamp: 2 });
}

describe("desired changed elsewhere (update/accepted without a delta)", () => {
  it("a newer accepted naming desired, no report of ours in flight: the document is got and its desired handed on", async () => {
    const d = device();
    await synced(d);
    expect(d.documents).toEqual([{ interval: 10 }]);
    acceptedElsewhere(d, { interval: 10 }, 6);
    await settle();
    const g = gets(sent(d));
    expect(g).toHaveLength(1);
    expect(d.log.lines.filter((l) => l.event === "sync.desired.changed-elsewhere")).toEqual([{ level: "info", event: "sync.desired.changed-elsewhere", fields: { version: 6 } }]);
    expect(d.sync.synced).toBe(false);
    answer(d, g[0]!, { interval: 10, mode: "eco" }, 6, { interval: 10 });
    await settle();
    expect(d.sync.synced).toBe(true);
    expect(d.documents).toEqual([{ interval: 10 }, { interval: 10, mode: "eco" }]);
    expect(d.changes.map((c) => c.delta)).toEqual([{ mode: "eco" }]);
  });

  it("an accepted not newer than the document, without desired, or while the first get is out: no get", async () => {
    const d = device();
    d.mqtt.connect();
    await settle();
    const first = gets(sent(d));
    acceptedElsewhere(d, { interval: 20 }, 9); // before the first get's answer
    await settle();
    expect(gets(sent(d))).toEqual([]);
    answer(d, first[0]!, { interval: 10 }, 5, { interval: 10 });
    await settle();
    acceptedElsewhere(d, { interval: 10 }, 5); // as old as the document
    d.mqtt.deliver(`${P}/update/accepted`, { state: { reported: { other: 1 } }, metadata: {}, version: 7, timestamp: 2 }); // another writer's report
    await settle();
    expect(gets(sent(d))).toEqual([]);
    expect(d.log.lines.filter((l) => l.event === "sync.accepted.unrequested")).toHaveLength(3);
  });

  it("the same desired in the new document: onDesiredDocument is not called again; a throwing one is logged and the sync goes on", async () => {
    let calls = 0;
    const d = device(() => { calls += 1; throw new Error("app bug"); });
    await synced(d);
    expect(calls).toBe(1);
    expect(d.log.lines.filter((l) => l.event === "sync.handler-threw")).toEqual([
      { level: "error", event: "sync.handler-threw", fields: { handler: "onDesiredDocument", message: "app bug" } }]);
    acceptedElsewhere(d, { interval: 10 }, 6);
    await settle();
    answer(d, gets(sent(d))[0]!, { interval: 10 }, 6, { interval: 10 });
    await settle();
    expect(calls).toBe(1);
    expect(d.sync.synced).toBe(true);
  });
});

describe("a report's end while that get is out", () => {
  it("a report refused with 409: no second get", async () => {
    const d = device();
    await synced(d);
    const a = track(d.sync.report({ a: 1 }));
    await settle();
    const token = sent(d)[0]!.json.clientToken;
    acceptedElsewhere(d, { interval: 10 }, 6);
    await settle();
    const g = gets(sent(d));
    expect(g).toHaveLength(1);
    d.mqtt.deliver(`${P}/update/rejected`, { code: 409, message: "Version conflict", clientToken: token });
    await settle();
    expect(a.result).toBe("SYNC_VERSION_CONFLICT");
    expect(sent(d)).toEqual([]);
    answer(d, g[0]!, { interval: 10 }, 7, { interval: 10 });
    await settle();
    // The document lacks the refused patch: it is sent again (as the resync), with the document's version.
    expect(sent(d).map((m) => [m.topic, m.json.state.reported, m.json.version])).toEqual([["update", { a: 1 }, 7]]);
  });

  it("a report that times out: no second get", async () => {
    const d = device();
    await synced(d);
    const a = track(d.sync.report({ a: 1 }));
    await settle();
    sent(d);
    d.clock.advance(5_000);
    acceptedElsewhere(d, { interval: 10 }, 6);
    await settle();
    expect(gets(sent(d))).toHaveLength(1);
    d.clock.advance(5_000); // the report's 10 s are up; the get's are not
    await settle();
    expect(a.result).toBe("SYNC_TIMEOUT");
    expect(sent(d)).toEqual([]);
  });

  it("after a 409, a report made before the fresh document waits for it", async () => {
    const d = device();
    await synced(d);
    void d.sync.report({ a: 1 }).catch(() => undefined);
    await settle();
    d.mqtt.deliver(`${P}/update/rejected`, { code: 409, message: "Version conflict", clientToken: sent(d)[0]!.json.clientToken });
    await settle();
    const g = gets(sent(d));
    expect(g).toHaveLength(1);
    const b = track(d.sync.report({ b: 2 }));
    await settle();
    expect(sent(d)).toEqual([]);
    expect(b.result).toBeUndefined();
    answer(d, g[0]!, { interval: 10 }, 7, { interval: 10 });
    await settle();
    expect(sent(d).map((m) => m.json.state.reported)).toEqual([{ a: 1, b: 2 }]);
  });
});

describe("the retry of a refused get", () => {
  /** Synced, a report in flight from t=0, desired changed elsewhere at t=1 s, that get refused (500) at t=2 s:
   *  the retry waits the request timeout (t=12 s); the report times out at t=10 s and gets again. */
  async function twoGets(): Promise<{ d: Dev; second: string }> {
    const d = device();
    await synced(d);
    void d.sync.report({ a: 1 }).catch(() => undefined);
    await settle();
    sent(d);
    d.clock.advance(1_000);
    acceptedElsewhere(d, { interval: 10 }, 6);
    await settle();
    const first = gets(sent(d));
    d.clock.advance(1_000);
    d.mqtt.deliver(`${P}/get/rejected`, { code: 500, message: "Internal service failure", timestamp: 1, clientToken: first[0]! });
    await settle();
    expect(d.errors.map((e) => e.code)).toEqual(["SYNC_REJECTED"]);
    d.clock.advance(8_000);
    await settle();
    const second = gets(sent(d));
    expect(second).toHaveLength(1);
    return { d, second: second[0]! };
  }

  it("the retry timer finds a get already out: no third get", async () => {
    const { d } = await twoGets();
    d.clock.advance(2_500); // past t=12 s; the second get's own timeout is at t=20 s
    await settle();
    expect(sent(d)).toEqual([]);
  });

  it("the second get answered before the first refusal's retry: the retry is dropped", async () => {
    const { d, second } = await twoGets();
    answer(d, second, { interval: 10 }, 7, { interval: 10, a: 1 });
    await settle();
    expect(d.sync.synced).toBe(true);
    d.clock.advance(5_000); // past t=12 s
    await settle();
    expect(sent(d)).toEqual([]);
    // Desired changed elsewhere again: one get.
    acceptedElsewhere(d, { interval: 10 }, 8);
    await settle();
    expect(gets(sent(d))).toHaveLength(1);
  });

  it("the second get refused too: the retry waits the request timeout from that refusal, once", async () => {
    const { d, second } = await twoGets();
    d.clock.advance(1_000); // t=11 s
    d.mqtt.deliver(`${P}/get/rejected`, { code: 500, message: "Internal service failure", timestamp: 1, clientToken: second });
    await settle();
    d.clock.advance(9_500); // t=20.5 s: the first refusal's retry (t=12 s) was replaced by this one's (t=21 s)
    await settle();
    expect(sent(d)).toEqual([]);
    d.clock.advance(1_000);
    await settle();
    expect(gets(sent(d))).toHaveLength(1);
    d.clock.advance(9_000); // nothing else until that get's own timeout (t=31 s), which sends it again
    await settle();
    expect(sent(d)).toEqual([]);
    d.clock.advance(1_000);
    await settle();
    expect(gets(sent(d))).toHaveLength(1);
  });
});
