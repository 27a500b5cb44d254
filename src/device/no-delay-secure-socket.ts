/**
 * SecureSocket with Nagle's algorithm off, the socket class both MQTT adapters (src/device/mqtt-moddable.ts,
 * src/device/legacy-tls-socket.ts under mqtt-419.ts) build their TLS connection with. Not used by the HTTPS
 * download, which sends one request and then reads.
 */
import SecureSocket from "securesocket";

/**
 * SecureSocket with Nagle's algorithm off. The SDK client builds its socket as
 * `new Socket({host, port, secure})` (mqtt.js), with no way to pass `noDelay`; SecureSocket hands its whole
 * dictionary to the raw socket (securesocket.js `new Socket(dict)`), and the ESP32's lwIP socket turns Nagle
 * off when the dictionary says `noDelay: true` (modules/network/socket/lwip/modSocket.c, `tcp_nagle_disable`).
 * Without it a small PUBLISH after a small write can wait for the broker's delayed ACK. The Linux
 * simulator's socket (socket/lin/modSocket.c) has no such option and ignores the key.
 */
export class NoDelaySecureSocket extends SecureSocket {
  constructor(dictionary: { host: string; port: number; secure?: Record<string, unknown> }) {
    super({ ...dictionary, noDelay: true });
  }
}

