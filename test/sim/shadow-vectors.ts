/**
 * Reads test/vectors/shadow-service.json for the engine test (shadow-engine.test.ts) and the MQTT test
 * (shadow-service.test.ts): the scenario types, a step's payload bytes and its expected messages as full
 * topics. Not here: running the steps.
 */
import vectors from "../vectors/shadow-service.json";
import { shadowTopic, type ShadowMessageType, type ShadowOperation } from "../../src/core/aws-shadow";
import { utf8Encode } from "../../src/core/utf8";

export interface VectorStep {
  name: string;
  op: ShadowOperation;
  payload?: string;
  payloadHex?: string;
  shadowName?: string;
  /** "cloud": the MQTT run sends it through the admin API. */
  by?: "cloud";
  /** Seconds after T. */
  t?: number;
  expect: Array<{ topic: string; payload?: string }>;
}
export interface VectorScenario { name: string; thingName: string; steps: VectorStep[] }

export const T: number = vectors.T;
export const scenarios = vectors.scenarios as unknown as VectorScenario[];

export function stepBytes(s: VectorStep): Uint8Array {
  if (s.payloadHex !== undefined) return Uint8Array.from(Buffer.from(s.payloadHex, "hex"));
  return utf8Encode(s.payload ?? "");
}

/** The expected messages with full topics; `expect.any(String)` where the vector gives only the topic. */
export function expectedMessages(thingName: string, s: VectorStep): Array<{ topic: string; payload: unknown }> {
  return s.expect.map((e) => ({
    topic: shadowTopic(thingName, s.shadowName, e.topic as ShadowMessageType),
    payload: e.payload ?? expect.any(String),
  }));
}
