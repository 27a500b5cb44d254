/**
 * OtaController.cancel (src/core/ota-controller.ts): desired no longer names the version being installed
 * (a rollout's revert). A download stops, the slot is aborted, the boot partition is never switched, the
 * record says Idle with OTA_UPDATE_CANCELLED, and the same version can be requested again; once Staged it is
 * too late. Over the fakes of ota-fakes.ts. Jest subset only (runs on XS too).
 */
import { loadRecord, OTA_PROGRESS_KEY } from "../../src/core/ota-controller";
import { UPDATE_CODES } from "../../src/core/update-errors";
import { Rig } from "./ota-rig";
import { settle } from "./fake-ports";

/** Lets the download run: microtask turns, bounded. */
async function run(turns = 60): Promise<void> {
  for (let i = 0; i < turns; i++) await settle();
}

/** A rig whose download of 1.1.0 is stalled after `at` bytes (mid-body, the response open). */
async function midDownload(at = 12_000): Promise<Rig> {
  const r = new Rig();
  r.source.faults.push({ kind: "stall", at });
  r.ota.request("1.1.0");
  await run();
  expect(r.ota.state).toBe("Downloading");
  expect(r.source.stalled).toBe(1);
  return r;
}

describe("cancel while downloading", () => {
  it("stops the download, aborts the slot, leaves the boot partition alone and reports Idle with OTA_UPDATE_CANCELLED", async () => {
    const r = await midDownload();
    expect(r.ota.record.durable).toBeGreaterThan(0);
    const opens = r.source.opens.length;

    expect(r.ota.cancel("1.1.0", "desired names 1.0.0")).toBe(true);
    await run();

    expect(r.ota.state).toBe("Idle");
    expect(r.last()).toMatchObject({ state: "Idle", from: "1.0.0", to: "1.1.0", bytes: null, total: null, percent: null });
    expect(r.lastError()).toMatchObject({ code: UPDATE_CODES.OTA_UPDATE_CANCELLED });
    expect(String(r.lastError()!["message"])).toContain("desired names 1.0.0");
    expect(r.flash.next).toBeUndefined();
    // The persisted record says so, with no progress entry left beside it.
    const { record } = loadRecord(r.kv);
    expect(record).toMatchObject({ state: "Idle", to: "1.1.0", durable: 0 });
    expect(record.lastError?.code).toBe(UPDATE_CODES.OTA_UPDATE_CANCELLED);
    expect(r.kv.get(OTA_PROGRESS_KEY)).toBeUndefined();
    expect(r.events("ota.cancelled")).toHaveLength(1);
    // Nothing more is fetched or written; a power-on after it resumes nothing and boots the old image.
    r.clock.advance(120_000);
    await run();
    expect(r.source.opens.length).toBe(opens);
    r.powerOn();
    await run();
    expect(r.ota.state).toBe("Idle");
    expect(r.ota.runningVersion).toBe("1.0.0");
    expect(r.source.opens.length).toBe(opens);
    expect(r.restart.reasons).toEqual([]);
    r.ota.close();
  });

  it("the same version requested again after a cancel downloads from byte 0 and is staged", async () => {
    const r = await midDownload();
    r.ota.cancel("1.1.0", "desired names 1.0.0");
    await run();
    r.ota.request("1.1.0");
    await run(400);
    expect(r.source.opens[r.source.opens.length - 1]).toMatchObject({ offset: 0 });
    expect(r.ota.state).toBe("Staged");
    expect(r.restart.reasons).toHaveLength(1);
    r.powerOn();
    expect(r.ota.state).toBe("PendingVerify");
    expect(r.ota.runningVersion).toBe("1.1.0");
    r.ota.close();
  });

  it("cancels a retry that waits out its backoff: no further attempt when the wait would have ended", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "cut", at: 12_000 });
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.record.attempt).toBe(2);
    expect(r.source.opens).toHaveLength(1);
    expect(r.ota.cancel("1.1.0", "desired names no version")).toBe(true);
    r.clock.advance(60_000);
    await run();
    expect(r.source.opens).toHaveLength(1);
    expect(r.ota.state).toBe("Idle");
    r.ota.close();
  });
});

describe("cancel while verifying, and its log lines", () => {
  it("Verifying (cancelled from the report of that state): the image is not staged, the slot aborted, the boot partition untouched", async () => {
    const r = new Rig();
    let cancelled: boolean | undefined;
    r.reportResult = () => {
      if (r.ota.state === "Verifying" && cancelled === undefined) cancelled = r.ota.cancel("1.1.0", "desired names 1.0.0");
      return Promise.resolve();
    };
    r.ota.request("1.1.0");
    await run(400);
    expect(cancelled).toBe(true);
    expect(r.ota.state).toBe("Idle");
    expect(r.states()).not.toContain("Staged");
    expect(r.flash.next).toBeUndefined();
    expect(r.restart.reasons).toEqual([]);
    expect(r.events("ota.cancelled")).toEqual([{ level: "info", fields: { version: "1.1.0", reason: "desired names 1.0.0" } }]);
    r.ota.close();
  });

  it("cancelled twice: the second finds nothing to cancel and logs nothing (too late is only for Staged)", async () => {
    const r = await midDownload();
    expect(r.ota.cancel("1.1.0", "revert")).toBe(true);
    expect(r.ota.cancel("1.1.0", "revert")).toBe(false);
    expect(r.events("ota.cancelled")).toHaveLength(1);
    expect(r.events("ota.cancel.too-late")).toEqual([]);
    r.ota.close();
  });
});

describe("nothing to cancel", () => {
  it("another version, Idle or a closed controller: false and nothing changes", async () => {
    const r = await midDownload();
    expect(r.ota.cancel("1.2.0", "x")).toBe(false);
    expect(r.ota.state).toBe("Downloading");
    const reports = r.reports.length;
    r.ota.close();
    expect(r.ota.cancel("1.1.0", "x")).toBe(false);
    expect(r.reports.length).toBe(reports);

    const idle = new Rig();
    expect(idle.ota.cancel("1.1.0", "x")).toBe(false);
    expect(idle.ota.state).toBe("Idle");
    expect(idle.reports).toHaveLength(0);
    idle.ota.close();
  });

  it("Staged is too late: the restart goes ahead and the new image's self-test decides", async () => {
    const r = new Rig();
    r.reportResult = () => new Promise(() => undefined); // the Staged report is never answered: the restart waits
    r.ota.request("1.1.0");
    await run(400);
    expect(r.ota.state).toBe("Staged");
    expect(r.ota.cancel("1.1.0", "desired names 1.0.0")).toBe(false);
    expect(r.events("ota.cancel.too-late")).toEqual([{ level: "warn", fields: { version: "1.1.0", state: "Staged" } }]);
    r.clock.advance(10_000); // REPORT_BEFORE_RESTART_MS
    await run();
    expect(r.restart.reasons).toHaveLength(1);
    r.powerOn();
    expect(r.ota.state).toBe("PendingVerify");
    r.ota.close();
  });
});
