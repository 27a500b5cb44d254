/**
 * The OTA controller's pure policy (src/core/ota-controller.ts: checkCandidate, checkRequest,
 * resolveFirmwareUrl, loadRecord) as vectors: the refusal a device reports for each candidate, request and
 * URL — code, message and detail, which reach the cloud in reported.firmwareUpdate.lastError — at the
 * edges of each rule, and what survives of a stored record. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import { checkCandidate, checkRequest, loadRecord, OtaController, OTA_KV_KEY, resolveFirmwareUrl } from "../../src/core/ota-controller";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";
import { ManualClock, MemoryKv, MemoryLog } from "./fake-ports";

const OK = { version: "1.1.0", projectName: "shadow-ota", chipId: 0, minChipRevFull: 0, maxChipRevFull: 0xffff };
const WANT = { version: "1.1.0", projectName: "shadow-ota", chipId: 0, chipRevFull: 300 };

function said(e: ShadowOtaError | "same" | undefined): unknown {
  if (e === undefined || e === "same") return e;
  return { code: e.code, message: e.message, detail: e.detail };
}

describe("checkCandidate: what the device says about an image it refuses", () => {
  it("a version that is not SemVer, shown safely and bounded", () => {
    expect(said(checkCandidate({ ...OK, version: "v5.1\u0001 x\u001f\u007f" }, WANT))).toEqual({
      code: "OTA_VERSION_NOT_SEMVER",
      message: "image version \"v5.1\\x01 x\\x1f\\x7f\" is not SemVer (ESP-IDF puts `git describe` there when no version is set): stamp it with `npm run image -- stamp in.bin --version 1.1.0 -o out.bin`",
      detail: { found: "v5.1\u0001 x\u001f\u007f", expected: "1.1.0" },
    });
    const long = "g".repeat(45);
    const e = checkCandidate({ ...OK, version: long }, WANT)!;
    expect(e.message.startsWith(`image version "${"g".repeat(40)}…" is not SemVer`)).toBe(true);
    expect(e.detail).toEqual({ found: "g".repeat(32), expected: "1.1.0" });
    const forty = checkCandidate({ ...OK, version: "h".repeat(40) }, WANT)!;
    expect(forty.message.startsWith(`image version "${"h".repeat(40)}" is not SemVer`)).toBe(true);
  });

  it("another version", () => {
    expect(said(checkCandidate({ ...OK, version: "1.2.0" }, WANT))).toEqual({
      code: "OTA_VERSION_MISMATCH", message: "image carries version 1.2.0, desired is 1.1.0", detail: { found: "1.2.0", expected: "1.1.0" },
    });
  });

  it("another project, its name shown safely and cut to 32 in detail", () => {
    const name = "other\u0002" + "p".repeat(40);
    const e = checkCandidate({ ...OK, projectName: name }, WANT)!;
    expect(e.code).toBe("OTA_PROJECT_MISMATCH");
    expect(e.message).toBe(`image is for project "other\\x02${"p".repeat(34)}…", this device runs "shadow-ota"`);
    expect(e.detail).toEqual({ found: name.slice(0, 32), expected: "shadow-ota" });
  });

  it("another chip; unchecked when either side does not say", () => {
    expect(said(checkCandidate({ ...OK, chipId: 5 }, WANT))).toEqual({
      code: "OTA_CHIP_MISMATCH", message: "image is built for chip id 5, this device is chip id 0", detail: { found: 5, expected: 0 },
    });
    const { chipId: _omit, ...noChip } = WANT;
    expect(checkCandidate({ ...OK, chipId: 5 }, noChip)).toBeUndefined();
  });

  it("chip revisions: below the minimum, above a set maximum, at both limits", () => {
    expect(said(checkCandidate({ ...OK, minChipRevFull: 301 }, WANT))).toEqual({
      code: "OTA_CHIP_REVISION", message: "image needs chip revision v3.1 or newer, this chip is v3.0",
      detail: { minChipRevFull: 301, maxChipRevFull: 0xffff, chipRevFull: 300 },
    });
    expect(said(checkCandidate({ version: "1.1.0", projectName: "shadow-ota", minChipRevFull: 301 }, WANT))).toEqual({
      code: "OTA_CHIP_REVISION", message: "image needs chip revision v3.1 or newer, this chip is v3.0",
      detail: { minChipRevFull: 301, maxChipRevFull: null, chipRevFull: 300 },
    });
    expect(said(checkCandidate({ ...OK, maxChipRevFull: 299 }, WANT))).toEqual({
      code: "OTA_CHIP_REVISION", message: "image supports chip revisions up to v2.99, this chip is v3.0",
      detail: { minChipRevFull: 0, maxChipRevFull: 299, chipRevFull: 300 },
    });
    expect(said(checkCandidate({ version: "1.1.0", projectName: "shadow-ota", maxChipRevFull: 299 }, WANT))).toEqual({
      code: "OTA_CHIP_REVISION", message: "image supports chip revisions up to v2.99, this chip is v3.0",
      detail: { minChipRevFull: null, maxChipRevFull: 299, chipRevFull: 300 },
    });
    expect(checkCandidate({ ...OK, minChipRevFull: 300, maxChipRevFull: 300 }, WANT)).toBeUndefined();
    expect(checkCandidate({ ...OK, maxChipRevFull: 0 }, WANT)).toBeUndefined();
    expect(checkCandidate({ ...OK, maxChipRevFull: 1 }, WANT)?.code).toBe("OTA_CHIP_REVISION");
    const { chipRevFull: _r, ...noRev } = WANT;
    expect(checkCandidate({ ...OK, minChipRevFull: 999, maxChipRevFull: 1 }, noRev)).toBeUndefined();
  });
});

describe("checkRequest", () => {
  it("a downgrade names both versions; allowed by configuration; a newer one or the same goes ahead", () => {
    expect(said(checkRequest("0.9.0", "1.0.0", false))).toEqual({
      code: "OTA_DOWNGRADE_REFUSED", message: "0.9.0 is older than the running 1.0.0; downgrades are not allowed by configuration",
      detail: { requested: "0.9.0", running: "1.0.0" },
    });
    expect(checkRequest("0.9.0", "1.0.0", true)).toBeUndefined();
    expect(checkRequest("1.0.1", "1.0.0", false)).toBeUndefined();
    expect(checkRequest("1.0.0+b", "1.0.0", true)).toBe("same");
  });
  it("a version that is not SemVer is refused with the parser's reason", () => {
    const e = checkRequest("1.0", "1.0.0", false) as ShadowOtaError;
    expect([e.code, e.message]).toEqual(["VERSION_INVALID", "patch version is missing (expected MAJOR.MINOR.PATCH)"]);
  });
});

describe("resolveFirmwareUrl", () => {
  const src = { naming: "aws" as const, baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] };
  it("builds the seed's name under an allowed https base", () => {
    expect(resolveFirmwareUrl(src, "1.2.3")).toBe("https://blobs.example/fw/1.2.3.bin");
    expect(resolveFirmwareUrl(src, "1.2.3", "https://blobs.example/")).toBe("https://blobs.example/1.2.3.bin");
  });
  it.each([
    "http://blobs.example/fw/", "https://blobs.example/fw", "https://blobs.example", "xhttps://blobs.example/fw/",
    "https://blobs.example/fw/?x=/", "https://blobs.example/f w/", "https://blobs.example/fw/#/", "https:///fw/", "",
  ])("refuses the base %j: not https or not ending in /", (base) => {
    let err: ShadowOtaError | undefined;
    try { resolveFirmwareUrl(src, "1.2.3", base); } catch (e) { err = e as ShadowOtaError; }
    expect(err?.code).toBe("DOWNLOAD_URL_INVALID");
    expect(err?.message.startsWith("firmware base URL ")).toBe(true);
  });
  it("says why, with the base shown safely", () => {
    let err: ShadowOtaError | undefined;
    try { resolveFirmwareUrl(src, "1.2.3", "http://x/\u0001"); } catch (e) { err = e as ShadowOtaError; }
    expect(err?.message).toBe('firmware base URL must be https and end with "/": http://x/\\x01');
  });
  it("refuses a host not on the allow-list, naming it", () => {
    let err: ShadowOtaError | undefined;
    try { resolveFirmwareUrl(src, "1.2.3", "https://evil.example/fw/"); } catch (e) { err = e as ShadowOtaError; }
    expect(said(err)).toEqual({ code: "DOWNLOAD_HOST_NOT_ALLOWED", message: "host evil.example is not on the firmware allow-list", detail: { host: "evil.example" } });
  });
});

describe("loadRecord: what survives of a stored record", () => {
  const kv = (v: unknown) => { const m = new MemoryKv(); m.set(OTA_KV_KEY, typeof v === "string" ? v : JSON.stringify(v)); return m; };
  it("every field of its type, the rest dropped or defaulted", () => {
    expect(loadRecord(kv({ state: "Downloading", from: "1.0.0", to: "1.1.0", url: "https://u/", etag: '"e"', durable: 4096, total: 9000, attempt: 2,
      lastError: { code: "X", message: "m", platformCode: 7, time: 5 } }))).toEqual({ record: {
      state: "Downloading", from: "1.0.0", to: "1.1.0", url: "https://u/", etag: '"e"', durable: 4096, total: 9000, attempt: 2,
      lastError: { code: "X", message: "m", platformCode: 7, time: 5 } } });
    expect(loadRecord(kv({ state: "Failed", from: 1, to: null, url: 2, etag: false, durable: -1, total: 1.5, attempt: "2",
      lastError: { code: "X", message: "m", platformCode: "7" } }))).toEqual({ record: {
      state: "Failed", durable: 0, attempt: 0, lastError: { code: "X", message: "m", time: 0 } } });
    expect(loadRecord(kv({ state: "Failed", durable: 0, total: 0, attempt: 0, lastError: { code: 1, message: "m" } })))
      .toEqual({ record: { state: "Failed", durable: 0, total: 0, attempt: 0 } });
    expect(loadRecord(kv({ state: "Failed", durable: 2 ** 53, lastError: { code: "X" } }))).toEqual({ record: { state: "Failed", durable: 0, attempt: 0 } });
  });
  it("an unknown state or unreadable text is a fresh Idle record with the reason", () => {
    expect(loadRecord(kv({ state: "Flashing" }))).toEqual({ record: { state: "Idle", durable: 0, attempt: 0 }, error: "record has no known state" });
    expect(loadRecord(kv({ state: 3 }))).toEqual({ record: { state: "Idle", durable: 0, attempt: 0 }, error: "record has no known state" });
    expect(loadRecord(kv("[]"))).toEqual({ record: { state: "Idle", durable: 0, attempt: 0 }, error: "record has no known state" });
    expect(loadRecord(kv("{"))).toEqual({ record: { state: "Idle", durable: 0, attempt: 0 }, error: "payload is not valid JSON" });
    expect(loadRecord(new MemoryKv())).toEqual({ record: { state: "Idle", durable: 0, attempt: 0 } });
  });
  it("the controller logs an unreadable record and starts Idle", () => {
    const log = new MemoryLog();
    const flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
    const ota = new OtaController({ slot: new FakeSlot(flash), source: new FakeSource(fakeImage()), kv: kv("{"), clock: new ManualClock(), log, restart: new RecordingRestart() },
      { source: { naming: "aws", baseUrl: "https://b/", allowedHosts: ["b"] }, projectName: "shadow-ota" }, { report: () => Promise.resolve() });
    expect(ota.state).toBe("Idle");
    expect(log.lines.filter((l) => l.event === "ota.record.unreadable")).toEqual([{ level: "warn", event: "ota.record.unreadable", fields: { message: "payload is not valid JSON" } }]);
    const quiet = new MemoryLog();
    new OtaController({ slot: new FakeSlot(flash), source: new FakeSource(fakeImage()), kv: new MemoryKv(), clock: new ManualClock(), log: quiet, restart: new RecordingRestart() },
      { source: { naming: "aws", baseUrl: "https://b/", allowedHosts: ["b"] }, projectName: "shadow-ota" }, { report: () => Promise.resolve() });
    expect(quiet.lines).toEqual([]);
  });
});
