/**
 * What ShadowSync writes to the device log in a session (src/core/shadow-sync.ts), line by line with their
 * fields: the subscribe, a notification before the first get, the resync after a get, answers nobody asked
 * for, a repeated or stale notification, topics it ignores; and what the pure `step` does with a timer or a
 * failed send for a token that is no longer current (the driver cancels those first, so only `step` shows
 * it). Jest subset only (runs on XS too).
 */
import { awsProtocol } from "../../src/core/cloud-protocol";
import { ShadowOtaError } from "../../src/core/errors";
import { initialSyncState, RETRY_REPORT_TOKEN, ShadowSync, step, type StepContext } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";

function device() {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log },
    { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: ["fw"] }, { onDesired: () => undefined, onError: () => undefined });
  sync.start();
  return { mqtt, log, sync };
}

describe("the device log of a session", () => {
  it("says what it did and what it ignored, with the fields that say why", async () => {
    const d = device();
    await d.sync.report({ a: 1, b: { c: 2 } }).catch(() => undefined); // offline: persisted, sent after the get
    d.mqtt.connect();
    await settle();
    const get = JSON.parse(d.mqtt.take().pop()!.payload).clientToken as string
    d.mqtt.deliver(`${P}/update/delta`, { state: { x: 1 }, metadata: {}, version: 2 });
    d.mqtt.deliver(`${P}/get/accepted`, { state: { desired: { x: 1 } }, metadata: {}, version: 3, clientToken: "g-other" });
    d.mqtt.deliver(`${P}/get/accepted`, { state: { desired: { x: 1 }, reported: { b: { c: 3 } } }, metadata: {}, version: 3, clientToken: get });
    await settle();
    d.mqtt.deliver(`${P}/update/delta`, { state: { x: 1 }, metadata: {}, version: 4 });
    d.mqtt.deliver(`${P}/update/delta`, { state: { x: 1 }, metadata: {}, version: 4 });
    d.mqtt.deliver(`${P}/update/accepted`, { state: {}, metadata: {}, version: 5, clientToken: "r-other" });
    d.mqtt.deliver(`${P}/update/rejected`, { code: 400, message: "m", clientToken: "r-other" });
    d.mqtt.deliver("$aws/things/esp32-02/shadow/update/delta", { state: { x: 1 }, metadata: {}, version: 9 });
    d.mqtt.deliver("$aws/jobs/notify", "{}");
    await settle();
    expect(d.log.lines.filter((l) => l.event !== "sync.desired")).toEqual([
      { level: "debug", event: "sync.subscribed", fields: { topics: 5 } },
      { level: "debug", event: "sync.desired.before-get", fields: { version: 2 } },
      { level: "debug", event: "sync.document.unrequested", fields: { token: "g-other" } },
      { level: "info", event: "sync.resync", fields: { paths: 2 } },
      { level: "debug", event: "sync.desired.unchanged", fields: { version: 4 } },
      { level: "info", event: "SYNC_VERSION_STALE", fields: { version: 4, lastSeen: 4 } },
      { level: "debug", event: "sync.accepted.unrequested", fields: { token: "r-other" } },
      { level: "debug", event: "sync.rejected.unrequested", fields: { token: "r-other", status: 400 } },
      { level: "debug", event: "sync.ignored", fields: { reason: "another shadow" } },
      { level: "debug", event: "sync.ignored", fields: { reason: "not a shadow topic" } },
    ]);
  });
});

describe("after close()", () => {
  it("what still arrives is not looked at: nothing logged, nothing handed on", async () => {
    const d = device();
    d.mqtt.connect();
    await settle();
    await d.sync.close();
    const lines = d.log.lines.length;
    d.mqtt.deliver(`${P}/update/delta`, { state: { x: 1 }, metadata: {}, version: 2 });
    d.mqtt.deliver("$aws/jobs/notify", "{}");
    await settle();
    expect(d.log.lines.slice(lines)).toEqual([]);
  });
});

describe("step: timers and failed sends of tokens that are no longer current", () => {
  const ctx: StepContext = {
    protocol: awsProtocol({ thingName: "esp32-01" }), firmwareVersionPath: ["fw"], requestTimeoutMs: 1000,
    conditionalReports: true, firmwareMethod: "firmwareUpdate", maxStateDepth: 8,
    throttleRetry: { initialMs: 100, maxMs: 400, maxAttempts: 3 },
  };
  const connected = step(initialSyncState(), { type: "connected" }, ctx).state;

  it("change nothing and do nothing", () => {
    for (const input of [
      { type: "timeout", token: "r77" },
      { type: "timeout", token: "g77" },
      { type: "send-failed", token: "r77", error: new ShadowOtaError("SYNC_TRANSPORT", "x") },
      { type: "send-failed", token: "g77", error: new ShadowOtaError("SYNC_TRANSPORT", "x") },
    ] as const) {
      const out = step(connected, input, ctx);
      expect(out.actions).toEqual([]);
      expect(out.state).toEqual(connected);
    }
  });

  it("the throttle timer when nothing waits sends nothing", () => {
    const out = step(connected, { type: "timeout", token: RETRY_REPORT_TOKEN }, ctx);
    expect(out.actions).toEqual([]);
    expect(out.state).toEqual({ ...connected, throttleWait: false });
  });
});
