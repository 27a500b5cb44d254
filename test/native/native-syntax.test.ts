/**
 * The native code this machine cannot build (the ESP32 layer against ESP-IDF, the xsmc binding against
 * XS) compiles: scripts/check-native-syntax.sh runs `clang -fsyntax-only -Werror` over it against the
 * declaration stubs in test/native/esp32-stubs/ and the XS headers of @agoric/xsnap. Two controls show the
 * check can fail: a wrong call into the ESP-IDF stubs and a wrong call into XS are refused. Also
 * type-checks the Moddable-only TypeScript (src/native/xs/tsconfig.check.json).
 * Skipped, with a message, when clang is missing.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..");
const XS = path.join(ROOT, "node_modules", "@agoric", "xsnap", "moddable", "xs");
const haveClang = spawnSync("clang", ["--version"]).status === 0;
if (!haveClang) console.warn("native-syntax.test: clang not found (apt-get install clang): syntax checks SKIPPED");
const describeClang = haveClang ? describe : describe.skip;

function clang(source: string, args: string[]): { status: number | null; stderr: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "native-syntax-"));
  try {
    const file = path.join(dir, "probe.c");
    fs.writeFileSync(file, source);
    const r = spawnSync("clang", ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", ...args, file], { encoding: "utf8" });
    return { status: r.status, stderr: r.stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describeClang("native syntax checks", () => {
  it("scripts/check-native-syntax.sh passes", () => {
    const out = execFileSync("bash", [path.join(ROOT, "scripts", "check-native-syntax.sh")], { cwd: ROOT, encoding: "utf8" });
    expect(out).toContain("ok   src/native/esp32/ota_esp32.c");
    expect(out).toContain("ok   src/native/xs/ota_xs.c (ESP_PLATFORM, XS headers)");
    expect(out).toContain("ok   src/native/xs/ota_xs.c (simulator, XS headers)");
    expect(out.trim().split("\n").at(-1)).toBe("check-native-syntax: all passed");
  });

  it("control: a call that does not match ESP-IDF's signature is refused", () => {
    const stubs = ["-DESP_PLATFORM", `-I${path.join(ROOT, "test", "native", "esp32-stubs")}`];
    const good = '#include "esp_ota_ops.h"\nint f(const esp_partition_t *p) { esp_ota_handle_t h; return esp_ota_begin(p, OTA_WITH_SEQUENTIAL_WRITES, &h); }\n';
    expect(clang(good, stubs).status).toBe(0);
    const bad = '#include "esp_ota_ops.h"\nint f(const esp_partition_t *p) { return esp_ota_begin(p, OTA_WITH_SEQUENTIAL_WRITES); }\n';
    const r = clang(bad, stubs);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/too few arguments/);
  });

  it("control: a wrong use of the XS API is refused", () => {
    const xs = [`-I${path.join(XS, "includes")}`, `-I${path.join(XS, "platforms")}`];
    const good = '#include <stddef.h>\n#include "xsmc.h"\nvoid f(xsMachine *the) { xsmcSetInteger(xsResult, 1); }\n';
    expect(clang(good, xs).status).toBe(0);
    const bad = '#include <stddef.h>\n#include "xsmc.h"\nvoid f(xsMachine *the) { xsmcSetInteger(xsResult); }\n';
    expect(clang(bad, xs).status).not.toBe(0);
  });
});

describe("Moddable-only TypeScript", () => {
  it("src/native/xs type-checks without Node or Jest types", () => {
    const tsc = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
    const r = spawnSync(process.execPath, [tsc, "-p", path.join(ROOT, "src", "native", "xs", "tsconfig.check.json")], { encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  }, 60000);
});
