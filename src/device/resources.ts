/**
 * The resource names manifest.json gives the generated DER files (its "resources" keys plus ".der", see
 * docs/moddable.md "Certificates"). Pure, without a Moddable import, so `npm run check:device`
 * (scripts/check-device.ts) can hold the manifest to the names main.ts reads.
 *
 * No `ca<N>` name on purpose: SecureSocket trusts every ca<N>.der resource in the build besides the
 * certificate it is given, which would widen the pinned trust.
 */
export const CERT_RESOURCES = {
  ca: "ota-ca.der",
  certificate: "device-cert.der",
  key: "device-key.der",
} as const;
