/**
 * The local cloud's blob server sends its certificate chain (leaf + the local CA), as real endpoints send
 * their intermediates. Moddable's SecureSocket checks the server name only on a certificate whose issuer is
 * also in the chain the server sent (modules/crypt/ssl/ssl_cert.js `verify`), so a lone leaf failed every
 * download in mcsim with "subjectAltName match failed" (docs/moddable.md). The chain is read from the TLS
 * handshake with openssl s_client (what the server sent, not what the client completed from its store).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalCloud } from "../../src/sim/local-cloud";

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared with the other cloud tests: RSA keys take time

test("the blob server sends leaf + CA", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blob-chain-"));
  const cloud = await LocalCloud.start({ dataDir: dir, certsDir: PKI });
  try {
    const port = new URL(cloud.blobBaseUrl).port;
    // Asynchronous: the server runs in this process, so a blocking spawn would stall the handshake.
    const stdout = await new Promise<string>((resolve) => {
      const child = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost"], { stdio: ["pipe", "pipe", "ignore"] });
      let out = "";
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (d: string) => { out += d; });
      child.on("close", () => resolve(out));
      child.stdin.end();
    });
    const subjects = stdout.split("\n").filter((l) => /^\s*\d+ s:/.test(l));
    expect(subjects).toHaveLength(2);
    expect(subjects[0]).toMatch(/CN ?= ?localhost/);
    expect(subjects[1]).toMatch(/local CA/);
  } finally {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
