/**
 * The ESP-IDF fakes keep the rules the ESP32 layer relies on (erase granularity, program semantics, write
 * ranges, esp_ota_begin/write/end/abort's argument and state rules, set boot / mark valid / mark invalid):
 * test/native/esp32-fakes/fake_rules.c calls them directly. Compiled here with the C compiler the native
 * build uses (cc), against the same ESP-IDF declarations, and run over a flash file made now.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { buildImage, makeFlashFile, tempDir } from "./fixtures";

const ROOT = path.resolve(__dirname, "..", "..");
const NATIVE = path.join(ROOT, "src", "native");
const dir = tempDir("esp32-fakes-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it("fake_rules.c: every documented rule holds", () => {
  const sources = [
    ...["ota_errors", "ota_image", "ota_writer", "ota_layout", "ota_otadata", "ota_running", "ota_sign"].map((f) => path.join(NATIVE, "core", `${f}.c`)),
    path.join(NATIVE, "host", "ota_boot_sim.c"),
    path.join(NATIVE, "esp32", "ota_esp32.c"),
    path.join(ROOT, "test", "native", "esp32-fakes", "esp32_fakes.c"),
    path.join(ROOT, "test", "native", "esp32-fakes", "fake_rules.c"),
  ];
  const bin = path.join(dir, "fake_rules");
  const cc = spawnSync(
    process.env.CC ?? "cc",
    ["-std=c11", "-Wall", "-Wextra", "-Werror", "-DESP_PLATFORM", `-I${path.join(ROOT, "test", "native", "esp32-stubs")}`, ...sources, "-lmbedcrypto", "-o", bin],
    { encoding: "utf8" },
  );
  expect(cc.stdout + cc.stderr).toBe("");
  expect(cc.status).toBe(0);

  const flash = makeFlashFile(path.join(dir, "flash.bin"), {
    factory: buildImage({ version: "1.0.0" }),
    ota_0: buildImage({ version: "1.1.0" }),
  });
  const run = spawnSync(bin, [flash], { encoding: "utf8" });
  const lines = run.stdout.trim().split("\n");
  expect(lines.filter((l) => l.startsWith("not ok"))).toEqual([]);
  expect(lines.at(-1)).toMatch(/^(\d+) passed, 0 failed$/);
  expect(Number(/^(\d+) passed/.exec(lines.at(-1)!)![1])).toBeGreaterThanOrEqual(35);
  expect(run.status).toBe(0);
});
