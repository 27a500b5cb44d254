/**
 * scripts/check-device.ts (`npm run check:device`): the manifest, partition and sdkconfig checks over copies
 * of the project's files in a temporary folder, each broken one way, and mcconfig's sdkconfig merge over a
 * stand-in for the SDK's defaults (the real SDK is not on CI machines). One run of the type check over a
 * one-file project shows a type error fails it. Through `main`, as `npm run check:device` runs it.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { checkDevice, main, mergeSdkconfig, sdkconfigBool, CHECK_DEVICE_CODES as C } from "../../scripts/check-device";

const REPO = path.resolve(__dirname, "../..");
let root: string;

function copyProject(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "check-device-"));
  cpSync(path.join(REPO, "manifest.json"), path.join(dir, "manifest.json"));
  cpSync(path.join(REPO, "partitions"), path.join(dir, "partitions"), { recursive: true });
  for (const d of ["src/device/typings", "src/native/xs", "src/core", "src/ports"]) mkdirSync(path.join(dir, d), { recursive: true });
  // Every local manifest the app's manifest includes (src/native/xs, src/device/restart, ...).
  const includes = (JSON.parse(readFileSync(path.join(REPO, "manifest.json"), "utf8")).include as string[]).filter((i) => i.startsWith("./"));
  for (const inc of includes) {
    mkdirSync(path.dirname(path.join(dir, inc)), { recursive: true });
    cpSync(path.join(REPO, inc), path.join(dir, inc));
  }
  writeFileSync(path.join(dir, "src/device/main.ts"), "export {};\n");
  return dir;
}

/** A stand-in for $MODDABLE with the SDK's esp32 defaults as SDK 8.2.3 ships their first lines. */
function fakeSdk(defaults = "CONFIG_BOOTLOADER_LOG_LEVEL_NONE=y\nCONFIG_BOOTLOADER_SKIP_VALIDATE_ALWAYS=y\nCONFIG_ESPTOOLPY_FLASHSIZE_4MB=y\nCONFIG_PARTITION_TABLE_CUSTOM=y\n"): string {
  const sdk = path.join(root, "sdk");
  mkdirSync(path.join(sdk, "build/devices/esp32/xsProj-esp32"), { recursive: true });
  writeFileSync(path.join(sdk, "build/devices/esp32/xsProj-esp32/sdkconfig.defaults"), defaults);
  writeFileSync(path.join(sdk, "build/devices/esp32/xsProj-esp32/sdkconfig.defaults.release"), "CONFIG_LOG_DEFAULT_LEVEL_NONE=y\n");
  return sdk;
}

const ourSdkconfig = (): string => path.join(root, "partitions/sdkconfig/sdkconfig.defaults");
const editManifest = (edit: (m: Record<string, any>) => void): void => {
  const m = JSON.parse(readFileSync(path.join(root, "manifest.json"), "utf8"));
  edit(m);
  writeFileSync(path.join(root, "manifest.json"), JSON.stringify(m));
};
const codes = (moddable?: string): string[] => checkDevice({ root, types: false, moddable }).problems.map((p) => p.code);

beforeEach(() => { root = copyProject(); });
afterEach(() => { rmSync(root, { recursive: true, force: true }); });

describe("the project as committed", () => {
  test("passes without an SDK, and says the sdkconfig was checked alone", () => {
    const r = checkDevice({ root, types: false, moddable: undefined });
    expect(r.problems).toEqual([]);
    expect(r.notes.join("\n")).toMatch(/no Moddable SDK .*checked partitions\/sdkconfig\/sdkconfig.defaults alone/);
  });
  test("passes merged over the SDK's defaults, which turn validation off", () => {
    const r = checkDevice({ root, types: false, moddable: fakeSdk() });
    expect(r.problems).toEqual([]);
    expect(r.notes.join("\n")).toMatch(/merged over the SDK's .*debug and release/);
  });
});

describe("mcconfig's sdkconfig merge", () => {
  test("replaces a value, writes n as empty, appends new names, skips comments", () => {
    const merged = mergeSdkconfig("A=y\nB=1\n", ["A=n\n# B is not set\nC=y\n"]);
    expect(merged).toBe("A=\nB=1\n\nC=y\n");
    expect(sdkconfigBool(merged, "A")).toBe(false);
    expect(sdkconfigBool(merged, "B")).toBe(false);
    expect(sdkconfigBool(merged, "C")).toBe(true);
  });
  test("a '# … is not set' line does not undo the SDK's SKIP_VALIDATE_ALWAYS=y", () => {
    const s = readFileSync(ourSdkconfig(), "utf8").replace(/^CONFIG_BOOTLOADER_SKIP_VALIDATE_ALWAYS=n$/m, "# CONFIG_BOOTLOADER_SKIP_VALIDATE_ALWAYS is not set");
    writeFileSync(ourSdkconfig(), s);
    const r = checkDevice({ root, types: false, moddable: fakeSdk() });
    expect(r.problems.map((p) => p.code)).toEqual([C.CHECK_DEVICE_SDKCONFIG, C.CHECK_DEVICE_SDKCONFIG]); // debug and release
    expect(r.problems[0]!.message).toMatch(/\(debug\) sets CONFIG_BOOTLOADER_SKIP_VALIDATE_ALWAYS=y/);
    // Without the SDK the same file fails too: the explicit =n line is required.
    expect(codes(undefined)).toEqual([C.CHECK_DEVICE_SDKCONFIG]);
  });
  test("an SDK that turns skipping on power-on on is caught", () => {
    writeFileSync(ourSdkconfig(), readFileSync(ourSdkconfig(), "utf8").replace(/^CONFIG_BOOTLOADER_SKIP_VALIDATE_ON_POWER_ON=n\n/m, ""));
    expect(codes(fakeSdk("CONFIG_BOOTLOADER_SKIP_VALIDATE_ON_POWER_ON=y\nCONFIG_PARTITION_TABLE_CUSTOM=y\n"))).toContain(C.CHECK_DEVICE_SDKCONFIG);
  });
  test("rollback off fails", () => {
    writeFileSync(ourSdkconfig(), readFileSync(ourSdkconfig(), "utf8").replace("CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y", "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=n"));
    expect(codes(fakeSdk())).toEqual([C.CHECK_DEVICE_SDKCONFIG, C.CHECK_DEVICE_SDKCONFIG]);
    expect(codes(undefined)).toEqual([C.CHECK_DEVICE_SDKCONFIG]);
  });
  test("a missing flash size fails", () => {
    writeFileSync(ourSdkconfig(), readFileSync(ourSdkconfig(), "utf8").replace(/^CONFIG_ESPTOOLPY_FLASHSIZE=.*$/m, ""));
    expect(codes(undefined)).toEqual([C.CHECK_DEVICE_SDKCONFIG]);
  });
});

describe("the manifest", () => {
  test("another platform accepted, or no error for the rest, fails", () => {
    editManifest((m) => { m.platforms.wasm = {}; delete m.platforms["..."]; });
    expect(codes()).toEqual([C.CHECK_DEVICE_PLATFORMS, C.CHECK_DEVICE_PLATFORMS]);
  });
  test("no SDKCONFIGPATH or PARTITIONS_FILE fails", () => {
    editManifest((m) => { delete m.platforms.esp32.build.SDKCONFIGPATH; delete m.platforms.esp32.build.PARTITIONS_FILE; });
    expect(codes()).toEqual([C.CHECK_DEVICE_PLATFORMS, C.CHECK_DEVICE_PLATFORMS]);
  });
  test("a resource the app does not read, a ca<N> resource, a missing one", () => {
    editManifest((m) => { delete m.resources["device-key"]; m.resources.ca0 = "./x.der"; });
    const r = checkDevice({ root, types: false });
    expect(r.problems.map((p) => p.code)).toEqual([C.CHECK_DEVICE_RESOURCES, C.CHECK_DEVICE_RESOURCES]);
    expect(r.problems[1]!.message).toMatch(/trusted by SecureSocket/);
  });
  test("the signing key resource is optional: with it the manifest passes, a misspelt one fails", () => {
    editManifest((m) => { m.resources["ota-signing-key"] = "./build/ota-signing-key.der"; });
    expect(codes()).toEqual([]);
    editManifest((m) => { delete m.resources["ota-signing-key"]; m.resources["ota-signing"] = "./build/ota-signing-key.der"; });
    expect(codes()).toEqual([C.CHECK_DEVICE_RESOURCES]);
  });
  test("a local include or module folder that does not exist, and an entry point without source", () => {
    editManifest((m) => { m.include.push("./nowhere/manifest.json"); m.modules["extra/*"] = "./src/extra/*"; m.creation.main = "device/nomain"; });
    expect(codes()).toEqual([C.CHECK_DEVICE_MODULES, C.CHECK_DEVICE_MODULES, C.CHECK_DEVICE_MODULES]);
  });
  test("not JSON", () => {
    writeFileSync(path.join(root, "manifest.json"), "{");
    expect(codes()).toEqual([C.CHECK_DEVICE_MANIFEST]);
  });
});

describe("the partition table", () => {
  const table = (): string => path.join(root, "partitions/partitions.csv");
  test("one OTA slot fails", () => {
    writeFileSync(table(), readFileSync(table(), "utf8").replace(/^ota_1.*\n/m, ""));
    expect(codes()).toEqual([C.CHECK_DEVICE_PARTITIONS]);
  });
  test("slots of different sizes fail", () => {
    writeFileSync(table(), readFileSync(table(), "utf8").replace(/^(ota_1,\s*app,\s*ota_1,\s*,\s*)1M,/m, "$1512K,"));
    expect(codes()).toEqual([C.CHECK_DEVICE_PARTITIONS]);
  });
  test("a table larger than the sdkconfig's flash fails", () => {
    writeFileSync(ourSdkconfig(), readFileSync(ourSdkconfig(), "utf8").replace('CONFIG_ESPTOOLPY_FLASHSIZE="4MB"', 'CONFIG_ESPTOOLPY_FLASHSIZE="2MB"'));
    const r = checkDevice({ root, types: false });
    expect(r.problems.map((p) => p.code)).toEqual([C.CHECK_DEVICE_PARTITIONS]);
    expect(r.problems[0]!.message).toMatch(/PARTITION_OUT_OF_FLASH/);
  });
});

describe("the type check (one tsc run)", () => {
  test("a type error in a src/device file and a file the config leaves out fail; the CLI prints the count last", () => {
    writeFileSync(path.join(root, "tsconfig.device.json"), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, types: [], target: "es2022", lib: ["es2022"] },
      include: ["src/device/main.ts"],
    }));
    writeFileSync(path.join(root, "src/device/main.ts"), 'export const wrong: number = "not a number";\n');
    writeFileSync(path.join(root, "src/device/other.ts"), "export {};\n");
    const log = jest.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      expect(main(["--root", root, "--moddable", ""])).toBe(1);
      const lines = log.mock.calls.map((c) => String(c[0]));
      expect(lines.filter((l) => l.startsWith(C.CHECK_DEVICE_TYPES))).toHaveLength(2);
      expect(lines.join("\n")).toMatch(/src\/device\/other.ts is not type-checked/);
      expect(lines.join("\n")).toMatch(/error TS2322/);
      expect(lines[lines.length - 1]).toBe("check:device: 2 problem(s)");
    } finally {
      log.mockRestore();
    }
  });
  test("a config that reaches into the SDK's typings fails", () => {
    writeFileSync(path.join(root, "tsconfig.device.json"), JSON.stringify({
      compilerOptions: { types: [], paths: { timer: ["/opt/moddable/typings/timer.d.ts"] } }, include: ["src/device/**/*.ts"],
    }));
    const r = checkDevice({ root, moddable: "" });
    expect(r.problems.map((p) => p.code)).toContain(C.CHECK_DEVICE_SDK_TYPINGS);
  });
});
