/**
 * Helpers for the local cloud's service tests (shadow-service, twin-service, cloud-store): a plain-TCP
 * aedes broker on 127.0.0.1 (aedes loaded the way broker-aedes.ts does, since Jest cannot import it), a
 * mosquitto on a loopback port for the independent-broker test, mqtt.js clients, an inbox that records
 * every message a client receives, and temporary data directories. Every wait is bounded.
 * Not here: TLS and broker policy (broker-fixtures.ts and the broker tests), assertions.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import mqtt, { type MqttClient } from "mqtt";

import { loadAedes } from "../../src/sim/broker-aedes";
import { MOSQUITTO } from "./mosquitto-gate";

export interface PlainBroker {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** aedes on 127.0.0.1 over plain TCP, port chosen by the system. */
export async function startPlainAedes(): Promise<PlainBroker> {
  const broker = await loadAedes().Aedes.createBroker();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    broker.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The Debian mosquitto on a loopback port over plain TCP, anonymous clients allowed (the services' tests
 *  only need an independent broker; TLS and ACLs are broker-mosquitto.ts's). Call it only from a test that
 *  mosquitto-gate.ts skips when mosquitto cannot run; throws when it is not there. */
export async function startPlainMosquitto(): Promise<PlainBroker> {
  const bin = MOSQUITTO;
  if (bin === undefined) throw new Error("startPlainMosquitto: mosquitto cannot run here; gate the test with itMosquitto (test/sim/mosquitto-gate.ts)");
  const dir = tempDir("cloud-mosquitto");
  fs.chmodSync(dir, 0o755); // started as root, mosquitto drops to its own user, which must read the config
  const port = await freePort();
  const conf = path.join(dir, "mosquitto.conf");
  fs.writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n`, { mode: 0o644 });
  const child: ChildProcess = spawn(bin, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => { log = (log + d.toString("utf8")).slice(-4000); });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  // Ready when a TCP connection is accepted (at most 50 tries, 100 ms apart).
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.once("error", () => resolve(false));
    });
    if (ok) break;
    if (i >= 50 || child.exitCode !== null) {
      child.kill("SIGKILL");
      throw new Error(`mosquitto did not listen on ${port}: ${log}`);
    }
    await sleep(100);
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    close: async () => {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A connected mqtt.js client (MQTT 3.1.1, clean session, no automatic reconnect). */
export async function connectPlain(url: string, clientId: string): Promise<MqttClient> {
  return mqtt.connectAsync(url, { clientId, protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: 5_000 });
}

export async function endClient(c: MqttClient): Promise<void> {
  await c.endAsync(true);
}

export interface InboxMessage { topic: string; payload: string; bytes: Buffer }

/** Records every message a client receives, in order. */
export class Inbox {
  readonly messages: InboxMessage[] = [];
  constructor(readonly client: MqttClient) {
    client.on("message", (topic, payload) => this.messages.push({ topic, payload: payload.toString("utf8"), bytes: payload }));
  }

  /** Resolves with the first message at index >= `from` that satisfies `pred`; rejects after `ms`. */
  async next(pred: (m: InboxMessage) => boolean, from = 0, ms = 5_000): Promise<InboxMessage> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.messages.slice(from).find(pred);
      if (m !== undefined) return m;
      if (Date.now() > end) throw new Error(`no matching message within ${ms} ms; got ${JSON.stringify(this.messages.slice(from).map((x) => x.topic))}`);
      await sleep(5);
    }
  }

  /** Drops what was recorded so far; returns the new start index (0). */
  clear(): number {
    this.messages.length = 0;
    return 0;
  }
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
