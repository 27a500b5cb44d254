/**
 * Tests of src/core/aws-shadow.ts from data: every topic vector in test/vectors/aws-shadow-topics.json
 * (docs/protocols.md §1.7 and the failing topics of shadow_utest.c) is built and/or matched, every
 * document vector in test/vectors/aws-shadow-documents.json (the numbered vectors 1-5 of docs/protocols.md §1.8 and malformed
 * documents) is parsed, and the device's request builders reproduce those vectors' request texts byte for
 * byte (the service's half — request parsing, desired updates — is test/sim/aws-shadow-cloud.test.ts).
 * Plus bad input: a 100 KB payload, nesting past the limit, hostile names. Jest subset only (runs on XS).
 */
import topics from "../vectors/aws-shadow-topics.json";
import docs from "../vectors/aws-shadow-documents.json";
import type { JsonObject } from "../../src/core/json";
import { utf8Encode } from "../../src/core/utf8";
import { SYNC_CODES } from "../../src/core/sync-errors";
import {
  AWS_SHADOW_LIMITS,
  buildGetRequest,
  buildReportedUpdate,
  deviceSubscriptions,
  matchTopic,
  matchTopicOrThrow,
  parseGetAccepted,
  parseResponse,
  shadowTopic,
  shadowTopicPrefix,
  validateClientToken,
  validateShadowName,
  validateThingName,
  type ShadowMessageType,
  type UpdateOptions,
} from "../../src/core/aws-shadow";
import { errorOf } from "./error-of";

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function payloadOf(v: { payload?: string; payloadHex?: string }): Uint8Array {
  return v.payloadHex !== undefined ? hexBytes(v.payloadHex) : utf8Encode(v.payload ?? "");
}

describe("topics: building", () => {
  for (const v of topics.build as Array<{ thingName: string; shadowName?: string; messageType: string; topic: string }>) {
    it(`builds ${v.topic.length > 80 ? v.topic.slice(0, 80) + "…" : v.topic}`, () => {
      expect(shadowTopic(v.thingName, v.shadowName, v.messageType as ShadowMessageType)).toBe(v.topic);
      // Every built response topic matches back to its parts; request topics only with `requests`.
      const m = matchTopic(v.topic, { requests: true });
      expect(m).toMatchObject({ ok: true, thingName: v.thingName, messageType: v.messageType });
      if (m.ok) expect(m.shadowName).toBe(v.shadowName);
    });
  }

  it("prefixes and device subscriptions", () => {
    expect(shadowTopicPrefix("esp32-01")).toBe("$aws/things/esp32-01/shadow");
    expect(shadowTopicPrefix("esp32-01", "ota")).toBe("$aws/things/esp32-01/shadow/name/ota");
    expect(deviceSubscriptions("esp32-01")).toEqual([
      "$aws/things/esp32-01/shadow/get/accepted",
      "$aws/things/esp32-01/shadow/get/rejected",
      "$aws/things/esp32-01/shadow/update/accepted",
      "$aws/things/esp32-01/shadow/update/rejected",
      "$aws/things/esp32-01/shadow/update/delta",
    ]);
    expect(deviceSubscriptions("esp32-01", "ota")[4]).toBe("$aws/things/esp32-01/shadow/name/ota/update/delta");
  });

  it("refuses to build a topic from an invalid name (so no wildcard reaches a topic)", () => {
    expect(errorOf(() => shadowTopic("a/b", undefined, "get")).code).toBe(SYNC_CODES.SYNC_NAME_INVALID);
    expect(errorOf(() => shadowTopic("+", undefined, "get")).code).toBe(SYNC_CODES.SYNC_NAME_INVALID);
    expect(errorOf(() => shadowTopic("ok", "#", "get")).code).toBe(SYNC_CODES.SYNC_NAME_INVALID);
    expect(errorOf(() => shadowTopic("ok", "", "get")).code).toBe(SYNC_CODES.SYNC_NAME_INVALID);
  });

  it("the longest topic has at most 7 slashes (AWS limit)", () => {
    const t = shadowTopic("t".repeat(128), "s".repeat(64), "update/documents");
    expect(t.split("/").length - 1).toBeLessThanOrEqual(7);
  });
});

describe("topics: matching", () => {
  for (const v of topics.match as Array<{ topic: string; expect: object }>) {
    it(`matches ${v.topic.length > 80 ? v.topic.slice(0, 80) + "…" : v.topic}`, () => {
      expect(matchTopic(v.topic)).toStrictEqual(v.expect);
      expect(matchTopicOrThrow(v.topic)).toStrictEqual(v.expect);
    });
  }
  for (const v of topics.requests as Array<{ topic: string; expect: object }>) {
    it(`matches the request topic ${v.topic} only when asked`, () => {
      expect(matchTopic(v.topic, { requests: true })).toStrictEqual(v.expect);
      expect(matchTopic(v.topic)).toStrictEqual({ ok: false, status: "MESSAGE_TYPE_PARSE_FAILED" });
    });
  }
  for (const v of topics.fail as Array<{ topic: string; status: string; note: string }>) {
    it(`refuses ${JSON.stringify(v.topic.length > 70 ? v.topic.slice(0, 70) + "…" : v.topic)} with ${v.status} (${v.note})`, () => {
      expect(matchTopic(v.topic)).toStrictEqual({ ok: false, status: v.status });
      expect(matchTopic(v.topic, { requests: true })).toMatchObject({ ok: v.topic.endsWith("/shadow/get") || v.topic.endsWith("/shadow/update") || v.topic.endsWith("/shadow/delete") });
      const e = errorOf(() => matchTopicOrThrow(v.topic));
      expect(e.code).toBe(SYNC_CODES.SYNC_TOPIC_INVALID);
      expect(e.detail).toEqual({ status: v.status });
    });
  }

  it("does not crash on a 1 MB topic and refuses it", () => {
    const t = "$aws/things/" + "a".repeat(1 << 20) + "/shadow/get/accepted";
    expect(matchTopic(t)).toStrictEqual({ ok: false, status: "THING_NAME_LENGTH_EXCEEDED" });
  });
});

describe("names and tokens", () => {
  const n = topics.names as Record<string, unknown[]>;
  it("accepts valid thing names, shadow names and tokens", () => {
    for (const t of n.thingValid!) expect(validateThingName(t)).toBe(t);
    for (const s of n.shadowValid!) expect(validateShadowName(s)).toBe(s);
    for (const c of n.tokenValid!) expect(validateClientToken(c)).toBe(c);
  });
  it("refuses invalid ones with typed errors", () => {
    for (const t of n.thingInvalid!) expect(errorOf(() => validateThingName(t)).code).toBe(SYNC_CODES.SYNC_NAME_INVALID);
    for (const s of n.shadowInvalid!) expect(errorOf(() => validateShadowName(s)).code).toBe(SYNC_CODES.SYNC_NAME_INVALID);
    for (const c of n.tokenInvalid!) {
      const e = errorOf(() => validateClientToken(c));
      expect(e.code).toBe(SYNC_CODES.SYNC_CLIENT_TOKEN_INVALID);
      expect(e.detail).toEqual({ status: 400, awsMessage: "Invalid clientToken" });
    }
  });
});

describe("service documents", () => {
  for (const v of docs.responses as Array<{ name: string; messageType: string; payload: string; expect: object }>) {
    it(`parses ${v.name} as ${v.messageType}`, () => {
      const m = parseResponse(v.messageType as ShadowMessageType, utf8Encode(v.payload));
      expect(m.type).toBe(v.messageType);
      expect(m.doc).toStrictEqual(v.expect);
    });
  }
  for (const v of docs.invalid as Array<{ name: string; messageType: string; payload?: string; payloadHex?: string; code: string; field?: string }>) {
    it(`refuses ${v.name} with ${v.code}`, () => {
      const e = errorOf(() => parseResponse(v.messageType as ShadowMessageType, payloadOf(v)));
      expect(e.code).toBe(v.code);
      if (v.field !== undefined) expect(e.detail?.field).toBe(v.field);
    });
  }

  it("refuses a 100 KB payload before decoding it", () => {
    const big = utf8Encode(JSON.stringify({ state: { desired: { blob: "x".repeat(100 * 1024) } }, version: 1 }));
    const e = errorOf(() => parseGetAccepted(big));
    expect(e.code).toBe(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE);
    expect(e.detail).toMatchObject({ size: big.length, max: 32 * 1024 });
    // A larger configured limit accepts it.
    expect(parseGetAccepted(big, { maxPayloadBytes: 200 * 1024 }).version).toBe(1);
  });

  it("refuses nesting past the configured depth and accepts it within", () => {
    const deep = utf8Encode('{"state":{"desired":{"a":{"b":{"c":1}}}},"version":3}'); // depth 5
    expect(errorOf(() => parseGetAccepted(deep, { maxDepth: 4 })).code).toBe(SYNC_CODES.SYNC_DEPTH_EXCEEDED);
    expect(parseGetAccepted(deep, { maxDepth: 5 }).state.desired).toEqual({ a: { b: { c: 1 } } });
  });

  it("a request topic has no response document", () => {
    expect(errorOf(() => parseResponse("update", utf8Encode("{}"))).code).toBe(SYNC_CODES.SYNC_TOPIC_INVALID);
  });

  it("a '__proto__' key is plain data", () => {
    const doc = parseGetAccepted(utf8Encode('{"state":{"desired":{"__proto__":{"polluted":1}}},"version":1}'));
    expect(Object.keys(doc.state.desired!)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("request builders", () => {
  type B = { name: string; fn: string; state?: JsonObject; options?: UpdateOptions; clientToken?: string; payload?: string; code?: string };
  // The desired builder is the cloud side's (test/sim/aws-shadow-cloud.test.ts runs those vectors).
  const run = (v: B): string => v.fn === "get" ? buildGetRequest(v.clientToken!) : buildReportedUpdate(v.state!, v.options);
  for (const v of (docs.build as B[]).filter((v) => v.fn !== "desired")) {
    it(`builds ${v.name} exactly`, () => {
      expect(run(v)).toBe(v.payload);
    });
  }
  for (const v of (docs.buildInvalid as B[]).filter((v) => v.fn !== "desired")) {
    it(`refuses to build ${v.name}`, () => {
      expect(errorOf(() => run(v)).code).toBe(v.code);
    });
  }
  it("refuses to build a state over 8 KB", () => {
    const e = errorOf(() => buildReportedUpdate({ blob: "x".repeat(AWS_SHADOW_LIMITS.STATE_MAX_BYTES) }));
    expect(e.code).toBe(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE);
  });
});
