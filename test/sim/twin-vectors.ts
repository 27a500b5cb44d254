/**
 * Reads test/vectors/twin-service.json for twin-engine.test.ts and twin-service.test.ts: step types,
 * payload bytes, and the matcher for an expected message. Not here: running the steps.
 */
import vectors from "../vectors/twin-service.json";
import type { JsonObject } from "../../src/core/json";
import { utf8Encode } from "../../src/core/utf8";

export interface ExpectedTwinMessage {
  topic: string;
  /** Exact body. */
  payload?: string;
  /** The body is `{"message":"<code>: …"}`. */
  errorCode?: string;
}
export type TwinVectorStep =
  | { name: string; topic: string; payload?: string; payloadHex?: string; engineOnly?: boolean; expect: ExpectedTwinMessage[] }
  | { name: string; desired: JsonObject; expect: ExpectedTwinMessage[] };

export const deviceId: string = vectors.deviceId;
export const twinSteps = vectors.steps as unknown as TwinVectorStep[];
/** The steps that go over MQTT (all but `engineOnly`). */
export const mqttTwinSteps = twinSteps.filter((s) => !("topic" in s && s.engineOnly === true));

export function twinStepBytes(s: { payload?: string; payloadHex?: string }): Uint8Array {
  if (s.payloadHex !== undefined) return Uint8Array.from(Buffer.from(s.payloadHex, "hex"));
  return utf8Encode(s.payload ?? "");
}

/** Expected messages for `expect(...).toEqual`, with `prefix` put before every topic. */
export function expectedTwinMessages(s: TwinVectorStep, prefix = ""): Array<{ topic: string; payload: unknown }> {
  return s.expect.map((e) => ({
    topic: prefix + e.topic,
    payload: e.payload ?? expect.stringMatching(new RegExp(`^\\{"message":"${e.errorCode}: `)),
  }));
}
