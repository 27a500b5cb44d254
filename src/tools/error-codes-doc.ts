/**
 * Generates docs/error-codes.md from the code tables themselves: every `*_CODES` object listed in SOURCES,
 * each code with the doc comment written above it in the source. The codes are a contract (they reach the
 * cloud in `reported.lastError`), so the list users read must be the list the code throws;
 * test/tools/error-codes-doc.test.ts fails when the committed file differs from what this prints.
 *
 * Usage: `tsx src/tools/error-codes-doc.ts` prints the document; `--write` writes docs/error-codes.md.
 * Not here: the codes themselves (they live beside the code that throws them).
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..");

/** The code tables, in the order the document lists them: [source file, exported table name, what it covers]. */
export const SOURCES: ReadonlyArray<readonly [string, string, string]> = [
  ["src/core/sync-errors.ts", "SYNC_CODES", "Cloud-twin sync: topics, documents, requests (src/core)"],
  ["src/core/semver.ts", "SEMVER_CODES", "Version strings (src/core/semver.ts)"],
  ["src/core/config-diff.ts", "CONFIG_DIFF_CODES", "Desired/reported diffs (src/core/config-diff.ts)"],
  ["src/core/update-errors.ts", "UPDATE_CODES", "OTA update controller: policy, self-test, rollback (src/core/ota-controller.ts)"],
  ["src/core/download-errors.ts", "DOWNLOAD_CODES", "Firmware download (the ByteSource port and its adapters)"],
  ["src/core/sas-token.ts", "SAS_CODES", "Azure SAS tokens and connection strings (src/core/sas-token.ts)"],
  ["src/core/log-mirror.ts", "LOG_CODES", "Logs to the cloud (src/core/log-mirror.ts)"],
  ["src/core/update-policy.ts", "POLICY_CODES", "Update window and consent from desired state (src/core/update-policy.ts; docs/rollout.md)"],
  ["src/native/ota-errors.ts", "OTA_CODES", "OTA slot and OTA policy (native module; the platform number travels in `platformCode`)"],
  ["src/device/device-errors.ts", "DEVICE_CODES", "The Moddable device app (src/device)"],
  ["src/sim/cloud-errors.ts", "CLOUD_CODES", "Local cloud services and store (src/sim; never sent to a device)"],
  ["src/sim/cloud-errors.ts", "ADMIN_CODES", "Local cloud admin HTTP API (src/sim/admin-http.ts, src/sim/fleet-page/fleet-http.ts; the `code` of an HTTP error body)"],
  ["src/sim/broker-policy.ts", "BROKER_CODES", "Local cloud brokers (src/sim/broker-*.ts)"],
  ["src/sim/pki.ts", "PKI_CODES", "Local certificate authority (src/sim/pki.ts)"],
  ["src/sim/mqtt-fault-proxy.ts", "PROXY_CODES", "MQTT fault proxy (src/sim/mqtt-fault-proxy.ts; tests and the CLI)"],
  ["src/sim/fleet-events.ts", "FLEET_CODES", "Fleet view and its webhook (src/sim/fleet-events.ts; docs/fleet-page.md; never sent to a device)"],
  ["src/sim/rollout-errors.ts", "ROLLOUT_CODES", "Staged rollouts (src/sim/rollout*.ts, `npm run cloud -- rollout`; docs/rollout.md; never sent to a device)"],
  ["src/node/file-kv.ts", "KV_CODES", "Node key-value store (src/node/file-kv.ts, the simulator's NVS)"],
  ["src/tools/esp-image.ts", "ESP_IMAGE_CODES", "ESP32 image tool (src/tools/esp-image.ts)"],
  ["src/tools/image-sign.ts", "IMAGE_SIGN_CODES", "Image signing (src/tools/image-sign.ts; docs/signing.md)"],
  ["src/tools/release-targets.ts", "RELEASE_CODES", "Release tool (`npm run release`, src/tools/release.ts; docs/release.md)"],
  ["src/tools/partition-table.ts", "PARTITION_TABLE_CODES", "Partition tables (src/tools/partition-table.ts)"],
  ["src/tools/flash-file.ts", "FLASH_FILE_CODES", "Host flash files (src/tools/flash-file.ts)"],
];

export interface CodeEntry {
  code: string;
  doc: string;
}

/** Folds a JSDoc comment body (the text between the delimiters) into one line. */
function foldComment(body: string): string {
  return body
    .split("\n")
    .map((l) => l.replace(/^\s*\*?\s?/, "").trim())
    .filter((l) => l.length > 0)
    .join(" ");
}

/**
 * Reads `export const NAME = { … } as const;` from TypeScript source text and returns each member with the
 * doc comment right above it. Throws when the table is missing, a member has no comment, or a member's
 * value is not its own name (the convention every table follows).
 */
export function readCodeTable(source: string, tableName: string, file = "<source>"): CodeEntry[] {
  const start = source.indexOf(`export const ${tableName} = {`);
  if (start < 0) throw new Error(`${file}: no 'export const ${tableName} = {'`);
  const end = source.indexOf("} as const;", start);
  if (end < 0) throw new Error(`${file}: ${tableName} does not end with '} as const;'`);
  const body = source.slice(source.indexOf("{", start) + 1, end);
  const out: CodeEntry[] = [];
  const member = /\/\*\*([\s\S]*?)\*\/\s*([A-Z][A-Z0-9_]*)\s*:\s*"([^"]*)"\s*,?|([A-Z][A-Z0-9_]*)\s*:/g;
  for (let m = member.exec(body); m !== null; m = member.exec(body)) {
    if (m[4] !== undefined) throw new Error(`${file}: ${tableName}.${m[4]} has no doc comment`);
    const [, comment, name, value] = m;
    if (name !== value) throw new Error(`${file}: ${tableName}.${name} has the value "${value}", not its name`);
    out.push({ code: name!, doc: foldComment(comment!) });
  }
  if (out.length === 0) throw new Error(`${file}: ${tableName} has no members`);
  return out;
}

/** The whole document. */
export function renderErrorCodes(read: (file: string) => string = (f) => readFileSync(path.join(ROOT, f), "utf8")): string {
  const lines: string[] = [
    "# Error codes",
    "",
    "Generated by `tsx src/tools/error-codes-doc.ts --write` from the code tables in the sources; do not edit by hand",
    "(test/tools/error-codes-doc.test.ts fails when this file and the sources disagree).",
    "",
    "Every failure shadow-ota reports is a `ShadowOtaError` (src/core/errors.ts) with one of these stable codes, and,",
    "for device failures, the platform's own number (`esp_err_t` on the ESP32, the host simulator's equal) in",
    "`platformCode`. The device puts `{code, message, platformCode?}` into its reported state. Codes are never renamed",
    "or reused with another meaning.",
    "",
  ];
  const seen = new Map<string, string>();
  for (const [file, table, title] of SOURCES) {
    const entries = readCodeTable(read(file), table, file);
    lines.push(`## ${title}`, "", `\`${table}\` in ${file}`, "", "| code | meaning |", "|---|---|");
    for (const e of entries) {
      // A code may be thrown by two modules with the same meaning (config-diff.ts and json.ts both throw
      // SYNC_DEPTH_EXCEEDED): list it in both places and point at the first.
      const other = seen.get(e.code);
      const also = other === undefined ? "" : ` (the same code as in ${other})`;
      if (other === undefined) seen.set(e.code, file);
      lines.push(`| \`${e.code}\` | ${e.doc.replace(/\|/g, "\\|")}${also} |`);
    }
    lines.push("");
  }
  return lines.join("\n");
}

export const DOC_PATH = path.join(ROOT, "docs", "error-codes.md");

if (require.main === module) {
  const text = renderErrorCodes();
  if (process.argv.includes("--write")) {
    writeFileSync(DOC_PATH, text);
    console.log(`wrote ${path.relative(process.cwd(), DOC_PATH)}`);
  } else {
    process.stdout.write(text);
  }
}
