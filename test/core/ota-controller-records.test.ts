/**
 * The OTA controller (src/core/ota-controller.ts) at power-on and between downloads, where the other example
 * tests leave it loose: records it did not write itself (a foreign or corrupted record, a target equal to
 * its origin, a Valid record of a version that no longer runs, an install record beside a new image that
 * otadata calls VALID), a device whose running image has no descriptor, restarts during the self-test,
 * application checks that settle after the window already decided, a key-value store that refuses writes,
 * the base URL's words, and requests that arrive while the image is being verified or is staged. What is
 * asserted is what the cloud, the flash or the log sees. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { loadRecord, OTA_KV_KEY, OTA_PROGRESS_KEY, OtaController } from "../../src/core/ota-controller";
import { UPDATE_CODES } from "../../src/core/update-errors";
import { DOWNLOAD_CODES } from "../../src/core/download-errors";
import type { AppDescriptor } from "../../src/ports/ota-slot";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";
import { BASE, CONFIG, Rig } from "./ota-rig";
import { ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

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

/** A slot whose running image has no readable app descriptor (erased or foreign). */
class NoDescriptorSlot extends FakeSlot {
  override runningDescriptor(): AppDescriptor | undefined { return undefined; }
}

describe("records the controller did not write", () => {
  it("a foreign or corrupted record keeps only the members of the right type, and no member is left undefined", () => {
    const kv = new MemoryKv();
    kv.set(OTA_KV_KEY, JSON.stringify({ state: "Failed", from: 5, to: null, url: [], etag: {}, total: -1, durable: "7", attempt: 1.5 }));
    expect(loadRecord(kv)).toStrictEqual({ record: { state: "Failed", durable: 0, attempt: 0 } });
    kv.set(OTA_KV_KEY, JSON.stringify({ state: "Failed", from: "1.0.0", to: "1.1.0", url: `${BASE}1.1.0.bin`, etag: '"e"', total: 9, durable: 4, attempt: 2 }));
    expect(loadRecord(kv)).toStrictEqual({ record: { state: "Failed", from: "1.0.0", to: "1.1.0", url: `${BASE}1.1.0.bin`, etag: '"e"', total: 9, durable: 4, attempt: 2 } });
  });

  it("the controller's record view of a record without optional members has none of them", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Failed", durable: 0, attempt: 0 }));
    r.powerOn();
    expect(r.ota.record).toStrictEqual({ state: "Failed", durable: 0, attempt: 0 });
  });

  it("a Staged record whose target is its origin: the old image runs, so it is a rollback, not a self-test", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Staged", from: "1.0.0", to: "1.0.0", durable: 0, attempt: 1 }));
    r.powerOn();
    expect(r.ota.state).toBe("RolledBack");
    expect(r.lastError()).toEqual({ code: UPDATE_CODES.OTA_ROLLED_BACK, message: "1.0.0 was not confirmed: the bootloader started 1.0.0 again", time: r.clock.epochSeconds() });
    expect(r.clock.pending).toBe(0); // no self-test window
  });

  it("a Downloading record beside the new image that otadata calls VALID (a lost record write): self-tested, not downloaded again", () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0" }), fakeImage({ version: "1.1.0", size: 9_000 }));
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Downloading", from: "1.0.0", to: "1.1.0", url: `${BASE}1.1.0.bin`, etag: '"v1"', durable: 8192, total: 20_000, attempt: 1 }));
    r.powerOn();
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.events("ota.boot.unconfirmed")).toEqual([{ level: "warn", fields: { version: "1.1.0", record: "Downloading", otadata: "VALID" } }]);
    expect(r.last()).toMatchObject({ state: "PendingVerify", from: "1.0.0", to: "1.1.0" });
    expect(r.source.opens).toEqual([]);
  });

  it("a Valid record of a version that no longer runs (flashed back by cable): a request for it downloads it again", async () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Valid", from: "1.0.0", to: "1.1.0", durable: 20_000, total: 20_000, attempt: 1 }));
    r.powerOn();
    expect(r.ota.state).toBe("Valid");
    expect(r.ota.runningVersion).toBe("1.0.0");
    r.ota.request("1.1.0");
    await run();
    expect(r.events("ota.request.not-again")).toEqual([]);
    expect(r.ota.state).toBe("Staged");
    expect(r.source.opens.length).toBe(1);
  });
});

describe("the running version", () => {
  it("is 0.0.0 before boot(), and after it when the running image has no descriptor and no fallback is configured", async () => {
    const flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
    const log = new MemoryLog();
    const reports: JsonObject[] = [];
    const ota = new OtaController(
      { slot: new NoDescriptorSlot(flash), source: new FakeSource(fakeImage({ version: "1.1.0" })), kv: new MemoryKv(), clock: new ManualClock(), log, restart: new RecordingRestart() },
      CONFIG, { report: (u) => { reports.push(u); return Promise.resolve(); } });
    expect(ota.runningVersion).toBe("0.0.0");
    expect(ota.boot()).toEqual({ runningVersion: "0.0.0", state: "Idle", partition: "ota_0" });
    expect(log.lines.find((l) => l.event === "ota.boot")?.fields).toMatchObject({ running: "0.0.0" });
    ota.start();
    ota.request("1.1.0");
    await run();
    expect(ota.state).toBe("Staged");
    expect(reports[reports.length - 1]).toMatchObject({ state: "Staged", from: "0.0.0", to: "1.1.0" });
  });
});

describe("restarts and late answers during the self-test", () => {
  it("a restart during the self-test of an image otadata calls VALID (rollback disabled) keeps it pending, then it is confirmed", async () => {
    const r = new Rig();
    r.flash.rollbackEnabled = false;
    await pending(r);
    r.powerOn(); // before the twin get
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.ota.runningVersion).toBe("1.1.0");
    expect(r.last()).toMatchObject({ state: "PendingVerify", to: "1.1.0", lastError: null });
    r.ota.onSynced();
    await run();
    expect(r.ota.state).toBe("Valid");
  });

  it("an application check that passes after the window failed the image (and no rollback was possible) does not confirm it", async () => {
    const r = new Rig();
    let answer: ((v: true | string) => void) | undefined;
    r.appCheck = () => new Promise<true | string>((resolve) => { answer = resolve; });
    await pending(r);
    r.slot.markInvalidAndReboot = () => { throw new ShadowOtaError("OTA_ROLLBACK_FAILED", "no previous app"); };
    r.ota.onSynced();
    await run();
    r.clock.advance(60_000);
    await run();
    expect(r.ota.state).toBe("Failed");
    answer!(true);
    await run();
    expect(r.ota.state).toBe("Failed");
    expect(r.flash.runningState).toBe("PENDING_VERIFY"); // markValid was not called
    expect(r.lastError()).toMatchObject({ code: "OTA_ROLLBACK_FAILED", message: "no previous app" });
  });

  it("an application check that throws after the window failed the image adds nothing: one failure, one error", async () => {
    const r = new Rig();
    let fail: ((e: Error) => void) | undefined;
    r.appCheck = () => new Promise<true | string>((_, reject) => { fail = reject; });
    await pending(r);
    r.slot.markInvalidAndReboot = () => { throw new ShadowOtaError("OTA_ROLLBACK_FAILED", "no previous app"); };
    r.ota.onSynced();
    await run();
    r.clock.advance(60_000);
    await run();
    const reports = r.reports.length;
    fail!(new Error("late"));
    await run();
    expect(r.events("ota.self-test.failed")).toEqual([{ level: "error", fields: { version: "1.1.0", code: UPDATE_CODES.OTA_SELF_TEST_TIMEOUT, message: "no twin get completed within 60000 ms of the restart into 1.1.0" } }]);
    expect(r.reports.length).toBe(reports);
    expect(stored(r)["lastError"]).toMatchObject({ code: "OTA_ROLLBACK_FAILED" });
  });

  it("markValid failing with a platform error that is not the controller's: the self-test fails with OTA_SELF_TEST_FAILED", async () => {
    const r = new Rig();
    await pending(r);
    r.slot.markValid = () => { throw new Error("otadata write failed"); };
    r.ota.onSynced();
    await run();
    expect(r.events("ota.mark-valid-failed")).toEqual([{ level: "error", fields: { message: "otadata write failed" } }]);
    expect(stored(r)["lastError"]).toMatchObject({ code: UPDATE_CODES.OTA_SELF_TEST_FAILED, message: "markValid failed" });
    expect(r.restart.reasons[1]).toBe("self-test of 1.1.0 failed: OTA_SELF_TEST_FAILED");
  });

  it("close() during the self-test leaves no timer behind", async () => {
    const r = new Rig();
    await pending(r);
    expect(r.clock.pending).toBe(1);
    r.ota.close();
    expect(r.clock.pending).toBe(0);
  });
});

describe("a key-value store that refuses writes", () => {
  it("a refused record write is logged with the store's words, and the refusal still reaches the cloud", () => {
    const r = new Rig();
    const set = r.kv.set.bind(r.kv);
    r.kv.set = (k: string, v: string): void => { if (k === OTA_KV_KEY) throw new Error("NVS full"); set(k, v); };
    r.ota.request("0.9.0");
    expect(r.events("ota.persist-failed")).toEqual([{ level: "error", fields: { message: "NVS full" } }]);
    expect(r.last()).toMatchObject({ state: "Failed", to: "0.9.0" });
  });

  it("a refused progress write is logged at every sector boundary, and the download goes on", async () => {
    const r = new Rig();
    const set = r.kv.set.bind(r.kv);
    r.kv.set = (k: string, v: string): void => { if (k === OTA_PROGRESS_KEY) throw new Error("NVS worn out"); set(k, v); };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    // 20,000 bytes: boundaries at 4096, 8192, 12288 and 16384.
    expect(r.events("ota.persist-failed")).toEqual([1, 2, 3, 4].map(() => ({ level: "error", fields: { message: "NVS worn out" } })));
  });
});

describe("what the cloud is told", () => {
  it("the Verifying report carries the bytes written, the total and 100 %", async () => {
    const r = new Rig();
    r.ota.request("1.1.0");
    await run();
    expect(r.reports.filter((d) => d["state"] === "Verifying")).toEqual([
      { state: "Verifying", from: "1.0.0", to: "1.1.0", bytes: 20_000, total: 20_000, percent: 100, attempt: 1, lastError: null },
    ]);
  });

  it("two refusals in a row are both reported, each at once", () => {
    const r = new Rig();
    r.ota.request("0.9.0");
    r.ota.request("0.8.0");
    expect(r.reports.map((d) => [d["state"], d["to"]])).toEqual([["Failed", "0.9.0"], ["Failed", "0.8.0"]]);
  });

  it("a refusal's reported error has exactly code, message and time (no platform code member)", () => {
    const r = new Rig();
    r.ota.request("0.9.0");
    expect(r.ota.reported()).toStrictEqual({
      state: "Failed", from: "1.0.0", to: "0.9.0", bytes: null, total: null, percent: null, attempt: null,
      lastError: { code: UPDATE_CODES.OTA_DOWNGRADE_REFUSED, message: "0.9.0 is older than the running 1.0.0; downgrades are not allowed by configuration", time: r.clock.epochSeconds() },
    });
  });

  const mustEnd = (u: string): string => `firmware base URL must be https and end with "/": ${u}`;
  it.each([
    ["xhttps://blobs.example/firmware/", mustEnd("xhttps://blobs.example/firmware/")],
    ["https://blobs.example/firm ware/", mustEnd("https://blobs.example/firm ware/")],
    ["https://blobs.example/firmware", mustEnd("https://blobs.example/firmware")],
    ["https://user@blobs.example/firmware/", "firmware base URL has no host: https://user@blobs.example/firmware/"],
  ])("a desired base URL %j is refused: %s", (base, message) => {
    const r = new Rig();
    r.ota.request("1.1.0", base);
    expect(r.ota.state).toBe("Failed");
    expect(r.lastError()).toEqual({ code: DOWNLOAD_CODES.DOWNLOAD_URL_INVALID, message, time: r.clock.epochSeconds() });
    expect(r.source.opens).toEqual([]);
  });
});

describe("requests while the image is verified or staged", () => {
  it("while Verifying (the report of that state asks again): the same version changes nothing, a refused one is only reported", async () => {
    const r = new Rig();
    let asked = false;
    r.reportResult = () => {
      if (r.ota.state === "Verifying" && !asked) {
        asked = true;
        r.ota.request("1.1.0");
        r.ota.request("0.9.0");
      }
      return Promise.resolve();
    };
    r.ota.request("1.1.0");
    await run();
    expect(asked).toBe(true);
    expect(r.ota.state).toBe("Staged");
    expect(r.ota.record).toMatchObject({ from: "1.0.0", to: "1.1.0", durable: 20_000 });
    expect(r.source.opens.length).toBe(1);
    expect(r.reports.map((d) => [d["state"], (d["lastError"] as JsonObject | null)?.["code"] ?? null])).toEqual([
      ["Downloading", null], ["Verifying", null], ["Verifying", UPDATE_CODES.OTA_DOWNGRADE_REFUSED], ["Staged", null],
    ]);
    expect(r.restart.reasons).toEqual(["update to 1.1.0 staged"]);
  });

  it("while Staged: the same version again is not looked at (nothing logged, nothing written)", async () => {
    const r = new Rig();
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    const lines = r.log.lines.length;
    const writes = r.kv.writes;
    r.ota.request("1.1.0");
    expect(r.log.lines.length).toBe(lines);
    expect(r.kv.writes).toBe(writes);
  });
});
