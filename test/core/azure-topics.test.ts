/**
 * Tests of src/core/azure-topics.ts from the literal vectors in test/vectors/azure-device-topics.json: every
 * topic an Azure device publishes (twin GET, reported PATCH, method reply, telemetry with its property bag)
 * and the malformed ones, each with the status it must get; the twin-request matcher alone refuses
 * telemetry; and bounded random strings never make a matcher throw. Runs on Node and on XS
 * (`node scripts/test-xs.mjs azure-topics`).
 */
import vectors from "../vectors/azure-device-topics.json";
import { matchDevicePublishTopic, matchEventTopic, matchTwinRequestTopic } from "../../src/core/azure-topics";
import { AZURE_TOPIC_STATUS } from "../../src/core/azure-twin";

describe("device-to-cloud topics (vectors)", () => {
  test.each(vectors.match.map((v) => [v.topic, v.result] as const))("%s", (topic, result) => {
    expect(matchDevicePublishTopic(topic)).toEqual(result);
  });

  test.each(vectors.mismatch.map((v) => [v.topic, v.status, v.rid] as const))("%s → %s", (topic, status, rid) => {
    expect(AZURE_TOPIC_STATUS).toHaveProperty(status);
    expect(matchDevicePublishTopic(topic)).toEqual(rid === undefined ? { ok: false, status } : { ok: false, status, rid });
  });
});

describe("the two matchers on their own", () => {
  test("the twin-request matcher does not take telemetry, the event matcher does not take twin requests", () => {
    expect(matchTwinRequestTopic("devices/d/messages/events/")).toEqual({ ok: false, status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC });
    expect(matchEventTopic("$iothub/twin/GET/?$rid=1")).toEqual({ ok: false, status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC });
  });

  test("a property bag of 32 is read, 33 is refused", () => {
    const bag = (n: number): string => Array.from({ length: n }, (_, i) => `p${i}=${i}`).join("&");
    const ok = matchEventTopic(`devices/d/messages/events/${bag(32)}`);
    expect(ok.ok && ok.properties.length).toBe(32);
    expect(matchEventTopic(`devices/d/messages/events/${bag(33)}`)).toEqual({ ok: false, status: AZURE_TOPIC_STATUS.QUERY_INVALID });
  });

  test("non-strings and random strings never throw (2,000 seeded draws)", () => {
    for (const v of [undefined, null, 5, {}] as unknown[]) expect(matchDevicePublishTopic(v as string).ok).toBe(false);
    let seed = 0x9e3779b9;
    const next = (): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) / 0x100000000; };
    const alphabet = ["$iothub/", "twin/", "GET/", "PATCH/properties/reported/", "methods/res/", "200", "/?", "$rid=", "&", "=", "%", "devices/", "messages/events/", "x", "/", "?"];
    for (let i = 0; i < 2000; i++) {
      let t = "";
      const n = Math.floor(next() * 8);
      for (let j = 0; j < n; j++) t += alphabet[Math.floor(next() * alphabet.length)];
      const m = matchDevicePublishTopic(t);
      expect(typeof m.ok).toBe("boolean");
    }
  });
});
