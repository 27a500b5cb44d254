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
 * - A cloud-service identity (default CN "shadow-ota-cloud") may use every topic but `$SYS/...`.
 * - Nobody may publish at QoS 2 (AWS never acknowledges it, Azure closes the connection); RETAIN is ignored.
 *
 * Pure functions and constants only; no I/O.
 * Not here: shadow or twin semantics (the services own those), AWS's per-connection quotas.
 */
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
  /** A start option is invalid (an identity that is not a valid certificate name, a bad port). */
  BROKER_OPTION_INVALID: "BROKER_OPTION_INVALID",
} as const;

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

/** `$aws/things/{thing}/shadow/` — the root of every classic and named shadow topic of a thing. */
export function shadowRoot(thing: string): string {
  return `${AWS_THINGS_PREFIX}${thing}/shadow/`;
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
  return { allow: false, reason: `${who.name} may publish only to ${root}{get,update,delete} (also named) and ${AZURE_DEVICE_PUBLISH.join(", ")}...` };
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
 * - "aws": devices may write their shadows' request topics and read (subscribe to) anything under their
 *   shadow root (`%u` = the certificate CN, because the listener sets use_identity_as_username); each
 *   service identity gets `$aws/#` and `#` — a filter starting with `#` does not match `$` topics, in ACLs
 *   as in subscriptions.
 * - { azureDeviceId }: a dedicated instance for one Azure device; that device may write the twin's request
 *   topics and read `$iothub/#`, the services may read and write `$iothub/#`, nobody else gets anything.
 */
export function mosquittoAcl(mode: "aws" | { azureDeviceId: string }, serviceIdentities: readonly string[] = [CLOUD_SERVICE_IDENTITY]): string {
  const lines = ["# generated by shadow-ota src/sim/broker-policy.ts; do not edit"];
  if (mode === "aws") {
    lines.push("pattern read $aws/things/%u/shadow/#");
    for (const verb of ["get", "update", "delete"]) {
      lines.push(`pattern write $aws/things/%u/shadow/${verb}`, `pattern write $aws/things/%u/shadow/name/+/${verb}`);
    }
    for (const s of serviceIdentities) lines.push("", `user ${s}`, "topic readwrite $aws/#", "topic readwrite #");
  } else {
    lines.push("", `user ${mode.azureDeviceId}`, "topic read $iothub/#");
    for (const p of AZURE_DEVICE_PUBLISH) lines.push(`topic write ${p}#`);
    for (const s of serviceIdentities) lines.push("", `user ${s}`, "topic readwrite $iothub/#");
  }
  return lines.join("\n") + "\n";
}
