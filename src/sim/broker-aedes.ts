/**
 * The local cloud's embedded MQTT broker: aedes 1.x over mutual TLS on loopback, with the access rules of
 * broker-policy.ts standing in for an AWS IoT policy and for IoT Hub's per-connection topic scoping.
 *
 * - TLS (node:tls): server certificate from LocalPki, `requestCert` + `rejectUnauthorized` against the
 *   local CA, TLS 1.2 or newer; ALPN `x-amzn-mqtt-ca` (and `mqtt`) is accepted, as on AWS's port 443.
 *   Session tickets (Node's default, keys per broker process) let a reconnecting client resume without a
 *   new RSA signature; the client certificate's identity and verification result travel in the session.
 *   The listen backlog is LISTEN_BACKLOG, so a fleet connecting at once queues instead of overflowing.
 * - Identity = the client certificate's CN. A device must connect with client id = CN (refused with
 *   CONNACK 5 "not authorized" otherwise, before it could take over anyone's session); a second connection
 *   with the same id drops the first (aedes does that). Service identities may use any client id; a device
 *   certificate with a name reserved for the services (isReservedIdentity, pki.ts) is refused.
 * - Publish: devices only to their own shadow request topics and the twin's request topics; a refused
 *   publish closes the connection (AWS does the same for a policy violation on MQTT 3.1.1). QoS 2 closes it
 *   too. RETAIN on a device's `$aws/...` publish closes it as well (AWS); elsewhere the flag is cleared
 *   (IoT Hub ignores it). A SUBSCRIBE at QoS 2 is granted QoS 1 (broker-fidelity.ts).
 * - Subscribe: devices only under their own roots; a refused filter gets SUBACK 0x80, and so does a `$aws/`
 *   filter over AWS's quotas (8 per SUBSCRIBE, 50 per connection; broker-fidelity.ts subscribeQuota).
 * - Keepalive: the CONNECT's keepalive is replaced before aedes arms its timer by the one the device's cloud
 *   applies (AWS 30–1200 s, 0 → 1200; IoT Hub at most 1177 s; `cloudOf`), so a silent device is dropped
 *   when that cloud would drop it.
 * - Azure: a device's `$iothub/...` topics become `devices/{CN}/$iothub/...` on publish (authorizePublish)
 *   and subscribe (authorizeSubscribe; a persistent session stores and restores the rewritten filter),
 *   and deliveries to the device lose the prefix again
 *   (authorizeForward, on a copy: aedes hands the same packet to every subscriber). A device's UNSUBSCRIBE
 *   of an `$iothub/...` filter is rewritten after aedes has answered it (aedes has no unsubscribe hook), so
 *   a delivery may still slip through between the UNSUBACK and the rewrite.
 *
 * - Hostile clients (BrokerLimits, broker-policy.ts): the TLS handshake must finish within
 *   `handshakeTimeoutMs` and CONNECT arrive within `connectTimeoutMs`; a remote address may hold at most
 *   `maxConnectionsPerAddress` sockets (more are closed on accept); a packet whose fixed header announces
 *   more than `maxPacketBytes` closes the connection before it is buffered (mqtt-frame-guard.ts), and a
 *   device's PUBLISH over its cloud's payload limit (AWS 128 KB, IoT Hub 256 KB) is refused like a policy
 *   violation. Each is logged as `broker.limit` with the rule.
 * - Nothing a client sends may end the process: the certificate CN is read once, when the handshake
 *   completes (a socket aedes has already destroyed has no certificate left to read), and every aedes
 *   callback refuses the client, instead of throwing, if its own code fails (`broker.callback-failed`).
 *
 * Loading: aedes 1.x is an ES module. Jest's module system cannot load it, so it is required through
 * Node's own loader (require(esm), Node >= 20.19), fetched with process.getBuiltinModule because Jest also
 * replaces `node:module`'s createRequire.
 *
 * - Persistent sessions (clean session 0) are aedes's, in memory, and expire `sessionExpiryMs` after the
 *   device disconnects (AWS's default hour): subscriptions and queued QoS 1 messages are dropped, and the next
 *   CONNECT gets session present 0. An Azure device's session keeps its subscriptions, but what was queued
 *   for it is dropped when it reconnects (IoT Hub keeps no notification for a disconnected device).
 *
 * Not here: shadow/twin behaviour (the services connect as ordinary clients with a service certificate),
 * persistent sessions across a broker restart, AWS's per-account and per-second quotas.
 */
import * as net from "node:net";
import * as tls from "node:tls";

import type { Aedes, AedesOptions, AedesPublishPacket, AuthenticateError, Client, PublishPacket } from "aedes";

import { ShadowOtaError } from "../core/errors";
import type { Log } from "../ports/log";
import { silentLog } from "../ports/log";
import {
  AWS_MQTT_ALPN, AZURE_TOPIC_ROOT, BROKER_CODES, azureToBroker, azureToDevice, brokerLimits, decidePublish, decideSubscribe,
  authenticateSas, deliveredTopic, identityOf, payloadLimitOf, type BrokerLimits, type Identity, type SasDeviceAuth,
} from "./broker-policy";
import { appliedKeepalive, grantedQos, retainedPublish, subscribeQuota, type SubscribeQuotaRule } from "./broker-fidelity";
import { FramedConnection } from "./mqtt-frame-guard";
import { CLOUD_SERVICE_IDENTITY, PKI_NAME_PATTERN, isReservedIdentity, type LocalPki } from "./pki";

export interface AedesBrokerOptions {
  /** The CA and server certificate come from here. */
  pki: LocalPki;
  /** Loopback address to listen on (default "127.0.0.1"). */
  host?: string;
  /** Port (default 0: the system picks one; read it from `port`). Pass an old broker's port to restart it. */
  port?: number;
  /** CNs with the cloud services' rights (default ["shadow-ota-cloud"]). */
  serviceIdentities?: readonly string[];
  /** Deadlines and caps against hostile clients (default DEFAULT_BROKER_LIMITS, per member). */
  limits?: Partial<BrokerLimits>;
  /** Azure devices may connect with a SAS token instead of a client certificate (IoT Hub's other way):
   *  the TLS handshake then no longer requires a certificate, CONNECT without a verified one must carry a
   *  valid token (broker-policy.ts authenticateSas), and the device is disconnected when its token expires. */
  sasAuth?: SasDeviceAuth;
  /** Which cloud a device id belongs to, for the keepalive each cloud applies (broker-fidelity.ts
   *  appliedKeepalive); undefined: not known (its keepalive is kept). A SAS device is an Azure one. */
  cloudOf?: (deviceId: string) => "aws" | "azure" | undefined;
  /** How long a device's persistent session (clean session 0) outlives its connection: its subscriptions
   *  and queued QoS 1 messages are dropped that long after it disconnects, unless it reconnects first.
   *  Default PERSISTENT_SESSION_EXPIRY_MS (AWS IoT Core's default, one hour). */
  sessionExpiryMs?: number;
  log?: Log;
}

/** AWS IoT Core's default persistent-session expiry ("MQTT persistent sessions": one hour after the broker
 *  detects the disconnect; adjustable on AWS up to 7 days). */
export const PERSISTENT_SESSION_EXPIRY_MS = 3_600_000;

type AedesModule = { Aedes: { createBroker(opts?: AedesOptions): Promise<Aedes> } };

let aedesModule: AedesModule | undefined;

/** Loads aedes through Node's own loader (see the header). Throws BROKER_START_FAILED when it cannot. */
export function loadAedes(): AedesModule {
  if (aedesModule !== undefined) return aedesModule;
  try {
    const getBuiltin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
    const nodeModule = (getBuiltin ? getBuiltin("node:module") : require("node:module")) as typeof import("node:module");
    aedesModule = nodeModule.createRequire(__filename)("aedes") as AedesModule;
    return aedesModule;
  } catch (cause) {
    throw new ShadowOtaError(BROKER_CODES.BROKER_START_FAILED, "cannot load aedes (needs Node >= 20.19 for require of an ES module)", { cause });
  }
}

/** The listen queue's length (Node's default is 511; Linux caps it at net.core.somaxconn, 4096 by default). */
export const LISTEN_BACKLOG = 4096;

function authError(message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: 5 }) as AuthenticateError; // 5 = not authorized
}

/** The verified client certificate's CN of a socket whose handshake has just completed, else undefined. */
function peerCn(socket: tls.TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerCertificate() as tls.PeerCertificate | null; // null once the socket is gone
  const cn = cert?.subject?.CN as unknown;
  return typeof cn === "string" ? cn : undefined;
}

type ParsedSubscription = { topic: string; qos: number };

/**
 * Both clouds grant at most QoS 1 (broker-fidelity.ts). aedes takes the granted QoS from the SUBSCRIBE as
 * parsed, before any hook runs, so the parsed packet is lowered here: a listener put ahead of aedes's own on
 * the client's mqtt-packet parser (`_parser`, aedes 1.x). The same listener sees the whole SUBSCRIBE, which
 * authorizeSubscribe (one filter at a time) does not, so it also hands each filter to `onSubscribe`
 * (AWS's per-SUBSCRIBE and per-connection quotas).
 */
function watchSubscribes(client: Client, onSubscribe: (subs: ParsedSubscription[]) => void): void {
  const parser = (client as unknown as { _parser?: { prependListener?(e: "packet", f: (p: { cmd?: string; subscriptions?: ParsedSubscription[] }) => void): void } })._parser;
  if (parser?.prependListener === undefined) throw new Error("aedes client has no parser to clamp SUBSCRIBE QoS on");
  parser.prependListener("packet", (p) => {
    if (p.cmd !== "subscribe" || p.subscriptions === undefined) return;
    for (const s of p.subscriptions) s.qos = grantedQos(s.qos);
    onSubscribe(p.subscriptions);
  });
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class AedesBroker {
  readonly host: string;
  readonly port: number;
  /** `mqtts://host:port` */
  readonly url: string;
  /** The aedes instance, for observers (`publish`, `clientReady` events). */
  readonly aedes: Aedes;
  readonly #server: tls.Server;
  readonly #sockets: Set<net.Socket>;
  readonly #identities: WeakMap<Client, Identity>;
  readonly #handshakes: { full: number; resumed: number };
  #closing: Promise<void> | undefined;

  private constructor(aedes: Aedes, server: tls.Server, sockets: Set<net.Socket>, identities: WeakMap<Client, Identity>, host: string, port: number, handshakes: { full: number; resumed: number }) {
    this.#handshakes = handshakes;
    this.aedes = aedes;
    this.#server = server;
    this.#sockets = sockets;
    this.#identities = identities;
    this.host = host;
    this.port = port;
    this.url = `mqtts://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  /** Starts the broker and resolves once it listens. Throws BROKER_OPTION_INVALID, BROKER_START_FAILED. */
  static async start(options: AedesBrokerOptions): Promise<AedesBroker> {
    const host = options.host ?? "127.0.0.1";
    const services = options.serviceIdentities ?? [CLOUD_SERVICE_IDENTITY];
    for (const s of services) {
      if (!PKI_NAME_PATTERN.test(s)) throw new ShadowOtaError(BROKER_CODES.BROKER_OPTION_INVALID, `service identity ${JSON.stringify(s)} is not a certificate name`);
    }
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ShadowOtaError(BROKER_CODES.BROKER_OPTION_INVALID, `port ${port} is out of range`);
    const limits = brokerLimits(options.limits);
    if (typeof limits === "string") throw new ShadowOtaError(BROKER_CODES.BROKER_OPTION_INVALID, limits);
    const log = options.log ?? silentLog;
    const server = options.pki.server();

    /** The CN read when each connection's handshake completed, by the stream aedes got for it. */
    const peers = new WeakMap<object, string | undefined>();
    const identities = new WeakMap<Client, Identity>();
    const who = (client: Client | null): Identity | undefined => (client ? identities.get(client) : undefined);
    const limit = (rule: string, fields: Record<string, string | number | null>): void =>
      log.log("warn", "broker.limit", { code: BROKER_CODES.BROKER_LIMIT_EXCEEDED, rule, ...fields });
    const failed = (callback: string, client: Client | null, e: unknown): void =>
      log.log("error", "broker.callback-failed", { code: BROKER_CODES.BROKER_CALLBACK_FAILED, callback, clientId: client?.id ?? null, message: messageOf(e) });

    /** Filters of a device's SUBSCRIBE over an AWS quota (subscribeQuota), by the parsed subscription. */
    const overQuota = new WeakMap<object, SubscribeQuotaRule>();
    const checkQuota = (client: Client, subs: ParsedSubscription[]): void => {
      try {
        if (who(client)?.kind !== "device") return;
        const held = new Set(Object.keys((client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {}));
        subscribeQuota(subs.map((x) => x.topic), held).forEach((rule, i) => { if (rule !== undefined) overQuota.set(subs[i]!, rule); });
      } catch (e) {
        failed("subscribeQuota", client, e);
      }
    };

    const aedes = await loadAedes().Aedes.createBroker({
      drainTimeout: 10_000, // a frozen subscriber must not stall delivery to everyone (see aedes docs)
      connectTimeout: limits.connectTimeoutMs,
      preConnect(client, packet, done) {
        // The keepalive each cloud applies (broker-fidelity.ts appliedKeepalive); aedes arms its keepalive
        // timer (1.5 × packet.keepalive) from this packet after authenticate.
        try {
          const cn = peers.get(client.conn);
          const id = identityOf(cn, services);
          const cloud = id?.kind === "device" ? options.cloudOf?.(id.name)
            : id === undefined && options.sasAuth !== undefined && packet.username !== undefined ? "azure" : undefined;
          const applied = appliedKeepalive(packet.keepalive ?? 0, cloud);
          if (applied !== packet.keepalive) {
            log.log("info", "broker.keepalive-applied", { clientId: String(packet.clientId).slice(0, 128), requested: packet.keepalive ?? 0, applied });
            packet.keepalive = applied;
          }
        } catch (e) {
          failed("preConnect", client, e);
        }
        done(null, true);
      },
      authenticate(client, _username, _password, done) {
        let id: Identity | undefined;
        try {
          id = identityOf(peers.get(client.conn), services);
        } catch (e) {
          failed("authenticate", client, e);
          return done(authError("internal error"), false);
        }
        if (id === undefined && options.sasAuth !== undefined) {
          let r: ReturnType<typeof authenticateSas>;
          try {
            r = authenticateSas(client.id, _username, _password, options.sasAuth);
          } catch (e) {
            failed("authenticate", client, e);
            return done(authError("internal error"), false);
          }
          if ("refused" in r) {
            log.log("warn", "broker.connect-refused", { clientId: client.id, reason: r.refused });
            return done(authError("not authorized"), false);
          }
          id = r.identity;
          // IoT Hub closes the connection when the token expires; the device must reconnect with a new one.
          const ms = Math.max(0, (r.expiry - options.sasAuth.now()) * 1000);
          const timer = setTimeout(() => {
            log.log("info", "broker.sas-expired", { clientId: client.id });
            client.close();
          }, Math.min(ms, 2 ** 31 - 1));
          timer.unref();
          client.conn.once?.("close", () => clearTimeout(timer));
        }
        if (id === undefined) {
          log.log("warn", "broker.connect-refused", { clientId: client.id, reason: "no usable certificate CN" });
          return done(authError("no usable client certificate"), false);
        }
        if (id.kind === "device" && isReservedIdentity(id.name)) {
          log.log("warn", "broker.connect-refused", { clientId: client.id, cn: id.name, reason: "a device certificate with a name reserved for the services" });
          return done(authError("reserved identity"), false);
        }
        if (id.kind === "device" && client.id !== id.name) {
          log.log("warn", "broker.connect-refused", { clientId: client.id, cn: id.name, reason: "client id is not the certificate CN" });
          return done(authError(`client id must be ${id.name}`), false);
        }
        identities.set(client, id);
        done(null, true);
      },
      authorizePublish(client, packet, done) {
        if (client === null) return done(null); // aedes replaying a will with no client: nothing to check
        let refusal: string | undefined;
        try {
          refusal = checkPublish(who(client), client, packet as PublishPacket);
        } catch (e) {
          failed("authorizePublish", client, e);
          refusal = "internal error";
        }
        done(refusal === undefined ? null : new Error(refusal));
      },
      authorizeSubscribe(client, sub, done) {
        const rule = overQuota.get(sub);
        if (rule !== undefined) {
          limit(rule, { clientId: client?.id ?? null, topic: String(sub.topic).slice(0, 256) });
          return done(null, null); // SUBACK 0x80 for this filter; the connection stays up
        }
        let d: ReturnType<typeof decideSubscribe>;
        try {
          const id = who(client);
          d = id === undefined ? { allow: false as const, reason: "unauthenticated" } : decideSubscribe(id, sub.topic);
        } catch (e) {
          failed("authorizeSubscribe", client, e);
          d = { allow: false, reason: "internal error" };
        }
        if (!d.allow) {
          log.log("warn", "broker.subscribe-refused", { clientId: client?.id ?? null, topic: String(sub.topic), reason: d.reason });
          return done(null, null); // SUBACK 0x80 for this filter; the connection stays up
        }
        // In place, not on a copy: aedes stores the SUBSCRIBE packet's own subscription objects for a
        // persistent session and routes QoS 1 deliveries to such sessions by those stored filters.
        sub.topic = d.topic;
        done(null, sub);
      },
      authorizeForward(client, packet) {
        try {
          const id = who(client);
          if (id === undefined) return null;
          const topic = deliveredTopic(id, packet.topic);
          if (topic === undefined) return null;
          // IoT Hub keeps nothing for a disconnected device ("doesn't preserve desired properties update
          // notifications for disconnected devices"): what a persistent session queued for an Azure device
          // is dropped when aedes hands it over during the reconnect (before the client counts as connected).
          if (id.kind === "device" && !client.connected && azureToDevice(id.name, packet.topic) !== undefined) {
            log.log("info", "broker.offline-dropped", { clientId: client.id, topic: topic.slice(0, 256) });
            return null;
          }
          return topic === packet.topic ? packet : ({ ...packet, topic } as AedesPublishPacket);
        } catch (e) {
          failed("authorizeForward", client, e);
          return null; // not delivered
        }
      },
    });

    /** Why a publish is refused (the connection is then closed), or undefined; rewrites an allowed one. */
    function checkPublish(id: Identity | undefined, client: Client, packet: PublishPacket): string | undefined {
      if (id === undefined) return "unauthenticated";
      if (packet.qos === 2) {
        log.log("warn", "broker.publish-refused", { clientId: client.id, topic: packet.topic, reason: "QoS 2" });
        return "QoS 2 is not supported";
      }
      const d = decidePublish(id, packet.topic);
      if (!d.allow) {
        log.log("warn", "broker.publish-refused", { clientId: client.id, topic: packet.topic, reason: d.reason });
        return d.reason;
      }
      const max = id.kind === "device" ? payloadLimitOf(d.topic) : undefined;
      const size = packet.payload?.length ?? 0;
      if (max !== undefined && size > max) {
        limit("payload-size", { clientId: client.id, topic: packet.topic, bytes: size, limit: max });
        return `payload of ${size} bytes over the ${max}-byte limit`;
      }
      if (packet.retain && retainedPublish(id, d.topic) === "refuse") {
        log.log("warn", "broker.publish-refused", { clientId: client.id, topic: packet.topic, reason: "RETAIN on a reserved topic" });
        return "RETAIN is not supported on this topic";
      }
      // aedes publishes this very packet object after the hook, so rewriting it here takes effect.
      packet.topic = d.topic;
      packet.retain = false;
      return undefined;
    }

    aedes.on("unsubscribe", (topics, client) => {
      try {
        const id = who(client);
        if (id?.kind !== "device") return;
        const own = topics.filter((t) => t.startsWith(AZURE_TOPIC_ROOT)).map((t) => azureToBroker(id.name, t));
        if (own.length === 0) return;
        client.unsubscribe({ unsubscriptions: own } as never, (err) => {
          if (err) log.log("warn", "broker.unsubscribe-failed", { clientId: client.id, message: err.message });
        });
        // aedes removed the unprefixed name from a persistent session's store, and without a message id
        // client.unsubscribe does not touch the store: remove the stored (prefixed) filter here.
        if (!client.clean) {
          (aedes as unknown as { persistence: { removeSubscriptions(c: Client, t: string[]): Promise<void> } }).persistence
            .removeSubscriptions(client, own)
            .catch((err: Error) => log.log("warn", "broker.unsubscribe-failed", { clientId: client.id, message: err.message }));
        }
      } catch (e) {
        failed("unsubscribe", client, e);
      }
    });
    // Persistent sessions expire (AWS: an hour after the disconnect); aedes alone keeps them forever.
    const expiryMs = options.sessionExpiryMs ?? PERSISTENT_SESSION_EXPIRY_MS;
    if (!Number.isSafeInteger(expiryMs) || expiryMs <= 0) throw new ShadowOtaError(BROKER_CODES.BROKER_OPTION_INVALID, `sessionExpiryMs must be a positive integer, not ${String(expiryMs)}`);
    const expiries = new Map<string, ReturnType<typeof setTimeout>>();
    const expire = async (clientId: string): Promise<void> => {
      const p = (aedes as unknown as { persistence: {
        cleanSubscriptions(c: { id: string }): Promise<void>;
        outgoingStream(c: { id: string }): AsyncIterable<{ messageId?: number }>;
        outgoingClearMessageId(c: { id: string }, packet: { messageId?: number }): Promise<unknown>;
      } }).persistence;
      const ghost = { id: clientId };
      await p.cleanSubscriptions(ghost);
      const queued: Array<{ messageId?: number }> = [];
      for await (const packet of p.outgoingStream(ghost)) queued.push(packet);
      for (const packet of queued) await p.outgoingClearMessageId(ghost, packet);
      log.log("info", "broker.session-expired", { clientId, dropped: queued.length });
    };
    aedes.on("clientDisconnect", (client) => {
      try {
        if (client.clean || who(client)?.kind !== "device") return;
        const id = client.id;
        clearTimeout(expiries.get(id));
        const timer = setTimeout(() => {
          expiries.delete(id);
          if ((aedes as unknown as { clients: Record<string, unknown> }).clients[id] !== undefined) return; // reconnected meanwhile
          expire(id).catch((e: unknown) => failed("sessionExpiry", null, e));
        }, Math.min(expiryMs, 2 ** 31 - 1));
        timer.unref();
        expiries.set(id, timer);
      } catch (e) {
        failed("clientDisconnect", client, e);
      }
    });
    aedes.on("clientReady", (client) => {
      const t = expiries.get(client.id);
      if (t !== undefined) { clearTimeout(t); expiries.delete(client.id); }
    });
    aedes.on("closed", () => { for (const t of expiries.values()) clearTimeout(t); expiries.clear(); });
    aedes.on("clientError", (client, err) => log.log("info", "broker.client-error", { clientId: client.id, message: err.message }));
    aedes.on("connectionError", (_client, err) => {
      if (/connect did not arrive in time/.test(err.message)) limit("connect-timeout", { limit: limits.connectTimeoutMs });
      else log.log("info", "broker.connection-error", { message: err.message });
    });

    /** Completed handshakes: full (RSA signature and certificate checks) or resumed from a session ticket. */
    const handshakes = { full: 0, resumed: 0 };
    const tlsServer = tls.createServer({
      key: server.keyPem, cert: server.certPem, ca: server.caPem,
      requestCert: true, rejectUnauthorized: options.sasAuth === undefined, minVersion: "TLSv1.2",
      ALPNProtocols: [AWS_MQTT_ALPN, "mqtt"],
      handshakeTimeout: limits.handshakeTimeoutMs,
    }, (socket) => {
      try {
        const conn = new FramedConnection(socket, limits.maxPacketBytes, (v) =>
          limit(v.reason === "too-large" ? "packet-size" : "packet-malformed", { bytes: v.declaredBytes ?? null, limit: v.limit }));
        peers.set(conn, peerCn(socket));
        handshakes.full += socket.isSessionReused() ? 0 : 1;
        handshakes.resumed += socket.isSessionReused() ? 1 : 0;
        const client = aedes.handle(conn);
        watchSubscribes(client, (subs) => checkQuota(client, subs));
      } catch (e) {
        failed("secureConnection", null, e);
        socket.destroy();
      }
    });
    const sockets = new Set<net.Socket>();
    const perAddress = new Map<string, number>();
    tlsServer.on("connection", (raw: net.Socket) => {
      const address = raw.remoteAddress ?? "";
      const count = perAddress.get(address) ?? 0;
      if (count >= limits.maxConnectionsPerAddress) {
        limit("connections-per-address", { address, limit: limits.maxConnectionsPerAddress });
        raw.destroy();
        return;
      }
      perAddress.set(address, count + 1);
      sockets.add(raw);
      raw.setNoDelay(true); // every PUBLISH/PUBACK is a small record: no waiting on the peer's delayed ACK
      raw.once("close", () => {
        sockets.delete(raw);
        const left = (perAddress.get(address) ?? 1) - 1;
        if (left > 0) perAddress.set(address, left);
        else perAddress.delete(address);
      });
    });
    // With a tlsClientError listener Node leaves the socket open, even after its own handshake timeout:
    // destroy it here, or an idle TCP connection holds its descriptor forever.
    tlsServer.on("tlsClientError", (err, socket) => {
      socket.destroy();
      if ((err as NodeJS.ErrnoException).code === "ERR_TLS_HANDSHAKE_TIMEOUT") limit("handshake-timeout", { limit: limits.handshakeTimeoutMs });
      else log.log("info", "broker.tls-refused", { message: err.message });
    });

    try {
      await new Promise<void>((resolve, reject) => {
        tlsServer.once("error", reject);
        // A deep accept queue: a fleet connecting at once must wait in it, not overflow it (the kernel caps
        // it at net.core.somaxconn).
        tlsServer.listen({ port, host, backlog: LISTEN_BACKLOG }, () => { tlsServer.off("error", reject); resolve(); });
      });
    } catch (cause) {
      await new Promise<void>((r) => aedes.close(() => r()));
      throw new ShadowOtaError(BROKER_CODES.BROKER_START_FAILED, `aedes cannot listen on ${host}:${port}`, { cause });
    }
    tlsServer.on("error", (err) => log.log("error", "broker.server-error", { message: err.message }));
    const address = tlsServer.address() as net.AddressInfo;
    const self = new AedesBroker(aedes, tlsServer, sockets, identities, host, address.port, handshakes);
    log.log("info", "broker.listening", { url: self.url });
    return self;
  }

  /** TLS handshakes completed since start: `full` ones cost the server an RSA signature, `resumed` ones
   *  (a client offering a session ticket this broker issued) only symmetric crypto. */
  get handshakes(): { full: number; resumed: number } {
    return { ...this.#handshakes };
  }

  /** Open TCP connections (including ones still in the TLS handshake). */
  get connectionCount(): number {
    return this.#sockets.size;
  }

  /** Stops listening, ends every connection and resolves when all is closed. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const serverClosed = new Promise<void>((r) => this.#server.close(() => r()));
      await new Promise<void>((r) => this.aedes.close(() => r()));
      for (const s of this.#sockets) s.destroy(); // handshakes in progress, clients aedes did not know yet
      await serverClosed;
    })();
    return this.#closing;
  }
}
