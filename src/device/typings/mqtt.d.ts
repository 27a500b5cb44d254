/**
 * Typings for the Moddable SDK's legacy MQTT client (modules/network/mqtt). The SDK ships none, so the
 * project declares the part it uses. Behaviour this project relies on (read from mqtt.js in SDK 8.2.x):
 * QoS 0 subscriptions only, no QoS 1 acknowledgement or retransmission, whole payloads buffered, and no
 * reconnect: after `onClose` the client is dead and a new one must be built.
 */
declare module "mqtt" {
  export interface ClientOptions {
    host: string;
    port?: number;
    id?: string;
    user?: string;
    password?: string | ArrayBuffer;
    /** Keepalive in milliseconds (0 = none). */
    timeout?: number;
    Socket?: unknown;
    secure?: Record<string, unknown>;
    will?: { topic: string; message: string | ArrayBuffer; quality?: number; retain?: boolean };
  }
  export default class Client {
    constructor(options: ClientOptions);
    onReady?: () => void;
    onMessage?: (topic: string, body: ArrayBuffer) => void;
    onClose?: () => void;
    publish(topic: string, data: string | ArrayBuffer, flags?: { retain?: boolean; quality?: number }): void;
    subscribe(topic: string): void;
    unsubscribe(topic: string): void;
    close(immediate?: boolean): void;
  }
}
