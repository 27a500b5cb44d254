/**
 * The device log of an OTA update (src/core/ota-controller.ts), line by line: what an operator reading a
 * device's JSON-lines log (the simulator writes one per device; the ESP32 traces the same events) sees for a
 * clean update confirmed after a restart, a download retried and resumed, a refusal, a rollback, and a
 * power loss in the middle. Each event with its level and fields is part of the contract the docs
 * (docs/ota-update.md) describe. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { OtaController, type OtaControllerConfig } from "../../src/core/ota-controller";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";
import { ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const CONFIG: OtaControllerConfig = {
  source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] },
  projectName: "shadow-ota",
  chipId: 0,
  retry: { initialMs: 1_000, maxMs: 8_000, maxAttempts: 3 },
  selfTestWindowMs: 60_000,
};

class Device {
  readonly kv = new MemoryKv();
  readonly clock = new ManualClock();
  log = new MemoryLog();
  readonly restart = new RecordingRestart();
  readonly flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
  readonly source = new FakeSource(fakeImage({ version: "1.1.0", size: 12_288 }));
  readonly reports: JsonObject[] = [];
  ota!: OtaController;
  constructor(readonly config: OtaControllerConfig = CONFIG) { this.source.chunkSize = 4096; this.powerOn(); }
  powerOn(): void {
    this.ota?.close();
    this.flash.boot();
    this.log = new MemoryLog();
    this.ota = new OtaController({ slot: new FakeSlot(this.flash), source: this.source, kv: this.kv, clock: this.clock, log: this.log, restart: this.restart, random: () => 0.5 },
      this.config, { report: (u) => { this.reports.push(u); return Promise.resolve(); } });
    this.ota.boot();
    this.ota.start();
  }
  lines(): unknown[] { return this.log.lines.map((l) => (l.fields === undefined ? [l.level, l.event] : [l.level, l.event, l.fields])); }
}

async function run(turns = 60): Promise<void> {
  for (let i = 0; i < turns; i++) await settle();
}

const BOOT_IDLE = ["info", "ota.boot", { running: "1.0.0", partition: "ota_0", pending: false, record: "Idle", to: null }];
const OPEN_0 = ["info", "ota.download.open", { to: "1.1.0", status: 200, start: 0, total: 12288, attempt: 1 }];
const TO_DOWNLOADING = (from: string) => ["info", "ota.state", { from, to: "Downloading", version: "1.1.0" }];
const STAGED = [
  ["info", "ota.state", { from: "Downloading", to: "Verifying", version: "1.1.0" }],
  ["info", "ota.state", { from: "Verifying", to: "Staged", version: "1.1.0" }],
  ["info", "ota.staged", { to: "1.1.0", bytes: 12288 }],
  ["info", "ota.restart", { reason: "update to 1.1.0 staged" }],
];

describe("the device log of an update", () => {
  it("a clean update: boot, download, staged, restart; then pending, confirmed, valid", async () => {
    const d = new Device();
    d.ota.request("1.1.0");
    await run();
    expect(d.lines()).toEqual([BOOT_IDLE, TO_DOWNLOADING("Idle"), OPEN_0, ...STAGED]);
    d.powerOn();
    d.ota.request("1.1.0");
    d.ota.onSynced();
    await run();
    expect(d.lines()).toEqual([
      ["info", "ota.boot", { running: "1.1.0", partition: "ota_1", pending: true, record: "Staged", to: "1.1.0" }],
      ["info", "ota.state", { from: "Staged", to: "PendingVerify", version: "1.1.0" }],
      ["debug", "ota.request.running", { version: "1.1.0" }],
      ["info", "ota.state", { from: "PendingVerify", to: "Valid", version: "1.1.0" }],
      ["info", "ota.valid", { version: "1.1.0" }],
    ]);
  });

  it("a cut and a 503: each failure with its attempt, code and message, then a resumed download", async () => {
    const d = new Device();
    d.source.faults.push({ kind: "cut", at: 4096 }, { kind: "open-error", error: new ShadowOtaError("DOWNLOAD_HTTP_STATUS", "503", { detail: { status: 503 } }) });
    d.ota.request("1.1.0");
    await run();
    d.clock.advance(1_000);
    await run();
    d.clock.advance(2_000);
    await run();
    expect(d.lines()).toEqual([
      BOOT_IDLE, TO_DOWNLOADING("Idle"), OPEN_0,
      ["warn", "ota.download.failed", { to: "1.1.0", attempt: 1, code: "DOWNLOAD_TRUNCATED", message: "connection closed at byte 4096", retry: true }],
      ["warn", "ota.download.failed", { to: "1.1.0", attempt: 2, code: "DOWNLOAD_HTTP_STATUS", message: "503", retry: true }],
      ["info", "ota.download.open", { to: "1.1.0", status: 206, start: 4096, total: 12288, attempt: 3 }],
      ...STAGED,
    ]);
  });

  it("a refusal, then a self-test that times out, and the rolled-back image refusing the same version", async () => {
    const d = new Device();
    d.ota.request("0.9.0");
    d.ota.request("1.1.0");
    await run();
    expect(d.lines()).toEqual([
      BOOT_IDLE,
      ["warn", "ota.request.refused", { version: "0.9.0", code: "OTA_DOWNGRADE_REFUSED", message: "0.9.0 is older than the running 1.0.0; downgrades are not allowed by configuration" }],
      TO_DOWNLOADING("Failed"), OPEN_0, ...STAGED,
    ]);
    d.powerOn();
    d.clock.advance(60_000);
    await run();
    expect(d.lines()).toEqual([
      ["info", "ota.boot", { running: "1.1.0", partition: "ota_1", pending: true, record: "Staged", to: "1.1.0" }],
      ["info", "ota.state", { from: "Staged", to: "PendingVerify", version: "1.1.0" }],
      ["error", "ota.self-test.failed", { version: "1.1.0", code: "OTA_SELF_TEST_TIMEOUT", message: "no twin get completed within 60000 ms of the restart into 1.1.0" }],
    ]);
    d.powerOn();
    d.ota.request("1.1.0");
    expect(d.lines()).toEqual([
      ["info", "ota.boot", { running: "1.0.0", partition: "ota_0", pending: false, record: "PendingVerify", to: "1.1.0" }],
      ["info", "ota.state", { from: "PendingVerify", to: "RolledBack", version: "1.1.0" }],
      ["info", "ota.request.not-again", { version: "1.1.0", state: "RolledBack", code: "OTA_SELF_TEST_TIMEOUT" }],
    ]);
  });

  it("a power loss mid-download stops everything; the next boot resumes from the durable sector", async () => {
    const d = new Device();
    d.source.faults.push({ kind: "cut", at: 4096, error: new ShadowOtaError("OTA_POWER_LOST", "power lost") });
    d.ota.request("1.1.0");
    await run();
    expect(d.lines()).toEqual([BOOT_IDLE, TO_DOWNLOADING("Idle"), OPEN_0, ["warn", "ota.power-lost", { durable: 4096 }]]);
    d.powerOn();
    await run();
    expect(d.lines()).toEqual([
      ["info", "ota.boot", { running: "1.0.0", partition: "ota_0", pending: false, record: "Downloading", to: "1.1.0" }],
      ["info", "ota.resume", { to: "1.1.0", durable: 4096 }],
      ["info", "ota.download.open", { to: "1.1.0", status: 206, start: 4096, total: 12288, attempt: 1 }],
      ...STAGED,
    ]);
  });

  it("a download given up: the last failure at error level with retry false", async () => {
    const d = new Device();
    d.source.faults.push({ kind: "open-error", error: new ShadowOtaError("DOWNLOAD_TLS", "certificate not trusted") });
    d.ota.request("1.1.0");
    await run();
    expect(d.lines().slice(-2)).toEqual([
      ["error", "ota.download.failed", { to: "1.1.0", attempt: 1, code: "DOWNLOAD_TLS", message: "certificate not trusted", retry: false }],
      ["info", "ota.state", { from: "Downloading", to: "Failed", version: "1.1.0" }],
    ]);
  });
});
