/**
 * A lost report must not leave the twin stale (AWS and Azure): the test plays a cloud that keeps the
 * reported document, answers gets and reports, and loses exactly one report in one of three ways —
 * - "answer": the cloud applies the PATCH, its answer never arrives;
 * - "request": the PUBLISH arrives at the broker (PUBACK) but the cloud never sees it;
 * - "puback": the PUBLISH is lost on the way out and, QoS 1, its PUBACK never comes: the transport's
 *   publish() promise stays pending (what mcsim's ECMA-419 client and mqtt.js do within one session).
 * Then only time passes (no further report, no desired change): the cloud's reported state must end equal to
 * the device's, within a bounded number of request timeouts. Jest subset only (runs on XS).
 */
import type { JsonObject } from "../../src/core/json";
import { applyPatch } from "../../src/core/config-diff";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { ShadowSync, type ShadowSyncConfig } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";
import { rejection } from "./error-of";

const P = "$aws/things/esp32-01/shadow";
const TIMEOUT = 10_000;
type Loss = "answer" | "request" | "puback";

/** A transport whose next publish on a matching topic never resolves (its PUBACK is lost). */
class LossyMqtt extends FakeMqtt {
  loseNextPublishTo: RegExp | undefined;
  lost: string[] = [];
  override publish(topic: string, payload: string | Uint8Array, qos?: 0 | 1): Promise<void> {
    if (this.loseNextPublishTo !== undefined && this.connected && this.loseNextPublishTo.test(topic)) {
      this.loseNextPublishTo = undefined;
      this.lost.push(topic);
      return new Promise<void>(() => undefined); // no PUBACK in this session
    }
    return super.publish(topic, payload, qos);
  }
}

/** The cloud's side: one reported document, gets and reports answered, one report lost as asked. */
class PlayedCloud {
  reported: JsonObject = {};
  version = 1;
  /** Set: the next report is lost this way. */
  loseNext: "answer" | "request" | undefined;
  constructor(readonly cloud: "aws" | "azure", readonly mqtt: LossyMqtt) {}

  /** Answers everything published since the last call. */
  serve(): void {
    for (const p of this.mqtt.take()) {
      if (this.cloud === "aws") this.#aws(p.topic, p.payload);
      else this.#azure(p.topic, p.payload);
    }
  }
  #lose(apply: () => void): boolean {
    const how = this.loseNext;
    if (how === undefined) return false;
    this.loseNext = undefined;
    if (how === "answer") apply();
    return true;
  }
  #aws(topic: string, payload: string): void {
    const body = JSON.parse(payload) as { clientToken: string; state?: { reported: JsonObject } };
    if (topic === `${P}/get`) {
      this.mqtt.deliver(`${P}/get/accepted`, { state: { reported: this.reported }, metadata: {}, version: this.version, timestamp: 1, clientToken: body.clientToken });
    } else if (topic === `${P}/update`) {
      const apply = (): void => { this.reported = applyPatch(this.reported, body.state!.reported); this.version++; };
      if (this.#lose(apply)) return;
      apply();
      this.mqtt.deliver(`${P}/update/accepted`, { state: { reported: body.state!.reported }, metadata: {}, version: this.version, timestamp: 1, clientToken: body.clientToken });
    }
  }
  #azure(topic: string, payload: string): void {
    const rid = /\$rid=([^&]+)/.exec(topic)![1]!;
    if (topic.startsWith("$iothub/twin/GET/")) {
      this.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { $version: 1 }, reported: { ...this.reported, $version: this.version } });
    } else if (topic.startsWith("$iothub/twin/PATCH/properties/reported/")) {
      const apply = (): void => { this.reported = applyPatch(this.reported, JSON.parse(payload)); this.version++; };
      if (this.#lose(apply)) return;
      apply();
      this.mqtt.deliver(`$iothub/twin/res/204/?$rid=${rid}&$version=${this.version}`, new Uint8Array(0));
    }
  }
}

function setup(cloud: "aws" | "azure") {
  const mqtt = new LossyMqtt();
  const clock = new ManualClock();
  const log = new MemoryLog();
  const config: ShadowSyncConfig = {
    cloud, thingName: "esp32-01", requestTimeoutMs: TIMEOUT,
    firmwareVersionPath: cloud === "aws" ? ["config", "firmware_version"] : ["updateVersion"],
  };
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock, log }, config, { onDesired: () => undefined, onError: () => undefined });
  sync.start();
  return { mqtt, clock, log, sync, played: new PlayedCloud(cloud, mqtt) };
}

/** Serves and lets promises run until nothing more is published (bounded). */
async function serveAll(played: PlayedCloud): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await settle();
    if (played.mqtt.published.length === 0) break;
    const before = played.mqtt.published.length;
    played.serve();
    await settle();
    if (played.mqtt.published.length === before) break;
  }
}

const FW_PATH_TOPIC: Record<"aws" | "azure", RegExp> = { aws: /\/shadow\/update$/, azure: /^\$iothub\/twin\/PATCH\// };

describe.each(["aws", "azure"] as const)("%s: one report lost, no further change", (cloud) => {
  it.each(["answer", "request", "puback"] as const)("lost %s: the cloud's reported state converges to the device's", async (loss: Loss) => {
    const { mqtt, clock, log, sync, played } = setup(cloud);
    mqtt.connect();
    await serveAll(played);
    expect(sync.synced).toBe(true);
    const first = sync.report({ firmwareVersion: "1.1.0", firmwareUpdate: { state: "PendingVerify", to: "1.1.0" } });
    await serveAll(played);
    await first;
    expect(played.reported).toEqual({ firmwareVersion: "1.1.0", firmwareUpdate: { state: "PendingVerify", to: "1.1.0" } });

    if (loss === "puback") mqtt.loseNextPublishTo = FW_PATH_TOPIC[cloud];
    else played.loseNext = loss;
    const lost = sync.report({ firmwareUpdate: { state: "Valid" } });
    await serveAll(played);
    expect(played.reported.firmwareUpdate).toEqual(loss === "answer"
      ? { state: "Valid", to: "1.1.0" } : { state: "PendingVerify", to: "1.1.0" });
    clock.advance(TIMEOUT);
    expect((await rejection(lost)).code).toBe(SYNC_CODES.SYNC_TIMEOUT);

    // Only time passes now: a bounded number of request timeouts.
    for (let round = 0; round < 12 && JSON.stringify(played.reported) !== JSON.stringify(sync.getState().reported); round++) {
      await serveAll(played);
      clock.advance(TIMEOUT);
    }
    await serveAll(played);
    expect(played.reported).toEqual({ firmwareVersion: "1.1.0", firmwareUpdate: { state: "Valid", to: "1.1.0" } });
    expect(sync.getState().reported).toEqual(played.reported);
    expect(sync.synced).toBe(true);
    if (loss === "puback") expect(mqtt.lost).toHaveLength(1);
    expect(log.lines.filter((l) => l.event === SYNC_CODES.SYNC_TIMEOUT).length).toBeLessThanOrEqual(2);
  });
});
