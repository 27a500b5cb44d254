/**
 * The OTA controller's own record decides what is unconfirmed, not otadata's state word (issue 7,
 * "fix it above the bootloader"). ESP-IDF's otadata CRC covers only the sequence number, so a power cut
 * while an entry is written can leave a valid-looking entry whose state is garbage (read as UNDEFINED) or
 * even VALID: the bootloader then boots the new image with no rollback on the next reset. Here the fake
 * flash boots the staged image in such a state and the controller must still self-test it, confirm it when
 * the test passes and roll it back when it fails. The same torn states come out of the real host flash in
 * `npm run test:powercut`. Jest subset only (runs on XS too).
 */
import { OTA_KV_KEY } from "../../src/core/ota-controller";
import { UPDATE_CODES } from "../../src/core/update-errors";
import type { OtaImageState } from "../../src/ports/ota-slot";
import { settle } from "./fake-ports";
import { fakeImage } from "./ota-fakes";
import { CONFIG, Rig } from "./ota-rig";

async function run(turns = 40): Promise<void> {
  for (let i = 0; i < turns; i++) await settle();
}

/** Downloads and stages 1.1.0, then boots it with otadata's state word reading `state`. */
async function stagedThenBoot(r: Rig, state: OtaImageState | undefined): Promise<void> {
  r.ota.request("1.1.0");
  await run();
  expect(r.ota.state).toBe("Staged");
  r.flash.boot(); // the bootloader picks the new image...
  r.flash.runningState = state; // ...whose entry's state word a torn write left like this
  r.powerOn(false);
}

describe("an unconfirmed image whose otadata entry does not say PENDING_VERIFY", () => {
  for (const state of ["UNDEFINED", "VALID", "NEW", undefined] as const) {
    it(`state ${String(state)}: self-tested, and rolled back when the test fails`, async () => {
      const r = new Rig();
      r.appCheck = () => "sensor missing";
      await stagedThenBoot(r, state);
      expect(r.ota.runningVersion).toBe("1.1.0");
      expect(r.ota.state).toBe("PendingVerify");
      expect(r.events("ota.boot.unconfirmed")).toEqual([{ level: "warn", fields: { version: "1.1.0", record: "Staged", otadata: state ?? null } }]);
      r.ota.onSynced();
      await run();
      // markInvalidAndReboot went back to the previous image, then the restart.
      expect(r.flash.running).toBe(0);
      expect(r.restart.reasons).toEqual(["update to 1.1.0 staged", "self-test of 1.1.0 failed: OTA_SELF_TEST_FAILED"]);
      r.powerOn();
      expect(r.ota.runningVersion).toBe("1.0.0");
      expect(r.ota.state).toBe("RolledBack");
      expect(r.lastError()?.["code"]).toBe(UPDATE_CODES.OTA_SELF_TEST_FAILED);
    });
  }

  it("state UNDEFINED and no twin within the window: the self-test times out and rolls back", async () => {
    const r = new Rig();
    await stagedThenBoot(r, "UNDEFINED");
    expect(r.clock.pending).toBe(1); // the self-test window
    r.clock.advance(CONFIG.selfTestWindowMs!);
    await run();
    expect(r.flash.running).toBe(0);
    r.powerOn();
    expect(r.ota.state).toBe("RolledBack");
    expect(r.lastError()?.["code"]).toBe(UPDATE_CODES.OTA_SELF_TEST_TIMEOUT);
  });

  it("state UNDEFINED and the self-test passes: confirmed, and a later restart stays Valid without a new test", async () => {
    const r = new Rig();
    await stagedThenBoot(r, "UNDEFINED");
    r.ota.onSynced();
    await run();
    expect(r.ota.state).toBe("Valid");
    r.powerOn();
    expect(r.ota.state).toBe("Valid");
    expect(r.clock.pending).toBe(0);
    expect(r.events("ota.boot.unconfirmed").length).toBe(1);
  });

  it("the set boot reached flash but the Staged record did not (record Verifying): self-tested, not downloaded again", async () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Verifying", from: "1.0.0", to: "1.1.0", url: "https://blobs.example/firmware/1.1.0.bin", durable: 20_000, total: 20_000, attempt: 1 }));
    r.flash.slots[1].set(fakeImage({ version: "1.1.0" }));
    r.flash.lengths[1] = 20_000;
    r.flash.running = 1;
    r.flash.runningState = "UNDEFINED";
    r.powerOn(false);
    expect(r.ota.state).toBe("PendingVerify");
    await run();
    expect(r.source.opens).toEqual([]);
  });

  it("the previous version runs with a Staged record: RolledBack as before, no self-test", () => {
    const r = new Rig();
    r.kv.set(OTA_KV_KEY, JSON.stringify({ state: "Staged", from: "1.0.0", to: "1.1.0", durable: 20_000, total: 20_000, attempt: 1 }));
    r.flash.runningState = "UNDEFINED";
    r.powerOn(false);
    expect(r.ota.state).toBe("RolledBack");
    expect(r.clock.pending).toBe(0);
  });
});
