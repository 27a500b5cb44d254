/**
 * What each identity may do on the local cloud's MQTT brokers, written once and enforced twice: in code by
 * the aedes broker (broker-aedes.ts) and as an ACL file by the mosquitto launcher (broker-mosquitto.ts).
 * It plays the part of an AWS IoT policy and of IoT Hub's per-connection topic scoping:
 *
 * - A device is identified by its client certificate's CN (= thing name / device id). It may only use its
 *   own shadows, `$aws/things/{CN}/shadow/...` (classic and named), and Azure's device-id-less
 *   `$iothub/...` topics, which the aedes broker rewrites to `devices/{CN}/$iothub/...` so that a device
 *   can only ever reach its own twin traffic (mosquitto instead runs one broker per Azure device, because
 *   its mount_point is broken in 2.0.11; see CONTEXT.md).
 * - A device may publish its log lines (src/core/log-mirror.ts) on exactly its own logs topic: AWS
 *   `shadow-ota/things/{CN}/logs` (an ordinary topic: AWS reserves `$aws/...`, so a real device's IoT policy
 *   must allow iot:Publish on it), Azure `devices/{CN}/messages/events/{property bag}` (IoT Hub's
 *   device-to-cloud telemetry topic, which names the device itself).
 * - An Azure device may instead authenticate as IoT Hub allows, with a SAS token as MQTT password and no
 *   client certificate (authenticateSas; aedes only): the identity is then the device id it proved.
 * - A cloud-service identity (default CN "shadow-ota-cloud") may use every topic but `$SYS/...`.
 * - Nobody may publish at QoS 2 (AWS never acknowledges it, Azure closes the connection); RETAIN is ignored.
 *
 * - What a client may cost the broker (BrokerLimits): deadlines for the TLS handshake and for CONNECT, a
 *   cap on connections per remote address, and a cap on packet size at the clouds' message limits.
 *
 * Pure functions and constants only; no I/O.
 * Not here: shadow or twin semantics (the services own those), AWS's per-connection quotas.
 */
import { AWS_SHADOW_LIMITS } from "../core/aws-shadow";
import { deviceResourceUri, verifySasToken } from "../core/sas-token";
import { DEFAULT_LOG_TOPIC_PREFIX } from "../core/log-mirror";
import { CLOUD_SERVICE_IDENTITY, PKI_NAME_PATTERN } from "./pki";

/** Stable codes of the brokers and their launchers (a contract). */
export const BROKER_CODES = {
  /** The `mosquitto` executable is not installed (tests print "mosquitto not installed: skipping …"). */
  BROKER_NOT_INSTALLED: "BROKER_NOT_INSTALLED",
  /** The broker could not start: the port is taken, the config is refused, the process exited.
   *  `detail.log` holds the tail of its log where there is one; `cause` the underlying error. */
  BROKER_START_FAILED: "BROKER_START_FAILED",
  /** The broker did not listen within the start timeout. `detail.timeoutMs`. */
  BROKER_START_TIMEOUT: "BROKER_START_TIMEOUT",
  /** A start option is invalid (an identity that is not a valid certificate name, a bad port, a limit that
   *  is not a positive integer). */
  BROKER_OPTION_INVALID: "BROKER_OPTION_INVALID",
  /** A client was disconnected for breaking a BrokerLimits rule: no TLS handshake or no CONNECT within
   *  the deadline, over the per-address connection cap, a packet over the size cap, a device publish over
   *  its cloud's payload limit. Logged by the broker (event `broker.limit`, with `detail.rule`); the
   *  client only sees its connection closed, as AWS and IoT Hub do. */
  BROKER_LIMIT_EXCEEDED: "BROKER_LIMIT_EXCEEDED",
  /** One of the broker's own callbacks threw on a client's input (a bug the broker survived: the client
   *  is refused or disconnected and the process keeps running). Logged as event `broker.callback-failed`. */
  BROKER_CALLBACK_FAILED: "BROKER_CALLBACK_FAILED",
} as const;

/**
 * The largest message payload a device may publish on AWS IoT Core: 128 KB ("AWS IoT Core message broker
 * and protocol limits and quotas": "Message size ... 128 KB"), the same number the shadow service checks.
 */
export const AWS_MAX_PAYLOAD_BYTES = AWS_SHADOW_LIMITS.PUBLISH_MAX_BYTES;
/** The largest device-to-cloud message on Azure IoT Hub: 256 KB ("IoT Hub quotas and throttling"). */
export const AZURE_MAX_PAYLOAD_BYTES = 256 * 1024;
/**
 * Bytes a PUBLISH carries besides its payload, allowed on top of the payload limit when the cap is on the
 * whole packet: fixed header (at most 5), topic length (2), topic (AWS allows 256 bytes; 1 KiB leaves room
 * for Azure's property bags), packet id (2).
 */
export const MQTT_HEADER_ALLOWANCE = 1024;

/** What one client may cost a broker. Every field is a positive integer. */
export interface BrokerLimits {
  /** TCP accept → TLS handshake done; a socket that has not finished by then is destroyed. */
  handshakeTimeoutMs: number;
  /** TLS established → CONNECT received (aedes's connectTimeout); mosquitto has no such setting. */
  connectTimeoutMs: number;
  /** Open TCP connections from one remote address, handshakes included; more are closed on accept.
   *  On loopback every device shares 127.0.0.1, so this bounds the whole fleet's connections. */
  maxConnectionsPerAddress: number;
  /** Largest whole MQTT packet (header included), checked from the fixed header before the packet is
   *  buffered (mosquitto: `max_packet_size`). */
  maxPacketBytes: number;
}

/**
 * Defaults: 10 s for the handshake and for CONNECT (a device on a slow link finishes a TLS 1.2 RSA
 * handshake in well under that); 2,048 connections per address, above the 1,000–2,000 simulated devices the
 * local cloud is measured with — lower it below the process's file-descriptor limit (`ulimit -n`) when that
 * is smaller, since it is what keeps idle sockets from using up every descriptor; packets up to Azure's
 * 256 KB message plus headers (AWS devices' payloads are held to 128 KB per publish by the aedes broker
 * and by the AWS mosquitto instance's own cap).
 */
export const DEFAULT_BROKER_LIMITS: Readonly<BrokerLimits> = {
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  maxConnectionsPerAddress: 2_048,
  maxPacketBytes: AZURE_MAX_PAYLOAD_BYTES + MQTT_HEADER_ALLOWANCE,
};

/** The limits with `overrides` applied; undefined members keep the default. Returns a reason for an invalid one. */
export function brokerLimits(overrides: Partial<BrokerLimits> = {}): BrokerLimits | string {
  const out: BrokerLimits = { ...DEFAULT_BROKER_LIMITS };
  for (const key of Object.keys(DEFAULT_BROKER_LIMITS) as Array<keyof BrokerLimits>) {
    const v = overrides[key];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v <= 0) return `limit ${key} must be a positive integer, not ${String(v)}`;
    out[key] = v;
  }
  if (out.maxPacketBytes < 20) return "limit maxPacketBytes must be at least 20 (mosquitto refuses less)";
  return out;
}

/**
 * The largest payload a device may publish on a broker-side topic: AWS's 128 KB on `$aws/...`, IoT Hub's
 * 256 KB on a device's `devices/{id}/$iothub/...`; undefined on any other topic (no cloud limit to mirror).
 */
export function payloadLimitOf(topic: string): number | undefined {
  if (topic.startsWith("$aws/") || topic.startsWith(`${DEFAULT_LOG_TOPIC_PREFIX}/things/`)) return AWS_MAX_PAYLOAD_BYTES;
  if (topic.startsWith(AZURE_DEVICE_TOPIC_PREFIX) || topic.startsWith(AZURE_TOPIC_ROOT)) return AZURE_MAX_PAYLOAD_BYTES;
  return undefined;
}

export const AWS_THINGS_PREFIX = "$aws/things/";
/** Azure IoT Hub's device-side topic root (no device id in it). */
export const AZURE_TOPIC_ROOT = "$iothub/";
/**
 * Where the aedes broker puts a device's `$iothub/...` traffic: `devices/{deviceId}/$iothub/...`. The twin
 * service (twin-engine.ts) imports this same constant to read and write that scoping.
 */
export const AZURE_DEVICE_TOPIC_PREFIX = "devices/";
/** The TLS application protocol AWS IoT accepts MQTT under on port 443. */
export const AWS_MQTT_ALPN = "x-amzn-mqtt-ca";

export type Identity =
  | { readonly kind: "device"; readonly name: string }
  | { readonly kind: "service"; readonly name: string };

/** Classifies a verified certificate CN; undefined when it can be neither (not a valid certificate name). */
export function identityOf(cn: string | undefined, serviceIdentities: readonly string[] = [CLOUD_SERVICE_IDENTITY]): Identity | undefined {
  if (cn === undefined || !PKI_NAME_PATTERN.test(cn)) return undefined;
  return serviceIdentities.includes(cn) ? { kind: "service", name: cn } : { kind: "device", name: cn };
}

/** How the broker checks an Azure device that connects with a SAS token instead of a client certificate. */
export interface SasDeviceAuth {
  /** The hub's host name, as devices' connection strings and tokens name it. */
  hubHost(): string;
  /** The device's base64 symmetric key; undefined for an unknown device or one without a key. */
  keyFor(deviceId: string): string | undefined;
  /** Epoch seconds. */
  now(): number;
}

/**
 * IoT Hub's SAS authentication of an MQTT CONNECT (docs/protocols.md §3.4, §3.6): user name
 * `{hub}/{deviceId}/?api-version=…` with `{deviceId}` the client id, password a SAS token for
 * `{hub}/devices/{deviceId}` signed with the device's key and not expired. Returns the device identity and
 * the token's expiry (the broker disconnects the device then, as IoT Hub does), or why it is refused.
 */
export function authenticateSas(clientId: string, username: string | undefined, password: Uint8Array | string | undefined, auth: SasDeviceAuth):
  { identity: Identity; expiry: number } | { refused: string } {
  if (username === undefined || password === undefined) return { refused: "no client certificate and no user name and password" };
  const hub = auth.hubHost();
  const m = /^([^/]+)\/([^/]+)\/(?:\?.*)?$/.exec(username);
  if (m === null) return { refused: "the user name is not {hub}/{deviceId}/?api-version=..." };
  if (m[1]!.toLowerCase() !== hub.toLowerCase()) return { refused: `the user name names hub ${m[1]!.slice(0, 128)}, not ${hub}` };
  if (m[2] !== clientId) return { refused: "the user name's device id is not the client id" };
  if (!PKI_NAME_PATTERN.test(clientId)) return { refused: "the device id is not a valid device name" };
  const key = auth.keyFor(clientId);
  if (key === undefined) return { refused: `no symmetric key for device ${clientId}` };
  const token = typeof password === "string" ? password : new TextDecoder().decode(password);
  const v = verifySasToken(token, deviceResourceUri(hub, clientId), auth.now(), (name) => (name === undefined ? key : undefined));
  if (!v.ok) return { refused: `SAS token refused (${v.reason}): ${v.message}` };
  return { identity: { kind: "device", name: clientId }, expiry: v.token.expiry };
}

/** `$aws/things/{thing}/shadow/` — the root of every classic and named shadow topic of a thing. */
export function shadowRoot(thing: string): string {
  return `${AWS_THINGS_PREFIX}${thing}/shadow/`;
}

/** The one topic an AWS device publishes its log lines on: `shadow-ota/things/{thing}/logs`. */
export function logsTopic(thing: string): string {
  return `${DEFAULT_LOG_TOPIC_PREFIX}/things/${thing}/logs`;
}

/** The root of an Azure device's telemetry topics: `devices/{deviceId}/messages/events/` (+ property bag). */
export function telemetryRoot(deviceId: string): string {
  return `${AZURE_DEVICE_TOPIC_PREFIX}${deviceId}/messages/events/`;
}

/** `devices/{deviceId}/` + topic, for a device-side `$iothub/...` topic or filter. */
export function azureToBroker(deviceId: string, topic: string): string {
  return `${AZURE_DEVICE_TOPIC_PREFIX}${deviceId}/${topic}`;
}

/** The device-side topic for a broker-side `devices/{deviceId}/$iothub/...` one; undefined for any other. */
export function azureToDevice(deviceId: string, topic: string): string | undefined {
  const prefix = `${AZURE_DEVICE_TOPIC_PREFIX}${deviceId}/${AZURE_TOPIC_ROOT}`;
  return topic.startsWith(prefix) ? topic.slice(prefix.length - AZURE_TOPIC_ROOT.length) : undefined;
}

export type TopicDecision =
  /** Allowed, under this broker-side topic (a device's `$iothub/...` gets its `devices/{CN}/` prefix). */
  | { readonly allow: true; readonly topic: string }
  /** Refused; `reason` says why (for the broker's log). */
  | { readonly allow: false; readonly reason: string };

/** Request topics a device publishes on its shadows: `P/get`, `P/update`, `P/delete` (classic or named). */
const SHADOW_REQUEST = /^(?:name\/[A-Za-z0-9:_-]{1,64}\/)?(?:get|update|delete)$/;
/** Device-to-cloud twin topics (docs/protocols.md §3.1). */
const AZURE_DEVICE_PUBLISH = ["$iothub/twin/GET/", "$iothub/twin/PATCH/properties/reported/", "$iothub/methods/res/"];

/**
 * May `who` publish to `topic`? A device only sends requests: on its own shadows (responses such as
 * `.../update/accepted` are the service's; AWS reserves them) and on the twin's request topics.
 */
export function decidePublish(who: Identity, topic: string): TopicDecision {
  if (who.kind === "service") {
    if (topic.startsWith("$SYS/") || topic === "$SYS") return { allow: false, reason: "$SYS is reserved" };
    return { allow: true, topic };
  }
  const root = shadowRoot(who.name);
  if (topic.startsWith(root) && SHADOW_REQUEST.test(topic.slice(root.length))) return { allow: true, topic };
  if (AZURE_DEVICE_PUBLISH.some((p) => topic.startsWith(p))) return { allow: true, topic: azureToBroker(who.name, topic) };
  if (topic === logsTopic(who.name)) return { allow: true, topic };
  if (topic.startsWith(telemetryRoot(who.name)) && !/[+#]/.test(topic)) return { allow: true, topic };
  return { allow: false, reason: `${who.name} may publish only to ${root}{get,update,delete} (also named), ${AZURE_DEVICE_PUBLISH.join(", ")}..., ${logsTopic(who.name)} and ${telemetryRoot(who.name)}...` };
}

/**
 * May `who` subscribe to the filter `filter`? Wildcards in a device's filter are fine after its own root
 * (they cannot leave it); a filter that does not start with the root (`#`, `+/…`, `$aws/things/+/…`) is
 * refused.
 */
export function decideSubscribe(who: Identity, filter: string): TopicDecision {
  if (who.kind === "service") return { allow: true, topic: filter };
  if (filter.startsWith(shadowRoot(who.name))) return { allow: true, topic: filter };
  if (filter.startsWith(AZURE_TOPIC_ROOT)) return { allow: true, topic: azureToBroker(who.name, filter) };
  // The already-rewritten form: aedes hands a persistent session's stored subscriptions back through the
  // same hook when it restores them. Same scope as the `$iothub/...` form, so a device may also send it.
  if (filter.startsWith(azureToBroker(who.name, AZURE_TOPIC_ROOT))) return { allow: true, topic: filter };
  return { allow: false, reason: `${who.name} may subscribe only under ${shadowRoot(who.name)} and ${AZURE_TOPIC_ROOT}` };
}

/**
 * Which topic a delivery to `who` carries, or undefined when it must not reach them at all (defence in
 * depth: a device's subscriptions already lie inside its own roots).
 */
export function deliveredTopic(who: Identity, topic: string): string | undefined {
  if (who.kind === "service") return topic;
  if (topic.startsWith(shadowRoot(who.name))) return topic;
  return azureToDevice(who.name, topic);
}

/**
 * A mosquitto ACL file for one broker instance (the same rules as decidePublish/decideSubscribe, except
 * that mosquitto grants every SUBSCRIBE and applies the read rules to each delivery instead).
 * - "aws": devices may write their shadows' request topics and their logs topic, and read (subscribe to)
 *   anything under their shadow root (`%u` = the certificate CN, because the listener sets
 *   use_identity_as_username); each
 *   service identity gets `$aws/#` and `#` — a filter starting with `#` does not match `$` topics, in ACLs
 *   as in subscriptions.
 * - { azureDeviceId }: a dedicated instance for one Azure device; that device may write the twin's request
 *   topics and its telemetry topics (`devices/{id}/messages/events/#`) and read `$iothub/#`, the services
 *   may read and write `$iothub/#` and read the telemetry, nobody else gets anything.
 */
export function mosquittoAcl(mode: "aws" | { azureDeviceId: string }, serviceIdentities: readonly string[] = [CLOUD_SERVICE_IDENTITY]): string {
  const lines = ["# generated by shadow-ota src/sim/broker-policy.ts; do not edit"];
  if (mode === "aws") {
    lines.push("pattern read $aws/things/%u/shadow/#");
    for (const verb of ["get", "update", "delete"]) {
      lines.push(`pattern write $aws/things/%u/shadow/${verb}`, `pattern write $aws/things/%u/shadow/name/+/${verb}`);
    }
    lines.push(`pattern write ${logsTopic("%u")}`);
    for (const s of serviceIdentities) lines.push("", `user ${s}`, "topic readwrite $aws/#", "topic readwrite #");
  } else {
    lines.push("", `user ${mode.azureDeviceId}`, "topic read $iothub/#");
    for (const p of AZURE_DEVICE_PUBLISH) lines.push(`topic write ${p}#`);
    lines.push(`topic write ${telemetryRoot(mode.azureDeviceId)}#`);
    for (const s of serviceIdentities) lines.push("", `user ${s}`, "topic readwrite $iothub/#", `topic read ${telemetryRoot(mode.azureDeviceId)}#`);
  }
  return lines.join("\n") + "\n";
}
