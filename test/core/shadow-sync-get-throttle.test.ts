/**
 * ShadowSync when the cloud throttles a get (429: AWS's rate limit per shadow, IoT Hub's twin read throttle):
 * the get goes again after a full-jitter backoff wait of the throttle policy that grows with each 429 in a
 * row — not after the fixed request timeout (10 s) whatever the load — and a document resets the steps.
 * Other refusals of a get still wait the request timeout. What the cloud receives and when, on the manual
 * clock. Jest subset only (runs on XS too).
 */
import { ShadowSync } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";

function device(cloud: "aws" | "azure") {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const clock = new ManualClock();
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock, log, random: () => 1 },
    { cloud, thingName: "esp32-01", firmwareVersionPath: ["fw"], requestTimeoutMs: 10_000, throttleRetry: { initialMs: 100, maxMs: 800, maxAttempts: 2 } },
    { onDesired: () => undefined, onError: () => undefined });
  sync.start();
  return { mqtt, log, clock, sync };
}
type Dev = ReturnType<typeof device>;

/** The gets published since the last call, by token. */
function gets(d: Dev): string[] {
  return d.mqtt.take().flatMap((m) => {
    if (m.topic === `${P}/get`) return [String(JSON.parse(m.payload).clientToken)];
    const az = /^\$iothub\/twin\/GET\/\?\$rid=(.+)$/.exec(m.topic);
    return az === null ? [] : [az[1]!];
  });
}

/** Advances the clock in 1 ms steps until a get goes out; returns how long that took (bounded). */
async function waitForGet(d: Dev, limitMs: number): Promise<{ ms: number; token: string } | undefined> {
  for (let ms = 1; ms <= limitMs; ms++) {
    d.clock.advance(1);
    await settle();
    const g = gets(d);
    if (g.length > 0) return { ms, token: g[0]! };
  }
  return undefined;
}

describe.each(["aws", "azure"] as const)("a throttled get (%s)", (cloud) => {
  const refuse = (d: Dev, token: string, status: number): void => {
    if (cloud === "aws") d.mqtt.deliver(`${P}/get/rejected`, { code: status, message: status === 429 ? "Too Many Requests" : "Internal service failure", clientToken: token });
    else d.mqtt.deliver(`$iothub/twin/res/${status}/?$rid=${token}`, "");
  };
  const answer = (d: Dev, token: string): void => {
    if (cloud === "aws") d.mqtt.deliver(`${P}/get/accepted`, { state: { reported: {} }, metadata: {}, version: 3, clientToken: token });
    else d.mqtt.deliver(`$iothub/twin/res/200/?$rid=${token}`, { desired: { $version: 3 }, reported: { $version: 1 } });
  };

  it("goes again after the throttle policy's wait, doubling with each 429 in a row past its attempts, up to the cap; a document resets it", async () => {
    const d = device(cloud);
    d.mqtt.connect();
    await settle();
    let [token] = gets(d);
    // random() = 1: each wait is the step's cap: 100, 200, 400, 800, 800 ms (maxAttempts does not stop a get).
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      refuse(d, token!, 429);
      await settle();
      const next = await waitForGet(d, 2_000);
      expect(next).toBeDefined();
      waits.push(next!.ms);
      token = next!.token;
    }
    expect(waits).toEqual([100, 200, 400, 800, 800]);
    expect(d.log.lines.filter((l) => l.event === "sync.get.throttled").map((l) => l.fields!["attempts"])).toEqual([1, 2, 3, 4, 5]);
    answer(d, token!);
    await settle();
    expect(d.sync.synced).toBe(true);
    // A new session's throttled get starts from the first step again.
    d.mqtt.disconnect();
    d.mqtt.connect();
    await settle();
    [token] = gets(d);
    refuse(d, token!, 429);
    await settle();
    expect((await waitForGet(d, 2_000))!.ms).toBe(100);
  });

  it("another refusal still waits the request timeout", async () => {
    const d = device(cloud);
    d.mqtt.connect();
    await settle();
    const [token] = gets(d);
    refuse(d, token!, 500);
    await settle();
    d.clock.advance(9_999);
    await settle();
    expect(gets(d)).toEqual([]);
    expect((await waitForGet(d, 10))!.ms).toBe(1);
    expect(d.log.lines.some((l) => l.event === "sync.get.throttled")).toBe(false);
  });
});
