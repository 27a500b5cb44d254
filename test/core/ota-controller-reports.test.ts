/**
 * The OTA controller (src/core/ota-controller.ts) as the cloud and the flash see it, in the places the other
 * example tests leave loose: the full `reported.firmwareUpdate` document in every state (which members are
 * null), the record in the key-value store after each step, what the slot is asked (begin options, resume
 * offsets), the words of the errors the controller makes itself (rolled back, retries exhausted, restart
 * reasons), deferred requests with their base URL, and what a closed controller still does. Jest subset
 * only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { checkCandidate, loadRecord, OTA_KV_KEY, OTA_PROGRESS_KEY, resolveFirmwareUrl } from "../../src/core/ota-controller";
import { UPDATE_CODES } from "../../src/core/update-errors";
import type { OtaBeginOptions } from "../../src/ports/ota-slot";
import { fakeImage } from "./ota-fakes";
import { BASE, CONFIG, Rig } from "./ota-rig";
import { settle } from "./fake-ports";

async function run(turns = 40): Promise<void> {
  for (let i = 0; i < turns; i++) await settle();
}

function stored(r: Rig): JsonObject {
  return JSON.parse(r.kv.get(OTA_KV_KEY)!) as JsonObject;
}

/** Downloads 1.1.0 and restarts into it (PendingVerify). */
async function pending(r: Rig): Promise<void> {
  r.ota.request("1.1.0");
  await run();
  expect(r.ota.state).toBe("Staged");
  r.powerOn();
  expect(r.ota.state).toBe("PendingVerify");
}

describe("the reported document in each state", () => {
  it("PendingVerify, Valid and RolledBack: transfer members only where a transfer is still meaningful", async () => {
    const r = new Rig();
    await pending(r);
    expect(r.last()).toEqual({ state: "PendingVerify", from: "1.0.0", to: "1.1.0", bytes: null, total: null, percent: null, attempt: 1, lastError: null });
    r.ota.onSynced();
    await run();
    expect(r.last()).toEqual({ state: "Valid", from: "1.0.0", to: "1.1.0", bytes: 20_000, total: 20_000, percent: 100, attempt: 1, lastError: null });
    expect(stored(r)).toEqual({ state: "Valid", from: "1.0.0", to: "1.1.0", url: `${BASE}1.1.0.bin`, etag: '"v1"', durable: 20_000, total: 20_000, attempt: 1 });
  });

  it("a refused request from Idle: Failed, attempt null, nothing transferred, the record says so", () => {
    const r = new Rig();
    r.ota.request("0.9.0");
    expect(r.last()).toEqual({
      state: "Failed", from: "1.0.0", to: "0.9.0", bytes: null, total: null, percent: null, attempt: null,
      lastError: { code: UPDATE_CODES.OTA_DOWNGRADE_REFUSED, message: "0.9.0 is older than the running 1.0.0; downgrades are not allowed by configuration", time: r.clock.epochSeconds() },
    });
    expect(stored(r)).toEqual({ state: "Failed", from: "1.0.0", to: "0.9.0", durable: 0, attempt: 0, lastError: r.lastError() });
    expect(r.events("ota.request.refused")).toEqual([{ level: "warn", fields: { version: "0.9.0", code: UPDATE_CODES.OTA_DOWNGRADE_REFUSED, message: "0.9.0 is older than the running 1.0.0; downgrades are not allowed by configuration" } }]);
  });

  it("an empty image on the server: percent 0 rather than a division by zero while downloading", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "stall", at: 0 });
    r.source.object = new Uint8Array(0);
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Downloading");
    expect(r.ota.reported()).toMatchObject({ state: "Downloading", bytes: 0, total: 0, percent: 0 });
    r.ota.close();
  });
});

describe("a restart before the image was confirmed", () => {
  it("the refusal of a request while pending is not what rolled back: the old image reports OTA_ROLLED_BACK with both versions", async () => {
    const r = new Rig();
    await pending(r);
    r.ota.request("1.2.0");
    expect(r.lastError()!["code"]).toBe(UPDATE_CODES.OTA_UPDATE_WHILE_PENDING);
    expect(stored(r)["state"]).toBe("PendingVerify");
    expect((stored(r)["lastError"] as JsonObject)["code"]).toBe(UPDATE_CODES.OTA_UPDATE_WHILE_PENDING);
    expect(r.lastError()!["message"]).toBe("1.1.0 is still pending verification; 1.2.0 waits until it is confirmed");
    r.powerOn(); // restart before confirmation: the bootloader goes back
    expect(r.ota.runningVersion).toBe("1.0.0");
    expect(r.ota.state).toBe("RolledBack");
    expect(r.last()).toEqual({
      state: "RolledBack", from: "1.0.0", to: "1.1.0", bytes: null, total: null, percent: null, attempt: 1,
      lastError: { code: UPDATE_CODES.OTA_ROLLED_BACK, message: "1.1.0 was not confirmed: the bootloader started 1.0.0 again", time: r.clock.epochSeconds() },
    });
    expect(r.events("ota.state").pop()).toEqual({ level: "info", fields: { from: "PendingVerify", to: "RolledBack", version: "1.1.0" } });
  });

  it("the self-test timeout is what the rolled-back image reports, with the window and the restart reason", async () => {
    const r = new Rig({ ...CONFIG, selfTestWindowMs: 1_234 });
    await pending(r);
    r.clock.advance(1_234);
    await run();
    expect(r.restart.reasons).toEqual(["update to 1.1.0 staged", "self-test of 1.1.0 failed: OTA_SELF_TEST_TIMEOUT"]);
    expect(r.flash.running).toBe(0);
    r.powerOn(false);
    expect(r.ota.state).toBe("RolledBack");
    expect(r.lastError()).toEqual({ code: UPDATE_CODES.OTA_SELF_TEST_TIMEOUT, message: "no twin get completed within 1234 ms of the restart into 1.1.0", time: r.clock.epochSeconds() });
  });

  it("without a configured window the self-test waits 60 s", async () => {
    const { selfTestWindowMs: _unused, ...config } = CONFIG;
    const r = new Rig(config);
    await pending(r);
    r.clock.advance(59_999);
    await run();
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.restart.reasons.length).toBe(1);
    r.clock.advance(1);
    await run();
    expect(r.restart.reasons[1]).toBe("self-test of 1.1.0 failed: OTA_SELF_TEST_TIMEOUT");
  });

  it("the self-test failure is logged with the version and code, and persisted before the restart", async () => {
    const r = new Rig();
    r.appCheck = () => "sensor missing";
    await pending(r);
    r.ota.onSynced();
    await run();
    expect(r.events("ota.self-test.failed")).toEqual([{ level: "error", fields: { version: "1.1.0", code: UPDATE_CODES.OTA_SELF_TEST_FAILED, message: "application check failed: sensor missing" } }]);
    expect(stored(r)["lastError"]).toMatchObject({ code: UPDATE_CODES.OTA_SELF_TEST_FAILED, message: "application check failed: sensor missing" });
    expect(r.restart.reasons[1]).toBe("self-test of 1.1.0 failed: OTA_SELF_TEST_FAILED");
  });
});

describe("requests and the deferred one", () => {
  it("a request while pending keeps its base URL and is downloaded from there once valid", async () => {
    const r = new Rig({ ...CONFIG, source: { ...CONFIG.source, allowedHosts: ["blobs.example", "cdn.example"] } });
    await pending(r);
    r.source.object = fakeImage({ version: "1.2.0" });
    r.ota.request("1.2.0", "https://cdn.example/fw/");
    r.ota.onSynced();
    await run();
    expect(r.source.opens[r.source.opens.length - 1]).toEqual({ url: "https://cdn.example/fw/1.2.0.bin", offset: 0 });
    expect(r.ota.record).toMatchObject({ from: "1.1.0", to: "1.2.0", attempt: 1 });
  });

  it("the version running is only logged at debug level, and changes nothing", () => {
    const r = new Rig();
    const writes = r.kv.writes;
    r.ota.request("1.0.0");
    expect(r.events("ota.request.running")).toEqual([{ level: "debug", fields: { version: "1.0.0" } }]);
    expect(r.reports).toEqual([]);
    expect(r.kv.writes).toBe(writes);
  });

  it("a rolled-back version is not tried again, and the log says which state and code stopped it", async () => {
    const r = new Rig();
    await pending(r);
    r.powerOn();
    expect(r.ota.state).toBe("RolledBack");
    const opens = r.source.opens.length;
    r.ota.request("1.1.0");
    await run();
    expect(r.source.opens.length).toBe(opens);
    expect(r.events("ota.request.not-again")).toEqual([{ level: "info", fields: { version: "1.1.0", state: "RolledBack", code: UPDATE_CODES.OTA_ROLLED_BACK } }]);
  });

  it("a different version while staged is logged with the staged one", async () => {
    const r = new Rig();
    r.restart.restart = () => { throw new ShadowOtaError("RESTART_UNSUPPORTED", "cannot restart here"); };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.lastError()).toEqual({ code: "RESTART_UNSUPPORTED", message: "cannot restart here", time: r.clock.epochSeconds() });
    expect(r.events("ota.restart-failed")).toEqual([{ level: "error", fields: { reason: "update to 1.1.0 staged", message: "cannot restart here" } }]);
    r.ota.request("1.2.0");
    expect(r.events("ota.request.after-restart")).toEqual([{ level: "info", fields: { version: "1.2.0", staged: "1.1.0" } }]);
    expect(r.ota.record.to).toBe("1.1.0");
  });

  it("a closed controller takes no request and runs no self-test", async () => {
    const r = new Rig();
    r.ota.close();
    r.ota.close();
    r.ota.request("1.1.0");
    await run();
    expect(r.source.opens).toEqual([]);
    expect(r.ota.state).toBe("Idle");
    expect(r.reports).toEqual([]);

    const p = new Rig();
    await pending(p);
    p.ota.close();
    p.ota.onSynced();
    await run();
    expect(p.ota.state).toBe("PendingVerify");
    expect(p.flash.runningState).toBe("PENDING_VERIFY");
  });
});

describe("what the slot is asked", () => {
  it("begin: a hash is required by default, the running image's secure version is the minimum, the size is the server's", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0" }), fakeImage({ version: "1.0.0", size: 9_000, secureVersion: 3 }));
    const calls: OtaBeginOptions[] = [];
    const begin = r.slot.begin.bind(r.slot);
    r.slot.begin = (o?: OtaBeginOptions) => { calls.push({ ...o }); return begin(o); };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(calls).toEqual([{ requireHash: true, minSecureVersion: 3, imageSize: 20_000 }]);
  });

  it("begin: requireHash false when configured so", async () => {
    const r = new Rig({ ...CONFIG, requireHash: false });
    const calls: OtaBeginOptions[] = [];
    const begin = r.slot.begin.bind(r.slot);
    r.slot.begin = (o?: OtaBeginOptions) => { calls.push({ ...o }); return begin(o); };
    r.ota.request("1.1.0");
    await run();
    expect(calls).toEqual([{ requireHash: false, minSecureVersion: 0, imageSize: 20_000 }]);
  });

  it("resume: asked for the durable offset with the image size; a cut at 10 000 bytes resumes at 8192", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "cut", at: 10_000 });
    const resumes: Array<[number, OtaBeginOptions]> = [];
    const resume = r.slot.resume.bind(r.slot);
    r.slot.resume = (off: number, o?: OtaBeginOptions) => { resumes.push([off, { ...o }]); return resume(off, o); };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Downloading");
    expect(stored(r)).toMatchObject({ state: "Downloading", durable: 8192, attempt: 2, total: 20_000, etag: '"v1"' });
    expect(r.lastError()).toEqual({ code: "DOWNLOAD_TRUNCATED", message: "connection closed at byte 10000", time: r.clock.epochSeconds() });
    r.clock.advance(1_000);
    await run();
    expect(resumes).toEqual([[8192, { requireHash: true, minSecureVersion: 0, imageSize: 20_000 }]]);
    expect(r.source.opens[1]).toEqual({ url: `${BASE}1.1.0.bin`, offset: 8192, etag: '"v1"' });
    expect(r.ota.state).toBe("Staged");
  });

  it("a server without an ETag: nothing ties the bytes to the object, so a retry starts from byte 0", async () => {
    const r = new Rig();
    (r.source as unknown as { etag: string | undefined }).etag = undefined;
    r.source.faults.push({ kind: "cut", at: 10_000 });
    r.ota.request("1.1.0");
    await run();
    expect(stored(r)["etag"]).toBeUndefined();
    r.clock.advance(1_000);
    await run();
    expect(r.source.opens[1]).toEqual({ url: `${BASE}1.1.0.bin`, offset: 0 });
    expect(r.ota.state).toBe("Staged");
  });

  it("a server that ignores the range: the slot starts over and the log says what was asked and got", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "cut", at: 10_000 }, { kind: "whole" });
    const aborts: number[] = [];
    r.ota.request("1.1.0");
    await run();
    const abort = r.slot.abort.bind(r.slot);
    r.slot.abort = () => { aborts.push(r.slot.written); abort(); };
    r.clock.advance(1_000);
    await run();
    expect(r.events("ota.download.restart")).toEqual([{ level: "info", fields: { asked: 8192, got: 0 } }]);
    expect(aborts.length).toBeGreaterThanOrEqual(1);
    expect(r.ota.state).toBe("Staged");
    expect(r.last()).toMatchObject({ state: "Staged", bytes: 20_000, attempt: 2, lastError: null });
  });
});

describe("the retry schedule", () => {
  it("each wait is the backoff's (half of 1 s, then of 2 s, with this rig's random 0.5); no new attempt one millisecond early", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "cut", at: 5_000 }, { kind: "cut", at: 1_000 });
    r.ota.request("1.1.0");
    await run();
    expect(r.source.opens.length).toBe(1);
    expect(r.clock.pending).toBe(1);
    r.clock.advance(499);
    await run();
    expect(r.source.opens.length).toBe(1);
    r.clock.advance(1);
    await run();
    expect(r.source.opens.length).toBe(2);
    expect(stored(r)["attempt"]).toBe(3);
    r.clock.advance(999);
    await run();
    expect(r.source.opens.length).toBe(2);
    r.clock.advance(1);
    await run();
    expect(r.source.opens.length).toBe(3);
    expect(r.ota.state).toBe("Staged");
    expect(r.last()["attempt"]).toBe(3);
  });

  it("given up: OTA_RETRIES_EXHAUSTED names the attempts and the last failure, and keeps its platform number", async () => {
    const r = new Rig();
    const err = (): ShadowOtaError => new ShadowOtaError("DOWNLOAD_HTTP_STATUS", "HTTP 503", { platformCode: 503, detail: { status: 503 } });
    for (let i = 0; i < 4; i++) r.source.faults.push({ kind: "open-error", error: err() });
    r.ota.request("1.1.0");
    for (let i = 0; i < 6; i++) { await run(); if (r.ota.state === "Failed") break; r.clock.advance(10_000); }
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual({ code: UPDATE_CODES.OTA_RETRIES_EXHAUSTED, message: "gave up after 4 attempts; last: DOWNLOAD_HTTP_STATUS: HTTP 503", platformCode: 503, time: r.clock.epochSeconds() });
    expect(r.events("ota.download.failed").map((e) => [e.level, e.fields!["attempt"], e.fields!["retry"]])).toEqual([["warn", 1, true], ["warn", 2, true], ["warn", 3, true], ["error", 4, false]]);
    // worth another try once desired names it again
    r.source.faults.length = 0;
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
  });

  it("a failure that is not retried is reported as it is, at error level, and the same version is not tried again", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_HTTP_STATUS", "HTTP 404", { platformCode: 404, detail: { status: 404 } }) });
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual({ code: "DOWNLOAD_HTTP_STATUS", message: "HTTP 404", platformCode: 404, time: r.clock.epochSeconds() });
    r.ota.request("1.1.0");
    await run();
    expect(r.source.opens.length).toBe(1);
    expect(r.events("ota.request.not-again")).toEqual([{ level: "info", fields: { version: "1.1.0", state: "Failed", code: "DOWNLOAD_HTTP_STATUS" } }]);
  });
});

describe("the record read back", () => {
  it("a progress entry is used for Verifying too, only when it is ahead of the record", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Verifying", to: "1.1.0", durable: 8192, total: 20_000, attempt: 1 }));
    r.kv.set(OTA_PROGRESS_KEY, "12288");
    expect(loadRecord(r.kv).record.durable).toBe(12288);
    r.kv.set(OTA_PROGRESS_KEY, "4096");
    expect(loadRecord(r.kv).record.durable).toBe(8192);
    r.kv.set(OTA_PROGRESS_KEY, "20000");
    expect(loadRecord(r.kv).record.durable).toBe(20_000);
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Staged", to: "1.1.0", durable: 8192, total: 20_000, attempt: 1 }));
    expect(loadRecord(r.kv).record.durable).toBe(8192);
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Downloading", to: "1.1.0", durable: 8192, attempt: 1 }));
    r.kv.set(OTA_PROGRESS_KEY, "999999999999");
    expect(loadRecord(r.kv).record.durable).toBe(999999999999);
    r.kv.set(OTA_PROGRESS_KEY, "1234567890123");
    expect(loadRecord(r.kv).record.durable).toBe(8192);
  });

  it("a boot into a resumed download logs where it resumes and reports Downloading", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "stall", at: 10_000 });
    r.ota.request("1.1.0");
    await run();
    r.powerOn();
    expect(r.events("ota.resume")).toEqual([{ level: "info", fields: { to: "1.1.0", durable: 8192 } }]);
    expect(r.events("ota.boot").pop()).toEqual({ level: "info", fields: { running: "1.0.0", partition: "ota_0", pending: false, record: "Downloading", to: "1.1.0" } });
    await run();
    expect(r.ota.state).toBe("Staged");
  });
});

describe("firmware base URLs", () => {
  const source = CONFIG.source;
  it.each([
    ["https://blobs.example/firmware", "no trailing slash"],
    ["https://blobs.example", "no path"],
    ["https://blobs.example/fw/?x=1/", "a query"],
    ["https://blobs.example/fw/#a/", "a fragment"],
    ["https://blobs.example/f w/", "a space in the path"],
    ["https:///fw/", "no host"],
    [" https://blobs.example/fw/", "a leading space"],
    ["xhttps://blobs.example/fw/", "another scheme"],
    ["https://blobs.example/fw/ ", "a trailing space"],
  ])("%s is refused (%s)", (base) => {
    expect(() => resolveFirmwareUrl(source, "1.1.0", base)).toThrow(expect.objectContaining({ code: "DOWNLOAD_URL_INVALID" }) as unknown as Error);
  });

  it("a nested path and the base from the configuration are fine", () => {
    expect(resolveFirmwareUrl(source, "1.1.0", "https://blobs.example/a/b/")).toBe("https://blobs.example/a/b/1.1.0.bin");
    expect(resolveFirmwareUrl(source, "1.1.0")).toBe(`${BASE}1.1.0.bin`);
    expect(resolveFirmwareUrl(source, "1.1.0", "https://blobs.example/")).toBe("https://blobs.example/1.1.0.bin");
  });
});

describe("closing and superseding", () => {
  it("close() during a download: the response is aborted, no failure is reported or logged, the record stays Downloading", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "stall", at: 10_000 });
    r.ota.request("1.1.0");
    await run();
    const reports = r.reports.length;
    r.ota.close();
    await run();
    expect(r.events("ota.download.failed")).toEqual([]);
    expect(r.reports.length).toBe(reports);
    expect(stored(r)["state"]).toBe("Downloading");
    expect(r.ota.state).toBe("Downloading");
  });

  it("close() during the wait before a retry: the timer is cancelled and no attempt follows", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "cut", at: 5_000 });
    r.ota.request("1.1.0");
    await run();
    expect(r.clock.pending).toBe(1);
    r.ota.close();
    expect(r.clock.pending).toBe(0);
    r.clock.advance(60_000);
    await run();
    expect(r.source.opens.length).toBe(1);
  });

  it("a newer request while the first connection is still opening: the first response is dropped, the newer version installed", async () => {
    const r = new Rig();
    const open = r.source.open.bind(r.source);
    let release: (() => void) | undefined;
    let aborted = 0;
    r.source.open = (req) => new Promise((resolve, reject) => {
      release = () => {
        open(req).then((resp) => { const a = resp.abort.bind(resp); resp.abort = () => { aborted++; a(); }; resolve(resp); }, reject);
      };
    });
    r.ota.request("1.1.0");
    await run();
    expect(release).toBeDefined();
    const first = release!;
    r.source.open = open;
    r.source.object = fakeImage({ version: "1.2.0" });
    r.ota.request("1.2.0");
    first();
    await run();
    expect(aborted).toBe(1);
    expect(r.ota.state).toBe("Staged");
    expect(r.ota.record.to).toBe("1.2.0");
    expect(r.restart.reasons).toEqual(["update to 1.2.0 staged"]);
  });

  it("a newer request while downloading logs no transition (Downloading stays Downloading), only the new version's start", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "stall", at: 5_000 });
    r.ota.request("1.1.0");
    await run();
    r.source.object = fakeImage({ version: "1.2.0" });
    r.ota.request("1.2.0");
    await run();
    expect(r.events("ota.state").map((e) => [e.fields!["from"], e.fields!["to"], e.fields!["version"]])).toEqual([
      ["Idle", "Downloading", "1.1.0"], ["Downloading", "Verifying", "1.2.0"], ["Verifying", "Staged", "1.2.0"],
    ]);
    expect(r.events("ota.download.failed")).toEqual([]);
  });

  it("a refused request while staged: reported, the staged update kept", async () => {
    const r = new Rig();
    r.restart.restart = () => { throw new ShadowOtaError("RESTART_UNSUPPORTED", "cannot restart here"); };
    r.ota.request("1.1.0");
    await run();
    r.ota.request("0.9.0");
    expect(r.ota.state).toBe("Staged");
    expect(r.last()).toMatchObject({ state: "Staged", to: "1.1.0", bytes: 20_000, lastError: { code: UPDATE_CODES.OTA_DOWNGRADE_REFUSED } });
    expect(stored(r)).toMatchObject({ state: "Staged", to: "1.1.0", lastError: { code: UPDATE_CODES.OTA_DOWNGRADE_REFUSED } });
  });

  it("closed while the staged report is unanswered: no restart", async () => {
    const r = new Rig();
    r.reportResult = () => new Promise<void>(() => undefined);
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    r.ota.close();
    r.clock.advance(10_000);
    await run();
    expect(r.restart.reasons).toEqual([]);
  });

  it("the restart's report bound is cancelled once the cloud answers: no timer is left", async () => {
    const r = new Rig();
    r.ota.request("1.1.0");
    await run();
    expect(r.restart.reasons.length).toBe(1);
    expect(r.clock.pending).toBe(0);
  });
});

describe("the self-test after a failure", () => {
  it("a failed application check cancels the window: one restart, however long the device keeps running", async () => {
    const r = new Rig();
    r.appCheck = () => "no";
    await pending(r);
    r.slot.markInvalidAndReboot = () => undefined; // the platform does not go back on its own here
    r.ota.onSynced();
    await run();
    r.clock.advance(120_000);
    await run();
    expect(r.restart.reasons).toEqual(["update to 1.1.0 staged", "self-test of 1.1.0 failed: OTA_SELF_TEST_FAILED"]);
    expect(r.events("ota.self-test.failed").length).toBe(1);
  });

  it("closed while the failure report is unanswered: no rollback, no restart", async () => {
    const r = new Rig();
    r.appCheck = () => "no";
    await pending(r);
    r.reportResult = () => new Promise<void>(() => undefined);
    r.ota.onSynced();
    await run();
    r.ota.close();
    r.clock.advance(10_000);
    await run();
    expect(r.flash.runningState).toBe("PENDING_VERIFY");
    expect(r.restart.reasons).toEqual(["update to 1.1.0 staged"]);
  });

  it("closed while the application check runs: nothing is confirmed", async () => {
    const r = new Rig();
    let done: ((v: true) => void) | undefined;
    r.appCheck = () => new Promise<true>((resolve) => { done = resolve; });
    await pending(r);
    r.ota.onSynced();
    await run();
    r.ota.close();
    done!(true);
    await run();
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.flash.runningState).toBe("PENDING_VERIFY");
  });

  it("an application check that rejects after close() changes nothing either", async () => {
    const r = new Rig();
    let fail: ((e: Error) => void) | undefined;
    r.appCheck = () => new Promise<true>((_, reject) => { fail = reject; });
    await pending(r);
    r.ota.onSynced();
    await run();
    r.ota.close();
    fail!(new Error("late"));
    await run();
    expect(r.events("ota.self-test.failed")).toEqual([]);
    expect(r.restart.reasons.length).toBe(1);
  });
});

describe("stored records", () => {
  it("a Failed record without an error is worth another try", async () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Failed", from: "1.0.0", to: "1.1.0", durable: 0, attempt: 1 }));
    r.powerOn();
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
  });

  it("percent is never above 100, even when the stored bytes are", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Valid", from: "1.0.0", to: "1.1.0", durable: 25_000, total: 20_000, attempt: 1 }));
    r.powerOn();
    expect(r.ota.reported()).toMatchObject({ state: "Valid", bytes: 25_000, total: 20_000, percent: 100 });
  });

  it("a slot that throws while cleaning up after a failure: the log says the task threw", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_HTTP_STATUS", "HTTP 404", { detail: { status: 404 } }) });
    r.ota.request("1.1.0");
    r.slot.abort = () => { throw new Error("flash gone"); };
    await run();
    expect(r.events("ota.task-threw")).toEqual([{ level: "error", fields: { message: "flash gone" } }]);
  });
});

describe("the words of what the device reports", () => {
  it("a message of exactly 200 characters is reported whole; 201 are cut to 199 and an ellipsis", async () => {
    for (const [length, expected] of [[200, 200], [201, 200]] as const) {
      const r = new Rig();
      const prefix = "application check failed: ";
      r.appCheck = () => "r".repeat(length - prefix.length);
      await pending(r);
      r.ota.onSynced();
      await run();
      const message = (stored(r)["lastError"] as JsonObject)["message"] as string;
      expect(message.length).toBe(expected);
      expect(message.endsWith("…")).toBe(length > 200);
    }
  });

  it("descriptor strings of 40 characters are shown whole, longer ones cut at 40", () => {
    const expected = { version: "1.1.0", projectName: "shadow-ota" };
    const forty = "g".repeat(40);
    const e40 = checkCandidate({ version: forty, projectName: "shadow-ota" }, expected)!;
    expect(e40.message.startsWith(`image version "${forty}" is not SemVer`)).toBe(true);
    const e41 = checkCandidate({ version: forty + "h", projectName: "shadow-ota" }, expected)!;
    expect(e41.message.startsWith(`image version "${forty}…" is not SemVer`)).toBe(true);
    const p = checkCandidate({ version: "1.1.0", projectName: "p".repeat(40) }, expected)!;
    expect(p.message).toBe(`image is for project "${"p".repeat(40)}", this device runs "shadow-ota"`);
  });

  it("a Staged record without the version it installed: the rollback names 'the new image'", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Staged", from: "1.0.0", durable: 20_000, total: 20_000, attempt: 1 }));
    r.powerOn();
    expect(r.ota.state).toBe("RolledBack");
    expect(r.lastError()).toEqual({ code: UPDATE_CODES.OTA_ROLLED_BACK, message: "the new image was not confirmed: the bootloader started 1.0.0 again", time: r.clock.epochSeconds() });
  });

  it("a PendingVerify record with neither version, another version running: OTA_UNEXPECTED_VERSION says '?'", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "PendingVerify", durable: 0, attempt: 1 }));
    r.powerOn();
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual({ code: UPDATE_CODES.OTA_UNEXPECTED_VERSION, message: "after the update to ? the device runs 1.0.0", time: r.clock.epochSeconds() });
  });

  it("an ordinary pending boot is not logged as unconfirmed", async () => {
    const r = new Rig();
    await pending(r);
    expect(r.events("ota.boot.unconfirmed")).toEqual([]);
  });

  it("stored numbers beyond the safe integers are dropped", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Failed", durable: Number.MAX_SAFE_INTEGER + 1, total: Number.MAX_SAFE_INTEGER, attempt: 0 }));
    expect(loadRecord(r.kv).record).toEqual({ state: "Failed", durable: 0, total: Number.MAX_SAFE_INTEGER, attempt: 0 });
  });
});

describe("the NVS keys", () => {
  it("the record is under \"ota\" and the progress under \"otap\": images of other versions read the same keys", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "stall", at: 10_000 });
    r.ota.request("1.1.0");
    await run();
    expect([...r.kv.data.keys()].sort()).toEqual(["ota", "otap"]);
    expect(r.kv.data.get("otap")).toBe("8192");
    r.ota.close();
  });
});
