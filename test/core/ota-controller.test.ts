/**
 * The OTA update controller (src/core/ota-controller.ts) over fake ports: every transition of its table,
 * the policy refusals (each before any erase), retries with resume, power cuts between any two steps
 * (a new controller over the same key-value store and flash), the self-test and rollback, and the
 * reported schema. Jest subset only (runs on XS too). The same flows over the real C slot, HTTPS and the
 * local cloud are in test/sim/ota-e2e.test.ts.
 */
import { ShadowOtaError } from "../../src/core/errors";
import { DOWNLOAD_CODES } from "../../src/core/download-errors";
import type { JsonObject } from "../../src/core/json";
import {
  checkCandidate, checkRequest, loadRecord, OtaController, OTA_KV_KEY, OTA_PROGRESS_KEY, resolveFirmwareUrl,
  type OtaControllerConfig, type AppCheck,
} from "../../src/core/ota-controller";
import { UPDATE_CODES } from "../../src/core/update-errors";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";
import { BASE, CONFIG, Rig } from "./ota-rig";
import { ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";


/** Lets the download run: microtask turns, bounded. */
async function run(r: Rig, turns = 40): Promise<void> {
  for (let i = 0; i < turns; i++) await settle();
}

describe("checkRequest", () => {
  test("same version is nothing to do; newer goes ahead", () => {
    expect(checkRequest("1.0.0", "1.0.0", false)).toBe("same");
    expect(checkRequest("1.0.0+build.7", "1.0.0", false)).toBe("same");
    expect(checkRequest("1.1.0", "1.0.0", false)).toBeUndefined();
  });
  test("downgrade refused unless allowed", () => {
    const e = checkRequest("0.9.0", "1.0.0", false) as ShadowOtaError;
    expect(e.code).toBe(UPDATE_CODES.OTA_DOWNGRADE_REFUSED);
    expect(e.message).toContain("0.9.0");
    expect(checkRequest("0.9.0", "1.0.0", true)).toBeUndefined();
  });
  test("not strict SemVer", () => {
    expect((checkRequest("1.1", "1.0.0", false) as ShadowOtaError).code).toBe("VERSION_INVALID");
  });
});

describe("checkCandidate", () => {
  const ok = { version: "1.1.0", projectName: "shadow-ota", chipId: 0, minChipRevFull: 0, maxChipRevFull: 0xffff };
  const want = { version: "1.1.0", projectName: "shadow-ota", chipId: 0, chipRevFull: 300 };
  test("a matching candidate passes", () => {
    expect(checkCandidate(ok, want)).toBeUndefined();
  });
  test("a git describe version is refused and the message says how to stamp", () => {
    const e = checkCandidate({ ...ok, version: "v5.1.2-dirty" }, want)!;
    expect(e.code).toBe(UPDATE_CODES.OTA_VERSION_NOT_SEMVER);
    expect(e.message).toContain("v5.1.2-dirty");
    expect(e.message).toContain("npm run image -- stamp in.bin --version 1.1.0 -o out.bin");
  });
  test("control characters in a hostile descriptor are escaped in the message", () => {
    const e = checkCandidate({ ...ok, version: "1.1.0\n\u0007x" }, want)!;
    expect(e.message).toContain("\\x0a\\x07");
  });
  test("version, project and chip mismatches", () => {
    expect(checkCandidate({ ...ok, version: "1.2.0" }, want)!.code).toBe(UPDATE_CODES.OTA_VERSION_MISMATCH);
    expect(checkCandidate({ ...ok, projectName: "other" }, want)!.code).toBe(UPDATE_CODES.OTA_PROJECT_MISMATCH);
    expect(checkCandidate({ ...ok, chipId: 9 }, want)!.code).toBe(UPDATE_CODES.OTA_CHIP_MISMATCH);
  });
  test("chip revision: below the minimum, above a set maximum; 0 and 0xFFFF mean no maximum", () => {
    expect(checkCandidate({ ...ok, minChipRevFull: 301 }, want)!.code).toBe(UPDATE_CODES.OTA_CHIP_REVISION);
    expect(checkCandidate({ ...ok, minChipRevFull: 300 }, want)).toBeUndefined();
    expect(checkCandidate({ ...ok, maxChipRevFull: 299 }, want)!.message).toContain("up to v2.99");
    expect(checkCandidate({ ...ok, maxChipRevFull: 300 }, want)).toBeUndefined();
    expect(checkCandidate({ ...ok, maxChipRevFull: 0 }, want)).toBeUndefined();
    expect(checkCandidate({ ...ok, minChipRevFull: 400 }, { ...want, chipRevFull: undefined } as never)).toBeUndefined();
  });
});

describe("resolveFirmwareUrl", () => {
  const src = CONFIG.source;
  test("the seeds' names under the base", () => {
    expect(resolveFirmwareUrl(src, "1.0.5")).toBe(`${BASE}1.0.5.bin`);
    expect(resolveFirmwareUrl({ ...src, naming: "azure" }, "1.1.0")).toBe(`${BASE}v1_1_0.bin`);
  });
  test("a base from desired state on another host is refused; plain http is refused", () => {
    const e = (f: () => unknown): string => { try { f(); return "none"; } catch (x) { return (x as ShadowOtaError).code; } };
    expect(e(() => resolveFirmwareUrl(src, "1.1.0", "https://evil.example/fw/"))).toBe(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED);
    expect(e(() => resolveFirmwareUrl(src, "1.1.0", "http://blobs.example/fw/"))).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    expect(e(() => resolveFirmwareUrl(src, "1.1.0", "https://blobs.example/fw"))).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    expect(e(() => resolveFirmwareUrl(src, "1.1.0", "https://blobs.example.evil.example/fw/"))).toBe(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED);
  });
});

describe("OtaController: the update", () => {
  test("Idle → Downloading → Verifying → Staged → restart → PendingVerify → Valid", async () => {
    const r = new Rig();
    expect(r.ota.runningVersion).toBe("1.0.0");
    expect(r.ota.state).toBe("Idle");
    r.ota.request("1.1.0");
    await run(r);
    expect(r.ota.state).toBe("Staged");
    expect(r.restart.reasons).toEqual(["update to 1.1.0 staged"]);
    expect(r.source.opens).toEqual([{ url: `${BASE}1.1.0.bin`, offset: 0 }]);
    expect(r.states()).toEqual(["Downloading", "Verifying", "Staged"]);
    expect(r.last()).toEqual({ state: "Staged", from: "1.0.0", to: "1.1.0", bytes: 20_000, total: 20_000, percent: 100, attempt: 1, lastError: null });

    r.powerOn(); // the restart
    expect(r.ota.runningVersion).toBe("1.1.0");
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.flash.runningState).toBe("PENDING_VERIFY");
    r.ota.onSynced();
    await run(r);
    expect(r.ota.state).toBe("Valid");
    expect(r.flash.runningState).toBe("VALID");
    expect(r.last()["state"]).toBe("Valid");
    expect(r.clock.pending).toBe(0); // the self-test window was cancelled

    r.powerOn(); // a later restart changes nothing
    expect(r.ota.state).toBe("Valid");
    expect(r.ota.runningVersion).toBe("1.1.0");
  });

  test("the record is persisted at every 4 KiB sector", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 64 * 1024 }));
    const before = r.kv.writes;
    r.ota.request("1.1.0");
    await run(r, 120);
    expect(r.ota.state).toBe("Staged");
    expect(r.kv.writes - before).toBeGreaterThanOrEqual(16);
    expect(loadRecord(r.kv).record.durable).toBe(64 * 1024);
  });

  test("per sector only the durable offset is written; the whole record only at transitions", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 64 * 1024 }));
    const keys: string[] = [];
    const set = r.kv.set.bind(r.kv);
    r.kv.set = (k: string, v: string) => { keys.push(k); set(k, v); };
    r.ota.request("1.1.0");
    await run(r, 120);
    expect(r.ota.state).toBe("Staged");
    expect(keys.filter((k) => k === OTA_PROGRESS_KEY).length).toBe(16);
    expect(keys.filter((k) => k === OTA_KV_KEY).length).toBeLessThanOrEqual(4); // Downloading, open, Verifying, Staged
    expect(r.kv.get(OTA_PROGRESS_KEY)).toBeUndefined(); // a record write drops it
  });

  test("the progress entry counts only beside a download's record, and only within the image", () => {
    const kv = new MemoryKv();
    kv.set(OTA_KV_KEY, JSON.stringify({ state: "Downloading", to: "1.1.0", durable: 4096, total: 65536, attempt: 1 }));
    kv.set(OTA_PROGRESS_KEY, "32768");
    expect(loadRecord(kv).record.durable).toBe(32768);
    kv.set(OTA_PROGRESS_KEY, "70000");
    expect(loadRecord(kv).record.durable).toBe(4096);
    kv.set(OTA_PROGRESS_KEY, "12x");
    expect(loadRecord(kv).record.durable).toBe(4096);
    kv.set(OTA_PROGRESS_KEY, "32768");
    kv.set(OTA_KV_KEY, JSON.stringify({ state: "Failed", to: "1.1.0", durable: 0, attempt: 1 }));
    expect(loadRecord(kv).record.durable).toBe(0);
  });

  test("the same version is a no-op; a request while on it is ignored", async () => {
    const r = new Rig();
    r.ota.request("1.0.0");
    expect(r.source.opens.length).toBe(0);
    expect(r.ota.state).toBe("Idle");
    r.source.faults.push({ kind: "stall", at: 5_000 });
    r.ota.request("1.1.0");
    await run(r);
    r.ota.request("1.1.0");
    await run(r);
    expect(r.source.opens.length).toBe(1);
  });

  test("a downgrade is refused before anything is downloaded, and allowed by configuration", async () => {
    const r = new Rig();
    r.ota.request("0.9.0");
    await run(r);
    expect(r.source.opens.length).toBe(0);
    expect(r.ota.state).toBe("Failed");
    expect((r.last()["lastError"] as JsonObject)["code"]).toBe(UPDATE_CODES.OTA_DOWNGRADE_REFUSED);

    const a = new Rig({ ...CONFIG, allowDowngrade: true }, fakeImage({ version: "0.9.0" }));
    a.ota.request("0.9.0");
    await run(a);
    expect(a.ota.state).toBe("Staged");
  });

  for (const [name, image, code] of [
    ["another version in the descriptor", fakeImage({ version: "1.2.0" }), UPDATE_CODES.OTA_VERSION_MISMATCH],
    ["another project", fakeImage({ version: "1.1.0", projectName: "blinky" }), UPDATE_CODES.OTA_PROJECT_MISMATCH],
    ["another chip", fakeImage({ version: "1.1.0", chipId: 5 }), UPDATE_CODES.OTA_CHIP_MISMATCH],
    ["a newer chip revision", fakeImage({ version: "1.1.0", minChipRevFull: 301 }), UPDATE_CODES.OTA_CHIP_REVISION],
    ["an unstamped ESP-IDF version", fakeImage({ version: "v5.1-dirty" }), UPDATE_CODES.OTA_VERSION_NOT_SEMVER],
  ] as const) {
    test(`refused before any erase: ${name}`, async () => {
      const r = new Rig(CONFIG, image);
      r.ota.request("1.1.0");
      await run(r);
      expect(r.ota.state).toBe("Failed");
      expect(r.flash.erasedBytes).toBe(0);
      expect(r.flash.next).toBeUndefined();
      expect((r.last()["lastError"] as JsonObject)["code"]).toBe(code);
      expect(r.source.opens.length).toBe(1); // not retried
      // Failed for good: the same desired version after a restart is not tried again.
      r.powerOn();
      r.ota.request("1.1.0");
      await run(r);
      expect(r.source.opens.length).toBe(1);
      // Another version is.
      r.source.object = fakeImage({ version: "1.1.1" });
      r.ota.request("1.1.1");
      await run(r);
      expect(r.ota.state).toBe("Staged");
    });
  }

  test("an image error from the slot fails the update with the slot's code and platform number", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", magic: 0x3c }));
    r.ota.request("1.1.0");
    await run(r);
    expect(r.ota.state).toBe("Failed");
    expect(r.last()["lastError"]).toEqual({ code: "OTA_IMAGE_BAD_MAGIC", message: "not an image", platformCode: 0x7101, time: 1700000000 });
  });

  test("a host not on the allow-list (base URL from desired state) is never contacted", async () => {
    const r = new Rig();
    r.ota.request("1.1.0", "https://evil.example/fw/");
    await run(r);
    expect(r.source.opens.length).toBe(0);
    expect((r.last()["lastError"] as JsonObject)["code"]).toBe(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED);
  });
});

describe("OtaController: a platform that cannot restart", () => {
  test("staged stays Staged (the boot partition is switched) and the restart's error is reported", async () => {
    const r = new Rig();
    r.restart.restart = () => { throw new ShadowOtaError("DEVICE_RESTART_UNSUPPORTED", "this platform cannot restart"); };
    r.ota.request("1.1.0");
    await run(r);
    expect(r.ota.state).toBe("Staged");
    expect(r.flash.next).toBe(1);
    expect((r.last()["lastError"] as JsonObject)["code"]).toBe("DEVICE_RESTART_UNSUPPORTED");
    r.powerOn(); // a power cycle by hand boots the new image
    expect(r.ota.state).toBe("PendingVerify");
  });
});

describe("OtaController: retries and resume", () => {
  test("a cut connection is retried after backoff and resumed with If-Range; at most one sector again", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 40_000 }));
    r.source.faults.push({ kind: "cut", at: 10_000 });
    r.ota.request("1.1.0");
    await run(r);
    expect(r.ota.state).toBe("Downloading");
    expect(r.last()["attempt"]).toBe(2);
    expect((r.last()["lastError"] as JsonObject)["code"]).toBe(DOWNLOAD_CODES.DOWNLOAD_TRUNCATED);
    expect(r.source.opens.length).toBe(1);
    r.clock.advance(500); // random 0.5 of the first cap (1 s)
    await run(r);
    expect(r.ota.state).toBe("Staged");
    expect(r.source.opens[1]).toEqual({ url: `${BASE}1.1.0.bin`, offset: 8192, etag: '"v1"' });
    expect(r.source.served - 40_000).toBeLessThanOrEqual(4096);
    expect(r.last()["lastError"]).toBeNull();
  });

  test("a changed object (ETag) starts over from byte 0", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 40_000 }));
    r.source.faults.push({ kind: "cut", at: 10_000 });
    r.ota.request("1.1.0");
    await run(r);
    r.source.etag = '"v2"';
    r.clock.advance(1_000);
    await run(r);
    expect(r.source.opens[1]!.offset).toBe(8192);
    expect(r.ota.state).toBe("Staged");
    expect(r.source.served).toBe(10_000 + 40_000);
  });

  test("retries are bounded: OTA_RETRIES_EXHAUSTED names the last failure", async () => {
    const r = new Rig();
    for (let i = 0; i < 4; i++) r.source.faults.push({ kind: "open-error", error: new ShadowOtaError(DOWNLOAD_CODES.DOWNLOAD_CONNECT, "connect ECONNREFUSED") });
    r.ota.request("1.1.0");
    for (let i = 0; i < 6; i++) { await run(r); r.clock.advance(10_000); }
    expect(r.source.opens.length).toBe(4);
    expect(r.ota.state).toBe("Failed");
    const e = r.last()["lastError"] as JsonObject;
    expect(e["code"]).toBe(UPDATE_CODES.OTA_RETRIES_EXHAUSTED);
    expect(String(e["message"])).toContain("DOWNLOAD_CONNECT");
    // A failure a retry could cure is tried again after a restart.
    r.powerOn();
    r.ota.request("1.1.0");
    await run(r);
    expect(r.ota.state).toBe("Staged");
  });

  test("404 is not retried; 503 is", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "open-error", error: new ShadowOtaError(DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS, "HTTP 404", { detail: { status: 404 } }) });
    r.ota.request("1.1.0");
    await run(r);
    expect(r.ota.state).toBe("Failed");
    const s = new Rig();
    s.source.faults.push({ kind: "open-error", error: new ShadowOtaError(DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS, "HTTP 503", { detail: { status: 503 } }) });
    s.ota.request("1.1.0");
    await run(s);
    s.clock.advance(1_000);
    await run(s);
    expect(s.ota.state).toBe("Staged");
  });

  test("a power cut mid-download resumes on the next boot from the durable sector", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 50_000 }));
    r.source.faults.push({ kind: "stall", at: 30_000 });
    r.ota.request("1.1.0");
    await run(r, 80);
    expect(r.source.stalled).toBe(1);
    r.powerOn(); // power cut: nothing but the KV record and the flash survive
    expect(r.ota.state).toBe("Downloading");
    await run(r, 80);
    expect(r.ota.state).toBe("Staged");
    expect(r.source.opens[1]).toEqual({ url: `${BASE}1.1.0.bin`, offset: 28672, etag: '"v1"' });
    expect(r.source.served - 50_000).toBeLessThanOrEqual(4096);
  });

  test("a power cut while verifying: the next boot fetches only the last sector again", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 40_960 }));
    r.slot.failNextEnd = new ShadowOtaError("OTA_POWER_LOST", "power lost");
    r.ota.request("1.1.0");
    await run(r, 80);
    expect(r.ota.state).toBe("Verifying");
    r.powerOn();
    await run(r, 80);
    expect(r.ota.state).toBe("Staged");
    expect(r.source.opens[1]).toEqual({ url: `${BASE}1.1.0.bin`, offset: 36_864, etag: '"v1"' });
    expect(r.source.served).toBe(40_960 + 4096);
  });

  test("a newer request supersedes a running download", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "stall", at: 5_000 });
    r.ota.request("1.1.0");
    await run(r);
    r.source.object = fakeImage({ version: "1.2.0" });
    r.ota.request("1.2.0");
    await run(r);
    expect(r.ota.state).toBe("Staged");
    expect(r.ota.record.to).toBe("1.2.0");
    expect(r.source.opens.map((o) => o.url)).toEqual([`${BASE}1.1.0.bin`, `${BASE}1.2.0.bin`]);
  });
});

describe("OtaController: self-test and rollback", () => {
  async function staged(r: Rig): Promise<void> {
    r.ota.request("1.1.0");
    await run(r);
    expect(r.ota.state).toBe("Staged");
    r.powerOn();
    expect(r.ota.state).toBe("PendingVerify");
  }

  test("no twin get within the window: marked invalid, the old image reports the rollback and why", async () => {
    const r = new Rig();
    await staged(r);
    r.clock.advance(60_000);
    await run(r);
    expect(r.restart.reasons[1]).toContain("OTA_SELF_TEST_TIMEOUT");
    expect(r.flash.running).toBe(0);
    r.powerOn();
    expect(r.ota.runningVersion).toBe("1.0.0");
    expect(r.ota.state).toBe("RolledBack");
    const last = r.last();
    expect(last["from"]).toBe("1.0.0");
    expect(last["to"]).toBe("1.1.0");
    expect((last["lastError"] as JsonObject)["code"]).toBe(UPDATE_CODES.OTA_SELF_TEST_TIMEOUT);
    // Desired still says 1.1.0: not installed again (no update → rollback loop).
    r.ota.request("1.1.0");
    await run(r);
    expect(r.source.opens.length).toBe(1);
  });

  test("the application check fails: OTA_SELF_TEST_FAILED with its reason", async () => {
    const r = new Rig();
    r.appCheck = () => "sensor missing";
    await staged(r);
    r.ota.onSynced();
    await run(r);
    r.powerOn();
    expect(r.ota.state).toBe("RolledBack");
    const e = r.last()["lastError"] as JsonObject;
    expect(e["code"]).toBe(UPDATE_CODES.OTA_SELF_TEST_FAILED);
    expect(e["message"]).toContain("sensor missing");
  });

  test("a restart before confirmation: the bootloader rolls back, OTA_ROLLED_BACK", async () => {
    const r = new Rig();
    await staged(r);
    r.powerOn(); // power cut while pending verification
    expect(r.ota.runningVersion).toBe("1.0.0");
    expect(r.ota.state).toBe("RolledBack");
    expect((r.last()["lastError"] as JsonObject)["code"]).toBe(UPDATE_CODES.OTA_ROLLED_BACK);
  });

  test("a new request while pending verification is refused, then taken up once valid", async () => {
    const r = new Rig();
    await staged(r);
    r.source.object = fakeImage({ version: "1.2.0" });
    r.ota.request("1.2.0");
    await run(r);
    expect(r.ota.state).toBe("PendingVerify");
    expect((r.last()["lastError"] as JsonObject)["code"]).toBe(UPDATE_CODES.OTA_UPDATE_WHILE_PENDING);
    expect(r.source.opens.length).toBe(1);
    r.ota.onSynced();
    await run(r);
    expect(r.ota.record.to).toBe("1.2.0");
    expect(r.ota.state).toBe("Staged");
  });

  test("rollback disabled in the build: the new image boots VALID, is self-tested all the same, then Valid", async () => {
    const r = new Rig();
    r.flash.rollbackEnabled = false;
    r.ota.request("1.1.0");
    await run(r);
    r.powerOn();
    expect(r.ota.state).toBe("PendingVerify");
    r.ota.onSynced();
    await run(r);
    expect(r.ota.state).toBe("Valid");
  });
});

describe("OtaController: reports and record", () => {
  test("progress is rate limited: every 5 % and 2 s, whichever comes later, plus every state change", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 400 * 1024 }));
    r.ota.request("1.1.0");
    await run(r, 600);
    // The clock did not move: only state changes were reported.
    expect(r.states()).toEqual(["Downloading", "Verifying", "Staged"]);

    const t = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 400 * 1024 }));
    const origRead = t.source.open.bind(t.source);
    t.source.open = async (req) => {
      const resp = await origRead(req);
      const read = resp.read.bind(resp);
      return { ...resp, read: (max?: number) => { t.clock.now += 1_000; return read(max); }, abort: () => resp.abort() };
    };
    t.ota.request("1.1.0");
    await run(t, 600);
    const progress = t.reports.filter((x) => x["state"] === "Downloading").map((x) => x["percent"] as number);
    expect(progress.length).toBeGreaterThan(5);
    expect(progress.length).toBeLessThanOrEqual(21);
    for (let i = 2; i < progress.length; i++) expect(progress[i]! - progress[i - 1]!).toBeGreaterThanOrEqual(5);
  });

  test("an unreadable record is logged and counts as Idle", () => {
    const kv = new MemoryKv();
    kv.set(OTA_KV_KEY, "{not json");
    expect(loadRecord(kv).record.state).toBe("Idle");
    expect(loadRecord(kv).error).toBeDefined();
    kv.set(OTA_KV_KEY, JSON.stringify({ state: "Bogus" }));
    expect(loadRecord(kv).record.state).toBe("Idle");
  });
});
