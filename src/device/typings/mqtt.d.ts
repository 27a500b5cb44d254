/**
 * Typings for the Moddable SDK's legacy MQTT client, module "mqtt" (modules/network/mqtt/mqtt.js). The SDK
 * ships typings only for its MQTT.js-style wrapper ("mqtt/js", typings/mqtt/js.d.ts), none for "mqtt", so
 * the project declares the part of it that exists. Checked against mqtt.js in SDK 8.2.3 (commit 48ee02d8):
 * - the default export is the client class (`import Client from "mqtt"`);
 * - constructor options below; with `path` it speaks MQTT over WebSocket, without it over `Socket`
 *   (default: the plain TCP socket) with `secure` passed to that Socket's constructor;
 * - `timeout` is the keepalive in milliseconds (sent rounded up to seconds; 0 = none);
 * - `will.quality` is the will's QoS, `will.retain` its retain flag;
 * - `publish` flags `retain`, `quality` (QoS bits in the header; no PUBACK is ever awaited) and `duplicate`;
 * - SUBSCRIBE always requests QoS 0; `publish`/`subscribe`/`unsubscribe` throw Error("connection closed")
 *   until CONNACK has been received and after close;
 * - callbacks are assigned (or defined by a subclass); `onReady` must exist when CONNACK arrives;
 *   exceptions thrown by any callback are caught and dropped by the client;
 * - no reconnect: after `onClose` the client is dead (`close()` itself does not call `onClose`);
 * - a QoS 0 PUBLISH with an empty payload that ends a TCP read is held until more bytes arrive (see the
 *   workaround in src/device/mqtt-moddable.ts).
 */
declare module "mqtt" {
  export interface ClientWill {
    topic: string;
    message: string | ArrayBuffer;
    quality?: 0 | 1 | 2;
    retain?: boolean;
  }
  export interface ClientOptions {
    host: string;
    /** Default 1883 (80 with `path`). */
    port?: number;
    /** Client identifier; default "". */
    id?: string;
    user?: string | ArrayBuffer;
    password?: string | ArrayBuffer;
    /** Keepalive in milliseconds (0 = none, the default). */
    timeout?: number;
    /** WebSocket path (and query); selects MQTT over WebSocket. */
    path?: string;
    /** Socket class, e.g. SecureSocket; constructed as `new Socket({host, port, secure})`. */
    Socket?: new (dictionary: { host: string; port: number; secure?: Record<string, unknown> }) => object;
    /** Options for the Socket class (SecureSocket's TLS options). */
    secure?: Record<string, unknown>;
    will?: ClientWill;
  }
  export interface PublishFlags {
    retain?: boolean;
    quality?: 0 | 1 | 2;
    duplicate?: boolean;
  }
  export default class Client {
    constructor(options: ClientOptions);
    /** The socket connected (before CONNECT is sent). */
    onConnected?: () => void;
    /** CONNACK accepted: the session is up. */
    onReady?: () => void;
    onMessage?: (topic: string, body: ArrayBuffer) => void;
    /** The session ended (socket error, protocol failure, keepalive timeout, server close). */
    onClose?: () => void;
    publish(topic: string, data: string | ArrayBuffer, flags?: PublishFlags): void;
    subscribe(topic: string): void;
    unsubscribe(topic: string): void;
    /** Sends DISCONNECT unless `immediate`, then closes the socket; safe to call twice. */
    close(immediate?: boolean): void;

    // Internals (public in mqtt.js, not documented), declared only for the empty-payload workaround in
    // src/device/mqtt-moddable.ts: the byte parser, its state, and the hand-over to the callbacks.
    /** Feeds received bytes to the parser (called by the socket callback). */
    received(buffer: ArrayBuffer): void;
    /** Parser state: `state` (0 = next packet; 0x36 = PUBLISH payload next), `code` (packet type),
     *  `length` (bytes still expected), `topic`, `payload`. */
    parse?: { state: number; code?: number; length?: number; topic?: string | Uint8Array; payload?: ArrayBuffer | Uint8Array };
    /** Queues a parsed packet for delivery to the callbacks on a timer. */
    dispatch(msg: object): void;
  }
}
