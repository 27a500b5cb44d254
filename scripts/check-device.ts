/**
 * check-device.ts — `npm run check:device`: what can be checked about the Moddable device build without
 * building it, on any machine (CI has no Moddable SDK).
 *
 * 1. Types: every .ts file under src/device is type-checked by tsconfig.device.json against the project's
 *    own declarations of the SDK modules it uses (src/device/sdk-typings, src/device/typings), never the
 *    SDK's: the config must list `types: []`, must not reach into $MODDABLE, and no declaration file of
 *    ours may carry the SDK's copyright line (a copied SDK typing). A file the config does not reach fails.
 * 2. The manifest (manifest.json): platforms (esp32 and lin only, anything else an `error`), the esp32
 *    build variables PARTITIONS_FILE and SDKCONFIGPATH naming files that exist, every local include and
 *    module folder existing, creation.main having its source file, and the resources being exactly the
 *    DER names src/device/resources.ts reads, the signing key optional (no `ca<N>` name: SecureSocket would
 *    trust it too).
 * 3. The partition table (PARTITIONS_FILE): valid by src/tools/partition-table.ts, a factory app, two OTA
 *    slots of equal size, one otadata, nvs, within the flash size the sdkconfig sets.
 * 4. The sdkconfig, MERGED the way mcconfig merges it for an esp32 build (tools/mcmanifest.js
 *    generateConfigurationRules, SDK 8.2.3; `mergeSdkconfig` below): the SDK's
 *    build/devices/esp32/xsProj-esp32/sdkconfig.defaults, for a release build its sdkconfig.defaults.release,
 *    then ours (SDKCONFIGPATH/sdkconfig.defaults). Both the debug and the release merge must hold
 *    CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y, none of CONFIG_BOOTLOADER_SKIP_VALIDATE_ALWAYS /
 *    _ON_POWER_ON / _IN_DEEP_SLEEP set, CONFIG_PARTITION_TABLE_CUSTOM=y. Without an SDK ($MODDABLE unset or
 *    not an SDK) our file is merged over nothing and the report says so: it must then turn the skip options
 *    off explicitly (`=n`), because the SDK's defaults turn SKIP_VALIDATE_ALWAYS on.
 *
 * Output: one line per problem (`CODE: message`), notes, and as the last line `check:device: OK (…)` or
 * `check:device: N problem(s)`; exit status 1 on any problem. Tests: test/device/check-device.test.ts.
 *
 * Usage: tsx scripts/check-device.ts [--root DIR] [--moddable DIR] [--no-types]
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

import { CERT_RESOURCES, SIGNING_KEY_RESOURCE } from "../src/device/resources";
import { loadPartitionCsv, otaSlots, PARTITION_TYPE, validatePartitions } from "../src/tools/partition-table";
import { ShadowOtaError } from "../src/core/errors";

/** The checker's stable codes (a build tool's: they never reach a device or the cloud). */
export const CHECK_DEVICE_CODES = {
  /** tsc reported errors for tsconfig.device.json, or the config leaves a src/device file out. */
  CHECK_DEVICE_TYPES: "CHECK_DEVICE_TYPES",
  /** The type check would use the SDK's typings (types, paths into $MODDABLE) or a copied SDK typing. */
  CHECK_DEVICE_SDK_TYPINGS: "CHECK_DEVICE_SDK_TYPINGS",
  /** manifest.json is missing, not JSON, or lacks a member the build needs. */
  CHECK_DEVICE_MANIFEST: "CHECK_DEVICE_MANIFEST",
  /** A platform other than esp32/lin is accepted, or the esp32 build variables are missing. */
  CHECK_DEVICE_PLATFORMS: "CHECK_DEVICE_PLATFORMS",
  /** A local include, module folder or the entry point's source does not exist. */
  CHECK_DEVICE_MODULES: "CHECK_DEVICE_MODULES",
  /** The resources are not exactly the names src/device/resources.ts reads, or one is a ca<N> name. */
  CHECK_DEVICE_RESOURCES: "CHECK_DEVICE_RESOURCES",
  /** The partition table is invalid or lacks what OTA with rollback needs. */
  CHECK_DEVICE_PARTITIONS: "CHECK_DEVICE_PARTITIONS",
  /** The merged sdkconfig lacks rollback, skips boot-time image validation, or is not readable. */
  CHECK_DEVICE_SDKCONFIG: "CHECK_DEVICE_SDKCONFIG",
} as const;

export interface DeviceCheckProblem {
  code: string;
  message: string;
}

export interface DeviceCheckReport {
  problems: DeviceCheckProblem[];
  notes: string[];
}

export interface DeviceCheckOptions {
  /** The project root (default: this repository). */
  root?: string;
  /** The Moddable SDK's root; default $MODDABLE. Not an SDK (no xsProj-esp32 defaults) = checked without. */
  moddable?: string | undefined;
  /** Run tsc (default true). */
  types?: boolean;
}

const REPO = path.resolve(__dirname, "..");
/** Where mcconfig's esp32 build takes the SDK's defaults (ESP32_SUBCLASS esp32). */
export const SDK_SDKCONFIG_DIR = "build/devices/esp32/xsProj-esp32";
/** Options that must be on / off in every merged sdkconfig (see partitions/sdkconfig/sdkconfig.defaults). */
export const SDKCONFIG_REQUIRED_ON = ["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE", "CONFIG_PARTITION_TABLE_CUSTOM"] as const;
export const SDKCONFIG_REQUIRED_OFF = [
  "CONFIG_BOOTLOADER_SKIP_VALIDATE_ALWAYS",
  "CONFIG_BOOTLOADER_SKIP_VALIDATE_ON_POWER_ON",
  "CONFIG_BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP",
] as const;
/** The copyright line every file of the SDK's typings carries; ours must not. */
const SDK_COPYRIGHT = /Copyright \(c\) [0-9-]+\s+Moddable Tech/i;

// ------------------------------------------------------------------------------------------------ sdkconfig

/**
 * mcconfig's merge (tools/mcmanifest.js generateConfigurationRules, SDK 8.2.3), restated: `base` is the
 * SDK's sdkconfig.defaults; each further file is split into lines, and every line that is not empty and
 * does not start with '#' is split at every '=' into NAME and value (the second part, as mcconfig does: a
 * value holding '=' would be cut there). A NAME already in the base has its value
 * replaced when it differs, `n` written as an empty value; a new NAME is appended as `NAME=value`. Comment
 * lines (also `# NAME is not set`) change nothing.
 */
export function mergeSdkconfig(base: string, fragments: readonly string[]): string {
  let merged = base;
  let appended = false;
  for (const fragment of fragments) {
    for (const line of fragment.split(/[\r\n]+/)) {
      if (line.length === 0 || line.startsWith("#")) continue;
      const parts = line.split("=");
      const name = parts[0]!;
      let value = parts[1] ?? "";
      const at = merged.indexOf(`${name}=`);
      if (at !== -1) {
        const start = at + name.length + 1;
        let end = merged.slice(start).search(/[\r\n]/);
        end = end === -1 ? merged.length : start + end;
        if (merged.slice(start, end) !== value) {
          if (value === "n") value = "";
          merged = merged.slice(0, at) + `${name}=${value}` + merged.slice(end);
        }
      } else {
        if (!appended) { merged += "\n"; appended = true; }
        merged += `${name}=${value}\n`;
      }
    }
  }
  return merged;
}

/** The value Kconfig reads for a bool: "y" only when the line says `NAME=y`; absent, empty, `n` or
 *  `# NAME is not set` leave it off (these options default to n in ESP-IDF's bootloader Kconfig). */
export function sdkconfigBool(config: string, name: string): boolean {
  for (const line of config.split(/[\r\n]+/)) {
    if (line.startsWith(`${name}=`)) return line.slice(name.length + 1).trim().startsWith("y");
  }
  return false;
}

/** A string or number option's raw value (quotes kept off), or undefined. */
export function sdkconfigValue(config: string, name: string): string | undefined {
  for (const line of config.split(/[\r\n]+/)) {
    if (line.startsWith(`${name}=`)) return line.slice(name.length + 1).trim().replace(/^"(.*)"$/, "$1");
  }
  return undefined;
}

/** Flash size in bytes from CONFIG_ESPTOOLPY_FLASHSIZE ("4MB"), or undefined. */
function flashSizeOf(config: string): number | undefined {
  const v = sdkconfigValue(config, "CONFIG_ESPTOOLPY_FLASHSIZE");
  const m = v === undefined ? null : /^([0-9]+)MB$/.exec(v);
  return m ? Number(m[1]) * 1024 * 1024 : undefined;
}

// ------------------------------------------------------------------------------------------------ the check

function readJson(file: string): unknown {
  return JSON.parse(readFileSync(file, "utf8"));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function listTs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listTs(p));
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Runs every check; never throws for a broken project (each finding is a problem). */
export function checkDevice(options: DeviceCheckOptions = {}): DeviceCheckReport {
  const root = path.resolve(options.root ?? REPO);
  const problems: DeviceCheckProblem[] = [];
  const notes: string[] = [];
  const problem = (code: string, message: string): void => { problems.push({ code, message }); };
  const C = CHECK_DEVICE_CODES;

  // 1. types ---------------------------------------------------------------------------------------------
  if (options.types !== false) checkTypes(root, problem, notes);

  // 2. manifest -------------------------------------------------------------------------------------------
  let manifest: Record<string, unknown>;
  try {
    const m = readJson(path.join(root, "manifest.json"));
    if (!isObject(m)) throw new Error("not a JSON object");
    manifest = m;
  } catch (e) {
    problem(C.CHECK_DEVICE_MANIFEST, `manifest.json: ${e instanceof Error ? e.message : String(e)}`);
    return { problems, notes };
  }
  const platforms = manifest.platforms;
  let esp32Build: Record<string, unknown> = {};
  if (!isObject(platforms)) {
    problem(C.CHECK_DEVICE_PLATFORMS, "manifest.json has no platforms object (esp32, lin and an error for the rest)");
  } else {
    const keys = Object.keys(platforms);
    for (const k of keys) {
      if (k !== "esp32" && k !== "lin" && k !== "...") problem(C.CHECK_DEVICE_PLATFORMS, `platform "${k}" is not supported by the OTA slot module (esp32 and lin only)`);
    }
    for (const k of ["esp32", "lin"]) if (!keys.includes(k)) problem(C.CHECK_DEVICE_PLATFORMS, `platforms.${k} is missing`);
    const rest = platforms["..."];
    if (!isObject(rest) || typeof rest.error !== "string") problem(C.CHECK_DEVICE_PLATFORMS, 'platforms["..."] must be {"error": …} so other platforms fail the build');
    const esp32 = platforms.esp32;
    if (isObject(esp32) && isObject(esp32.build)) esp32Build = esp32.build;
    else if (isObject(esp32)) problem(C.CHECK_DEVICE_PLATFORMS, "platforms.esp32.build is missing (PARTITIONS_FILE, SDKCONFIGPATH)");
  }
  const partitionsFile = typeof esp32Build.PARTITIONS_FILE === "string" ? path.resolve(root, esp32Build.PARTITIONS_FILE) : undefined;
  const sdkconfigPath = typeof esp32Build.SDKCONFIGPATH === "string" ? path.resolve(root, esp32Build.SDKCONFIGPATH) : undefined;
  if (partitionsFile === undefined) problem(C.CHECK_DEVICE_PLATFORMS, "platforms.esp32.build.PARTITIONS_FILE is not set: the SDK's table has no OTA slots");
  if (sdkconfigPath === undefined) problem(C.CHECK_DEVICE_PLATFORMS, "platforms.esp32.build.SDKCONFIGPATH is not set: the SDK's sdkconfig has no rollback");

  checkModules(root, manifest, problem);
  checkResources(manifest, problem);

  // 3 + 4. sdkconfig, then the partition table against its flash size -------------------------------------
  let flashSize: number | undefined;
  if (sdkconfigPath !== undefined) flashSize = checkSdkconfig(sdkconfigPath, options, problem, notes);
  if (partitionsFile !== undefined) checkPartitions(partitionsFile, flashSize, problem, notes);

  return { problems, notes };
}

function checkTypes(root: string, problem: (code: string, message: string) => void, notes: string[]): void {
  const C = CHECK_DEVICE_CODES;
  const configFile = path.join(root, "tsconfig.device.json");
  if (!existsSync(configFile)) { problem(C.CHECK_DEVICE_TYPES, "tsconfig.device.json is missing"); return; }
  const config = readJson(configFile);
  const co = isObject(config) && isObject(config.compilerOptions) ? config.compilerOptions : {};
  if (!Array.isArray(co.types) || co.types.length !== 0) problem(C.CHECK_DEVICE_SDK_TYPINGS, 'tsconfig.device.json must set "types": [] (no Node, Jest or SDK type packages)');
  // Every path the config resolves files through must stay inside the project (the SDK lives outside it).
  const cfg = isObject(config) ? config : {};
  const pathsOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
  const resolved = [
    ...pathsOf(cfg.include), ...pathsOf(cfg.files), ...pathsOf(cfg.extends), ...pathsOf(co.typeRoots),
    ...(isObject(co.paths) ? Object.values(co.paths).flatMap(pathsOf) : []),
  ];
  for (const p of resolved) {
    const outside = typeof p !== "string" || /MODDABLE/.test(p) || path.isAbsolute(p) || path.relative(root, path.resolve(root, p)).startsWith("..");
    if (outside) problem(C.CHECK_DEVICE_SDK_TYPINGS, `tsconfig.device.json reaches ${String(p)}: the check must use the project's own declarations, not the SDK's`);
  }
  for (const dir of ["src/device/sdk-typings", "src/device/typings"]) {
    for (const f of listTs(path.join(root, dir))) {
      if (SDK_COPYRIGHT.test(readFileSync(f, "utf8"))) problem(C.CHECK_DEVICE_SDK_TYPINGS, `${path.relative(root, f)} carries the SDK's copyright: declarations must be the project's own`);
    }
  }
  const tsc = path.join(REPO, "node_modules/typescript/bin/tsc");
  // One tsc run: --listFiles prints every file the program holds, after the diagnostics.
  const r = spawnSync(process.execPath, [tsc, "-p", configFile, "--noEmit", "--pretty", "false", "--listFiles"], { cwd: root, encoding: "utf8" });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.split(/\r?\n/).filter(Boolean);
  const listed = new Set(out.filter((l) => !/error TS\d+/.test(l)).map((f) => path.resolve(root, f.trim())));
  const deviceFiles = listTs(path.join(root, "src/device"));
  for (const f of deviceFiles) {
    if (!listed.has(path.resolve(f))) problem(C.CHECK_DEVICE_TYPES, `${path.relative(root, f)} is not type-checked by tsconfig.device.json`);
  }
  if (r.status !== 0) {
    const lines = out.filter((l) => /error TS\d+/.test(l));
    problem(C.CHECK_DEVICE_TYPES, `tsc -p tsconfig.device.json: ${lines.length} error(s)${lines.length ? `\n  ${lines.slice(0, 20).join("\n  ")}` : ` (exit ${String(r.status)})`}`);
  } else {
    notes.push(`types: ${deviceFiles.length} files under src/device type-checked with the project's SDK declarations`);
  }
}

function checkModules(root: string, manifest: Record<string, unknown>, problem: (code: string, message: string) => void): void {
  const C = CHECK_DEVICE_CODES;
  const include = Array.isArray(manifest.include) ? manifest.include : [];
  for (const inc of include) {
    if (typeof inc === "string" && inc.startsWith("./") && !existsSync(path.join(root, inc))) problem(C.CHECK_DEVICE_MODULES, `include ${inc} does not exist`);
  }
  const modules = isObject(manifest.modules) ? manifest.modules : {};
  for (const [name, target] of Object.entries(modules)) {
    for (const t of Array.isArray(target) ? target : [target]) {
      if (typeof t !== "string" || !t.startsWith("./")) continue;
      const dir = t.endsWith("/*") ? t.slice(0, -2) : path.dirname(t);
      if (!existsSync(path.join(root, dir))) problem(C.CHECK_DEVICE_MODULES, `modules["${name}"] → ${t}: ${dir} does not exist`);
    }
  }
  const creation = isObject(manifest.creation) ? manifest.creation : {};
  const main = creation.main;
  if (typeof main !== "string") { problem(C.CHECK_DEVICE_MODULES, "creation.main is not set"); return; }
  const slash = main.indexOf("/");
  const mapped = slash > 0 ? modules[`${main.slice(0, slash)}/*`] : undefined;
  const source = typeof mapped === "string" && mapped.endsWith("/*") ? path.join(root, mapped.slice(0, -2), `${main.slice(slash + 1)}.ts`) : undefined;
  if (source === undefined || !existsSync(source)) problem(C.CHECK_DEVICE_MODULES, `creation.main "${main}" has no source file through manifest.modules`);
}

function checkResources(manifest: Record<string, unknown>, problem: (code: string, message: string) => void): void {
  const C = CHECK_DEVICE_CODES;
  const resources = isObject(manifest.resources) ? manifest.resources : {};
  // The certificates are required; the signing key (signed images, docs/signing.md) is optional.
  const have = Object.keys(resources).map((k) => `${k}.der`).filter((n) => n !== SIGNING_KEY_RESOURCE).sort();
  const want = Object.values(CERT_RESOURCES).slice().sort();
  if (have.join(",") !== want.join(",")) problem(C.CHECK_DEVICE_RESOURCES, `resources give ${have.join(", ") || "nothing"}; src/device/resources.ts reads ${want.join(", ")} (and, optionally, ${SIGNING_KEY_RESOURCE})`);
  for (const [k, v] of Object.entries(resources)) {
    if (/^ca[0-9]*$/.test(k)) problem(C.CHECK_DEVICE_RESOURCES, `resource "${k}" would be trusted by SecureSocket as a CA besides the pinned one`);
    if (typeof v !== "string" || !v.endsWith(".der")) problem(C.CHECK_DEVICE_RESOURCES, `resource "${k}" must name a .der file`);
  }
}

function checkSdkconfig(dir: string, options: DeviceCheckOptions, problem: (code: string, message: string) => void, notes: string[]): number | undefined {
  const C = CHECK_DEVICE_CODES;
  const ours = path.join(dir, "sdkconfig.defaults");
  if (!existsSync(ours)) { problem(C.CHECK_DEVICE_SDKCONFIG, `${path.relative(options.root ?? REPO, ours)} does not exist`); return undefined; }
  const fragment = readFileSync(ours, "utf8");
  const releaseFragment = existsSync(`${ours}.release`) ? readFileSync(`${ours}.release`, "utf8") : undefined;
  const moddable = "moddable" in options ? options.moddable : process.env.MODDABLE;
  const sdkDir = moddable ? path.join(moddable, SDK_SDKCONFIG_DIR) : undefined;
  const haveSdk = sdkDir !== undefined && existsSync(path.join(sdkDir, "sdkconfig.defaults"));
  const merges: Array<[string, string]> = [];
  if (haveSdk) {
    const base = readFileSync(path.join(sdkDir, "sdkconfig.defaults"), "utf8");
    const sdkRelease = existsSync(path.join(sdkDir, "sdkconfig.defaults.release")) ? readFileSync(path.join(sdkDir, "sdkconfig.defaults.release"), "utf8") : "";
    merges.push(["debug", mergeSdkconfig(base, [fragment])]);
    merges.push(["release", mergeSdkconfig(base, [sdkRelease, fragment, ...(releaseFragment ? [releaseFragment] : [])])]);
    notes.push(`sdkconfig: merged over the SDK's ${SDK_SDKCONFIG_DIR}/sdkconfig.defaults (${moddable}), debug and release`);
  } else {
    merges.push(["ours alone", mergeSdkconfig("", [fragment])]);
    notes.push(`sdkconfig: no Moddable SDK (${moddable ? `${moddable} has no ${SDK_SDKCONFIG_DIR}` : "$MODDABLE not set"}): checked ${path.relative(options.root ?? REPO, ours)} alone; it must switch the SDK's skip-validation default off explicitly`);
    for (const name of SDKCONFIG_REQUIRED_OFF) {
      if (!new RegExp(`^${name}=n\\s*$`, "m").test(fragment)) problem(C.CHECK_DEVICE_SDKCONFIG, `${name}=n is not in ${path.relative(options.root ?? REPO, ours)}: the SDK's defaults set CONFIG_BOOTLOADER_SKIP_VALIDATE_ALWAYS=y, and only an explicit =n line undoes it in mcconfig's merge`);
    }
  }
  let flashSize: number | undefined;
  for (const [label, merged] of merges) {
    for (const name of SDKCONFIG_REQUIRED_ON) {
      if (!sdkconfigBool(merged, name)) problem(C.CHECK_DEVICE_SDKCONFIG, `merged sdkconfig (${label}) does not set ${name}=y`);
    }
    for (const name of SDKCONFIG_REQUIRED_OFF) {
      if (sdkconfigBool(merged, name)) problem(C.CHECK_DEVICE_SDKCONFIG, `merged sdkconfig (${label}) sets ${name}=y: the bootloader would boot an app without verifying it`);
    }
    flashSize ??= flashSizeOf(merged);
  }
  if (flashSize === undefined) problem(C.CHECK_DEVICE_SDKCONFIG, "the sdkconfig sets no CONFIG_ESPTOOLPY_FLASHSIZE=\"<n>MB\"");
  return flashSize;
}

function checkPartitions(file: string, flashSize: number | undefined, problem: (code: string, message: string) => void, notes: string[]): void {
  const C = CHECK_DEVICE_CODES;
  if (!existsSync(file) || !statSync(file).isFile()) { problem(C.CHECK_DEVICE_PARTITIONS, `${file} does not exist`); return; }
  try {
    const opts = flashSize === undefined ? {} : { flashSize };
    const entries = loadPartitionCsv(file, opts);
    validatePartitions(entries, opts);
    const slots = otaSlots(entries);
    if (slots.length < 2) problem(C.CHECK_DEVICE_PARTITIONS, `${slots.length} OTA app slot(s); OTA with rollback needs ota_0 and ota_1`);
    if (slots.length >= 2 && slots.some((s) => s.size !== slots[0]!.size)) problem(C.CHECK_DEVICE_PARTITIONS, "the OTA slots differ in size: an image that fits one may not fit the other");
    if (!entries.some((p) => p.type === PARTITION_TYPE.data && p.subtype === 0x02)) problem(C.CHECK_DEVICE_PARTITIONS, "no nvs partition (Preference and the OTA controller's record live there)");
    if (!entries.some((p) => p.type === PARTITION_TYPE.app && p.subtype === 0x00)) problem(C.CHECK_DEVICE_PARTITIONS, "no factory app: mcconfig's flash writes the app there and the bootloader's last fallback is gone");
    notes.push(`partitions: ${entries.length} entries, ${slots.length} OTA slots of ${slots[0]?.size ?? 0} bytes${flashSize ? `, within ${flashSize / 1048576} MB` : ""}`);
  } catch (e) {
    const code = e instanceof ShadowOtaError ? ` (${e.code})` : "";
    problem(C.CHECK_DEVICE_PARTITIONS, `${path.basename(file)}: ${e instanceof Error ? e.message : String(e)}${code}`);
  }
}

export function main(argv: readonly string[]): number {
  const options: DeviceCheckOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--root") options.root = argv[++i];
    else if (a === "--moddable") options.moddable = argv[++i];
    else if (a === "--no-types") options.types = false;
    else { console.error(`check-device: unknown argument ${a}\nusage: tsx scripts/check-device.ts [--root DIR] [--moddable DIR] [--no-types]`); return 2; }
  }
  const report = checkDevice(options);
  for (const n of report.notes) console.log(`  ${n}`);
  for (const p of report.problems) console.log(`${p.code}: ${p.message}`);
  if (report.problems.length === 0) {
    console.log("check:device: OK (types, manifest, partitions, sdkconfig)");
    return 0;
  }
  console.log(`check:device: ${report.problems.length} problem(s)`);
  return 1;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
