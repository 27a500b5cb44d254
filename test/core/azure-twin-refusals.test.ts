/**
 * What the Azure twin codec (src/core/azure-twin.ts) says when it refuses something — code, message (logged
 * and reported in `reported.lastError`) and detail — one row per rule, and the inputs just inside each limit
 * and at each edge of the topic grammar, which must pass. Jest subset only (runs on XS too). The hub's half
 * (src/sim/azure-twin-cloud.ts) is tested in test/sim/azure-twin-cloud.test.ts.
 */
import * as Z from "../../src/core/azure-twin";
import { ShadowOtaError } from "../../src/core/errors";
import { utf8Encode } from "../../src/core/utf8";

const b = (v: unknown) => utf8Encode(typeof v === "string" ? v : JSON.stringify(v));
const deep = (n: number): Record<string, unknown> => { let o: Record<string, unknown> = { v: 1 }; for (let i = 1; i < n; i++) o = { k: o }; return o; };

function refusal(f: () => unknown): { code: string; message: string; detail?: unknown } {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShadowOtaError);
    const err = e as ShadowOtaError;
    return err.detail === undefined ? { code: err.code, message: err.message } : { code: err.code, message: err.message, detail: err.detail };
  }
  throw new Error("accepted");
}

const REFUSALS: Array<[string, () => unknown, { code: string; message: string; detail?: unknown }]> = [
  ["empty request id", () => Z.validateRid(""),
    {"code": "SYNC_NAME_INVALID", "message": "request id must be 1..64 characters of [A-Za-z0-9._~:-]"}],
  ["request id of 65 characters", () => Z.validateRid("r".repeat(65)),
    {"code": "SYNC_NAME_INVALID", "message": "request id must be 1..64 characters of [A-Za-z0-9._~:-]"}],
  ["request id with a slash", () => Z.validateRid("a/b"),
    {"code": "SYNC_NAME_INVALID", "message": "request id must be 1..64 characters of [A-Za-z0-9._~:-]"}],
  ["method name with a space", () => Z.validateMethodName("a b"),
    {"code": "SYNC_NAME_INVALID", "message": "method name must be 1..128 characters of [A-Za-z0-9._~:-]"}],
  ["method name of 129 characters", () => Z.validateMethodName("m".repeat(129)),
    {"code": "SYNC_NAME_INVALID", "message": "method name must be 1..128 characters of [A-Za-z0-9._~:-]"}],
  ["method name not a string", () => Z.validateMethodName(3),
    {"code": "SYNC_NAME_INVALID", "message": "method name must be 1..128 characters of [A-Za-z0-9._~:-]"}],
  ["response status 99", () => Z.methodResponseTopic(99, "1"),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "status must be an integer 100..599", "detail": {"field": "status"}}],
  ["response status 600", () => Z.methodResponseTopic(600, "1"),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "status must be an integer 100..599", "detail": {"field": "status"}}],
  ["response status not an integer", () => Z.methodResponseTopic(200.5, "1"),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "status must be an integer 100..599", "detail": {"field": "status"}}],
  ["twin response topic not matched", () => Z.matchAzureTopicOrThrow("$iothub/twin/res/99/?$rid=1"),
    {"code": "SYNC_TOPIC_INVALID", "message": "not a twin topic (STATUS_INVALID)", "detail": {"status": "STATUS_INVALID"}}],
  ["payload that is not bytes", () => Z.decodeAzurePayload("{}" as unknown as Uint8Array),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "payload is not bytes", "detail": {"field": "payload"}}],
  ["payload one byte over the limit", () => Z.decodeAzurePayload(b("[1,2,3]"), { maxPayloadBytes: 6 }),
    {"code": "SYNC_PAYLOAD_TOO_LARGE", "message": "payload of 7 bytes exceeds 6", "detail": {"size": 7, "max": 6}}],
  ["twin that is not an object", () => Z.parseTwinGetBody(b("[]")),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "twin is not a JSON object", "detail": {"field": "document"}}],
  ["twin without desired", () => Z.parseTwinGetBody(b({ reported: { $version: 1 } })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "desired must be an object", "detail": {"field": "desired"}}],
  ["twin without reported", () => Z.parseTwinGetBody(b({ desired: { $version: 1 } })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "reported must be an object", "detail": {"field": "reported"}}],
  ["desired.$version negative", () => Z.parseTwinGetBody(b({ desired: { $version: -1 }, reported: { $version: 1 } })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "desired.$version must be a non-negative integer", "detail": {"field": "desired.$version"}}],
  ["reported.$version missing", () => Z.parseTwinGetBody(b({ desired: { $version: 1 }, reported: {} })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "reported.$version must be a non-negative integer", "detail": {"field": "reported.$version"}}],
  ["desired patch that is not an object", () => Z.parseDesiredPatchBody(b("1")),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "desired patch is not a JSON object", "detail": {"field": "document"}}],
  ["desired patch $version a string", () => Z.parseDesiredPatchBody(b({ $version: "3" })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "$version must be a non-negative integer", "detail": {"field": "$version"}}],
  ["reported patch that is not an object", () => Z.buildReportedPatch([] as unknown as Record<string, never>),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "reported patch must be an object", "detail": {"field": "reported"}}],
  ["reported nested 11 levels (12 objects, the section's own included)", () => Z.buildReportedPatch(deep(12) as never),
    {"code": "SYNC_DEPTH_EXCEEDED", "message": "reported nests 11 levels; the maximum is 10", "detail": {"depth": 11, "maxDepth": 10}}],
  ["string longer than 4 KB", () => Z.buildReportedPatch({ a: { b: ["x", "y".repeat(4097)] } }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "string at reported.a.b[1] is longer than 4 KB", "detail": {"field": "reported.a.b[1]"}}],
  ["key with a dot", () => Z.buildReportedPatch({ a: { "b.c": 1 } }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "key \"b.c\" is empty, longer than 1 KB or holds '.', '$', space or a control character", "detail": {"field": "reported.a.b.c"}}],
  ["key with a dollar", () => Z.buildReportedPatch({ $x: 1 }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "key \"$x\" is empty, longer than 1 KB or holds '.', '$', space or a control character", "detail": {"field": "reported.$x"}}],
  ["key with a space", () => Z.buildReportedPatch({ "a b": 1 }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "key \"a b\" is empty, longer than 1 KB or holds '.', '$', space or a control character", "detail": {"field": "reported.a b"}}],
  ["key with a control character", () => Z.buildReportedPatch({ "a\u0001": 1 }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "key \"a\\u0001\" is empty, longer than 1 KB or holds '.', '$', space or a control character", "detail": {"field": "reported.a\u0001"}}],
  ["key with DEL", () => Z.buildReportedPatch({ "a\u007f": 1 }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "key \"a\u007f\" is empty, longer than 1 KB or holds '.', '$', space or a control character", "detail": {"field": "reported.a\u007f"}}],
  ["empty key", () => Z.buildReportedPatch({ "": 1 }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "key \"\" is empty, longer than 1 KB or holds '.', '$', space or a control character", "detail": {"field": "reported."}}],
  ["key longer than 1 KB", () => Z.buildReportedPatch({ ["k".repeat(1025)]: 1 }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "key \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\" is empty, longer than 1 KB or holds '.', '$', space or a control character", "detail": {"field": "reported.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"}}],
  ["reported over 32 KB", () => Z.buildReportedPatch({ a: "x".repeat(4000), b: "x".repeat(4000), c: "x".repeat(4000), d: "x".repeat(4000), e: "x".repeat(4000), f: "x".repeat(4000), g: "x".repeat(4000), h: "x".repeat(4000), i: "x".repeat(800) }),
    {"code": "SYNC_PAYLOAD_TOO_LARGE", "message": "reported of 32864 bytes exceeds 32 KB", "detail": {"size": 32864, "max": 32768}}],
  ["a twin response is not a method request", () => Z.parseMethodRequest("$iothub/twin/res/200/?$rid=1", b("{}")),
    {"code": "SYNC_TOPIC_INVALID", "message": "not a direct-method topic", "detail": {"status": "NOT_TWIN_TOPIC"}}],
  ["firmwareUpdate without version", () => Z.parseFirmwareUpdatePayload({ ver: "1.0.0" }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "firmwareUpdate needs a payload {\"version\": \"<semver>\"}", "detail": {"field": "version"}}],
  ["firmwareUpdate with a non-object payload", () => Z.parseFirmwareUpdatePayload("1.0.0"),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "firmwareUpdate needs a payload {\"version\": \"<semver>\"}", "detail": {"field": "version"}}],
];

describe("Azure twin codec refusals", () => {
  it.each(REFUSALS)("%s", (_name, f, expected) => {
    expect(refusal(f)).toEqual(expected);
  });
});

describe("identifiers: every allowed character, and the neighbours of each range", () => {
  it("accepts [A-Za-z0-9._~:-] at both ends of each range", () => {
    for (const id of ["0", "9", "A", "Z", "a", "z", ".", "_", "~", ":", "-", "aZ09._~:-"]) {
      expect(Z.validateRid(id)).toBe(id);
      expect(Z.validateMethodName(id)).toBe(id);
    }
  });
  it("refuses the characters just outside each range", () => {
    for (const c of ["/", "@", "[", "`", "{", " ", "!", "+", "=", "?", "&", "#", "%", "\u00e9", "\u007f"]) {
      expect(() => Z.validateRid(`a${c}`)).toThrow(ShadowOtaError);
      expect(() => Z.validateMethodName(`a${c}`)).toThrow(ShadowOtaError);
    }
  });
  it("lengths: request id 64, method name 128", () => {
    expect(Z.validateRid("r".repeat(64))).toHaveLength(64);
    expect(Z.validateMethodName("m".repeat(128))).toHaveLength(128);
  });
});

describe("topics at the edges of their grammar", () => {
  const m = (t: string) => { const r = Z.matchAzureTopic(t); return r.ok ? r : r.status; };
  it("twin responses: status 100 and 599, three digits, the query after /?", () => {
    expect(m("$iothub/twin/res/100/?$rid=1")).toEqual({ ok: true, kind: "twin-response", status: 100, rid: "1" });
    expect(m("$iothub/twin/res/599/?$rid=1&$version=7")).toEqual({ ok: true, kind: "twin-response", status: 599, rid: "1", version: 7 });
    expect(m("$iothub/twin/res/600/?$rid=1")).toBe("STATUS_INVALID");
    expect(m("$iothub/twin/res/099/?$rid=1")).toBe("STATUS_INVALID");
    expect(m("$iothub/twin/res/2000/?$rid=1")).toBe("STATUS_INVALID");
    expect(m("$iothub/twin/res/0200/?$rid=1")).toBe("STATUS_INVALID");
    expect(m("$iothub/twin/res/20/?$rid=1")).toBe("STATUS_INVALID");
    expect(m("$iothub/twin/res/2x0/?$rid=1")).toBe("STATUS_INVALID");
    expect(m("$iothub/twin/res/+20/?$rid=1")).toBe("STATUS_INVALID");
    expect(m("$iothub/twin/res/200")).toBe("QUERY_INVALID");
    expect(m("$iothub/twin/res/200/")).toBe("QUERY_INVALID");
    expect(m("$iothub/twin/res/200/?")).toBe("RID_INVALID");
    expect(m("$iothub/twin/res/200/?$rid=1&$version=x")).toBe("VERSION_INVALID");
  });
  it("$version: up to 15 digits", () => {
    expect(m("$iothub/twin/PATCH/properties/desired/?$version=123456789012345")).toEqual({ ok: true, kind: "desired-patch", version: 123456789012345 });
    expect(m("$iothub/twin/PATCH/properties/desired/?$version=1234567890123456")).toBe("VERSION_INVALID");
    expect(m("$iothub/twin/PATCH/properties/desired/?$version=")).toBe("VERSION_INVALID");
    expect(m("$iothub/twin/PATCH/properties/desired/?")).toEqual({ ok: true, kind: "desired-patch" });
    expect(m("$iothub/twin/PATCH/properties/desired/")).toBe("QUERY_INVALID");
  });
  it("queries: at most 512 characters and 16 parameters", () => {
    const params = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v`).join("&");
    expect(m(`$iothub/twin/PATCH/properties/desired/?${params(16)}`)).toEqual({ ok: true, kind: "desired-patch" });
    expect(m(`$iothub/twin/PATCH/properties/desired/?${params(17)}`)).toBe("QUERY_INVALID");
    const q512 = `a=${"x".repeat(510)}`;
    expect(Z.parseQuery(q512)).toEqual(new Map([["a", "x".repeat(510)]]));
    expect(Z.parseQuery(q512 + "x")).toBe("QUERY_INVALID");
    expect(Z.parseQuery("=v")).toBe("QUERY_INVALID");
    expect(Z.parseQuery("a=1&a=2")).toBe("QUERY_INVALID");
    expect(Z.parseQuery("a=")).toEqual(new Map([["a", ""]]));
  });
  it("method requests: the name runs to the next slash", () => {
    expect(m("$iothub/methods/POST/reboot/?$rid=9")).toEqual({ ok: true, kind: "method-request", name: "reboot", rid: "9" });
    expect(m("$iothub/methods/POST/reboot")).toBe("QUERY_INVALID");
    expect(m("$iothub/methods/POST/a")).toBe("QUERY_INVALID");
    expect(m("$iothub/twin/res/200")).toBe("QUERY_INVALID");
    expect(m("$iothub/methods/POST//?$rid=9")).toBe("METHOD_NAME_INVALID");
    expect(m("$iothub/methods/POST/reboot/?$rid=")).toBe("RID_INVALID");
  });
  it("anything else, a non-string included, is not a twin topic", () => {
    expect(m("$iothub/twin/GET/?$rid=1")).toBe("NOT_TWIN_TOPIC");
    expect(m(5 as unknown as string)).toBe("NOT_TWIN_TOPIC");
  });
  it("method replies the device builds: status 100 to 599", () => {
    expect(Z.methodResponseTopic(100, "r")).toBe("$iothub/methods/res/100/?$rid=r");
    expect(Z.methodResponseTopic(599, "r")).toBe("$iothub/methods/res/599/?$rid=r");
  });
});

describe("bodies just inside the limits", () => {
  it("a payload of exactly the limit is decoded", () => {
    expect(Z.decodeAzurePayload(b("[1,2,3]"), { maxPayloadBytes: 7 })).toEqual([1, 2, 3]);
  });
  it("a twin's sections come back as ordinary objects without the $ members", () => {
    const twin = Z.parseTwinGetBody(b({ desired: { a: 1, $version: 3, $metadata: {} }, reported: { b: 2, $version: 0 } }));
    expect(twin).toEqual({ desired: { a: 1 }, desiredVersion: 3, reported: { b: 2 }, reportedVersion: 0 });
    expect(JSON.stringify(twin.desired)).toBe('{"a":1}');
    twin.desired["a"] = 5;
    expect(twin.desired["a"]).toBe(5);
    delete twin.desired["a"];
    expect(twin.desired).toEqual({});
  });
  it("sections at the limits: 10 levels, 4 KB strings, 1 KB keys, 32 KB", () => {
    expect(() => Z.buildReportedPatch(deep(11) as never)).not.toThrow(); // the section and 10 levels inside it
    expect(() => Z.buildReportedPatch({ a: "y".repeat(4096) })).not.toThrow();
    expect(() => Z.buildReportedPatch({ ["k".repeat(1024)]: 1 })).not.toThrow();
    const at32k: Record<string, string> = {};
    for (let i = 0; i < 8; i++) at32k[`k${i}`] = "x".repeat(4000);
    at32k["z"] = "x".repeat(32_768 - JSON.stringify(at32k).length - 7);
    expect(JSON.stringify(at32k).length).toBe(32_768);
    expect(() => Z.buildReportedPatch(at32k)).not.toThrow();
  });
  it("an error body: message or Message, at most 256 characters; errorCode when an integer; a bad body named", () => {
    expect(Z.parseTwinErrorBody(b({ message: "m".repeat(300), errorCode: 400027 }))).toEqual({ message: "m".repeat(256), errorCode: 400027 });
    expect(Z.parseTwinErrorBody(b({ Message: "M".repeat(300) }))).toEqual({ message: "M".repeat(256) });
    expect(Z.parseTwinErrorBody(b({ message: 1, errorCode: 1.5 }))).toEqual({});
    expect(Z.parseTwinErrorBody(b("{bad"))).toEqual({ bodyError: "SYNC_JSON_INVALID" });
    expect(Z.parseTwinErrorBody(new Uint8Array(0))).toEqual({});
  });
  it("a method request's empty payload is null; a reply's null payload is empty", () => {
    expect(Z.parseMethodRequest("$iothub/methods/POST/ping/?$rid=1", new Uint8Array(0))).toEqual({ name: "ping", rid: "1", payload: null });
    expect(Z.buildMethodResponse(200, "1")).toEqual({ topic: "$iothub/methods/res/200/?$rid=1", payload: "" });
    expect(Z.buildMethodResponse(200, "1", { ok: true })).toEqual({ topic: "$iothub/methods/res/200/?$rid=1", payload: '{"ok":true}' });
    expect(Z.FIRMWARE_METHOD_NAME).toBe("firmwareUpdate");
    expect(Z.parseFirmwareUpdatePayload({ version: null })).toEqual({ version: null });
  });
});
