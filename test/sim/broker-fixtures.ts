/**
 * Helpers for the broker and transport tests: a temporary PKI, raw mqtt.js clients that report how their
 * connection ended, message collectors and bounded waits. Loopback only; every wait has a deadline.
 * Not here: assertions about shadow or twin semantics.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mqtt from "mqtt";
import type { IClientOptions, MqttClient } from "mqtt";

import { LocalPki, type Credentials } from "../../src/sim/pki";

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

/** One PKI per test file (RSA key generation is the slow part: ~0.1 s per key). */
export function testPki(prefix: string): { pki: LocalPki; dir: string; cleanup(): void } {
  const dir = tempDir(prefix);
  const pki = LocalPki.open(path.join(dir, "certs"));
  return { pki, dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

export interface TestClient {
  client: MqttClient;
  received: Received[];
  /** Set when the connection closed (after having connected). */
  closed: boolean;
  errors: Error[];
  end(): Promise<void>;
}

export interface ConnectOutcome {
  connected: boolean;
  errors: Error[];
}

function options(port: number, creds: Partial<Pick<Credentials, "certPem" | "keyPem">> & { caPem: string }, clientId: string, extra: IClientOptions = {}): IClientOptions {
  const o: IClientOptions = {
    protocol: "mqtts", host: "127.0.0.1", port, clientId, protocolVersion: 4, clean: true, keepalive: 30,
    reconnectPeriod: 0, connectTimeout: 5_000, ca: creds.caPem, rejectUnauthorized: true, ...extra,
  };
  if (creds.certPem !== undefined) o.cert = creds.certPem;
  if (creds.keyPem !== undefined) o.key = creds.keyPem;
  return o;
}

/** Connects and resolves once CONNACK arrived; rejects with the errors seen when the connection ends first. */
export function connectClient(port: number, creds: Partial<Pick<Credentials, "certPem" | "keyPem">> & { caPem: string }, clientId: string, extra: IClientOptions = {}): Promise<TestClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(options(port, creds, clientId, extra));
    const t: TestClient = {
      client, received: [], closed: false, errors: [],
      end: () => new Promise<void>((r) => client.end(true, () => r())),
    };
    let connected = false;
    client.on("error", (e) => t.errors.push(e));
    client.on("message", (topic, payload, packet) => t.received.push({ topic, payload: payload.toString("utf8"), retain: packet.retain }));
    client.on("connect", () => { connected = true; resolve(t); });
    client.on("close", () => {
      t.closed = true;
      if (!connected) {
        client.end(true);
        const err = new Error(`connection ended before CONNACK: ${t.errors.map((e) => e.message).join("; ") || "no error reported"}`);
        (err as Error & { errors: Error[] }).errors = t.errors;
        reject(err);
      }
    });
  });
}

/** Tries to connect and reports whether a CONNACK 0 arrived (never rejects). */
export async function tryConnect(port: number, creds: Partial<Pick<Credentials, "certPem" | "keyPem">> & { caPem: string }, clientId: string, extra: IClientOptions = {}): Promise<ConnectOutcome> {
  try {
    const c = await connectClient(port, creds, clientId, extra);
    await c.end();
    return { connected: true, errors: c.errors };
  } catch (e) {
    return { connected: false, errors: (e as { errors?: Error[] }).errors ?? [e as Error] };
  }
}

export function subscribe(c: TestClient, topics: string | string[]): Promise<Array<{ topic: string; qos: number }>> {
  return new Promise((resolve, reject) => {
    c.client.subscribe(topics, { qos: 1 }, (err, granted) => {
      if (err) reject(Object.assign(err, { granted }));
      else resolve((granted ?? []).map((g) => ({ topic: g.topic, qos: g.qos })));
    });
  });
}

export function publish(c: TestClient, topic: string, payload: string, opts: { qos?: 0 | 1 | 2; retain?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    c.client.publish(topic, payload, { qos: opts.qos ?? 1, retain: opts.retain ?? false }, (err) => (err ? reject(err) : resolve()));
  });
}

/** Polls `pred` every 10 ms until it holds or `ms` passes; returns whether it held. */
export async function waitFor(pred: () => boolean, ms = 3_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(10);
  }
  return pred();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
