/**
 * Tests of src/sim/twin-engine.ts (the local cloud's Azure twin rules, no I/O): the vectors of
 * test/vectors/twin-service.json step by step, the device-topic matcher, device-id scoping of topics
 * (`devices/{id}/$iothub/…`), direct-method messages and replies, the size limits (4 KB strings, 32 KB per
 * section after the merge), admin desired patches and their typed refusals, loading checks, and random
 * bytes that must never throw. The same vectors run over MQTT in twin-service.test.ts.
 */
import fc from "fast-check";
import { AZURE_TOPIC_STATUS } from "../../src/core/azure-twin";
import { ShadowOtaError } from "../../src/core/errors";
import { utf8Encode } from "../../src/core/utf8";
import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import {
  applyDesiredPatch,
  AZURE_DEVICE_TOPIC_PREFIX,
  checkTwinTable,
  emptyTwinState,
  handleTwinRequest,
  matchTwinRequestTopic,
  methodRequestMessage,
  methodTimeoutResult,
  readTwin,
  scopeDeviceTopic,
  splitDeviceTopic,
  TWIN_LINK_SUBSCRIPTIONS,
  TWIN_SHARED_SUBSCRIPTIONS,
  validateDeviceId,
  type TwinEngineState,
} from "../../src/sim/twin-engine";
import { deviceId, expectedTwinMessages, twinStepBytes, twinSteps } from "./twin-vectors";
import { errorOf } from "../core/error-of";

const bytes = (s: string): Uint8Array => utf8Encode(s);

describe("vectors (test/vectors/twin-service.json) against the engine", () => {
  it("every step publishes exactly the expected messages", () => {
    let state = emptyTwinState();
    for (const s of twinSteps) {
      let messages;
      if ("desired" in s) {
        const out = applyDesiredPatch(state, deviceId, s.desired);
        state = out.state;
        messages = out.messages;
      } else {
        const out = handleTwinRequest(state, deviceId, s.topic, twinStepBytes(s));
        state = out.state;
        messages = out.messages;
        expect(out.changed).toBe(out.status === 204);
      }
      expect({ step: s.name, messages }).toEqual({ step: s.name, messages: expectedTwinMessages(s) });
    }
    // Twins of other devices are untouched.
    expect(readTwin(state, "esp32-02")).toEqual({ desired: {}, desiredVersion: 1, reported: {}, reportedVersion: 1 });
  });
});

describe("device topics", () => {
  it("matches GET, reported PATCH and method replies; reports a readable $rid on other twin topics", () => {
    expect(matchTwinRequestTopic("$iothub/twin/GET/?$rid=1")).toEqual({ ok: true, kind: "get", rid: "1" });
    expect(matchTwinRequestTopic("$iothub/twin/PATCH/properties/reported/?$rid=ab-c.d~e:f")).toEqual({ ok: true, kind: "patch-reported", rid: "ab-c.d~e:f" });
    expect(matchTwinRequestTopic("$iothub/methods/res/200/?$rid=7")).toEqual({ ok: true, kind: "method-response", status: 200, rid: "7" });
    expect(matchTwinRequestTopic("$iothub/twin/PATCH/properties/desired/?$rid=9")).toEqual({ ok: false, status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC, rid: "9" });
    const fails: Array<[string, string]> = [
      ["$iothub/twin/GET/", AZURE_TOPIC_STATUS.QUERY_INVALID],
      ["$iothub/twin/GET/?", AZURE_TOPIC_STATUS.RID_INVALID],
      ["$iothub/twin/GET/?$rid=", AZURE_TOPIC_STATUS.RID_INVALID],
      ["$iothub/twin/GET/?$rid=" + "r".repeat(65), AZURE_TOPIC_STATUS.RID_INVALID],
      ["$iothub/twin/GET/?$rid=1&$rid=2", AZURE_TOPIC_STATUS.QUERY_INVALID],
      ["$iothub/twin/GET/x?$rid=1", AZURE_TOPIC_STATUS.QUERY_INVALID],
      ["$iothub/methods/res/20/?$rid=1", AZURE_TOPIC_STATUS.STATUS_INVALID],
      ["$iothub/methods/res/600/?$rid=1", AZURE_TOPIC_STATUS.STATUS_INVALID],
      ["$iothub/methods/res/099/?$rid=1", AZURE_TOPIC_STATUS.STATUS_INVALID],
      ["$iothub/methods/res/200?$rid=1", AZURE_TOPIC_STATUS.QUERY_INVALID],
      ["$iothub/methods/res/200/?rid=1", AZURE_TOPIC_STATUS.RID_INVALID],
      ["$iothub/methods/POST/x/?$rid=1", AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC],
      ["$aws/things/x/shadow/get", AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC],
      ["devices/esp32-01/$iothub/twin/GET/?$rid=1", AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC],
    ];
    for (const [topic, status] of fails) expect({ topic, m: matchTwinRequestTopic(topic) }).toEqual({ topic, m: { ok: false, status } });
  });

  it("scopes topics as devices/{id}/$iothub/… and splits them back", () => {
    expect(AZURE_DEVICE_TOPIC_PREFIX).toBe("devices/");
    expect(scopeDeviceTopic("esp32-01", "$iothub/twin/res/200/?$rid=1")).toBe("devices/esp32-01/$iothub/twin/res/200/?$rid=1");
    expect(splitDeviceTopic("devices/esp32-01/$iothub/twin/GET/?$rid=1")).toEqual({ deviceId: "esp32-01", deviceTopic: "$iothub/twin/GET/?$rid=1" });
    expect(splitDeviceTopic("devices/d:(1)@x/$iothub/methods/res/200/?$rid=2")).toEqual({ deviceId: "d:(1)@x", deviceTopic: "$iothub/methods/res/200/?$rid=2" });
    for (const t of ["devices//$iothub/twin/GET/?$rid=1", "devices/a/b/$iothub/x", "devices/a", "devices/a/", "device/a/$iothub/x",
      "devices/a+b/$iothub/x", "devices/a#/$iothub/x", `devices/${"d".repeat(129)}/$iothub/x`, "$iothub/twin/GET/?$rid=1", "devices/a/$aws/things/a/shadow/get"]) {
      expect({ t, s: splitDeviceTopic(t) }).toEqual({ t, s: undefined });
    }
    expect(errorOf(() => scopeDeviceTopic("a/b", "$iothub/x")).code).toBe(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID);
    expect(errorOf(() => scopeDeviceTopic("a", "$aws/things/a/shadow/get")).code).toBe("SYNC_TOPIC_INVALID");
    expect(TWIN_SHARED_SUBSCRIPTIONS).toEqual(TWIN_LINK_SUBSCRIPTIONS.map((t) => `devices/+/${t}`));
    // A split of a scoped topic gives back exactly what was scoped.
    fc.assert(fc.property(fc.stringMatching(/^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/), fc.string({ maxLength: 40 }), (id, rest) => {
      const topic = `$iothub/${rest}`;
      expect(splitDeviceTopic(scopeDeviceTopic(id, topic))).toEqual({ deviceId: id, deviceTopic: topic });
    }), { numRuns: 200 });
  });

  it("device ids: Azure's characters, 1..128, without + # /", () => {
    expect(validateDeviceId("esp32-01")).toBe("esp32-01");
    expect(validateDeviceId("a".repeat(128))).toHaveLength(128);
    for (const bad of ["", "a".repeat(129), "a/b", "a+b", "a#", "a b", "ü", 5, null]) {
      expect(errorOf(() => validateDeviceId(bad)).code).toBe(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID);
    }
    expect(errorOf(() => handleTwinRequest(emptyTwinState(), "a/b", "$iothub/twin/GET/?$rid=1", new Uint8Array())).code).toBe(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID);
  });
});

describe("direct methods", () => {
  it("builds the request and reads the reply (JSON, empty, unreadable)", () => {
    expect(methodRequestMessage("firmwareUpdate", "a1", { version: "1.1.0" })).toEqual({ topic: "$iothub/methods/POST/firmwareUpdate/?$rid=a1", payload: "{\"version\":\"1.1.0\"}" });
    expect(methodRequestMessage("reboot", "a2")).toEqual({ topic: "$iothub/methods/POST/reboot/?$rid=a2", payload: "null" });
    expect(errorOf(() => methodRequestMessage("bad name", "1")).code).toBe("SYNC_NAME_INVALID");
    const s = emptyTwinState();
    const ok = handleTwinRequest(s, "d1", "$iothub/methods/res/200/?$rid=a1", bytes("{\"accepted\":true}"));
    expect(ok).toEqual({ state: s, changed: false, messages: [], methodResponse: { rid: "a1", status: 200, payload: { accepted: true } } });
    expect(handleTwinRequest(s, "d1", "$iothub/methods/res/404/?$rid=a2", new Uint8Array()).methodResponse).toEqual({ rid: "a2", status: 404, payload: null });
    const bad = handleTwinRequest(s, "d1", "$iothub/methods/res/200/?$rid=a3", Uint8Array.from([0xff])).methodResponse!;
    expect([bad.payload, bad.error?.code]).toEqual([null, "SYNC_ENCODING_INVALID"]);
    expect(methodTimeoutResult(250)).toEqual({ status: 504, payload: { message: "Timed out waiting for the response from device (250 ms)" } });
  });
});

describe("limits", () => {
  it("strings over 4 KB and sections over 32 KB (after the merge) are refused with 400; the twin is unchanged", () => {
    let state: TwinEngineState = emptyTwinState();
    const patch = (rid: string, body: string) => handleTwinRequest(state, "d1", `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, bytes(body));
    expect(patch("1", JSON.stringify({ s: "x".repeat(4097) })).status).toBe(400);
    expect(patch("2", JSON.stringify({ s: "é".repeat(2049) })).status).toBe(400); // 4098 bytes
    let out = patch("3", JSON.stringify({ s: "x".repeat(4096) }));
    expect(out.status).toBe(204);
    state = out.state;
    const eight = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "y".repeat(4000)]));
    out = patch("4", JSON.stringify({ a: eight(4) }));
    expect(out.status).toBe(204);
    state = out.state;
    out = patch("5", JSON.stringify({ b: eight(4) })); // fits alone, not merged with `a` and `s` (> 32 KB)
    expect(out.messages[0]!.topic).toBe("$iothub/twin/res/400/?$rid=5");
    expect(JSON.parse(out.messages[0]!.payload).message).toMatch(/^SYNC_PAYLOAD_TOO_LARGE: reported of \d+ bytes exceeds 32 KB/);
    expect(out.state).toBe(state);
    expect(readTwin(out.state, "d1").reportedVersion).toBe(3);
    const big = handleTwinRequest(state, "d1", "$iothub/twin/PATCH/properties/reported/?$rid=6", new Uint8Array(100 * 1024).fill(0x20));
    expect(JSON.parse(big.messages[0]!.payload).message).toMatch(/^SYNC_PAYLOAD_TOO_LARGE: /);
    const tower = handleTwinRequest(state, "d1", "$iothub/twin/PATCH/properties/reported/?$rid=7", new Uint8Array(100 * 1024).fill(0x5b));
    expect(JSON.parse(tower.messages[0]!.payload).message).toMatch(/^SYNC_PAYLOAD_TOO_LARGE: |^SYNC_DEPTH_EXCEEDED: /);
  });
});

describe("admin desired patches", () => {
  it("refuses what the hub would, with CLOUD_REQUEST_REJECTED, status 400 and the SYNC cause", () => {
    const s = emptyTwinState();
    for (const [patch, cause] of [
      [{ "a.b": 1 }, "SYNC_DOCUMENT_INVALID"],
      [{ $version: 3 }, "SYNC_DOCUMENT_INVALID"],
      [{ s: "x".repeat(4097) }, "SYNC_DOCUMENT_INVALID"],
      [JSON.parse("{\"a\":" + "{\"a\":".repeat(11) + "1" + "}".repeat(12)), "SYNC_DEPTH_EXCEEDED"], // 11 levels inside the patch
      [[1] as unknown, "SYNC_DOCUMENT_INVALID"],
    ] as Array<[never, string]>) {
      const e = errorOf(() => applyDesiredPatch(s, "d1", patch));
      expect([e.code, e.detail?.status, (e.cause as ShadowOtaError).code]).toEqual([CLOUD_CODES.CLOUD_REQUEST_REJECTED, 400, cause]);
    }
    expect(errorOf(() => applyDesiredPatch(s, "bad/id", {})).code).toBe(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID);
    const ok = applyDesiredPatch(s, "d1", {});
    expect([ok.version, ok.messages]).toEqual([2, [{ topic: "$iothub/twin/PATCH/properties/desired/?$version=2", payload: "{\"$version\":2}" }]]);
    expect(s.twins).toEqual({}); // inputs are not mutated
  });
});

describe("hostile input", () => {
  it("random topics and bytes never throw; every answer goes to a twin response topic", () => {
    const topicArb = fc.oneof(
      fc.constantFrom("$iothub/twin/GET/?$rid=1", "$iothub/twin/PATCH/properties/reported/?$rid=2", "$iothub/methods/res/200/?$rid=3"),
      fc.string({ maxLength: 80 }).map((s) => `$iothub/twin/${s}`),
      fc.string({ maxLength: 80 }),
    );
    fc.assert(fc.property(topicArb, fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.jsonValue({ maxDepth: 12 }).map((v) => bytes(JSON.stringify(v)))), (topic, payload) => {
      const out = handleTwinRequest(emptyTwinState(), "d1", topic, payload);
      for (const m of out.messages) expect(m.topic).toMatch(/^\$iothub\/twin\/res\/(200|204|400)\/\?\$rid=/);
      if (out.changed) expect(out.status).toBe(204);
    }), { numRuns: 500 });
  });

  it("a __proto__ property is a property", () => {
    const out = handleTwinRequest(emptyTwinState(), "d1", "$iothub/twin/PATCH/properties/reported/?$rid=1", bytes("{\"__proto__\":{\"x\":1}}"));
    expect(out.status).toBe(204);
    const get = handleTwinRequest(out.state, "d1", "$iothub/twin/GET/?$rid=2", new Uint8Array());
    expect(get.messages[0]!.payload).toBe("{\"desired\":{\"$version\":1},\"reported\":{\"__proto__\":{\"x\":1},\"$version\":2}}");
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe("loading (checkTwinTable)", () => {
  it("accepts the engine's own table and refuses wrong shapes", () => {
    const s = handleTwinRequest(emptyTwinState(), "d1", "$iothub/twin/PATCH/properties/reported/?$rid=1", bytes("{\"a\":1}")).state;
    expect(checkTwinTable(JSON.parse(JSON.stringify(s.twins)))).toEqual(s.twins);
    expect(checkTwinTable(null)).toBe("azure.twins is not an object");
    expect(checkTwinTable({ "a/b": { desired: {}, reported: {}, desiredVersion: 1, reportedVersion: 1 } })).toMatch(/bad device id/);
    expect(checkTwinTable({ a: { desired: {}, reported: [], desiredVersion: 1, reportedVersion: 1 } })).toMatch(/not a stored twin/);
    expect(checkTwinTable({ a: { desired: {}, reported: {}, desiredVersion: 1.5, reportedVersion: 1 } })).toMatch(/not a stored twin/);
  });
});
