/**
 * `npm run test:browser`: the fleet page (src/sim/fleet-page/) in a real headless Chromium — Debian's
 * package at /usr/bin/chromium (or $CHROMIUM), driven by puppeteer-core over the DevTools protocol; no
 * browser is downloaded — against a real local cloud on aedes with simulated devices (src/sim/device.ts:
 * the device app, the native OTA slot on a flash file, real ESP32 images over HTTPS), and an operator's
 * webhook (a local HTTP server here that takes only POSTs whose signature verifies under the shared secret,
 * docs/fleet-page.md "Signatures"). Everything on 127.0.0.1.
 *
 * What it checks, in the order a person would see it (each case builds on the one before):
 *   1. the page, opened at the address `npm start` prints (token in the fragment), lists every device;
 *   2. a published release shows as available on the devices it applies to, and as an event;
 *   3. a full update of an AWS device: live progress, then Valid on 1.1.0, without reloading; the event is in
 *      the list and the webhook got it;
 *   4. a device's reported strings are shown as text, never as markup (no element, no script from them);
 *   5. a pending consent shows "install"; clicking it sets desired's accept through POST /devices/{id}/install;
 *   6. a rollout started from the page over two Azure devices in two waves, the second one's image failing
 *      its self-test: waves, failure rate 50 % and the end state live, the rollback as an event and at the webhook;
 *   7. pause and cancel of a rollout waiting for its window, from the page's buttons.
 * Then a screenshot goes to build/fleet-page.png (not committed). Last line:
 * `test:browser: ran Chromium <version>: N passed` (or `…: N passed, K failed`, exit 1).
 *
 * Without Chromium it fails and says how to get it (CI installs it: scripts/bootstrap.sh). Waits are bounded
 * by generous deadlines against endless loops, never asserted as durations.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import mqtt, { type MqttClient } from "mqtt";

import { verifyWebhookSignature, WEBHOOK_SIGNATURE_HEADER, type FleetEvent } from "../../src/sim/fleet-events";
import { SELFTEST_FAIL_MARKER, SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { silentLog } from "../../src/ports/log";
import { buildImage } from "../../src/tools/esp-image";

// The page's globals, for the callbacks that puppeteer runs inside Chromium (page.evaluate, waitForFunction):
// declared here, in this module only, so the DOM library does not leak into the Node sources' type check.
interface PageElement {
  textContent: string | null;
  value: string | number;
  disabled: boolean;
  dataset: Record<string, string | undefined>;
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement> & Iterable<PageElement>;
  elements: { namedItem(name: string): PageElement | null };
}
declare const document: {
  getElementById(id: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement> & Iterable<PageElement>;
};
declare const window: { __loadId?: number; __progress?: number[]; __pwned?: number };
declare const MutationObserver: new (callback: () => void) => { observe(target: PageElement, options: { childList: boolean; subtree: boolean }): void };

const ROOT = path.resolve(__dirname, "..", "..");
const CHROMIUM = process.env["CHROMIUM"] ?? "/usr/bin/chromium";
const WAIT_MS = 120_000;
const IMAGE_SIZE = 256 * 1024;
const CANARY = "canary";

const cases: Array<{ name: string; run: () => Promise<void> }> = [];
const test = (name: string, run: () => Promise<void>): void => { cases.push({ name, run }); };

function check(ok: unknown, what: string): void {
  if (!ok) throw new Error(what);
}

// ---- the world under test ------------------------------------------------------------------------

let work: string;
let cloud: LocalCloud;
let browser: Browser;
let page: Page;
const devices: SimDevice[] = [];
const hooked: FleetEvent[] = [];
/** The webhook's shared secret; a POST whose signature does not verify is answered 401 and not counted. */
const HOOK_SECRET = `browser-test-${process.pid}`;
let hookRefused = 0;
let hookServer: http.Server;
let raw: MqttClient | undefined;

async function startWebhook(): Promise<string> {
  hookServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const signature = req.headers[WEBHOOK_SIGNATURE_HEADER];
      if (!verifyWebhookSignature(HOOK_SECRET, typeof signature === "string" ? signature : undefined, body, Math.floor(Date.now() / 1000))) {
        hookRefused++;
        res.writeHead(401).end();
        return;
      }
      hooked.push(JSON.parse(body.toString("utf8")) as FleetEvent);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(hookServer.address() as { port: number }).port}/fleet-hook`;
}

function startDevice(id: string, cloudKind: "aws" | "azure", container = "firmware"): SimDevice {
  const c = cloud.credentials(id);
  const d = SimDevice.start({
    id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
    dataDir: path.join(work, "devices", id), firmwareVersion: "1.0.0", firmware: { baseUrl: cloud.blobs.baseUrl(container), ca: c.ca }, powerOffMs: 100,
    log: silentLog,
  });
  check(d.cloud === cloudKind, `${id} runs the ${cloudKind} seed`);
  devices.push(d);
  return d;
}

/** Waits in the page until `fn(...args)` is truthy. */
async function until<A extends unknown[]>(what: string, fn: (...args: A) => unknown, ...args: A): Promise<void> {
  try {
    await page.waitForFunction(fn as (...a: unknown[]) => unknown, { timeout: WAIT_MS, polling: 100 }, ...args);
  } catch (e) {
    throw new Error(`${what}: not seen in the page (${(e as Error).message.split("\n")[0]})`);
  }
}

async function untilNode<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < WAIT_MS / 50; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not reached`);
}

const cellText = (id: string, cls: string): Promise<string | null> =>
  page.evaluate((i: string, c: string) => document.querySelector(`tr[data-device="${i}"] td.${c}`)?.textContent ?? null, id, cls);

// ---- the cases -----------------------------------------------------------------------------------

test("the page lists every device with its cloud and running version", async () => {
  await page.goto(cloud.fleetPageUrl!, { waitUntil: "load" });
  check(!page.url().includes("token="), "the token is removed from the address bar");
  await page.evaluate(() => { window.__loadId = 42; });
  for (const [id, kind] of [["b-aws-01", "aws"], ["b-az-01", "azure"], ["b-az-02", "azure"]] as const) {
    await until(`${id} on 1.0.0`, (i: string, k: string) => {
      const row = document.querySelector(`tr[data-device="${i}"]`);
      return row?.querySelector("td.cloud")?.textContent === k && row.querySelector("td.version")?.textContent === "1.0.0" && row.querySelector("td.seen")?.textContent !== "never";
    }, id, kind);
  }
  await until("the live status", () => document.getElementById("status")?.dataset["state"] === "live");
});

test("a published release shows as available on the devices it applies to, and as an event", async () => {
  const good = buildImage({ version: "1.1.0", projectName: "shadow-ota", size: IMAGE_SIZE, seed: 3 });
  const bad = buildImage({ version: "1.1.0", projectName: "shadow-ota", size: IMAGE_SIZE, seed: 3, marker: SELFTEST_FAIL_MARKER });
  const put = async (container: string, name: string, bytes: Uint8Array): Promise<void> => {
    const r = await fetch(`${cloud.adminUrl}/firmware/${container}/${name}`, { method: "PUT", headers: { authorization: `Bearer ${cloud.adminToken}` }, body: bytes });
    check(r.status === 200, `PUT ${name}: ${r.status}`);
  };
  await put("firmware", "1.1.0.bin", good);
  await until("1.1.0 available on b-aws-01 only", () =>
    document.querySelector('tr[data-device="b-aws-01"] td.available')?.textContent === "1.1.0"
    && document.querySelector('tr[data-device="b-az-01"] td.available')?.textContent === "");
  await put("firmware", "v1_1_0.bin", good);
  await put(CANARY, "v1_1_0.bin", bad); // b-az-02's container: the build whose self-test fails
  await until("1.1.0 available on the Azure devices too", () => document.querySelector('tr[data-device="b-az-01"] td.available')?.textContent === "1.1.0");
  await until("the release events", () => document.querySelectorAll('#events li[data-type="release-published"]').length === 2);
  const text = await page.evaluate(() => document.querySelector('#events li[data-type="release-published"]')?.textContent ?? "");
  check(/release 1\.1\.0 published for azure \(v1_1_0\.bin\): available on 2 devices/.test(text), `event text: ${text}`);
});

test("a full update shows live progress, then Valid on 1.1.0, an event and the webhook's POST", async () => {
  await page.evaluate(() => {
    const seen: number[] = [];
    window.__progress = seen;
    new MutationObserver(() => {
      const bar = document.querySelector('tr[data-device="b-aws-01"] td.progress progress');
      if (bar !== null && seen.at(-1) !== Number(bar.value)) seen.push(Number(bar.value));
    }).observe(document.querySelector("#devices tbody")!, { childList: true, subtree: true });
  });
  await cloud.shadows.updateDesired("b-aws-01", { config: { firmware_version: "1.1.0" } });
  await until("b-aws-01 Valid on 1.1.0", () =>
    document.querySelector('tr[data-device="b-aws-01"] td.state')?.textContent === "Valid → 1.1.0"
    && document.querySelector('tr[data-device="b-aws-01"] td.version')?.textContent === "1.1.0");
  const seen = await page.evaluate(() => window.__progress ?? []);
  check(seen.some((p) => p > 0 && p < 100), `progress between 0 and 100 % was shown (saw ${JSON.stringify(seen)})`);
  check(seen.includes(100), `100 % was shown (saw ${JSON.stringify(seen)})`);
  check(seen.every((p, i) => i === 0 || p >= seen[i - 1]!), `progress only grows (saw ${JSON.stringify(seen)})`);
  check(await page.evaluate(() => window.__loadId === 42), "the page was not reloaded");
  await until("the updated event", () => [...document.querySelectorAll('#events li[data-type="updated"]')].some((li) => /b-aws-01 updated 1\.0\.0 → 1\.1\.0/.test(li.textContent ?? "")));
  check((await cellText("b-aws-01", "available")) === "", "nothing newer is available once it runs 1.1.0");
  const e = await untilNode("the webhook's POST", () => hooked.find((x) => x.type === "updated" && x.deviceId === "b-aws-01"));
  check(e.cloud === "aws" && e.from === "1.0.0" && e.to === "1.1.0" && e.version === "1.1.0", `webhook payload ${JSON.stringify(e)}`);
  check(hookRefused === 0, `${hookRefused} webhook POSTs whose signature did not verify`);
});

test("a device's reported strings are shown as text, never as markup", async () => {
  const c = cloud.credentials("b-evil");
  raw = await mqtt.connectAsync({ protocol: "mqtts", host: c.host, port: c.port, clientId: "b-evil", ca: c.ca, cert: c.cert, key: c.key, protocolVersion: 4, reconnectPeriod: 0 });
  const hostile = {
    config: { firmware_version: '<img id="inj1" src="x" onerror="window.__pwned=1">' },
    firmwareUpdate: { state: "Failed", from: "1.0.0", to: '<svg id="inj2" onload="window.__pwned=2"></svg>', bytes: null, total: null, percent: null, attempt: 1,
      lastError: { code: '<b id="inj3">OTA</b>', message: '<script>window.__pwned=3</script><iframe id="inj4" src="javascript:parent.__pwned=4"></iframe>' } },
  };
  await raw.publishAsync("$aws/things/b-evil/shadow/update", JSON.stringify({ state: { reported: hostile } }), { qos: 1 });
  await until("b-evil's row", () => document.querySelector('tr[data-device="b-evil"] td.error')?.textContent === '<b id="inj3">OTA</b>');
  await until("b-evil's failed event", () => document.querySelector('#events li[data-type="failed"]') !== null);
  const r = await page.evaluate(() => ({
    injected: ["inj1", "inj2", "inj3", "inj4"].filter((id) => document.getElementById(id) !== null),
    pwned: window.__pwned ?? null,
    version: document.querySelector('tr[data-device="b-evil"] td.version')?.textContent,
    state: document.querySelector('tr[data-device="b-evil"] td.state')?.textContent,
    event: document.querySelector('#events li[data-type="failed"]')?.textContent ?? "",
    elements: document.querySelectorAll("#devices img, #devices svg, #devices script, #devices iframe, #events img, #events svg, #events script, #events iframe, #events b").length,
  }));
  check(r.injected.length === 0 && r.pwned === null && r.elements === 0, `no markup from the device: ${JSON.stringify(r)}`);
  check(r.version === hostile.config.firmware_version, `version shown as text: ${r.version}`);
  check(r.state === `Failed → ${hostile.firmwareUpdate.to}`, `state shown as text: ${r.state}`);
  check(r.event.includes('<script>window.__pwned=3</script>'), `event shown as text: ${r.event}`);
});

test("a pending consent shows 'install'; clicking it accepts through POST /devices/{id}/install", async () => {
  // The AWS seed's flow: desired names the version, the device waits for the operator's consent.
  await cloud.shadows.updateDesired("b-evil", { config: { firmware_version: "1.3.0" } });
  const waiting = { state: "WaitingConsent", from: "1.0.0", to: "1.3.0", bytes: null, total: null, percent: null, attempt: null, lastError: null };
  await raw!.publishAsync("$aws/things/b-evil/shadow/update", JSON.stringify({ state: { reported: { config: { firmware_version: "1.0.0" }, firmwareUpdate: waiting } } }), { qos: 1 });
  await until("the install button", () => document.querySelector('tr[data-device="b-evil"] button.install')?.textContent === "install 1.3.0");
  await page.click('tr[data-device="b-evil"] button.install');
  await until("accepted", () => document.querySelector('tr[data-device="b-evil"] button.install')?.textContent !== "install 1.3.0");
  const button = await page.evaluate(() => document.querySelector('tr[data-device="b-evil"] button.install')?.textContent);
  check(button === "accepted", `the button says ${button}`);
  const shadow = await cloud.shadows.getShadow("b-evil");
  const desired = (shadow?.["state"] as { desired?: { firmwareUpdatePolicy?: { accept?: string } } } | undefined)?.desired;
  check(desired?.firmwareUpdatePolicy?.accept === "1.3.0", `desired firmwareUpdatePolicy.accept names the accepted version: ${JSON.stringify(desired)}`);
});

test("a rollout started from the page: two waves, the second device rolls back, failure rate 50 %, done", async () => {
  await page.evaluate(() => {
    const f = document.getElementById("rollout-start")!;
    f.elements.namedItem("version")!.value = "1.1.0";
    f.elements.namedItem("devices")!.value = "b-az-01, b-az-02";
    f.elements.namedItem("waves")!.value = "1,100%";
    f.elements.namedItem("maxFailure")!.value = "50%";
  });
  await page.click('#rollout-start button[type="submit"]');
  await until("the rollout with its two waves", () => document.querySelectorAll('.rollout table.waves tbody tr').length === 2);
  await until("the rollout done", () => document.querySelector(".rollout")?.getAttribute("data-state") === "done");
  const r = await page.evaluate(() => ({
    rate: document.querySelector(".rollout .rate")?.textContent,
    waves: [...document.querySelectorAll(".rollout table.waves tbody tr")].map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)),
  }));
  check(r.rate === "failure 50.0 % of max 50.0 %", `failure rate shown: ${r.rate}`);
  check(JSON.stringify(r.waves) === JSON.stringify([["0", "1", "done", "1", "0", "0", "0", "0", "b-az-01"], ["1", "1", "done", "0", "1", "0", "0", "0", "b-az-02"]]), `waves shown: ${JSON.stringify(r.waves)}`);
  await until("b-az-02 rolled back in the table and the events", () =>
    document.querySelector('tr[data-device="b-az-02"] td.state')?.textContent === "RolledBack → 1.1.0"
    && document.querySelector('tr[data-device="b-az-02"] td.error')?.textContent === "OTA_SELF_TEST_FAILED"
    && [...document.querySelectorAll('#events li[data-type="rolled-back"]')].some((li) => /b-az-02 rolled back 1\.0\.0 → 1\.1\.0, runs 1\.0\.0: OTA_SELF_TEST_FAILED/.test(li.textContent ?? "")));
  check((await cellText("b-az-01", "version")) === "1.1.0", "b-az-01 runs 1.1.0");
  const e = await untilNode("the rollback at the webhook", () => hooked.find((x) => x.type === "rolled-back" && x.deviceId === "b-az-02"));
  check(e.error?.code === "OTA_SELF_TEST_FAILED", `webhook payload ${JSON.stringify(e)}`);
});

test("pause and cancel a rollout that waits for its window, from the page's buttons", async () => {
  const at = new Date(Date.now() + 6 * 3600_000);
  const hhmm = (d: Date): string => `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  const window = `${hhmm(at)}-${hhmm(new Date(at.getTime() + 30 * 60_000))}`;
  await page.evaluate((w: string) => {
    const f = document.getElementById("rollout-start")!;
    f.elements.namedItem("version")!.value = "1.1.0";
    f.elements.namedItem("devices")!.value = "b-az-02";
    f.elements.namedItem("waves")!.value = "100%";
    f.elements.namedItem("window")!.value = w;
  }, window);
  await page.click('#rollout-start button[type="submit"]');
  await until("a rollout waiting for its window", () => document.querySelector(".rollout")?.getAttribute("data-state") === "waiting-window");
  await page.click(".rollout button.pause");
  await until("paused", () => document.querySelector(".rollout")?.getAttribute("data-state") === "paused");
  await page.click(".rollout button.cancel");
  await until("cancelled", () => document.querySelector(".rollout")?.getAttribute("data-state") === "cancelled");
  check(await page.evaluate(() => document.querySelector(".rollout button.cancel")!.disabled), "a cancelled rollout offers no cancel");
});

// ---- run -----------------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (!fs.existsSync(CHROMIUM)) {
    console.log(`test:browser: FAILED: no Chromium at ${CHROMIUM}. Install Debian's package (apt-get install chromium; npm run bootstrap does it) or set CHROMIUM=/path/to/chromium.`);
    return 1;
  }
  work = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-browser-"));
  let passed = 0;
  let failed = 0;
  let version = "?";
  try {
    const hookUrl = await startWebhook();
    cloud = await LocalCloud.start({
      dataDir: path.join(work, "cloud"), certsDir: path.join(os.tmpdir(), "shadow-ota-test-pki"), webhook: { url: hookUrl, secret: HOOK_SECRET, backoffMs: 50 },
      devices: [{ id: "b-aws-01", cloud: "aws" }, { id: "b-az-01", cloud: "azure" }, { id: "b-az-02", cloud: "azure" }, { id: "b-evil", cloud: "aws" }],
      blobs: { bytesPerSecond: 128 * 1024 }, // about 2 s per image: the progress can be watched
    });
    startDevice("b-aws-01", "aws");
    startDevice("b-az-01", "azure");
    startDevice("b-az-02", "azure", CANARY);
    browser = await puppeteer.launch({
      executablePath: CHROMIUM, headless: true,
      // Chromium's sandbox refuses to run as root (CI containers); the page is our own, on loopback.
      args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
    });
    version = (await browser.version()).replace(/^[A-Za-z]*\//, "");
    page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1000 });
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    for (const c of cases) {
      try {
        await c.run();
        check(pageErrors.length === 0, `script errors in the page: ${pageErrors.join("; ")}`);
        passed++;
        console.log(`  ok    ${c.name}`);
      } catch (e) {
        failed++;
        console.log(`  FAIL  ${c.name}\n        ${(e as Error).message}`);
      }
    }
    fs.mkdirSync(path.join(ROOT, "build"), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, "build", "fleet-page.png"), fullPage: true });
    console.log(`  screenshot: build/fleet-page.png`);
  } catch (e) {
    failed++;
    console.log(`  FAIL  setup: ${(e as Error).stack ?? String(e)}`);
  } finally {
    await browser?.close().catch(() => undefined);
    await raw?.endAsync(true).catch(() => undefined);
    for (const d of devices) await d.close().catch(() => undefined);
    await cloud?.close().catch(() => undefined);
    await new Promise<void>((r) => { if (hookServer === undefined) r(); else { hookServer.closeAllConnections(); hookServer.close(() => r()); } });
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`test:browser: ran Chromium ${version}: ${passed} passed${failed > 0 ? `, ${failed} failed` : ""}`);
  return failed > 0 ? 1 : 0;
}

main().then((code) => process.exit(code), (e: unknown) => { console.error(e); process.exit(1); });
