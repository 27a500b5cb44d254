/**
 * The one interface over both clouds (src/core/cloud-protocol.ts), as data: what each received topic and
 * payload becomes (CloudEvent), and what the device sends (get, report, method reply), for AWS and Azure,
 * including the messages the device must ignore and the ones it must refuse. ShadowSync builds on these
 * events alone. Jest subset only (runs on XS too).
 */
import { awsProtocol, azureProtocol, cloudProtocol, type CloudEvent } from "../../src/core/cloud-protocol";
import { ShadowOtaError } from "../../src/core/errors";
import { utf8Encode } from "../../src/core/utf8";

const b = (v: unknown) => utf8Encode(typeof v === "string" ? v : JSON.stringify(v));
const P = "$aws/things/esp32-01/shadow";

/** An event with its error reduced to code, message and detail (comparable on both engines). */
function plain(e: CloudEvent): unknown {
  return e.kind === "invalid" ? { kind: "invalid", code: e.error.code, message: e.error.message, detail: e.error.detail } : e;
}

describe("AWS: what the device receives", () => {
  const aws = awsProtocol({ thingName: "esp32-01" });
  const cases: Array<[string, string, unknown, unknown]> = [
    ["get/accepted with a token", `${P}/get/accepted`, { state: { desired: { a: 1 }, reported: { b: 2 } }, version: 7, clientToken: "g1" },
      { kind: "document", token: "g1", desired: { a: 1 }, reported: { b: 2 }, version: 7 }],
    ["get/accepted without token or sections", `${P}/get/accepted`, { state: {}, version: 1 },
      { kind: "document", desired: {}, reported: {}, version: 1 }],
    ["update/accepted", `${P}/update/accepted`, { state: { reported: { b: 3 } }, version: 8, clientToken: "r2" },
      { kind: "report-accepted", version: 8, token: "r2" }],
    ["update/accepted without token", `${P}/update/accepted`, { state: {}, version: 9 },
      { kind: "report-accepted", version: 9 }],
    ["update/delta", `${P}/update/delta`, { state: { a: 1 }, version: 10 },
      { kind: "desired-delta", delta: { a: 1 }, version: 10 }],
    ["update/rejected 409", `${P}/update/rejected`, { code: 409, message: "Version conflict", clientToken: "r3" },
      { kind: "rejected", status: 409, code: "SYNC_VERSION_CONFLICT", message: "Version conflict", token: "r3" }],
    ["update/rejected 412 is a conflict too", `${P}/update/rejected`, { code: 412, message: "Precondition" },
      { kind: "rejected", status: 412, code: "SYNC_VERSION_CONFLICT", message: "Precondition" }],
    ["get/rejected 404", `${P}/get/rejected`, { code: 404, message: "No shadow exists", clientToken: "g2" },
      { kind: "rejected", status: 404, code: "SYNC_REJECTED", message: "No shadow exists", token: "g2" }],
    ["update/documents is not used", `${P}/update/documents`, { current: { state: {}, version: 1 } },
      { kind: "ignored", reason: "update/documents is not used by the device" }],
    ["delete/accepted is not used", `${P}/delete/accepted`, { version: 3 },
      { kind: "ignored", reason: "delete/accepted is not used by the device" }],
    ["another thing", "$aws/things/other/shadow/get/accepted", { state: {}, version: 1 },
      { kind: "ignored", reason: "another shadow" }],
    ["a named shadow of this thing", `${P}/name/n/get/accepted`, { state: {}, version: 1 },
      { kind: "ignored", reason: "another shadow" }],
    ["not a shadow topic", "$aws/jobs/notify", {}, { kind: "ignored", reason: "not a shadow topic" }],
    ["malformed shadow topic", `${P}/bogus`, {},
      { kind: "invalid", code: "SYNC_TOPIC_INVALID", message: "malformed shadow topic (MESSAGE_TYPE_PARSE_FAILED)", detail: { status: "MESSAGE_TYPE_PARSE_FAILED" } }],
    ["malformed document", `${P}/get/accepted`, { version: 1 },
      { kind: "invalid", code: "SYNC_DOCUMENT_INVALID", message: "missing state", detail: { field: "state", status: 400, awsMessage: "Missing required node: state" } }],
  ];
  it.each(cases)("%s", (_name, topic, payload, expected) => {
    expect(plain(aws.classify(topic, b(payload)))).toEqual(expected);
  });

  it("a named shadow's protocol hears only its own topics", () => {
    const named = awsProtocol({ thingName: "esp32-01", shadowName: "ota" });
    expect(named.classify(`${P}/name/ota/update/delta`, b({ state: { a: 1 }, version: 2 }))).toEqual({ kind: "desired-delta", delta: { a: 1 }, version: 2 });
    expect(named.classify(`${P}/update/delta`, b({ state: { a: 1 }, version: 2 }))).toEqual({ kind: "ignored", reason: "another shadow" });
    expect(named.subscriptions().every((t) => t.startsWith(`${P}/name/ota/`))).toBe(true);
    expect(named.getRequest("g1")).toEqual({ topic: `${P}/name/ota/get`, payload: '{"clientToken":"g1"}' });
  });

  it("payload limits apply to what is received", () => {
    const small = awsProtocol({ thingName: "esp32-01", limits: { maxPayloadBytes: 10 } });
    const e = small.classify(`${P}/update/delta`, b({ state: { a: 1 }, version: 2 }));
    expect(plain(e)).toEqual(expect.objectContaining({ kind: "invalid", code: "SYNC_PAYLOAD_TOO_LARGE" }));
  });
});

describe("AWS: what the device sends", () => {
  const aws = awsProtocol({ thingName: "esp32-01" });
  it("get and report carry the token; a report carries the version only when it is 1 or more", () => {
    expect(aws.getRequest("g1")).toEqual({ topic: `${P}/get`, payload: '{"clientToken":"g1"}' });
    expect(JSON.parse(aws.reportRequest({ a: 1 }, "r1", 5).payload)).toEqual({ state: { reported: { a: 1 } }, version: 5, clientToken: "r1" });
    expect(JSON.parse(aws.reportRequest({ a: 1 }, "r1", 1).payload)).toEqual({ state: { reported: { a: 1 } }, version: 1, clientToken: "r1" });
    expect(JSON.parse(aws.reportRequest({ a: 1 }, "r1", 0).payload)).toEqual({ state: { reported: { a: 1 } }, clientToken: "r1" });
    expect(JSON.parse(aws.reportRequest({ a: 1 }, "r1").payload)).toEqual({ state: { reported: { a: 1 } }, clientToken: "r1" });
    expect(aws.reportRequest({ a: 1 }, "r1").topic).toBe(`${P}/update`);
    expect(aws.methodReply("1", 200, null)).toBeUndefined();
    expect(aws.cloud).toBe("aws");
  });

  it("state limits are checked before a report is sent", () => {
    const tight = awsProtocol({ thingName: "esp32-01", stateLimits: { maxStateBytes: 5 } });
    expect(() => tight.reportRequest({ a: "long" }, "r1")).toThrow(expect.objectContaining({ code: "SYNC_PAYLOAD_TOO_LARGE" }));
    expect(() => tight.reportRequest({ a: "long" }, "r1", 3)).toThrow(expect.objectContaining({ code: "SYNC_PAYLOAD_TOO_LARGE" }));
  });

  it("refuses a bad thing or shadow name before anything else", () => {
    expect(() => awsProtocol({ thingName: "a/b" })).toThrow(expect.objectContaining({ code: "SYNC_NAME_INVALID" }));
    expect(() => awsProtocol({ thingName: "ok", shadowName: "" })).toThrow(expect.objectContaining({ code: "SYNC_NAME_INVALID" }));
  });
});

describe("Azure: what the device receives", () => {
  const az = azureProtocol();
  const cases: Array<[string, string, unknown, unknown]> = [
    ["twin 200", "$iothub/twin/res/200/?$rid=g1", { desired: { a: 1, $version: 4 }, reported: { b: 2, $version: 2 } },
      { kind: "document", token: "g1", desired: { a: 1 }, reported: { b: 2 }, version: 4 }],
    ["report 204 with $version", "$iothub/twin/res/204/?$rid=r1&$version=5", "",
      { kind: "report-accepted", token: "r1", version: 5 }],
    ["report 204 without $version", "$iothub/twin/res/204/?$rid=r1", "",
      { kind: "report-accepted", token: "r1" }],
    ["412 is a conflict", "$iothub/twin/res/412/?$rid=r2", { message: "precondition failed" },
      { kind: "rejected", token: "r2", status: 412, code: "SYNC_VERSION_CONFLICT", message: "precondition failed" }],
    ["409 is a conflict", "$iothub/twin/res/409/?$rid=r2", { Message: "conflict" },
      { kind: "rejected", token: "r2", status: 409, code: "SYNC_VERSION_CONFLICT", message: "conflict" }],
    ["400 without a message body", "$iothub/twin/res/400/?$rid=r3", "",
      { kind: "rejected", token: "r3", status: 400, code: "SYNC_REJECTED", message: "status 400" }],
    ["300 is refused too", "$iothub/twin/res/300/?$rid=r3", "",
      { kind: "rejected", token: "r3", status: 300, code: "SYNC_REJECTED", message: "status 300" }],
    ["another 2xx is ignored", "$iothub/twin/res/202/?$rid=r4", "",
      { kind: "ignored", reason: "twin response status 202" }],
    ["299 is ignored", "$iothub/twin/res/299/?$rid=r4", "",
      { kind: "ignored", reason: "twin response status 299" }],
    ["desired patch", "$iothub/twin/PATCH/properties/desired/?$version=6", { a: null, $version: 6 },
      { kind: "desired-delta", patch: { a: null }, version: 6 }],
    ["desired patch without a topic version", "$iothub/twin/PATCH/properties/desired/?", { a: 2, $version: 7 },
      { kind: "desired-delta", patch: { a: 2 }, version: 7 }],
    ["desired patch whose versions differ", "$iothub/twin/PATCH/properties/desired/?$version=6", { a: 1, $version: 5 },
      { kind: "invalid", code: "SYNC_DOCUMENT_INVALID", message: "$version 5 in the body differs from 6 in the topic", detail: { field: "$version" } }],
    ["method request", "$iothub/methods/POST/firmwareUpdate/?$rid=9", { version: "1.1.0" },
      { kind: "method", name: "firmwareUpdate", rid: "9", payload: { version: "1.1.0" } }],
    ["method request without payload", "$iothub/methods/POST/reboot/?$rid=10", "",
      { kind: "method", name: "reboot", rid: "10", payload: null }],
    ["not a twin topic", "devices/esp32-01/messages/events/", "", { kind: "ignored", reason: "not a twin topic" }],
    ["malformed twin topic", "$iothub/twin/res/200/?$rid=", "",
      { kind: "invalid", code: "SYNC_TOPIC_INVALID", message: "malformed twin topic (RID_INVALID)", detail: { status: "RID_INVALID" } }],
    ["malformed twin body", "$iothub/twin/res/200/?$rid=g1", { desired: {} },
      { kind: "invalid", code: "SYNC_DOCUMENT_INVALID", message: "reported must be an object", detail: { field: "reported" } }],
  ];
  it.each(cases)("%s", (_name, topic, payload, expected) => {
    expect(plain(az.classify(topic, b(payload)))).toEqual(expected);
  });
});

describe("Azure: what the device sends", () => {
  const az = azureProtocol();
  it("get, report (version ignored) and method reply", () => {
    expect(az.getRequest("g1")).toEqual({ topic: "$iothub/twin/GET/?$rid=g1", payload: "" });
    expect(az.reportRequest({ a: 1 }, "r1", 9)).toEqual({ topic: "$iothub/twin/PATCH/properties/reported/?$rid=r1", payload: '{"a":1}' });
    expect(az.methodReply("7", 200, { ok: true })).toEqual({ topic: "$iothub/methods/res/200/?$rid=7", payload: '{"ok":true}' });
    expect(az.subscriptions()).toHaveLength(3);
    expect(az.cloud).toBe("azure");
  });
});

describe("cloudProtocol", () => {
  it("builds the adapter for each cloud with the payload limits", () => {
    const aws = cloudProtocol("aws", { thingName: "esp32-01", shadowName: "ota", maxPayloadBytes: 10 });
    expect(aws.cloud).toBe("aws");
    expect(aws.getRequest("g1").topic).toBe(`${P}/name/ota/get`);
    expect(plain(aws.classify(`${P}/name/ota/update/delta`, b({ state: { a: 1 }, version: 2 })))).toEqual(expect.objectContaining({ kind: "invalid", code: "SYNC_PAYLOAD_TOO_LARGE" }));
    const deep = cloudProtocol("aws", { thingName: "esp32-01", maxDepth: 2 });
    expect(plain(deep.classify(`${P}/update/delta`, b({ state: { a: { b: 1 } }, version: 2 })))).toEqual(expect.objectContaining({ kind: "invalid", code: "SYNC_DEPTH_EXCEEDED" }));
    expect(cloudProtocol("aws", { thingName: "esp32-01" }).classify(`${P}/update/delta`, b({ state: { a: { b: 1 } }, version: 2 }))).toEqual({ kind: "desired-delta", delta: { a: { b: 1 } }, version: 2 });
    const az = cloudProtocol("azure", { thingName: "esp32-01", maxPayloadBytes: 10 });
    expect(az.cloud).toBe("azure");
    expect(plain(az.classify("$iothub/methods/POST/m/?$rid=1", b({ version: "1.1.0" })))).toEqual(expect.objectContaining({ kind: "invalid", code: "SYNC_PAYLOAD_TOO_LARGE" }));
  });

  it("a payload that is not bytes is an invalid event; a programming error is not turned into one", () => {
    const aws = awsProtocol({ thingName: "esp32-01" });
    expect(plain(aws.classify(`${P}/update/delta`, "not bytes" as unknown as Uint8Array)))
      .toEqual({ kind: "invalid", code: "SYNC_DOCUMENT_INVALID", message: "payload is not bytes", detail: { field: "payload" } });
    const broken = new Proxy(new Uint8Array(2), { get() { throw new TypeError("broken buffer"); } });
    expect(() => aws.classify(`${P}/update/delta`, broken)).toThrow(TypeError);
    expect(() => azureProtocol().classify("$iothub/methods/POST/m/?$rid=1", broken)).toThrow(TypeError);
    expect(ShadowOtaError).toBeDefined();
  });
});
