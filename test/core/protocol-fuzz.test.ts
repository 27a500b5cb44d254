/**
 * Random-input fuzzing of every topic matcher and document parser of the cloud protocols (aws-shadow.ts,
 * azure-twin.ts, cloud-protocol.ts): random bytes, random strings, random JSON wrapped in document
 * shapes, and byte-level mutations of the valid vectors. The only property: each call returns a result or
 * throws a ShadowOtaError, never anything else (no TypeError, no RangeError, no stack overflow), and
 * `classify` never throws at all. More than 10,000 generated cases per run in total (see RUNS). The parsers
 * only the local cloud runs (requests, reported patches) are fuzzed in test/sim/azure-twin-cloud.test.ts.
 * Jest subset only (runs on XS).
 */
import fc from "fast-check";
import awsDocs from "../vectors/aws-shadow-documents.json";
import awsTopics from "../vectors/aws-shadow-topics.json";
import azure from "../vectors/azure-twin.json";
import { ShadowOtaError } from "../../src/core/errors";
import type { Json, JsonObject } from "../../src/core/json";
import { utf8Encode } from "../../src/core/utf8";
import {
  SHADOW_RESPONSE_TYPES,
  buildReportedUpdate,
  matchTopic,
  parseResponse,
} from "../../src/core/aws-shadow";
import {
  buildReportedPatch,
  matchAzureTopic,
  parseDesiredPatchBody,
  parseFirmwareUpdatePayload,
  parseMethodRequest,
  parseTwinErrorBody,
  parseTwinGetBody,
} from "../../src/core/azure-twin";
import { awsProtocol, azureProtocol, type CloudProtocol } from "../../src/core/cloud-protocol";

const RUNS = { bytes: 1500, topics: 2500, json: 2500, mutations: 2500, builders: 1200 };
// 1500 + 2500 + 2500 + 2500 + 1200 = 10,200 generated inputs, each fed to several parsers.

let cases = 0;

/** Runs fn; a ShadowOtaError is an accepted outcome, anything else fails the property. */
function typedOnly(fn: () => unknown): void {
  cases++;
  try {
    fn();
  } catch (e) {
    if (e instanceof ShadowOtaError) return;
    throw e;
  }
}

const aws = awsProtocol({ thingName: "esp32-01" });
const awsNamed = awsProtocol({ thingName: "esp32-01", shadowName: "ota" });
const az = azureProtocol();
const protocols: CloudProtocol[] = [aws, awsNamed, az];

/** Topics the parsers care about, so random payloads reach the document parsers behind `classify`. */
const interestingTopics: string[] = [
  ...SHADOW_RESPONSE_TYPES.map((t) => `$aws/things/esp32-01/shadow/${t}`),
  ...SHADOW_RESPONSE_TYPES.map((t) => `$aws/things/esp32-01/shadow/name/ota/${t}`),
  "$iothub/twin/res/200/?$rid=1", "$iothub/twin/res/204/?$rid=2&$version=3", "$iothub/twin/res/409/?$rid=3",
  "$iothub/twin/res/500/?$rid=4", "$iothub/twin/PATCH/properties/desired/?$version=8",
  "$iothub/methods/POST/firmwareUpdate/?$rid=7",
];

/** Feeds one payload to every document parser and to each protocol's classify on the topics picked by `pick`. */
function allParsers(bytes: Uint8Array, pick: number): void {
  for (const t of SHADOW_RESPONSE_TYPES) typedOnly(() => parseResponse(t, bytes));
  typedOnly(() => parseTwinGetBody(bytes));
  typedOnly(() => parseDesiredPatchBody(bytes));
  typedOnly(() => parseMethodRequest("$iothub/methods/POST/firmwareUpdate/?$rid=7", bytes));
  typedOnly(() => parseTwinErrorBody(bytes)); // documented never to throw
  expect(typeof parseTwinErrorBody(bytes)).toBe("object");
  for (const [k, p] of protocols.entries()) {
    for (const topic of [interestingTopics[(pick + k) % interestingTopics.length]!, interestingTopics[(pick * 7 + k) % interestingTopics.length]!]) {
      cases++;
      const ev = p.classify(topic, bytes); // must not throw at all
      expect(typeof ev.kind).toBe("string");
      if (ev.kind === "invalid") expect(ev.error).toBeInstanceOf(ShadowOtaError);
    }
  }
}

function allTopicMatchers(topic: string): void {
  cases++;
  const a = matchTopic(topic);
  const r = matchTopic(topic, { requests: true });
  const z = matchAzureTopic(topic);
  expect(typeof a.ok).toBe("boolean");
  expect(typeof r.ok).toBe("boolean");
  expect(typeof z.ok).toBe("boolean");
  const empty = new Uint8Array(0);
  for (const p of protocols) expect(typeof p.classify(topic, empty).kind).toBe("string");
}

describe("protocol parsers under random input", () => {
  afterEach(() => {
    // Sanity: the properties really ran.
    expect(cases).toBeGreaterThan(0);
  });

  it("random bytes never escape as anything but ShadowOtaError", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (bytes, pick) => { allParsers(bytes, pick); }), { numRuns: RUNS.bytes });
  });

  it("random topics: matchers return a result, classify never throws", () => {
    const pieces = fc.constantFrom(
      "$aws", "things", "esp32-01", "shadow", "name", "ota", "get", "update", "delete", "accepted", "rejected",
      "delta", "documents", "$iothub", "twin", "res", "200", "204", "PATCH", "properties", "desired", "methods",
      "POST", "firmwareUpdate", "?$rid=1", "?$version=9", "&$rid=2", "&", "=", "?", "", "+", "#", "\u0000", "é",
    );
    const structured = fc.array(pieces, { maxLength: 9 }).map((a) => a.join("/"));
    const arb = fc.oneof(
      structured,
      fc.string({ maxLength: 200 }),
      fc.string({ unit: "binary", maxLength: 200 }),
      fc.tuple(fc.constantFrom(...interestingTopics), fc.string({ maxLength: 40 })).map(([t, s]) => t + s),
      fc.tuple(fc.constantFrom(...interestingTopics), fc.nat(80), fc.nat(80)).map(([t, a, b]) => t.slice(0, a) + t.slice(b)),
    );
    fc.assert(fc.property(arb, (topic) => { allTopicMatchers(topic); }), { numRuns: RUNS.topics });
  });

  it("random JSON in document shapes", () => {
    const json = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Json>;
    const shaped = fc.oneof(
      json,
      fc.record({ state: json, version: json }, { requiredKeys: [] }),
      fc.record({ state: fc.record({ desired: json, reported: json, delta: json }, { requiredKeys: [] }), version: json, timestamp: json, clientToken: json, metadata: json }, { requiredKeys: [] }),
      fc.record({ code: json, message: json, clientToken: json }, { requiredKeys: [] }),
      fc.record({ previous: json, current: json }, { requiredKeys: [] }),
      fc.record({ desired: json, reported: json }, { requiredKeys: [] }),
      fc.record({ $version: json, updateVersion: json, route: json }, { requiredKeys: [] }),
      fc.record({ version: json }, { requiredKeys: [] }),
      // Nesting around and past every depth limit, in the places the parsers look.
      fc.tuple(fc.integer({ min: 1, max: 24 }), fc.constantFrom("state", "desired", "a", "$version"), json).map(([n, key, leaf]) => {
        let v: Json = leaf;
        for (let i = 0; i < n; i++) v = i % 3 === 2 ? [v] : { [key]: v };
        return { state: { desired: v }, desired: v, reported: { $version: 1 }, version: 1, $version: 2 } as Json;
      }),
    );
    fc.assert(fc.property(shaped, fc.nat(), (doc, pick) => {
      allParsers(utf8Encode(JSON.stringify(doc)), pick);
      typedOnly(() => parseFirmwareUpdatePayload(doc as Json));
    }), { numRuns: RUNS.json });
  });

  it("byte mutations of the valid vectors", () => {
    const seeds: string[] = [
      ...(awsDocs.responses as Array<{ payload: string }>).map((r) => r.payload),
      ...(awsDocs.requests.valid as Array<{ payload: string }>).map((r) => r.payload),
      ...(azure.getBodies as Array<{ payload: string }>).map((r) => r.payload),
      ...(azure.desiredPatches as Array<{ payload: string }>).map((r) => r.payload),
    ];
    const mutation = fc.tuple(
      fc.constantFrom(...seeds),
      fc.array(fc.tuple(fc.nat(400), fc.nat(255), fc.constantFrom("replace", "insert", "delete", "dup")), { minLength: 1, maxLength: 6 }),
    ).map(([seed, edits]) => {
      let b = Array.from(utf8Encode(seed));
      for (const [pos, byte, op] of edits) {
        const i = b.length === 0 ? 0 : pos % b.length;
        if (op === "replace" && b.length > 0) b[i] = byte;
        else if (op === "insert") b.splice(i, 0, byte);
        else if (op === "delete") b.splice(i, 1);
        else b = b.slice(0, i).concat(b.slice(i, i + 8), b.slice(i));
      }
      return Uint8Array.from(b);
    });
    fc.assert(fc.property(mutation, fc.nat(), (bytes, pick) => { allParsers(bytes, pick); }), { numRuns: RUNS.mutations });
  });

  it("builders refuse what they cannot send, with typed errors only", () => {
    const key = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("a.b", "$v", "a b", "__proto__", ""));
    const obj = fc.dictionary(key, fc.jsonValue({ maxDepth: 8 }) as fc.Arbitrary<Json>, { maxKeys: 5 }) as fc.Arbitrary<JsonObject>;
    fc.assert(fc.property(obj, fc.string({ maxLength: 70 }), (patch, token) => {
      typedOnly(() => buildReportedUpdate(patch, { clientToken: token }));
      typedOnly(() => buildReportedPatch(patch));
      for (const p of protocols) typedOnly(() => p.reportRequest(patch, token, 3));
    }), { numRuns: RUNS.builders });
  });

  it("every failing topic vector classifies without throwing", () => {
    for (const f of awsTopics.fail as Array<{ topic: string }>) allTopicMatchers(f.topic);
    for (const f of azure.fail as Array<{ topic: string }>) allTopicMatchers(f.topic);
    expect(cases).toBeGreaterThanOrEqual(10000);
  });
});
