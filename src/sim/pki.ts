/**
 * The local cloud's certificate authority: a CA, a server certificate for the loopback brokers and one
 * client certificate per identity (a device's thing name / device id, or a cloud service such as
 * "shadow-ota-cloud"), generated at run time into a directory the caller names (e.g. .cloud-data/certs/,
 * which is gitignored). Nothing here is ever committed.
 *
 * Layout of `dir` (keys 0600, everything else 0644, directories 0700):
 *   ca.cert.pem  ca.cert.der  ca.key.pem           the CA (DER too: the Moddable device loads DER resources)
 *   server.cert.pem  server.key.pem                CN localhost, SAN IP 127.0.0.1, IP ::1, DNS localhost
 *   clients/{name}.cert.pem|.cert.der|.key.pem|.key.der   CN = name; keys are PKCS#8
 *
 * An existing CA is reused, so a restarted cloud keeps every device certificate valid; a leaf is reused
 * while it is signed by that CA, matches its key and stays valid for at least a day, else it is issued
 * again. A damaged CA (one file missing, key not matching, expired) is refused with PKI_STORE_INVALID and
 * never overwritten: replacing it silently would orphan every device certificate issued from it.
 *
 * Keys are RSA 2048 (AWS IoT's default device key and what Moddable's TLS handles). Node's crypto makes
 * the keys and signs; node-forge only lays out the X.509 structure, because forge signs RSA in pure
 * JavaScript (18x slower than node:crypto in bench/pki.bench.ts) and cannot encode EC keys at all. A
 * certificate then costs about what its RSA key generation costs (~0.1 s; same benchmark).
 *
 * Not here: revocation, CSRs, encrypted keys, a device's own key generation.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../node/atomic-file";
import forge from "node-forge";

import { ShadowOtaError } from "../core/errors";

/** Stable codes of this module (a contract). */
export const PKI_CODES = {
  /** A certificate name outside `[A-Za-z0-9:_-]{1,128}` (the AWS thing-name grammar, which is also a safe
   *  file name, a safe mosquitto `%u` and contains no MQTT wildcard). `detail.name`. */
  PKI_NAME_INVALID: "PKI_NAME_INVALID",
  /** The CA files in `dir` are incomplete, unreadable, mismatched or expired. `detail.path`. Delete the
   *  directory to start a new CA (every issued certificate then has to be issued again). */
  PKI_STORE_INVALID: "PKI_STORE_INVALID",
  /** A key handed to `client(name, { keyPem })` is not an RSA private key in PEM. `cause` = the crypto error. */
  PKI_KEY_INVALID: "PKI_KEY_INVALID",
  /** A file could not be written. `detail.path`, `cause` = the fs error. */
  PKI_WRITE_FAILED: "PKI_WRITE_FAILED",
} as const;

/** Client certificate CN of the local cloud's services (shadow/twin services, test observers). */
export const CLOUD_SERVICE_IDENTITY = "shadow-ota-cloud";

/**
 * True for names no device may have: the service identity (its certificate carries the services' broker
 * rights) and `shadow-ota-cloud-*`, the client ids of the services' own connections (a device with such a
 * CN connects with that client id, and a second connection with an id drops the first).
 */
export function isReservedIdentity(name: string): boolean {
  return name === CLOUD_SERVICE_IDENTITY || name.startsWith(`${CLOUD_SERVICE_IDENTITY}-`);
}

/** Certificate names: the AWS thing-name grammar (docs/protocols.md §1.5). */
export const PKI_NAME_PATTERN = /^[A-Za-z0-9:_-]{1,128}$/;

/** The loopback names the server certificate carries. */
export const SERVER_NAMES = { dns: ["localhost"], ip: ["127.0.0.1", "::1"] } as const;

export interface Credentials {
  /** The certificate's CN (for a client: the identity the brokers enforce). */
  readonly name: string;
  readonly certPem: string;
  /** PKCS#8 PEM. */
  readonly keyPem: string;
  readonly certDer: Uint8Array;
  /** PKCS#8 DER (what Moddable's SecureSocket takes as `clientKey`). */
  readonly keyDer: Uint8Array;
  readonly caPem: string;
  readonly caDer: Uint8Array;
  readonly certPath: string;
  readonly keyPath: string;
  readonly caPath: string;
  readonly notAfter: Date;
  /** True when this call issued the certificate, false when an existing one was reused. */
  readonly issued: boolean;
}

export interface PkiOptions {
  /** RSA modulus length (default 2048). */
  rsaBits?: number;
  /** CA lifetime in days (default 3650). */
  caValidityDays?: number;
  /** Server and client lifetime in days (default 825). */
  leafValidityDays?: number;
  /** The clock used for validity (default: the real one). */
  now?: () => Date;
}

const DAY_MS = 86_400_000;

function fail(code: keyof typeof PKI_CODES, message: string, detail: Record<string, string>, cause?: unknown): never {
  throw new ShadowOtaError(PKI_CODES[code], message, cause === undefined ? { detail } : { detail, cause });
}

/** Writes `data` to `file` atomically with exactly `mode` (see src/node/atomic-file.ts). */
function writeFile(file: string, data: string | Uint8Array, mode: number): void {
  try {
    writeFileAtomic(file, data, { mode });
  } catch (cause) {
    fail("PKI_WRITE_FAILED", `cannot write ${file}`, { path: file }, cause);
  }
}

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return fail("PKI_STORE_INVALID", `cannot read ${file}`, { path: file }, e);
  }
}

function derOfPem(pem: string): Uint8Array {
  const body = pem.replace(/-----(BEGIN|END) [^-]+-----/g, "").replace(/\s+/g, "");
  return new Uint8Array(Buffer.from(body, "base64"));
}

/** 16 random bytes as a positive DER INTEGER (first bit clear, first byte non-zero). */
function randomSerial(): string {
  const b = crypto.randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString("hex");
}

/** An RSA private key given as PKCS#8 PEM, with its public half; PKI_KEY_INVALID otherwise. */
function existingKey(keyPem: string): { keyPem: string; publicPem: string } {
  try {
    const key = crypto.createPrivateKey(keyPem);
    if (key.asymmetricKeyType !== "rsa") throw new Error(`a ${String(key.asymmetricKeyType)} key, not RSA`);
    const pkcs8 = key.export({ type: "pkcs8", format: "pem" }).toString();
    return { keyPem: pkcs8, publicPem: crypto.createPublicKey(key).export({ type: "spki", format: "pem" }).toString() };
  } catch (cause) {
    return fail("PKI_KEY_INVALID", "the key to certify is not an RSA private key in PEM", {}, cause);
  }
}

function newRsaKey(bits: number): { keyPem: string; publicPem: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", {
    modulusLength: bits,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return { keyPem: privateKey, publicPem: publicKey };
}

/** forge exports getTBSCertificate; @types/node-forge does not declare it. */
const forgeTbs = forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 };

/** Signs `cert` (sha256WithRSAEncryption) with Node's crypto instead of forge's pure-JS RSA. */
function signWithNode(cert: forge.pki.Certificate, issuerKeyPem: string): void {
  const oid = forge.pki.oids["sha256WithRSAEncryption"]!;
  cert.siginfo.algorithmOid = oid;
  cert.signatureOid = oid;
  const tbs = Buffer.from(forge.asn1.toDer(forgeTbs.getTBSCertificate(cert)).getBytes(), "binary");
  cert.signature = crypto.sign("sha256", tbs, issuerKeyPem).toString("binary");
}

function certPemToDer(pem: string): Uint8Array {
  return derOfPem(pem);
}

function commonName(cert: forge.pki.Certificate): string | undefined {
  const f = cert.subject.getField("CN") as { value?: unknown } | null;
  return typeof f?.value === "string" ? f.value : undefined;
}

/** True when `keyPem`'s public half is `cert`'s. */
function keyMatches(cert: forge.pki.Certificate, keyPem: string): boolean {
  try {
    const fromKey = crypto.createPublicKey(keyPem).export({ type: "spki", format: "der" });
    const fromCert = Buffer.from(forge.asn1.toDer(forge.pki.publicKeyToAsn1(cert.publicKey)).getBytes(), "binary");
    return Buffer.compare(fromKey, fromCert) === 0;
  } catch {
    return false; // an unparsable key matches nothing; the caller reissues or refuses
  }
}

export class LocalPki {
  readonly dir: string;
  /** The CA certificate (PEM and DER) and where it lies. */
  readonly caPem: string;
  readonly caDer: Uint8Array;
  readonly caPath: string;
  readonly caDerPath: string;
  /** True when `open` generated a new CA (false: an existing one was loaded). */
  readonly createdCa: boolean;
  readonly #caKeyPem: string;
  readonly #caCert: forge.pki.Certificate;
  readonly #bits: number;
  readonly #leafDays: number;
  readonly #now: () => Date;

  private constructor(dir: string, caPem: string, caKeyPem: string, created: boolean, o: Required<PkiOptions>) {
    this.dir = dir;
    this.caPem = caPem;
    this.caDer = certPemToDer(caPem);
    this.caPath = path.join(dir, "ca.cert.pem");
    this.caDerPath = path.join(dir, "ca.cert.der");
    this.createdCa = created;
    this.#caKeyPem = caKeyPem;
    this.#caCert = forge.pki.certificateFromPem(caPem);
    this.#bits = o.rsaBits;
    this.#leafDays = o.leafValidityDays;
    this.#now = o.now;
  }

  /**
   * Opens the CA in `dir` (created with mode 0700 when missing), generating it when the directory has none.
   * Throws PKI_STORE_INVALID for a damaged CA and PKI_WRITE_FAILED when files cannot be written.
   */
  static open(dir: string, options: PkiOptions = {}): LocalPki {
    const o: Required<PkiOptions> = {
      rsaBits: options.rsaBits ?? 2048,
      caValidityDays: options.caValidityDays ?? 3650,
      leafValidityDays: options.leafValidityDays ?? 825,
      now: options.now ?? (() => new Date()),
    };
    const abs = path.resolve(dir);
    try {
      fs.mkdirSync(path.join(abs, "clients"), { recursive: true, mode: 0o700 });
    } catch (cause) {
      fail("PKI_WRITE_FAILED", `cannot create ${abs}`, { path: abs }, cause);
    }
    const certPath = path.join(abs, "ca.cert.pem");
    const keyPath = path.join(abs, "ca.key.pem");
    const derPath = path.join(abs, "ca.cert.der");
    const certPem = readIfExists(certPath);
    const keyPem = readIfExists(keyPath);
    if (certPem !== undefined && keyPem !== undefined) {
      let cert: forge.pki.Certificate;
      try {
        cert = forge.pki.certificateFromPem(certPem);
      } catch (cause) {
        return fail("PKI_STORE_INVALID", `${certPath} is not a PEM certificate`, { path: certPath }, cause);
      }
      if (!keyMatches(cert, keyPem)) fail("PKI_STORE_INVALID", `${keyPath} is not the key of ${certPath}`, { path: keyPath });
      if (cert.validity.notAfter.getTime() <= o.now().getTime()) fail("PKI_STORE_INVALID", `the CA in ${certPath} has expired`, { path: certPath });
      const bc = cert.getExtension("basicConstraints") as { cA?: boolean } | null;
      if (bc?.cA !== true) fail("PKI_STORE_INVALID", `${certPath} is not a CA certificate`, { path: certPath });
      if (!fs.existsSync(derPath)) writeFile(derPath, certPemToDer(certPem), 0o644);
      return new LocalPki(abs, certPem, keyPem, false, o);
    }
    if (certPem !== undefined || keyPem !== undefined) {
      const missing = certPem === undefined ? certPath : keyPath;
      fail("PKI_STORE_INVALID", `${missing} is missing while its pair exists; delete ${abs} to start a new CA`, { path: missing });
    }

    const key = newRsaKey(o.rsaBits);
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicPem);
    cert.serialNumber = randomSerial();
    const now = o.now();
    cert.validity.notBefore = new Date(now.getTime() - 3_600_000); // an hour of slack for skewed device clocks
    cert.validity.notAfter = new Date(now.getTime() + o.caValidityDays * DAY_MS);
    const subject = [{ name: "commonName", value: "shadow-ota local CA" }, { name: "organizationName", value: "shadow-ota" }];
    cert.setSubject(subject);
    cert.setIssuer(subject);
    cert.setExtensions([
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      { name: "subjectKeyIdentifier" },
      // Its own key id again: the brokers send the CA along with the server certificate, and Moddable's TLS
      // (SDK 8.2.3, ssl_cert.js) throws on a chain certificate without authorityKeyIdentifier.
      { name: "authorityKeyIdentifier", keyIdentifier: cert.generateSubjectKeyIdentifier().getBytes() },
    ]);
    signWithNode(cert, key.keyPem);
    const pem = forge.pki.certificateToPem(cert);
    // Key first: a crash between the two writes leaves a key without a certificate, which `open` reports
    // instead of silently pairing a new certificate with it.
    writeFile(keyPath, key.keyPem, 0o600);
    writeFile(certPath, pem, 0o644);
    writeFile(derPath, certPemToDer(pem), 0o644);
    return new LocalPki(abs, pem, key.keyPem, true, o);
  }

  /** The brokers' certificate (CN localhost; SAN IP 127.0.0.1, IP ::1, DNS localhost). */
  server(): Credentials {
    return this.#leaf("server", path.join(this.dir, "server"), false);
  }

  /**
   * A client certificate with CN = `name` (a thing name / device id, or a service identity). With
   * `keyPem` (PKCS#8 PEM), a certificate to be issued certifies that existing key instead of a new one: a
   * simulated fleet (bench/fleet.bench.ts) then costs one RSA key generation, not one per device; each
   * device still has its own certificate and identity. Throws PKI_NAME_INVALID, PKI_KEY_INVALID.
   */
  client(name: string, options: { keyPem?: string } = {}): Credentials {
    if (!PKI_NAME_PATTERN.test(name)) {
      fail("PKI_NAME_INVALID", `certificate name ${JSON.stringify(name)} is not [A-Za-z0-9:_-]{1,128}`, { name });
    }
    return this.#leaf(name, path.join(this.dir, "clients", name), true, options.keyPem);
  }

  /**
   * A server certificate that is issued but not stored (no file, never reused), for tests of TLS failures:
   * other names than SERVER_NAMES (a host-name mismatch), or a validity window in the past (expired) or the
   * future. Defaults: SERVER_NAMES, valid from an hour ago for the leaf lifetime.
   */
  issueServerCertificate(o: { dns?: readonly string[]; ip?: readonly string[]; notBefore?: Date; notAfter?: Date } = {}): { certPem: string; keyPem: string; caPem: string; notAfter: Date } {
    const key = newRsaKey(this.#bits);
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicPem);
    cert.serialNumber = randomSerial();
    const now = this.#now();
    cert.validity.notBefore = o.notBefore ?? new Date(now.getTime() - 3_600_000);
    cert.validity.notAfter = o.notAfter ?? new Date(now.getTime() + this.#leafDays * DAY_MS);
    cert.setSubject([{ name: "commonName", value: (o.dns ?? SERVER_NAMES.dns)[0] ?? (o.ip ?? SERVER_NAMES.ip)[0] ?? "server" }, { name: "organizationName", value: "shadow-ota" }]);
    cert.setIssuer(this.#caCert.subject.attributes);
    cert.setExtensions([
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectKeyIdentifier" },
      { name: "authorityKeyIdentifier", keyIdentifier: this.#caCert.generateSubjectKeyIdentifier().getBytes() },
      { name: "subjectAltName", altNames: [...(o.dns ?? SERVER_NAMES.dns).map((value) => ({ type: 2, value })), ...(o.ip ?? SERVER_NAMES.ip).map((ip) => ({ type: 7, ip }))] },
    ]);
    signWithNode(cert, this.#caKeyPem);
    return { certPem: forge.pki.certificateToPem(cert), keyPem: key.keyPem, caPem: this.caPem, notAfter: cert.validity.notAfter };
  }

  /** True when `certPem` was signed by this CA (signature check only; dates are not looked at). */
  issued(certPem: string): boolean {
    try {
      return this.#caCert.verify(forge.pki.certificateFromPem(certPem));
    } catch {
      return false; // not a certificate, or signed by another key: either way not ours
    }
  }

  #leaf(name: string, base: string, isClient: boolean, keyPem?: string): Credentials {
    const certPath = `${base}.cert.pem`;
    const keyPath = `${base}.key.pem`;
    const existing = this.#reusable(name, certPath, keyPath, isClient);
    if (existing !== undefined) return this.#credentials(name, existing.certPem, existing.keyPem, certPath, keyPath, base, isClient, existing.notAfter, false);

    const key = keyPem === undefined ? newRsaKey(this.#bits) : existingKey(keyPem);
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicPem);
    cert.serialNumber = randomSerial();
    const now = this.#now();
    cert.validity.notBefore = new Date(now.getTime() - 3_600_000);
    cert.validity.notAfter = new Date(Math.min(now.getTime() + this.#leafDays * DAY_MS, this.#caCert.validity.notAfter.getTime()));
    cert.setSubject([{ name: "commonName", value: isClient ? name : "localhost" }, { name: "organizationName", value: "shadow-ota" }]);
    cert.setIssuer(this.#caCert.subject.attributes);
    const exts: object[] = [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: !isClient, clientAuth: isClient },
      { name: "subjectKeyIdentifier" },
      { name: "authorityKeyIdentifier", keyIdentifier: this.#caCert.generateSubjectKeyIdentifier().getBytes() },
    ];
    if (!isClient) {
      exts.push({
        name: "subjectAltName",
        altNames: [...SERVER_NAMES.dns.map((value) => ({ type: 2, value })), ...SERVER_NAMES.ip.map((ip) => ({ type: 7, ip }))],
      });
    }
    cert.setExtensions(exts);
    signWithNode(cert, this.#caKeyPem);
    const certPem = forge.pki.certificateToPem(cert);
    writeFile(keyPath, key.keyPem, 0o600);
    writeFile(certPath, certPem, 0o644);
    return this.#credentials(name, certPem, key.keyPem, certPath, keyPath, base, isClient, cert.validity.notAfter, true);
  }

  #reusable(name: string, certPath: string, keyPath: string, isClient: boolean): { certPem: string; keyPem: string; notAfter: Date } | undefined {
    let certPem: string | undefined;
    let keyPem: string | undefined;
    try {
      certPem = fs.readFileSync(certPath, "utf8");
      keyPem = fs.readFileSync(keyPath, "utf8");
    } catch {
      return undefined; // missing or unreadable: issue again
    }
    let cert: forge.pki.Certificate;
    try {
      cert = forge.pki.certificateFromPem(certPem);
      if (!this.#caCert.verify(cert)) return undefined;
    } catch {
      return undefined; // not a certificate, or from another CA: issue again
    }
    if (commonName(cert) !== (isClient ? name : "localhost")) return undefined;
    if (cert.validity.notAfter.getTime() < this.#now().getTime() + DAY_MS) return undefined;
    if (!keyMatches(cert, keyPem)) return undefined;
    if (!isClient) {
      const san = cert.getExtension("subjectAltName") as { altNames?: Array<{ type: number; value?: string; ip?: string }> } | null;
      const names = new Set((san?.altNames ?? []).map((a) => a.ip ?? a.value));
      if (![...SERVER_NAMES.dns, ...SERVER_NAMES.ip].every((n) => names.has(n))) return undefined;
    }
    return { certPem, keyPem, notAfter: cert.validity.notAfter };
  }

  #credentials(name: string, certPem: string, keyPem: string, certPath: string, keyPath: string, base: string,
    isClient: boolean, notAfter: Date, issued: boolean): Credentials {
    const certDer = certPemToDer(certPem);
    const keyDer = derOfPem(keyPem);
    if (isClient) {
      // DER copies for the device build (Moddable resources are DER files).
      const certDerPath = `${base}.cert.der`;
      const keyDerPath = `${base}.key.der`;
      if (issued || !fs.existsSync(certDerPath)) writeFile(certDerPath, certDer, 0o644);
      if (issued || !fs.existsSync(keyDerPath)) writeFile(keyDerPath, keyDer, 0o600);
    }
    return {
      name, certPem, keyPem, certDer, keyDer, caPem: this.caPem, caDer: this.caDer,
      certPath, keyPath, caPath: this.caPath, notAfter, issued,
    };
  }
}
