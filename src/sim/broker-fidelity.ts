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
