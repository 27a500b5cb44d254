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

/** The firmware's trusted image-signing key (ECDSA P-256, DER SubjectPublicKeyInfo: the KEY.pub.der that
 *  `npm run image -- keygen` writes), built in when the app's manifest lists it; main.ts hands it to the OTA
 *  controller. Absent: images need no signature. docs/signing.md. */
export const SIGNING_KEY_RESOURCE = "ota-signing-key.der";
