/**
 * What AWS IoT Core and Azure IoT Hub do over MQTT 3.1.1 that a general-purpose broker does not, decided in
 * one place for both local brokers (broker-aedes.ts applies it in its hooks, broker-mosquitto.ts through its
 * configuration). Each rule names the vendor document it follows; docs/local-cloud.md ("Fidelity") lists them
 * with what each broker does and where it cannot match.
 *
 * - Granted QoS: "AWS IoT Core supports MQTT Quality of Service (QoS) levels 0 and 1 only" (AWS IoT Core
 *   developer guide, "MQTT", differences from the specification); "When a device app subscribes to a topic
 *   with QoS 2, IoT Hub grants maximum QoS level 1 in the SUBACK packet" (Azure IoT Hub, "Communicate with an
 *   IoT hub using the MQTT protocol"). A SUBSCRIBE asking for QoS 2 is granted QoS 1. (AWS's page says its
 *   broker sends no SUBACK at all then; the local cloud grants 1 instead, as mosquitto's `max_qos 1` does.)
 * - RETAIN on a device's publish: AWS: "If a request is made to retain messages, the connection is
 *   disconnected" (same AWS page) — the AWS topics a device may publish to are all reserved `$aws/` ones, on
 *   which AWS stores no retained message; IoT Hub does not persist a retained message either (it passes the
 *   flag on as a message property, "Communicate with an IoT hub using the MQTT protocol"), so on `$iothub/`
 *   the flag is cleared and the publish goes through.
 *
 * - Subscriptions: AWS IoT Core's message broker quotas ("AWS IoT Core message broker and protocol limits
 *   and quotas"): at most 8 topic filters in one SUBSCRIBE ("Subscriptions per subscribe call") and at most
 *   50 subscriptions held by one connection ("Subscriptions per connection"). AWS does not document its
 *   MQTT 3.1.1 answer to more; the local cloud grants what fits and answers each filter over a quota with
 *   SUBACK 0x80 (the connection stays up). Counted on a device's `$aws/` filters only: IoT Hub documents no
 *   such quota and its devices subscribe to three filters.
 * - Keepalive: AWS IoT Core uses 1200 s for a requested keepalive of 0 or over 1200 s and 30 s for one under
 *   30 s (same quotas page, "Keep-alive period"); IoT Hub drops a client after 1.5 × its keepalive but at most
 *   after 1767 s, so a keepalive over 1177 s, or none, behaves as 1177 s ("Communicate with an IoT hub using
 *   the MQTT protocol", "Default keep-alive timeout"). The broker drops a silent client after 1.5 × the
 *   keepalive it applies (MQTT 3.1.1 §3.1.2.10); MQTT 3.1.1 has no way to tell the client.
 *
 * Pure functions; no I/O. Not here: who may use which topic (broker-policy.ts), size and connection limits
 * (BrokerLimits in broker-policy.ts).
 */
import type { Identity } from "./broker-policy";

/** The highest QoS a SUBACK grants (both clouds: 1). */
export const MAX_GRANTED_QOS = 1;

/** The QoS granted for a requested one (0, 1 or 2). */
export function grantedQos(requested: number): 0 | 1 {
  return requested >= MAX_GRANTED_QOS ? 1 : 0;
}

/**
 * What happens to a PUBLISH with RETAIN set, by who sent it and its broker-side topic:
 * "refuse" (the connection is closed, as AWS does), or "clear" (delivered without the flag, nothing stored).
 */
export function retainedPublish(who: Identity, brokerTopic: string): "refuse" | "clear" {
  if (who.kind === "device" && brokerTopic.startsWith("$aws/")) return "refuse";
  return "clear";
}

/** AWS IoT Core's subscription quotas (not adjustable). */
export const AWS_SUBSCRIBE_QUOTAS = { filtersPerSubscribe: 8, subscriptionsPerConnection: 50 } as const;

export type SubscribeQuotaRule = "filters-per-subscribe" | "subscriptions-per-connection";

/**
 * Which filters of a device's SUBSCRIBE (device-side topics, in packet order) break an AWS quota: for each,
 * undefined (allowed) or the rule. `held` is the connection's current subscriptions; a filter it already
 * holds replaces itself and adds nothing. Only `$aws/` filters count and can be refused.
 */
export function subscribeQuota(filters: readonly string[], held: ReadonlySet<string>): Array<SubscribeQuotaRule | undefined> {
  let inPacket = 0;
  let count = 0;
  for (const t of held) if (t.startsWith("$aws/")) count++;
  const added = new Set<string>();
  return filters.map((f) => {
    if (!f.startsWith("$aws/")) return undefined;
    inPacket++;
    if (inPacket > AWS_SUBSCRIBE_QUOTAS.filtersPerSubscribe) return "filters-per-subscribe";
    if (held.has(f) || added.has(f)) return undefined;
    if (count >= AWS_SUBSCRIBE_QUOTAS.subscriptionsPerConnection) return "subscriptions-per-connection";
    count++;
    added.add(f);
    return undefined;
  });
}

/** IoT Hub's longest server-side keepalive timeout (s): the Azure load balancer's idle timeout. */
export const AZURE_MAX_KEEPALIVE_TIMEOUT_S = 1767;
/** The largest client keepalive (s) IoT Hub honours, as its page states it. */
export const AZURE_MAX_KEEPALIVE_S = 1177;

/**
 * The keepalive (s) the broker applies to a device of `cloud` that asked for `requested` (0: none); a
 * client of no known cloud (a service, a device the broker cannot place) keeps what it asked for.
 */
export function appliedKeepalive(requested: number, cloud: "aws" | "azure" | undefined): number {
  if (cloud === "aws") return requested === 0 || requested > 1200 ? 1200 : Math.max(requested, 30);
  if (cloud === "azure") {
    // The page gives the largest keepalive as "1767 / 1.5 = 1177 seconds" (it is 1178): its figure is used.
    return requested === 0 || requested > AZURE_MAX_KEEPALIVE_S ? AZURE_MAX_KEEPALIVE_S : requested;
  }
  return requested;
}
