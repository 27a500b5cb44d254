/**
 * The error codes are a contract: they reach the cloud in `reported.lastError.code` and
 * `reported.firmwareUpdate.lastError.code`, and dashboards and docs/error-codes.md match on them. Each code's
 * value is its own SCREAMING_SNAKE name with its module's prefix, no two modules share one, and
 * ShadowOtaError carries what the reported state needs. Which download failures are retried is the policy
 * the OTA controller builds on (docs/ota-update.md). Jest subset only (runs on XS too).
 */
import { DOWNLOAD_CODES, isRetryableDownloadError } from "../../src/core/download-errors";
import { isShadowOtaError, ShadowOtaError } from "../../src/core/errors";
import { SEMVER_CODES } from "../../src/core/semver";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { UPDATE_CODES } from "../../src/core/update-errors";

const TABLES: Array<[string, Record<string, string>, string]> = [
  ["SYNC_CODES", SYNC_CODES, "SYNC_"],
  ["UPDATE_CODES", UPDATE_CODES, "OTA_"],
  ["DOWNLOAD_CODES", DOWNLOAD_CODES, "DOWNLOAD_"],
];

describe("error code tables", () => {
  it.each(TABLES)("%s: every code's value is its own name, with the module's prefix", (_name, table, prefix) => {
    const entries = Object.entries(table);
    expect(entries.length).toBeGreaterThan(0);
    for (const [key, value] of entries) {
      expect(value).toBe(key);
      expect(value.startsWith(prefix)).toBe(true);
      expect(/^[A-Z][A-Z0-9_]*$/.test(value)).toBe(true);
    }
  });

  it("no code appears in two tables", () => {
    const all = [...TABLES.map(([, t]) => t), SEMVER_CODES as Record<string, string>].flatMap((t) => Object.values(t));
    expect(new Set(all).size).toBe(all.length);
  });

  it("holds the codes the docs and the cloud rely on", () => {
    expect(Object.keys(SYNC_CODES)).toEqual([
      "SYNC_JSON_INVALID", "SYNC_ENCODING_INVALID", "SYNC_PAYLOAD_TOO_LARGE", "SYNC_DEPTH_EXCEEDED",
      "SYNC_DOCUMENT_INVALID", "SYNC_TOPIC_INVALID", "SYNC_NAME_INVALID", "SYNC_CLIENT_TOKEN_INVALID",
      "SYNC_VERSION_STALE", "SYNC_VERSION_CONFLICT", "SYNC_REJECTED", "SYNC_TIMEOUT", "SYNC_NOT_CONNECTED",
      "SYNC_TRANSPORT", "SYNC_FIRMWARE_VERSION_INVALID",
    ]);
    expect(Object.keys(UPDATE_CODES)).toEqual([
      "OTA_DOWNGRADE_REFUSED", "OTA_PROJECT_MISMATCH", "OTA_VERSION_MISMATCH", "OTA_VERSION_NOT_SEMVER",
      "OTA_CHIP_MISMATCH", "OTA_CHIP_REVISION", "OTA_UPDATE_WHILE_PENDING", "OTA_URL_UNAVAILABLE",
      "OTA_SELF_TEST_TIMEOUT", "OTA_SELF_TEST_FAILED", "OTA_ROLLED_BACK", "OTA_RETRIES_EXHAUSTED",
      "OTA_UNEXPECTED_VERSION", "OTA_UPDATE_CANCELLED", "OTA_INTERNAL",
    ]);
    expect(Object.keys(DOWNLOAD_CODES)).toEqual([
      "DOWNLOAD_URL_INVALID", "DOWNLOAD_HOST_NOT_ALLOWED", "DOWNLOAD_CONNECT", "DOWNLOAD_TLS", "DOWNLOAD_TIMEOUT",
      "DOWNLOAD_HTTP_STATUS", "DOWNLOAD_REDIRECT_REFUSED", "DOWNLOAD_RANGE_INVALID", "DOWNLOAD_NOT_AN_IMAGE",
      "DOWNLOAD_TRUNCATED", "DOWNLOAD_TOO_LONG", "DOWNLOAD_BAD_RESPONSE", "DOWNLOAD_OVERRUN", "DOWNLOAD_ABORTED",
    ]);
  });
});

describe("ShadowOtaError", () => {
  it("carries code, message, platform code, cause and detail, and is an Error named ShadowOtaError", () => {
    const cause = new Error("socket closed");
    const e = new ShadowOtaError("OTA_IMAGE_INVALID", "bad image", { platformCode: 0x1503, cause, detail: { offset: 4096 } });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe("ShadowOtaError");
    expect(e.code).toBe("OTA_IMAGE_INVALID");
    expect(e.message).toBe("bad image");
    expect(e.platformCode).toBe(0x1503);
    expect(e.cause).toBe(cause);
    expect(e.detail).toEqual({ offset: 4096 });
    expect(String(e)).toBe("ShadowOtaError: bad image");
  });

  it("its name is an own property that is not enumerated (not in JSON or keys) and can be changed or removed", () => {
    const e = new ShadowOtaError("X_Y", "m");
    expect(Object.prototype.hasOwnProperty.call(e, "name")).toBe(true);
    expect(Object.keys(e)).not.toContain("name");
    expect(JSON.parse(JSON.stringify(e)).name).toBeUndefined();
    (e as { name: string }).name = "Renamed";
    expect(e.name).toBe("Renamed");
    expect(delete (e as { name?: string }).name).toBe(true);
    expect(e.name).toBe("Error");
  });

  it("reports {code, message} and the platform code only when there is one", () => {
    expect(new ShadowOtaError("SYNC_TIMEOUT", "no answer").toReported()).toStrictEqual({ code: "SYNC_TIMEOUT", message: "no answer" });
    expect(new ShadowOtaError("OTA_IMAGE_INVALID", "bad", { platformCode: 0 }).toReported())
      .toStrictEqual({ code: "OTA_IMAGE_INVALID", message: "bad", platformCode: 0 });
    const plain = new ShadowOtaError("X_Y", "m");
    expect(plain.platformCode).toBeUndefined();
    expect(plain.cause).toBeUndefined();
    expect(plain.detail).toBeUndefined();
  });

  it("isShadowOtaError tells its errors from others, optionally by code", () => {
    const e = new ShadowOtaError("SYNC_TIMEOUT", "no answer");
    expect(isShadowOtaError(e)).toBe(true);
    expect(isShadowOtaError(e, "SYNC_TIMEOUT")).toBe(true);
    expect(isShadowOtaError(e, "SYNC_TRANSPORT")).toBe(false);
    const lookalike = Object.assign(new Error("no answer"), { code: "SYNC_TIMEOUT" });
    expect(isShadowOtaError(lookalike)).toBe(false);
    expect(isShadowOtaError(undefined)).toBe(false);
  });
});

describe("isRetryableDownloadError", () => {
  const err = (code: string, detail?: Record<string, number | string>) =>
    new ShadowOtaError(code, "x", detail === undefined ? {} : { detail });

  it("retries network trouble, truncation, bad ranges and responses, overruns", () => {
    for (const code of ["DOWNLOAD_CONNECT", "DOWNLOAD_TIMEOUT", "DOWNLOAD_TRUNCATED", "DOWNLOAD_RANGE_INVALID", "DOWNLOAD_BAD_RESPONSE", "DOWNLOAD_OVERRUN"]) {
      expect(isRetryableDownloadError(err(code))).toBe(true);
    }
  });

  it("does not retry what another attempt cannot fix", () => {
    for (const code of ["DOWNLOAD_URL_INVALID", "DOWNLOAD_HOST_NOT_ALLOWED", "DOWNLOAD_TLS", "DOWNLOAD_REDIRECT_REFUSED",
      "DOWNLOAD_NOT_AN_IMAGE", "DOWNLOAD_TOO_LONG", "DOWNLOAD_ABORTED", "OTA_IMAGE_INVALID"]) {
      expect(isRetryableDownloadError(err(code))).toBe(false);
    }
    expect(isRetryableDownloadError(new Error("DOWNLOAD_CONNECT"))).toBe(false);
    expect(isRetryableDownloadError(Object.assign(new Error("x"), { code: "DOWNLOAD_CONNECT" }))).toBe(false);
  });

  it("retries HTTP 408, 429 and 5xx, not other statuses or a status that is not a number", () => {
    const status = (s: number | string) => isRetryableDownloadError(err("DOWNLOAD_HTTP_STATUS", { status: s }));
    expect([408, 429, 500, 503, 599].map(status)).toEqual([true, true, true, true, true]);
    expect([400, 403, 404, 407, 409, 428, 430, 499].map(status)).toEqual([false, false, false, false, false, false, false, false]);
    expect(status("503")).toBe(false);
    expect(isRetryableDownloadError(err("DOWNLOAD_HTTP_STATUS"))).toBe(false);
  });
});
