/**
 * The local CA: certificates chain and carry the right names and usages (checked with Node's own X.509
 * parser, not forge's), files and modes, reuse of an existing CA and leaves, refusal of a damaged CA, names.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import forge from "node-forge";

import { isShadowOtaError } from "../../src/core/errors";
import { CLOUD_SERVICE_IDENTITY, LocalPki, PKI_CODES } from "../../src/sim/pki";
import { tempDir } from "./broker-fixtures";

const root = tempDir("pki-test");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => path.join(root, `ca-${n++}`);

function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

describe("a new CA", () => {
  const dir = fresh();
  const pki = LocalPki.open(dir);
  const ca = new crypto.X509Certificate(pki.caPem);

  test("is a self-signed CA, PEM and DER on disk, key 0600", () => {
    expect(pki.createdCa).toBe(true);
    expect(ca.ca).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(Buffer.from(pki.caDer)).toEqual(ca.raw);
    expect(fs.readFileSync(path.join(dir, "ca.cert.der"))).toEqual(ca.raw);
    expect(mode(path.join(dir, "ca.key.pem"))).toBe(0o600);
    expect(mode(dir)).toBe(0o700);
    expect(ca.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
  });

  test("names its own key as the authority key (Moddable's TLS refuses a chain certificate without it)", () => {
    const cert = forge.pki.certificateFromPem(pki.caPem);
    const ski = (cert.getExtension("subjectKeyIdentifier") as { subjectKeyIdentifier: string }).subjectKeyIdentifier;
    const aki = cert.getExtension("authorityKeyIdentifier") as { value: string } | null;
    expect(aki).not.toBeNull();
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] OCTET STRING } = 30 16 80 14 <20-byte key id>
    expect(forge.util.bytesToHex(aki!.value)).toBe(`30168014${ski}`);
  });

  test("server certificate: CN localhost, SAN 127.0.0.1 ::1 localhost, serverAuth, signed by the CA", () => {
    const s = pki.server();
    const x = new crypto.X509Certificate(s.certPem);
    expect(x.verify(ca.publicKey)).toBe(true);
    expect(x.checkIssued(ca)).toBe(true);
    expect(x.subject).toMatch(/CN=localhost/);
    expect(x.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(x.checkIP("::1")).toBeDefined();
    expect(x.checkHost("localhost")).toBe("localhost");
    expect(x.keyUsage).toContain("1.3.6.1.5.5.7.3.1"); // serverAuth
    expect(x.ca).toBe(false);
    expect(crypto.createPrivateKey(s.keyPem).asymmetricKeyType).toBe("rsa");
    expect(x.checkPrivateKey(crypto.createPrivateKey(s.keyPem))).toBe(true);
    expect(mode(s.keyPath)).toBe(0o600);
  });

  test("client certificate: CN = name, clientAuth, PEM + DER (PKCS#8 key) for the device", () => {
    const c = pki.client("esp32-01");
    const x = new crypto.X509Certificate(c.certPem);
    expect(x.verify(ca.publicKey)).toBe(true);
    expect(x.subject).toMatch(/CN=esp32-01/);
    expect(x.keyUsage).toContain("1.3.6.1.5.5.7.3.2"); // clientAuth
    expect(x.keyUsage).not.toContain("1.3.6.1.5.5.7.3.1");
    expect(fs.readFileSync(c.certPath.replace(/\.pem$/, ".der"))).toEqual(x.raw);
    const keyDer = fs.readFileSync(c.keyPath.replace(/\.pem$/, ".der"));
    expect(x.checkPrivateKey(crypto.createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" }))).toBe(true);
    expect(Buffer.from(c.keyDer)).toEqual(keyDer);
    expect(mode(c.keyPath)).toBe(0o600);
    expect(mode(c.keyPath.replace(/\.pem$/, ".der"))).toBe(0o600);
    expect(c.issued).toBe(true);
    expect(c.notAfter.getTime()).toBeGreaterThan(Date.now() + 800 * 86_400_000);
  });

  test("the service identity is an ordinary client certificate", () => {
    expect(new crypto.X509Certificate(pki.client(CLOUD_SERVICE_IDENTITY).certPem).subject).toMatch(/CN=shadow-ota-cloud/);
  });

  test("serial numbers differ", () => {
    const a = new crypto.X509Certificate(pki.client("a").certPem).serialNumber;
    const b = new crypto.X509Certificate(pki.client("b").certPem).serialNumber;
    expect(a).not.toBe(b);
  });
});

describe("reuse", () => {
  test("reopening keeps the CA and every valid leaf; new names are issued on demand", () => {
    const dir = fresh();
    const first = LocalPki.open(dir);
    const c1 = first.client("dev-a");
    const s1 = first.server();
    const again = LocalPki.open(dir);
    expect(again.createdCa).toBe(false);
    expect(again.caPem).toBe(first.caPem);
    const c2 = again.client("dev-a");
    expect(c2.issued).toBe(false);
    expect(c2.certPem).toBe(c1.certPem);
    expect(again.server().certPem).toBe(s1.certPem);
    expect(again.client("dev-new").issued).toBe(true);
  });

  test("a leaf from another CA, a leaf near expiry or a mismatched key is issued again", () => {
    const dir = fresh();
    const pki = LocalPki.open(dir);
    const c = pki.client("dev-a");
    // another CA's certificate in its place
    const other = LocalPki.open(fresh()).client("dev-a");
    fs.writeFileSync(c.certPath, other.certPem);
    fs.writeFileSync(c.keyPath, other.keyPem);
    const r1 = pki.client("dev-a");
    expect(r1.issued).toBe(true);
    expect(pki.issued(r1.certPem)).toBe(true);
    expect(pki.issued(other.certPem)).toBe(false);
    // a key that is not the certificate's
    fs.writeFileSync(r1.keyPath, other.keyPem);
    expect(pki.client("dev-a").issued).toBe(true);
    // close to expiry: a PKI whose clock is 825 days ahead sees the leaf as expiring
    const later = LocalPki.open(dir, { now: () => new Date(Date.now() + 825 * 86_400_000) });
    expect(later.client("dev-a").issued).toBe(true);
  });

  test("a damaged CA is refused, never overwritten", () => {
    const dir = fresh();
    const pki = LocalPki.open(dir);
    const keyPath = path.join(dir, "ca.key.pem");
    const key = fs.readFileSync(keyPath, "utf8");

    fs.rmSync(keyPath);
    expectCode(() => LocalPki.open(dir), PKI_CODES.PKI_STORE_INVALID);
    expect(fs.readFileSync(path.join(dir, "ca.cert.pem"), "utf8")).toBe(pki.caPem);

    fs.writeFileSync(keyPath, LocalPki.open(fresh()).server().keyPem); // someone else's key
    expectCode(() => LocalPki.open(dir), PKI_CODES.PKI_STORE_INVALID);

    fs.writeFileSync(path.join(dir, "ca.cert.pem"), "not a certificate");
    fs.writeFileSync(keyPath, key);
    expectCode(() => LocalPki.open(dir), PKI_CODES.PKI_STORE_INVALID);
    expect(fs.readFileSync(path.join(dir, "ca.cert.pem"), "utf8")).toBe("not a certificate");

    fs.writeFileSync(path.join(dir, "ca.cert.pem"), pki.caPem);
    expectCode(() => LocalPki.open(dir, { now: () => new Date(Date.now() + 4000 * 86_400_000) }), PKI_CODES.PKI_STORE_INVALID);
    expect(LocalPki.open(dir).caPem).toBe(pki.caPem);
  });
});

test.each(["", "a/b", "dev+1", "dev#", "..", "x".repeat(129), "dev a", "dév"])("name %j is refused", (name) => {
  const pki = LocalPki.open(path.join(root, "names"));
  expectCode(() => pki.client(name), PKI_CODES.PKI_NAME_INVALID);
});

function expectCode(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isShadowOtaError(caught, code)).toBe(true);
}

describe("issueServerCertificate (TLS failure tests)", () => {
  const dir = fresh();
  const pki = LocalPki.open(dir);

  it("issues a CA-signed server certificate with the names and validity asked for, and stores nothing", () => {
    const before = fs.readdirSync(dir).sort();
    const notAfter = new Date(Date.now() - 86_400_000);
    const c = pki.issueServerCertificate({ dns: ["other.example"], ip: [], notBefore: new Date(Date.now() - 2 * 86_400_000), notAfter });
    const x = new crypto.X509Certificate(c.certPem);
    expect(x.subjectAltName).toBe("DNS:other.example");
    expect(x.checkHost("localhost")).toBeUndefined();
    expect(x.checkIP("127.0.0.1")).toBeUndefined();
    expect(x.verify(new crypto.X509Certificate(pki.caPem).publicKey)).toBe(true);
    expect(new Date(x.validTo).getTime()).toBeLessThan(Date.now()); // expired, as asked
    expect(crypto.createPublicKey(c.keyPem).export({ type: "spki", format: "der" }).equals(x.publicKey.export({ type: "spki", format: "der" }))).toBe(true);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
  });
});

describe("client certificates for a given key (a simulated fleet)", () => {
  it("certifies the key it is given, one certificate and CN per name, reused later; a non-RSA or bad key is PKI_KEY_INVALID", () => {
    const dir = fresh();
    try {
      const pki = LocalPki.open(dir);
      const first = pki.client("fleet-0000");
      const other = pki.client("fleet-0001", { keyPem: first.keyPem });
      expect(other.issued).toBe(true);
      expect(other.keyPem).toBe(first.keyPem);
      expect(new crypto.X509Certificate(other.certPem).subject).toContain("CN=fleet-0001");
      expect(new crypto.X509Certificate(other.certPem).checkPrivateKey(crypto.createPrivateKey(first.keyPem))).toBe(true);
      expect(pki.issued(other.certPem)).toBe(true);
      expect(pki.client("fleet-0001").issued).toBe(false); // reused, with its key
      const ec = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      for (const keyPem of [ec, "not a key"]) {
        let code: unknown;
        try { pki.client("fleet-0002", { keyPem }); } catch (e) { code = (e as { code?: unknown }).code; }
        expect(code).toBe(PKI_CODES.PKI_KEY_INVALID);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
