/**
 * The OTA controller's test rig over the fakes in ota-fakes.ts (ota-controller*.test.ts): one device whose
 * flash and key-value store survive powerOn(), with the reports, restarts and log it produced. Jest subset
 * only (runs on XS too).
 */
import type { JsonObject } from "../../src/core/json";
import type { ByteSource } from "../../src/ports/byte-source";
import { OtaController, type AppCheck, type OtaControllerConfig } from "../../src/core/ota-controller";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";
import { ManualClock, MemoryKv, MemoryLog } from "./fake-ports";

export const BASE = "https://blobs.example/firmware/";
export const CONFIG: OtaControllerConfig = {
  source: { naming: "aws", baseUrl: BASE, allowedHosts: ["blobs.example"] },
  projectName: "shadow-ota",
  chipId: 0,
  chipRevFull: 300,
  retry: { initialMs: 1_000, maxMs: 8_000, maxAttempts: 4 },
  selfTestWindowMs: 60_000,
};

/** One device: flash and KV survive powerOn(); the controller and slot are new each time. */
export class Rig {
  readonly kv = new MemoryKv();
  readonly clock = new ManualClock();
  readonly log = new MemoryLog();
  readonly restart = new RecordingRestart();
  readonly reports: JsonObject[] = [];
  readonly flash: FakeFlash;
  readonly source: FakeSource;
  /** The ByteSource the next powerOn() hands the controller (a wrapper of `source`); undefined = `source`. */
  byteSource: ByteSource | undefined;
  slot!: FakeSlot;
  ota!: OtaController;
  appCheck: AppCheck | undefined;
  reportResult: () => Promise<void> = () => Promise.resolve();

  constructor(public config: OtaControllerConfig = CONFIG, image = fakeImage({ version: "1.1.0" }), running = fakeImage({ version: "1.0.0", size: 9_000 })) {
    this.flash = new FakeFlash(running);
    this.source = new FakeSource(image);
    this.powerOn();
  }

  /** Power on; `flashBoot` false keeps the flash as the test left it (no bootloader decision). */
  powerOn(flashBoot = true): void {
    this.ota?.close();
    if (flashBoot) this.flash.boot();
    this.slot = new FakeSlot(this.flash);
    const hooks: ConstructorParameters<typeof OtaController>[2] = {
      report: (u) => { this.reports.push(u); return this.reportResult(); },
    };
    if (this.appCheck !== undefined) hooks.appCheck = this.appCheck;
    this.ota = new OtaController(
      { slot: this.slot, source: this.byteSource ?? this.source, kv: this.kv, clock: this.clock, log: this.log, restart: this.restart, random: () => 0.5 },
      this.config, hooks);
    this.ota.boot();
    this.ota.start();
  }

  last(): JsonObject { return this.reports[this.reports.length - 1]!; }
  lastError(): JsonObject | null { return this.last()["lastError"] as JsonObject | null; }
  states(): string[] { return this.reports.map((r) => r["state"] as string); }
  events(name: string): Array<{ level: string; fields?: Record<string, unknown> }> {
    return this.log.lines.filter((l) => l.event === name).map((l) => (l.fields === undefined ? { level: l.level } : { level: l.level, fields: l.fields }));
  }
}
