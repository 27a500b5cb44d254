/**
 * The topics an Azure IoT Hub device publishes, matched in the platform-neutral core — the other direction
 * (what the hub sends a device: twin responses, desired patches, method requests) is matchAzureTopic in
 * azure-twin.ts. Used by the local cloud's twin engine to read device requests, and usable by anything that
 * must tell a device's twin requests, method replies and telemetry apart (a proxy, a test). Pure: no I/O,
 * allocates only the result; runs on XS.
 *
 * Grammar (IoT Hub "Communicate with an IoT hub using the MQTT protocol"; docs/protocols.md §3.1):
 *
 *   twin-get        = "$iothub/twin/GET/?" query                           ; query holds $rid
 *   reported-patch  = "$iothub/twin/PATCH/properties/reported/?" query     ; query holds $rid
 *   method-response = "$iothub/methods/res/" status "/?" query             ; query holds $rid
 *   status          = 3DIGIT                                               ; 100..599
 *   event           = "devices/" deviceId "/messages/events/" [property-bag]
 *   property-bag    = name "=" value *( "&" name "=" value )               ; URL-encoded
 *
 * query and $rid as in azure-twin.ts (parseQuery, validateRid): at most 16 parameters and 512 characters,
 * no key twice, $rid 1..64 of [A-Za-z0-9._~:-]; unknown parameters are ignored. Any other topic under
 * `$iothub/twin/` is a mismatch that still reports a readable $rid, so a service can answer it with 400.
 *
 * Not here: the bodies (azure-twin.ts), scoping by device (the broker, broker-policy.ts).
 */
import { AZURE_TOPIC_STATUS, parseQuery, validateRid, type AzureTopicStatus } from "./azure-twin";

/** A twin request or direct-method reply a device published. */
export type TwinRequestTopic =
  | { ok: true; kind: "get"; rid: string }
  | { ok: true; kind: "patch-reported"; rid: string }
  | { ok: true; kind: "method-response"; status: number; rid: string };
/** A topic that is not a twin request; `rid` when one could still be read (the service then answers 400). */
export interface TwinRequestMismatch { ok: false; status: AzureTopicStatus; rid?: string }

/** A device-to-cloud telemetry message: `devices/{deviceId}/messages/events/` with its decoded property bag. */
export interface EventTopic { ok: true; kind: "event"; deviceId: string; properties: Array<[string, string]> }

export const AZURE_DEVICE_PUBLISH_PREFIXES = {
  TWIN_GET: "$iothub/twin/GET/",
  REPORTED_PATCH: "$iothub/twin/PATCH/properties/reported/",
  METHOD_RESPONSE: "$iothub/methods/res/",
} as const;
const TWIN_PREFIX = "$iothub/twin/";
const EVENTS = "/messages/events/";
/** The property bag's size bounds (a hostile topic costs at most this much). */
export const EVENT_PROPERTIES_MAX = 32;

function ridOf(query: string): { rid: string } | { status: AzureTopicStatus } {
  const q = parseQuery(query);
  if (typeof q === "string") return { status: q };
  try {
    return { rid: validateRid(q.get("$rid")) };
  } catch {
    return { status: AZURE_TOPIC_STATUS.RID_INVALID }; // validateRid's only failure: missing or malformed
  }
}

/** Matches a twin request or method reply (grammar above). Never throws. */
export function matchTwinRequestTopic(topic: string): TwinRequestTopic | TwinRequestMismatch {
  if (typeof topic !== "string") return { ok: false, status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC };
  const withRid = (prefix: string, kind: "get" | "patch-reported"): TwinRequestTopic | TwinRequestMismatch => {
    if (topic.charCodeAt(prefix.length) !== 0x3f) return { ok: false, status: AZURE_TOPIC_STATUS.QUERY_INVALID }; // "?"
    const r = ridOf(topic.slice(prefix.length + 1));
    return "rid" in r ? { ok: true, kind, rid: r.rid } : { ok: false, status: r.status };
  };
  const P = AZURE_DEVICE_PUBLISH_PREFIXES;
  if (topic.startsWith(P.TWIN_GET)) return withRid(P.TWIN_GET, "get");
  if (topic.startsWith(P.REPORTED_PATCH)) return withRid(P.REPORTED_PATCH, "patch-reported");
  if (topic.startsWith(P.METHOD_RESPONSE)) {
    const s = P.METHOD_RESPONSE.length;
    const statusText = topic.slice(s, s + 3);
    const status = /^[0-9]{3}$/.test(statusText) ? Number(statusText) : NaN;
    if (!(status >= 100 && status <= 599)) return { ok: false, status: AZURE_TOPIC_STATUS.STATUS_INVALID };
    if (!topic.startsWith("/?", s + 3)) return { ok: false, status: AZURE_TOPIC_STATUS.QUERY_INVALID };
    const r = ridOf(topic.slice(s + 5));
    return "rid" in r ? { ok: true, kind: "method-response", status, rid: r.rid } : { ok: false, status: r.status };
  }
  const mismatch: TwinRequestMismatch = { ok: false, status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC };
  if (topic.startsWith(TWIN_PREFIX)) {
    const q = topic.indexOf("/?");
    const r = q < 0 ? undefined : ridOf(topic.slice(q + 2));
    if (r !== undefined && "rid" in r) mismatch.rid = r.rid;
  }
  return mismatch;
}

/**
 * Matches a telemetry topic `devices/{deviceId}/messages/events/[bag]`; the bag's names and values are
 * URL-decoded. Mismatch NOT_TWIN_TOPIC for another topic or an empty device id, QUERY_INVALID for a bag
 * with an empty name, a malformed escape or more than EVENT_PROPERTIES_MAX properties. Never throws.
 */
export function matchEventTopic(topic: string): EventTopic | TwinRequestMismatch {
  const none: TwinRequestMismatch = { ok: false, status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC };
  if (typeof topic !== "string" || !topic.startsWith("devices/")) return none;
  const at = topic.indexOf(EVENTS, "devices/".length);
  const deviceId = at < 0 ? "" : topic.slice("devices/".length, at);
  if (deviceId === "" || deviceId.includes("/")) return none;
  const bag = topic.slice(at + EVENTS.length);
  const properties: Array<[string, string]> = [];
  if (bag !== "") {
    const parts = bag.split("&");
    if (parts.length > EVENT_PROPERTIES_MAX) return { ok: false, status: AZURE_TOPIC_STATUS.QUERY_INVALID };
    for (const p of parts) {
      const eq = p.indexOf("=");
      try {
        const name = decodeURIComponent(eq < 0 ? p : p.slice(0, eq));
        if (name === "") return { ok: false, status: AZURE_TOPIC_STATUS.QUERY_INVALID };
        properties.push([name, eq < 0 ? "" : decodeURIComponent(p.slice(eq + 1))]);
      } catch {
        return { ok: false, status: AZURE_TOPIC_STATUS.QUERY_INVALID };
      }
    }
  }
  return { ok: true, kind: "event", deviceId, properties };
}

/** Any topic a device publishes: a twin request, a method reply or telemetry. */
export function matchDevicePublishTopic(topic: string): TwinRequestTopic | EventTopic | TwinRequestMismatch {
  const t = matchTwinRequestTopic(topic);
  if (t.ok || t.status !== AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC || t.rid !== undefined) return t;
  return matchEventTopic(topic);
}
