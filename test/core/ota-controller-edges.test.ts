/**
 * The OTA controller (src/core/ota-controller.ts) in the corners ota-controller.test.ts leaves open, seen
 * as the cloud (reported.firmwareUpdate), the flash and the device log see them: a running image without a
 * SemVer descriptor, a restart into an unexpected version, a pending image with no record, requests while
 * staged or downloading, a throwing application check, a key-value store or report hook that fails, a
 * request during a backoff wait, a stored prefix that no longer passes the policy, failing markValid and
 * rollback, long messages, and the progress throttle's edges. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { OtaController, OTA_KV_KEY, type AppCheck, type OtaControllerConfig } from "../../src/core/ota-controller";
import { UPDATE_CODES } from "../../src/core/update-errors";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";
import { BASE, CONFIG, Rig } from "./ota-rig";
import { ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";


async function run(turns = 40): Promise<void> {
  for (let i = 0; i < turns; i++) await settle();
}

/** Downloads 1.1.0 and restarts into it (PendingVerify). */
async function pending(r: Rig): Promise<void> {
  r.ota.request("1.1.0");
  await run();
  expect(r.ota.state).toBe("Staged");
  r.powerOn();
  expect(r.ota.state).toBe("PendingVerify");
}

describe("the running version at boot", () => {
  it("a descriptor that is not SemVer: the configured fallback version runs, and the log says why", () => {
    const r = new Rig({ ...CONFIG, fallbackVersion: "1.0.0" }, fakeImage({ version: "1.1.0" }), fakeImage({ version: "esp-idf-v5.1-dirty", size: 9_000 }));
    expect(r.ota.runningVersion).toBe("1.0.0");
    expect(r.events("ota.boot.version-from-config")).toEqual([{ level: "warn", fields: { partition: "ota_0", descriptor: "esp-idf-v5.1-dirty", version: "1.0.0" } }]);
  });

  it("a descriptor that is not SemVer and no fallback: the descriptor's text is what runs, no update starts", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0" }), fakeImage({ version: "esp-idf-v5.1-dirty", size: 9_000 }));
    expect(r.ota.runningVersion).toBe("esp-idf-v5.1-dirty");
    expect(r.events("ota.boot.version-from-config")).toEqual([]);
    try { r.ota.request("1.1.0"); } catch { /* refused either way */ }
    await run();
    expect(r.source.opens).toEqual([]);
  });

  it("a SemVer descriptor wins over the fallback", () => {
    const r = new Rig({ ...CONFIG, fallbackVersion: "0.0.1" });
    expect(r.ota.runningVersion).toBe("1.0.0");
    expect(r.events("ota.boot.version-from-config")).toEqual([]);
  });
});

describe("what a restart meant", () => {
  it("the device restarted into neither the old nor the new version: Failed, OTA_UNEXPECTED_VERSION", () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0" }), fakeImage({ version: "1.2.0", size: 9_000 }));
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Staged", from: "1.0.0", to: "1.1.0", durable: 20_000, total: 20_000, attempt: 1 }));
    r.powerOn();
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual({ code: UPDATE_CODES.OTA_UNEXPECTED_VERSION, message: "after the update to 1.1.0 the device runs 1.2.0", time: r.clock.epochSeconds() });
    expect(r.last()).toEqual(expect.objectContaining({ state: "Failed", from: "1.0.0", to: "1.1.0", bytes: null, total: null, percent: null }));
  });

  it("a pending image without any record (the store was erased) still has to pass the self-test", async () => {
    const r = new Rig();
    r.flash.runningState = "PENDING_VERIFY";
    r.flash.lengths[1] = 9_000; // something to roll back to
    r.powerOn(false);
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.last()).toEqual(expect.objectContaining({ state: "PendingVerify", to: "1.0.0" }));
    r.ota.onSynced();
    await run();
    expect(r.ota.state).toBe("Valid");
    expect(r.flash.runningState).toBe("VALID");
  });

  it("a boot that changes nothing reports nothing (the reported state already says it)", () => {
    const r = new Rig();
    expect(r.reports).toEqual([]);
    r.powerOn();
    expect(r.reports).toEqual([]);
  });

  it("Staged, the new version runs and otadata does not say PENDING_VERIFY (no rollback in the build, a torn entry): self-tested all the same, reported", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Staged", from: "0.9.0", to: "1.0.0", durable: 9_000, total: 9_000, attempt: 1 }));
    r.powerOn();
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.states()).toEqual(["PendingVerify"]);
  });
});

describe("requests in the middle of an update", () => {
  it("a refused request while downloading is reported, and the download goes on", async () => {
    const r = new Rig();
    r.source.chunkSize = 512;
    r.ota.request("1.1.0");
    await settle();
    expect(r.ota.state).toBe("Downloading");
    r.ota.request("0.9.0"); // a downgrade: refused
    expect(r.last()).toEqual(expect.objectContaining({ state: "Downloading", to: "1.1.0" }));
    expect(r.lastError()).toEqual(expect.objectContaining({ code: UPDATE_CODES.OTA_DOWNGRADE_REFUSED }));
    expect(r.events("ota.request.refused")).toEqual([{ level: "warn", fields: { version: "0.9.0", code: UPDATE_CODES.OTA_DOWNGRADE_REFUSED, message: "0.9.0 is older than the running 1.0.0; downgrades are not allowed by configuration" } }]);
    await run(200);
    expect(r.ota.state).toBe("Staged");
    expect(r.lastError()).toBeNull(); // a staged update carries no old error
  });

  it("a different version while staged (the platform did not restart) waits for the restart", async () => {
    const r = new Rig();
    r.restart.restart = () => { throw new ShadowOtaError("DEVICE_RESTART_UNSUPPORTED", "cannot restart"); };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    r.ota.request("1.2.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.source.opens).toHaveLength(1);
    expect(r.events("ota.request.after-restart")).toEqual([{ level: "info", fields: { version: "1.2.0", staged: "1.1.0" } }]);
    expect(r.events("ota.restart-failed")).toEqual([{ level: "error", fields: { reason: "update to 1.1.0 staged", message: "cannot restart" } }]);
  });

  it("a request during the wait before a retry starts the new download at once", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_CONNECT", "refused") });
    r.ota.request("1.1.0");
    await run();
    expect(r.last()).toEqual(expect.objectContaining({ state: "Downloading", attempt: 2 }));
    expect(r.source.opens).toHaveLength(1);
    r.source.object = fakeImage({ version: "1.2.0" });
    r.ota.request("1.2.0"); // no clock advance: the backoff wait is cut short
    await run();
    expect(r.source.opens.map((o) => o.url)).toEqual([`${BASE}1.1.0.bin`, `${BASE}1.2.0.bin`]);
    expect(r.ota.state).toBe("Staged");
    expect(r.clock.pending).toBe(0);
  });

  it("the same version again after a failure that is worth retrying starts again; after others it does not", async () => {
    const r = new Rig();
    for (let i = 0; i < 4; i++) r.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_CONNECT", "refused") });
    r.ota.request("1.1.0");
    for (let i = 0; i < 6; i++) { await run(); r.clock.advance(10_000); }
    await run();
    expect(r.lastError()).toEqual(expect.objectContaining({ code: UPDATE_CODES.OTA_RETRIES_EXHAUSTED }));
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");

    const q = new Rig();
    q.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_TLS", "bad certificate") });
    q.ota.request("1.1.0");
    await run();
    expect(q.ota.state).toBe("Failed");
    q.ota.request("1.1.0");
    await run();
    expect(q.source.opens).toHaveLength(1);
    expect(q.events("ota.request.not-again")).toEqual([{ level: "info", fields: { version: "1.1.0", state: "Failed", code: "DOWNLOAD_TLS" } }]);
  });
});

describe("failing ports", () => {
  it("a key-value store that refuses writes is logged; the update still completes", async () => {
    const r = new Rig();
    r.kv.set = () => { throw new Error("nvs full"); };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.events("ota.persist-failed")[0]).toEqual({ level: "error", fields: { message: "nvs full" } });
  });

  it("a report the cloud refuses is logged with its code, and the update goes on", async () => {
    const r = new Rig();
    r.reportResult = () => Promise.reject(new ShadowOtaError("SYNC_REJECTED", "400"));
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.events("ota.report.failed")[0]).toEqual({ level: "info", fields: { code: "SYNC_REJECTED" } });
  });

  it("a report failing with something else is logged as UNKNOWN", async () => {
    const r = new Rig();
    r.reportResult = () => Promise.reject(new Error("x"));
    r.ota.request("1.1.0");
    await run();
    expect(r.events("ota.report.failed")[0]).toEqual({ level: "info", fields: { code: "UNKNOWN" } });
  });

  it("a report that never settles delays the restart by at most the bound, then it goes ahead", async () => {
    const r = new Rig();
    r.reportResult = () => new Promise<void>(() => undefined);
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.restart.reasons).toEqual([]);
    r.clock.advance(4_999);
    await run();
    expect(r.restart.reasons).toEqual([]);
    r.clock.advance(1);
    await run();
    expect(r.restart.reasons).toEqual(["update to 1.1.0 staged"]);
  });
});

describe("resume", () => {
  it("a stored prefix that no longer passes the policy is not resumed: the download starts over", async () => {
    const r = new Rig();
    r.source.chunkSize = 4096;
    r.source.faults.push({ kind: "cut", at: 12_288 });
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.record.durable).toBe(12_288);
    r.config = { ...CONFIG, projectName: "other-project" };
    r.powerOn();
    await run();
    expect(r.source.opens.map((o) => o.offset)).toEqual([0, 0]);
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual(expect.objectContaining({ code: UPDATE_CODES.OTA_PROJECT_MISMATCH }));
  });
});

describe("resume refused by the slot", () => {
  async function cutAt12k(): Promise<Rig> {
    const r = new Rig();
    r.source.chunkSize = 4096;
    r.source.faults.push({ kind: "cut", at: 12_288 });
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.record.durable).toBe(12_288);
    return r;
  }

  it("a prefix the slot no longer recognises (OTA_RESUME_MISMATCH) is fetched again from byte 0", async () => {
    const r = await cutAt12k();
    r.powerOn();
    r.slot.resume = () => { throw new ShadowOtaError("OTA_RESUME_MISMATCH", "flash prefix differs"); };
    r.clock.advance(10_000);
    await run(100);
    expect(r.events("ota.resume.mismatch")).toEqual([{ level: "warn", fields: { durable: 12_288, code: "OTA_RESUME_MISMATCH" } }]);
    expect(r.source.opens.map((o) => o.offset)).toEqual([0, 0]);
    expect(r.ota.state).toBe("Staged");
  });

  it("so is an invalid stored image (OTA_IMAGE_INVALID)", async () => {
    const r = await cutAt12k();
    r.powerOn();
    r.slot.resume = () => { throw new ShadowOtaError("OTA_IMAGE_INVALID", "bad prefix"); };
    await run(100);
    expect(r.source.opens.map((o) => o.offset)).toEqual([0, 0]);
    expect(r.ota.state).toBe("Staged");
  });

  it("any other resume failure fails the update with the slot's code", async () => {
    const r = await cutAt12k();
    r.powerOn();
    r.slot.resume = () => { throw new ShadowOtaError("OTA_FLASH_READ", "read failed", { platformCode: 0x103 }); };
    await run(100);
    expect(r.source.opens).toHaveLength(1);
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual(expect.objectContaining({ code: "OTA_FLASH_READ", platformCode: 0x103 }));
  });

  it("a resumed download asks for the durable offset with the validator it had", async () => {
    const r = await cutAt12k();
    r.powerOn();
    await run(100);
    expect(r.source.opens.map((o) => [o.offset, o.etag])).toEqual([[0, undefined], [12_288, '"v1"']]);
    expect(r.ota.state).toBe("Staged");
  });
});

describe("self-test", () => {
  it("an application check that throws fails the self-test with its message and rolls back", async () => {
    const r = new Rig();
    r.appCheck = () => { throw new Error("i2c bus stuck"); };
    await pending(r);
    r.ota.onSynced();
    await run();
    expect(r.events("ota.self-test.failed")[0]!.fields).toEqual(expect.objectContaining({ code: UPDATE_CODES.OTA_SELF_TEST_FAILED, message: "application check threw: i2c bus stuck" }));
    expect(r.flash.running).toBe(0);
    expect(r.restart.reasons[1]).toBe("self-test of 1.1.0 failed: OTA_SELF_TEST_FAILED");
  });

  it("an application check that rejects with a non-Error still names it", async () => {
    const r = new Rig();
    r.appCheck = () => Promise.reject("no sensor");
    await pending(r);
    r.ota.onSynced();
    await run();
    expect(r.events("ota.self-test.failed")[0]!.fields).toEqual(expect.objectContaining({ message: "application check threw: no sensor" }));
  });

  it("the self-test runs once per boot, however often the twin is synced", async () => {
    let checks = 0;
    const r = new Rig();
    r.appCheck = () => { checks++; return true; };
    await pending(r);
    r.ota.onSynced();
    r.ota.onSynced();
    await run();
    r.ota.onSynced();
    await run();
    expect(checks).toBe(1);
    expect(r.states().filter((s) => s === "Valid")).toHaveLength(1);
  });

  it("a synced twin outside PendingVerify confirms nothing", async () => {
    let checks = 0;
    const r = new Rig();
    r.appCheck = () => { checks++; return true; };
    r.powerOn();
    r.ota.onSynced();
    await run();
    expect(checks).toBe(0);
    expect(r.reports).toEqual([]);
  });

  it("markValid failing fails the self-test and rolls back", async () => {
    const r = new Rig();
    await pending(r);
    r.slot.markValid = () => { throw new ShadowOtaError("OTA_MARK_VALID_FAILED", "otadata write failed", { platformCode: 0x105 }); };
    r.ota.onSynced();
    await run();
    expect(r.events("ota.mark-valid-failed")).toEqual([{ level: "error", fields: { message: "otadata write failed" } }]);
    // Reported before going back: what failed, with the platform's number.
    expect(r.last()).toEqual(expect.objectContaining({ state: "PendingVerify" }));
    expect(r.lastError()).toEqual(expect.objectContaining({ code: "OTA_MARK_VALID_FAILED", platformCode: 0x105 }));
    expect(r.flash.running).toBe(0);
    r.powerOn();
    expect(r.ota.state).toBe("RolledBack");
  });

  it("no previous image to go back to: Failed with the slot's error, the new image keeps running", async () => {
    const r = new Rig();
    await pending(r);
    r.flash.lengths[0] = 0; // the old slot holds nothing bootable any more
    r.clock.advance(60_000);
    await run();
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual(expect.objectContaining({ code: "OTA_ROLLBACK_FAILED", message: "no previous app" }));
    expect(r.flash.running).toBe(1);
    expect(r.restart.reasons).toHaveLength(1);
  });

  it("the self-test window starts at boot: one millisecond short of it nothing happens", async () => {
    const r = new Rig();
    await pending(r);
    r.clock.advance(59_999);
    await run();
    expect(r.ota.state).toBe("PendingVerify");
    r.clock.advance(1);
    await run();
    expect(r.flash.running).toBe(0);
  });

  it("close() during PendingVerify stops the self-test window", async () => {
    const r = new Rig();
    await pending(r);
    r.ota.close();
    r.ota.close();
    r.clock.advance(120_000);
    await run();
    expect(r.flash.running).toBe(1);
    expect(r.clock.pending).toBe(0);
  });
});

describe("what the cloud reads", () => {
  it("messages longer than 200 characters are cut to 199 and an ellipsis; time is the clock's", async () => {
    const r = new Rig();
    const long = "x".repeat(300);
    r.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_TLS", long) });
    r.clock.now = 42_000;
    r.ota.request("1.1.0");
    await run();
    expect(r.lastError()).toEqual({ code: "DOWNLOAD_TLS", message: "x".repeat(199) + "…", time: 1700000042 });
    const exact = new Rig();
    exact.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_TLS", "y".repeat(200)) });
    exact.ota.request("1.1.0");
    await run();
    expect((exact.lastError() as JsonObject)["message"]).toBe("y".repeat(200));
  });

  it("an error that is not a ShadowOtaError is reported as OTA_INTERNAL with its message", async () => {
    const r = new Rig();
    r.source.open = () => Promise.reject(new TypeError("source is broken"));
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual(expect.objectContaining({ code: UPDATE_CODES.OTA_INTERNAL, message: "source is broken" }));
  });

  it("progress while downloading: bytes, total and percent; a staged update reports 100 %", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 40_960 }));
    r.source.chunkSize = 4096;
    r.ota.request("1.1.0");
    await run(200);
    const downloading = r.reports.filter((u) => u["state"] === "Downloading");
    expect(downloading[0]).toEqual({ state: "Downloading", from: "1.0.0", to: "1.1.0", bytes: 4096, total: 40_960, percent: 10, attempt: 1, lastError: null });
    expect(r.last()).toEqual({ state: "Staged", from: "1.0.0", to: "1.1.0", bytes: 40_960, total: 40_960, percent: 100, attempt: 1, lastError: null });
  });

  it("progress every 10 % when configured so, and not more often than the interval", async () => {
    const r = new Rig({ ...CONFIG, progressPercent: 10, progressIntervalMs: 0 }, fakeImage({ version: "1.1.0", size: 40_960 * 2 }));
    r.source.chunkSize = 4096;
    r.ota.request("1.1.0");
    await run(400);
    const percents = r.reports.filter((u) => u["state"] === "Downloading" && u["percent"] !== null).map((u) => u["percent"]);
    expect(percents).toEqual([5, 15, 25, 35, 45, 55, 65, 75, 85, 95]);
    const q = new Rig({ ...CONFIG, progressPercent: 10, progressIntervalMs: 1 }, fakeImage({ version: "1.1.0", size: 40_960 * 2 }));
    q.source.chunkSize = 4096;
    q.ota.request("1.1.0");
    await run(400);
    expect(q.reports.filter((u) => u["state"] === "Downloading" && u["percent"] !== null).map((u) => u["percent"])).toEqual([5]);
  });
});
