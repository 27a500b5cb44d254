/**
 * The TLS options (SecureSocket's `secure` dictionary, modules/crypt/securesocket) both MQTT adapters give
 * the SDK: TLS 1.2, the pinned CA with verification (the server's name is checked against `host`), the
 * client certificate and its PKCS#8 DER key when both are given, ALPN when set (`x-amzn-mqtt-ca` for AWS
 * IoT on port 443). Used by src/device/mqtt-419.ts and src/device/mqtt-moddable.ts.
 */

export interface MqttTlsSettings {
  ca: ByteBuffer;
  clientCertificate?: ByteBuffer;
  clientKey?: ByteBuffer;
  alpn?: string;
}

export function mqttSecureOptions(o: MqttTlsSettings): Record<string, unknown> {
  const secure: Record<string, unknown> = { protocolVersion: 0x0303, certificate: o.ca, verify: true };
  if (o.clientCertificate && o.clientKey) {
    secure.clientCertificates = [o.clientCertificate];
    secure.clientKey = o.clientKey;
  }
  if (o.alpn) secure.applicationLayerProtocolNegotiation = [o.alpn];
  return secure;
}
