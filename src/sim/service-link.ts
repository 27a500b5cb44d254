/**
 * The little MQTT plumbing shadow-service.ts and twin-service.ts share: subscribe with the SUBACK checked,
 * publish a list of messages in order, view a received Buffer as bytes. mqtt.js v5 only; the services own
 * no connection (the caller connects and ends the client).
 *
 * Not here: any shadow or twin rule (the engines), reconnect policy (mqtt.js reconnects by itself and
 * keeps QoS 1 publishes queued; subscriptions are renewed by mqtt.js's `resubscribe`, on by default).
 */
import type { MqttClient } from "mqtt";
import type { OutgoingMessage } from "../core/cloud-protocol";
import { ShadowOtaError } from "../core/errors";
import type { Log } from "../ports/log";
import { CLOUD_CODES } from "./cloud-errors";

/** Subscribes to `topics`; throws CLOUD_SUBSCRIBE_REFUSED when the broker answers 0x80 for one of them. */
export async function subscribeChecked(client: MqttClient, topics: readonly string[], qos: 0 | 1): Promise<void> {
  const grants = await client.subscribeAsync(topics.slice(), { qos });
  for (const g of grants) {
    if (g.qos === 128) {
      throw new ShadowOtaError(CLOUD_CODES.CLOUD_SUBSCRIBE_REFUSED, `broker refused the subscription ${g.topic}`, { detail: { topic: g.topic } });
    }
  }
}

/** Publishes in order without waiting; a failed publish is logged (the device times out and retries). */
export function publishAndLog(client: MqttClient, messages: readonly OutgoingMessage[], qos: 0 | 1, log: Log): void {
  for (const m of messages) {
    client.publish(m.topic, m.payload, { qos }, (err) => {
      if (err) log.log("warn", "cloud.publish_failed", { topic: m.topic, error: err.message });
    });
  }
}

/** Publishes in order and resolves when every publish is acknowledged (QoS 1) or written (QoS 0). */
export async function publishAll(client: MqttClient, messages: readonly OutgoingMessage[], qos: 0 | 1): Promise<void> {
  await Promise.all(messages.map((m) => client.publishAsync(m.topic, m.payload, { qos })));
}

/** The payload as a Uint8Array view (no copy). */
export function bytesOf(payload: Buffer): Uint8Array {
  return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
}

/** TCP_NODELAY on the client's socket now and after every reconnect (mqtt.js builds a new socket each
 *  time): the services answer with small publishes that Nagle would hold back for the broker's ACK. */
export function keepNoDelay(client: MqttClient): void {
  const set = (): void => { (client.stream as { setNoDelay?: (on: boolean) => unknown } | undefined)?.setNoDelay?.(true); };
  set();
  client.on("connect", set);
}
