/**
 * A fault-injecting MQTT proxy for tests and the CLI (`npm run cloud -- proxy ...`): it sits between a device
 * and a broker, parses every packet in both directions with mqtt-packet (one parser per direction, so a
 * packet is always known by its type, topic and packet id, never guessed from bytes), and applies rules to
 * them: drop, delay, duplicate or reorder packets by type and count, cut the connection after a packet or in
 * the middle of one, corrupt a PUBLISH payload.
 *
 * Directions: "up" is device → broker (the client's packets: CONNECT, PUBLISH, PUBACK, SUBSCRIBE, ...),
 * "down" is broker → device (CONNACK, PUBLISH, PUBACK, SUBACK, ...).
 *
 * Rules (FaultRule) are counted over the proxy's whole life, not per connection: a rule with `skip: 2,
 * times: 1` acts on the third matching packet and never again, so a device that reconnects after a cut gets
 * through — that is what keeps a fault test bounded. The packets a rule matches: a type (mqtt-packet's
 * `cmd`, or "any"), a direction, and for PUBLISH / SUBSCRIBE / UNSUBSCRIBE optionally an MQTT topic filter
 * (`+`, `#`) the packet's topic (any of its filters) must match, and for PUBLISH a text its payload must
 * contain (to pick, say, the update's progress reports out of the device's reports). The first rule that matches and still has
 * times left decides; a packet no rule takes is forwarded unchanged.
 *
 * Actions, per packet:
 *   drop       not forwarded.
 *   delay      forwarded after `delayMs`; the packets behind it in the same direction wait too (a TCP
 *              stream cannot overtake itself).
 *   duplicate  forwarded 1 + `copies` times (a PUBLISH copy keeps its packet id and gets DUP set when QoS > 0,
 *              as a retransmission would).
 *   reorder    held back and forwarded right after the next packet of the same direction (the two swap).
 *   cut        forwarded, then both connections are destroyed.
 *   cut-mid    the first half of its bytes forwarded (at least one byte, never all), then both destroyed.
 *   corrupt    a PUBLISH's payload bytes are changed (a seeded choice of 1..4 bytes XORed with a non-zero
 *              value; an empty payload gets one byte) and the packet is re-encoded, so the framing stays
 *              valid and only the content is wrong. Other packet types are forwarded unchanged.
 *
 * Forwarding: each parsed packet is re-encoded with mqtt-packet's `generate` (for MQTT 3.1.1 the exact bytes
 * that came in; test/sim/mqtt-fault-proxy.test.ts checks this on literal packets). A stream the parser
 * refuses closes both connections (`proxy.parse-error`).
 *
 * TLS: the proxy cannot pass mutual TLS through and still read packets. The choice made here: it terminates
 * TLS towards the device with the local CA's server certificate (requesting and verifying the device's client
 * certificate), and re-originates mutual TLS towards the broker presenting the *device's own* certificate and
 * key, which the local PKI issued and holds (`pkiTls(pki)`). The broker therefore sees the same identity (CN)
 * as without the proxy and applies the same policy; neither the brokers nor their configuration change, so the
 * same proxy works in front of aedes and of every mosquitto instance. Plain TCP on either side is available
 * for unit tests (`downstreamTls` / `upstream.tls` left out).
 *
 * Not here: MQTT 5 properties' faults (5 is parsed and forwarded, but the project speaks 3.1.1), WebSockets,
 * faults below MQTT (TCP resets mid-handshake: cut the TLS socket yourself), anything non-loopback.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import * as tls from "node:tls";

import mqttPacket from "mqtt-packet";
import type { Packet, PacketCmd, Parser } from "mqtt-packet";

import { ShadowOtaError } from "../core/errors";
import type { Log } from "../ports/log";
import { silentLog } from "../ports/log";
import { LocalPki } from "./pki";
import { listenOn } from "./listen";

/** Stable codes of the proxy (a contract). */
export const PROXY_CODES = {
  /** A fault rule is malformed: unknown action or type, a count that is not a non-negative integer, a topic
   *  filter with a misplaced wildcard, JSON that is not an array of rules. `detail.index` names the rule. */
  PROXY_RULE_INVALID: "PROXY_RULE_INVALID",
  /** A start option is invalid (port out of range, non-loopback host). */
  PROXY_OPTION_INVALID: "PROXY_OPTION_INVALID",
  /** The proxy could not listen (port taken). `cause` holds the socket error. */
  PROXY_START_FAILED: "PROXY_START_FAILED",
} as const;

export type FaultDirection = "up" | "down";
export type FaultAction = "drop" | "delay" | "duplicate" | "reorder" | "cut" | "cut-mid" | "corrupt";
export const FAULT_ACTIONS: readonly FaultAction[] = ["drop", "delay", "duplicate", "reorder", "cut", "cut-mid", "corrupt"];
export const PACKET_TYPES: readonly PacketCmd[] = [
  "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp", "subscribe", "suback",
  "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth",
];

export interface FaultRule {
  action: FaultAction;
  /** mqtt-packet's `cmd` ("publish", "puback", "suback", ...) or "any". */
  type: PacketCmd | "any";
  /** Default "both". */
  direction?: FaultDirection | "both";
  /** PUBLISH / SUBSCRIBE / UNSUBSCRIBE only: an MQTT topic filter the topic (or one of the filters) matches. */
  topic?: string;
  /** PUBLISH only: the payload contains this text (UTF-8), e.g. "\"Downloading\"" for a progress report. */
  payload?: string;
  /** Matching packets let through untouched before the rule acts (default 0). */
  skip?: number;
  /** Matching packets the rule acts on, after `skip` (default 1). */
  times?: number;
  /** "delay": milliseconds (default 100). */
  delayMs?: number;
  /** "duplicate": extra copies (default 1). */
  copies?: number;
}

/** One applied fault, in order (tests wait on these; the CLI logs them). */
export interface FaultEvent {
  /** 1-based number of the connection (accept order). */
  connection: number;
  direction: FaultDirection;
  type: PacketCmd;
  action: FaultAction;
  /** Index of the rule in the proxy's rule list. */
  rule: number;
  topic?: string;
  messageId?: number;
}

const MQTT_FILTER = /^(?:[^#+]*|\+)(?:\/(?:[^#+]*|\+))*(?:\/#)?$|^#$/;

/** Checks rules given as JSON (CLI, files); returns them typed. Throws PROXY_RULE_INVALID. */
export function parseFaultRules(value: unknown): FaultRule[] {
  if (!Array.isArray(value)) throw ruleError(-1, "fault rules must be a JSON array of rule objects");
  return value.map((r, i) => checkRule(r, i));
}

function ruleError(index: number, message: string): ShadowOtaError {
  return new ShadowOtaError(PROXY_CODES.PROXY_RULE_INVALID, index >= 0 ? `rule ${index}: ${message}` : message, { detail: { index } });
}

function checkRule(r: unknown, i: number): FaultRule {
  if (typeof r !== "object" || r === null || Array.isArray(r)) throw ruleError(i, "not an object");
  const o = r as Record<string, unknown>;
  const known = new Set(["action", "type", "direction", "topic", "payload", "skip", "times", "delayMs", "copies"]);
  for (const k of Object.keys(o)) if (!known.has(k)) throw ruleError(i, `unknown member ${JSON.stringify(k)}`);
  if (!FAULT_ACTIONS.includes(o.action as FaultAction)) throw ruleError(i, `action must be one of ${FAULT_ACTIONS.join(", ")}`);
  if (o.type !== "any" && !PACKET_TYPES.includes(o.type as PacketCmd)) throw ruleError(i, `type must be "any" or one of ${PACKET_TYPES.join(", ")}`);
  if (o.direction !== undefined && o.direction !== "up" && o.direction !== "down" && o.direction !== "both") throw ruleError(i, "direction must be up, down or both");
  if (o.topic !== undefined && (typeof o.topic !== "string" || o.topic.length === 0 || !MQTT_FILTER.test(o.topic))) throw ruleError(i, "topic must be an MQTT topic filter");
  if (o.payload !== undefined && (typeof o.payload !== "string" || o.payload.length === 0)) throw ruleError(i, "payload must be a non-empty string");
  for (const k of ["skip", "times", "delayMs", "copies"] as const) {
    const v = o[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < 0)) throw ruleError(i, `${k} must be a non-negative integer`);
  }
  return o as unknown as FaultRule;
}

/** MQTT topic-filter matching (3.1.1 §4.7): `+` one level, `#` the rest; `$` topics only by explicit filters. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function topicsOf(p: Packet): string[] {
  switch (p.cmd) {
    case "publish": return [p.topic];
    case "subscribe": return p.subscriptions.map((s) => s.topic);
    case "unsubscribe": return p.unsubscriptions.slice();
    default: return [];
  }
}

/** xorshift32: the same seed gives the same corruption on every run. */
function xorshift32(seed: number): () => number {
  let x = (seed >>> 0) || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

/**
 * The rules and their counters: which action, if any, a packet gets. Pure bookkeeping, no I/O; shared by
 * every connection of a proxy.
 */
export class FaultPlan {
  readonly #rules: Array<{ rule: FaultRule; seen: number; applied: number }> = [];
  readonly #random: () => number;

  constructor(rules: readonly FaultRule[] = [], seed = 1) {
    for (const r of rules) this.add(r);
    this.#random = xorshift32(seed);
  }

  /** Appends a rule (checked; throws PROXY_RULE_INVALID). Returns its index. */
  add(rule: FaultRule): number {
    this.#rules.push({ rule: checkRule(rule, this.#rules.length), seen: 0, applied: 0 });
    return this.#rules.length - 1;
  }

  /** Removes every rule (counters too). */
  clear(): void {
    this.#rules.length = 0;
  }

  /** How often each rule has acted so far. */
  applied(): number[] {
    return this.#rules.map((r) => r.applied);
  }

  /** The action for this packet, and the rule's index; undefined to forward it unchanged. */
  decide(direction: FaultDirection, packet: Packet): { action: FaultAction; rule: number; r: FaultRule } | undefined {
    const topics = topicsOf(packet);
    for (let i = 0; i < this.#rules.length; i++) {
      const e = this.#rules[i]!;
      const { rule } = e;
      if (rule.type !== "any" && rule.type !== packet.cmd) continue;
      if ((rule.direction ?? "both") !== "both" && rule.direction !== direction) continue;
      if (rule.topic !== undefined && !topics.some((t) => topicMatches(rule.topic!, t))) continue;
      if (rule.payload !== undefined && (packet.cmd !== "publish" || !Buffer.from(packet.payload).includes(rule.payload, 0, "utf8"))) continue;
      const skip = rule.skip ?? 0;
      const times = rule.times ?? 1;
      if (e.applied >= times) continue;
      e.seen++;
      if (e.seen <= skip) continue;
      e.applied++;
      return { action: rule.action, rule: i, r: rule };
    }
    return undefined;
  }

  /** A copy of `payload` with 1..4 seeded bytes changed (one byte when it was empty). */
  corrupt(payload: Buffer): Buffer {
    if (payload.length === 0) return Buffer.from([(this.#random() & 0xff) | 1]);
    const out = Buffer.from(payload);
    const n = 1 + (this.#random() % Math.min(4, out.length));
    for (let k = 0; k < n; k++) {
      const at = this.#random() % out.length;
      out[at] = out[at]! ^ ((this.#random() % 255) + 1);
    }
    return out;
  }
}

/** Where a direction's packets go; `destroy` ends both sides of the connection. */
interface Sink {
  write(bytes: Buffer): void;
  destroy(reason: string): void;
}

/**
 * One direction of one connection: parses the bytes fed to it and forwards packets to `sink` after the
 * plan's faults. Exposed for the unit tests, which feed it literal bytes.
 */
export class FaultPipe {
  readonly direction: FaultDirection;
  readonly #plan: FaultPlan;
  readonly #sink: Sink;
  readonly #onEvent: (e: FaultEvent) => void;
  readonly #connection: number;
  readonly #log: Log;
  #parser: Parser;
  #protocolVersion: number;
  /** Serialises output so that a delay holds back what follows. */
  #chain: Promise<void> = Promise.resolve();
  #held: Buffer | undefined;
  #dead = false;
  /** Set once the stream could not be parsed: nothing more is parsed. */
  #stopped = false;
  /** Called when this (up) pipe parses CONNECT: the down pipe's parser needs the protocol version. */
  onConnect: ((protocolVersion: number) => void) | undefined;
  /** Sees every packet parsed, before faults (counters). */
  onPacket: ((packet: Packet) => void) | undefined;

  constructor(o: { direction: FaultDirection; plan: FaultPlan; sink: Sink; connection?: number; onEvent?: (e: FaultEvent) => void; protocolVersion?: number; log?: Log }) {
    this.direction = o.direction;
    this.#plan = o.plan;
    this.#sink = o.sink;
    this.#connection = o.connection ?? 1;
    this.#onEvent = o.onEvent ?? (() => {});
    this.#log = o.log ?? silentLog;
    this.#protocolVersion = o.protocolVersion ?? 4;
    this.#parser = this.#newParser();
  }

  #newParser(): Parser {
    const p = mqttPacket.parser({ protocolVersion: this.#protocolVersion });
    p.on("packet", (packet: Packet) => this.#packet(packet));
    p.on("error", (err: Error) => {
      this.#log.log("warn", "proxy.parse-error", { connection: this.#connection, direction: this.direction, message: err.message });
      // What was parsed before the bad bytes still goes out, then the connection ends.
      this.#stopped = true;
      this.#chain = this.#chain.then(() => this.kill(`unparsable ${this.direction} stream: ${err.message}`));
    });
    return p;
  }

  /** The protocol version for the packets that follow (the down pipe learns it from the client's CONNECT). */
  setProtocolVersion(v: number): void {
    if (v === this.#protocolVersion) return;
    this.#protocolVersion = v;
    this.#parser = this.#newParser();
  }

  /** Feeds bytes as they arrive, split anywhere. */
  feed(bytes: Buffer): void {
    if (this.#dead || this.#stopped) return;
    this.#parser.parse(bytes);
  }

  /** Stops forwarding and ends the connection. */
  kill(reason: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#sink.destroy(reason);
  }

  get dead(): boolean {
    return this.#dead;
  }

  /** Resolves once everything decided so far has been written (delays included). */
  drained(): Promise<void> {
    return this.#chain;
  }

  #encode(packet: Packet): Buffer {
    return mqttPacket.generate(packet, { protocolVersion: this.#protocolVersion });
  }

  #emit(bytes: Buffer): void {
    this.#chain = this.#chain.then(() => { if (!this.#dead) this.#sink.write(bytes); });
  }

  #packet(packet: Packet): void {
    if (this.#dead || this.#stopped) return;
    this.onPacket?.(packet);
    if (packet.cmd === "connect" && this.direction === "up") {
      const v = packet.protocolVersion ?? 4;
      this.#protocolVersion = v;
      this.onConnect?.(v);
    }
    const d = this.#plan.decide(this.direction, packet);
    let bytes = this.#encode(packet);
    if (d !== undefined) {
      const e: FaultEvent = { connection: this.#connection, direction: this.direction, type: packet.cmd, action: d.action, rule: d.rule };
      if (packet.cmd === "publish") e.topic = packet.topic;
      if (packet.messageId !== undefined) e.messageId = packet.messageId;
      this.#onEvent(e);
      this.#log.log("info", "proxy.fault", { ...e });
    }
    switch (d?.action) {
      case undefined:
        break;
      case "drop":
        return;
      case "delay": {
        const ms = d.r.delayMs ?? 100;
        this.#chain = this.#chain.then(() => new Promise<void>((r) => setTimeout(r, ms)));
        break;
      }
      case "duplicate": {
        const again = packet.cmd === "publish" && packet.qos > 0 ? this.#encode({ ...packet, dup: true }) : bytes;
        this.#emitWithHeld(bytes);
        for (let i = 0; i < (d.r.copies ?? 1); i++) this.#emit(again);
        return;
      }
      case "reorder":
        if (this.#held !== undefined) this.#emit(this.#held); // two reorders in a row: keep them in order
        this.#held = bytes;
        return;
      case "cut":
        this.#emitWithHeld(bytes);
        this.#chain = this.#chain.then(() => this.kill("cut after a packet"));
        return;
      case "cut-mid": {
        const half = bytes.subarray(0, Math.max(1, Math.min(bytes.length - 1, Math.floor(bytes.length / 2))));
        this.#emitWithHeld(Buffer.from(half));
        this.#chain = this.#chain.then(() => this.kill("cut in the middle of a packet"));
        return;
      }
      case "corrupt":
        if (packet.cmd === "publish") bytes = this.#encode({ ...packet, payload: this.#plan.corrupt(Buffer.from(packet.payload)) });
        break;
    }
    this.#emitWithHeld(bytes);
  }

  /** Writes `bytes`, then a packet held back by "reorder". */
  #emitWithHeld(bytes: Buffer): void {
    this.#emit(bytes);
    if (this.#held !== undefined) {
      const h = this.#held;
      this.#held = undefined;
      this.#emit(h);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The proxy server

export interface ProxyUpstream {
  host: string;
  port: number;
  /** TLS towards the broker, given the device's verified certificate CN (undefined on a plain downstream);
   *  omit for plain TCP. */
  tls?: (peerCn: string | undefined) => tls.ConnectionOptions;
}

export interface MqttFaultProxyOptions {
  upstream: ProxyUpstream;
  /** Loopback address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: chosen by the system; read `port`). */
  port?: number;
  /** TLS towards the device (server options); omit for plain TCP. */
  downstreamTls?: tls.TlsOptions;
  rules?: readonly FaultRule[];
  /** Seed of the corruption's byte choice (default 1). */
  seed?: number;
  /** Sees every packet as parsed, before faults (tests observe the traffic with it). */
  onPacket?: (direction: FaultDirection, packet: Packet, connection: number) => void;
  log?: Log;
}

/**
 * TLS for both hops from the local PKI (see the header): towards the device the brokers' server certificate
 * with the device's certificate required; towards the broker the device's own certificate and key.
 */
export function pkiTls(pki: LocalPki): { downstreamTls: tls.TlsOptions; upstreamTls: (cn: string | undefined) => tls.ConnectionOptions } {
  const server = pki.server();
  return {
    downstreamTls: { key: server.keyPem, cert: server.certPem, ca: server.caPem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" },
    upstreamTls: (cn) => {
      if (cn === undefined) throw new Error("no verified device certificate to present upstream");
      const c = pki.client(cn);
      return { ca: c.caPem, cert: c.certPem, key: c.keyPem, rejectUnauthorized: true, minVersion: "TLSv1.2" };
    },
  };
}

const LOOPBACK = /^(?:127\.\d+\.\d+\.\d+|::1|localhost)$/;

export class MqttFaultProxy {
  readonly host: string;
  readonly port: number;
  readonly plan: FaultPlan;
  /** Every fault applied, in order. */
  readonly events: FaultEvent[] = [];
  /** Packets seen, by `${direction} ${type}` (e.g. "down suback"). */
  readonly counts = new Map<string, number>();
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #onPacket: MqttFaultProxyOptions["onPacket"];
  #connections = 0;
  #closing: Promise<void> | undefined;

  private constructor(server: net.Server, plan: FaultPlan, host: string, port: number, onPacket: MqttFaultProxyOptions["onPacket"]) {
    this.#server = server;
    this.#onPacket = onPacket;
    this.plan = plan;
    this.host = host;
    this.port = port;
  }

  /** Starts listening. Throws PROXY_OPTION_INVALID, PROXY_RULE_INVALID, PROXY_START_FAILED. */
  static async start(o: MqttFaultProxyOptions): Promise<MqttFaultProxy> {
    const host = o.host ?? "127.0.0.1";
    if (!LOOPBACK.test(host) || !LOOPBACK.test(o.upstream.host)) throw new ShadowOtaError(PROXY_CODES.PROXY_OPTION_INVALID, "the proxy listens and connects on loopback only");
    for (const p of [o.port ?? 0, o.upstream.port]) {
      if (!Number.isInteger(p) || p < 0 || p > 65535) throw new ShadowOtaError(PROXY_CODES.PROXY_OPTION_INVALID, `port ${p} is out of range`);
    }
    const plan = new FaultPlan(o.rules ?? [], o.seed ?? 1);
    const log = o.log ?? silentLog;
    let self: MqttFaultProxy | undefined;
    const onSocket = (down: net.Socket, peerCn: string | undefined): void => {
      if (self === undefined) { down.destroy(); return; }
      self.#accept(down, peerCn, o.upstream, log);
    };
    const server: net.Server = o.downstreamTls !== undefined
      ? tls.createServer(o.downstreamTls, (s) => onSocket(s, peerCn(s)))
      : net.createServer((s) => onSocket(s, undefined));
    if (server instanceof tls.Server) server.on("tlsClientError", (err, s) => { log.log("info", "proxy.tls-refused", { message: err.message }); s.destroy(); });
    try {
      await listenOn(server, o.port ?? 0, host);
    } catch (cause) {
      throw new ShadowOtaError(PROXY_CODES.PROXY_START_FAILED, `the proxy cannot listen on ${host}:${o.port ?? 0}`, { cause });
    }
    self = new MqttFaultProxy(server, plan, host, (server.address() as net.AddressInfo).port, o.onPacket);
    const sockets = self.#sockets;
    server.on("connection", (s: net.Socket) => { sockets.add(s); s.once("close", () => sockets.delete(s)); });
    log.log("info", "proxy.listening", { host, port: self.port, upstream: `${o.upstream.host}:${o.upstream.port}` });
    return self;
  }

  /** Adds a rule now (applies to packets parsed from now on). Returns its index. */
  addRule(rule: FaultRule): number {
    return this.plan.add(rule);
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.#connections;
  }

  /** How many `type` packets went `direction` so far (counted as parsed, before faults). */
  count(direction: FaultDirection, type: PacketCmd): number {
    return this.counts.get(`${direction} ${type}`) ?? 0;
  }

  /** Destroys every open connection (a network outage), keeps listening. */
  cutAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  #accept(down: net.Socket, cn: string | undefined, upstream: ProxyUpstream, log: Log): void {
    const n = ++this.#connections;
    let up: net.Socket;
    try {
      up = upstream.tls !== undefined
        ? tls.connect({ host: upstream.host, port: upstream.port, servername: net.isIP(upstream.host) ? undefined : upstream.host, ...upstream.tls(cn) })
        : net.connect(upstream.port, upstream.host);
    } catch (e) {
      log.log("warn", "proxy.upstream-failed", { connection: n, message: e instanceof Error ? e.message : String(e) });
      down.destroy();
      return;
    }
    this.#sockets.add(up);
    up.once("close", () => this.#sockets.delete(up));
    let ended = false;
    const end = (reason: string): void => {
      if (ended) return;
      ended = true;
      log.log("info", "proxy.connection-closed", { connection: n, reason });
      down.destroy();
      up.destroy();
    };
    const sink = (to: net.Socket): Sink => ({ write: (b) => { if (!to.destroyed) to.write(b); }, destroy: end });
    const onEvent = (e: FaultEvent): void => { this.events.push(e); };
    const upPipe = new FaultPipe({ direction: "up", plan: this.plan, sink: sink(up), connection: n, onEvent, log });
    const downPipe = new FaultPipe({ direction: "down", plan: this.plan, sink: sink(down), connection: n, onEvent, log });
    upPipe.onConnect = (v) => downPipe.setProtocolVersion(v);
    down.on("data", (b: Buffer) => upPipe.feed(b));
    up.on("data", (b: Buffer) => downPipe.feed(b));
    down.on("error", (e) => end(`device side: ${e.message}`));
    up.on("error", (e) => end(`broker side: ${e.message}`));
    down.on("close", () => end("device closed"));
    up.on("close", () => end("broker closed"));
    this.#track(upPipe, n);
    this.#track(downPipe, n);
  }

  #track(pipe: FaultPipe, connection: number): void {
    pipe.onPacket = (p) => {
      const k = `${pipe.direction} ${p.cmd}`;
      this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
      this.#onPacket?.(pipe.direction, p, connection);
    };
  }

  /** Stops listening and destroys every connection. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const s of this.#sockets) s.destroy();
    });
    return this.#closing;
  }
}

function peerCn(s: tls.TLSSocket): string | undefined {
  if (!s.authorized) return undefined;
  const cn = (s.getPeerCertificate() as tls.PeerCertificate | null)?.subject?.CN as unknown;
  return typeof cn === "string" ? cn : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// `npm run cloud -- proxy` (wired in cli.ts)

export interface ProxyCommandOptions {
  /** The running cloud's data directory (its cloud.json says where the broker and the CA are). */
  dataDir: string;
  /** Listen port (default 0: printed). */
  port?: number;
  /** Proxy this device's broker (needed for an Azure device on mosquitto, which has its own instance). */
  device?: string;
  /** Rules as JSON text, or `@FILE` to read them from a file. */
  rules?: string;
  seed?: number;
  print(line: string): void;
  /** Ends the command (without it, it runs until SIGINT / SIGTERM). */
  signal?: AbortSignal;
}

/**
 * Runs a fault proxy in front of the running local cloud until stopped, printing each fault as a JSON line.
 * Throws PROXY_RULE_INVALID, PROXY_OPTION_INVALID, PROXY_START_FAILED, and an Error when no cloud runs.
 */
export async function runProxyCommand(o: ProxyCommandOptions): Promise<void> {
  const file = path.join(o.dataDir, "cloud.json");
  let info: { host: string; mqttPort: number; azurePorts?: Record<string, number>; certsDir: string };
  try {
    info = JSON.parse(fs.readFileSync(file, "utf8")) as typeof info;
  } catch {
    throw new Error(`no running local cloud: ${file} is missing (start one with: npm run cloud -- start)`);
  }
  let rulesText = o.rules ?? "[]";
  if (rulesText.startsWith("@")) rulesText = fs.readFileSync(rulesText.slice(1), "utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(rulesText);
  } catch {
    throw new ShadowOtaError(PROXY_CODES.PROXY_RULE_INVALID, `the rules are not JSON: ${rulesText.slice(0, 200)}`, { detail: { index: -1 } });
  }
  const rules = parseFaultRules(parsed);
  const upstreamPort = (o.device !== undefined ? info.azurePorts?.[o.device] : undefined) ?? info.mqttPort;
  const { downstreamTls, upstreamTls } = pkiTls(LocalPki.open(info.certsDir));
  const proxy = await MqttFaultProxy.start({
    upstream: { host: info.host, port: upstreamPort, tls: upstreamTls }, downstreamTls, rules,
    ...(o.port === undefined ? {} : { port: o.port }), ...(o.seed === undefined ? {} : { seed: o.seed }),
  });
  const printed = { n: 0 };
  o.print(`fault proxy on mqtts://${proxy.host}:${proxy.port} → mqtts://${info.host}:${upstreamPort}, ${rules.length} rule(s); ` +
    `point a device at it: npm run cloud -- device --id ID --mqtt-port ${proxy.port}`);
  const timer = setInterval(() => {
    while (printed.n < proxy.events.length) o.print(JSON.stringify(proxy.events[printed.n++]));
  }, 100);
  await new Promise<void>((resolve) => {
    const stop = (): void => { process.off("SIGINT", stop); process.off("SIGTERM", stop); resolve(); };
    if (o.signal !== undefined) {
      if (o.signal.aborted) return stop();
      o.signal.addEventListener("abort", stop, { once: true });
    } else {
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    }
  });
  clearInterval(timer);
  while (printed.n < proxy.events.length) o.print(JSON.stringify(proxy.events[printed.n++]));
  await proxy.close();
}
