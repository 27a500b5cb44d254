/**
 * Port: an MQTT 3.1.1 session as the core sees it. Adapters: src/node/mqtt-node.ts (mqtt.js over TLS with a
 * client certificate) and src/device/mqtt-moddable.ts (Moddable's "mqtt" client over SecureSocket).
 *
 * Contract
 * - The adapter owns the socket, TLS, keepalive and reconnect backoff; the core never sees a timer.
 * - `connected` fires once per successful CONNACK (again after every reconnect); the core re-subscribes
 *   and re-gets each time (AWS and Azure drop undelivered messages for a clean session).
 * - `disconnected(reason)` always carries a reason (an Error, never undefined).
 * - `message(topic, payload)` delivers whole payloads as raw bytes; decoding is the core's job.
 * - `publish` and `subscribe` reject with a ShadowOtaError (code SYNC_NOT_CONNECTED or SYNC_TRANSPORT) when
 *   the session is down; they never throw synchronously.
 */
export interface MqttTransportEvents {
  connected(): void;
  disconnected(reason: Error): void;
  message(topic: string, payload: Uint8Array): void;
}

export interface MqttTransport {
  /** Installs the event handlers (once, before `start`). */
  setHandlers(handlers: MqttTransportEvents): void;
  /** Opens the session; `connected` follows (or `disconnected` with the reason). */
  start(): void;
  /** Subscribes at QoS 1 where the client supports it, else QoS 0. Resolves on SUBACK (or at once when the client has no acks). */
  subscribe(topics: readonly string[]): Promise<void>;
  /** Publishes at QoS `qos` (default 1 where supported). Never retained: AWS and Azure ignore RETAIN on these topics. */
  publish(topic: string, payload: string | Uint8Array, qos?: 0 | 1): Promise<void>;
  /** Closes the session for good; safe to call twice. */
  close(): Promise<void>;
}
