/**
 * The error codes of the OTA slot (OTA_CODES) and the mapping from the C core's numbers (ESP-IDF's
 * esp_err_t values plus the core's 0x7100 validator range and the host simulator's 0x7200 range, all
 * listed in src/native/core/ota_errors.h) to those codes. Shared by the N-API wrapper and the xsmc one, and
 * by the OTA policy (downgrade / project checks), whose codes live here too.
 *
 * Not here: any I/O. Imports nothing from Node, so it also runs on XS.
 */
import { ShadowOtaError } from "../core/errors";

/** Stable codes (a contract: they reach the cloud in the reported state). */
export const OTA_CODES = {
  /** First byte is not 0xE9 (an HTML error page, a wrong file). platform 0x7101 */
  OTA_IMAGE_BAD_MAGIC: "OTA_IMAGE_BAD_MAGIC",
  /** segment_count is 0 or more than 16. platform 0x7102 */
  OTA_IMAGE_BAD_SEGMENT_COUNT: "OTA_IMAGE_BAD_SEGMENT_COUNT",
  /** chip_id is not this device's chip. platform 0x7103 */
  OTA_IMAGE_WRONG_CHIP: "OTA_IMAGE_WRONG_CHIP",
  /** App descriptor missing (magic not 0xABCD5432, first segment too short). platform 0x7104 */
  OTA_IMAGE_BAD_DESCRIPTOR: "OTA_IMAGE_BAD_DESCRIPTOR",
  /** A segment length is not a multiple of 4. platform 0x7105 */
  OTA_IMAGE_SEGMENT_UNALIGNED: "OTA_IMAGE_SEGMENT_UNALIGNED",
  /** XOR checksum mismatch. platform 0x7106 */
  OTA_IMAGE_BAD_CHECKSUM: "OTA_IMAGE_BAD_CHECKSUM",
  /** Appended SHA-256 mismatch. platform 0x7107 */
  OTA_IMAGE_BAD_HASH: "OTA_IMAGE_BAD_HASH",
  /** The stream ended inside the image. platform 0x7108 */
  OTA_IMAGE_TRUNCATED: "OTA_IMAGE_TRUNCATED",
  /** The image does not fit the slot. platform 0x7109 */
  OTA_IMAGE_TOO_LARGE: "OTA_IMAGE_TOO_LARGE",
  /** Bytes after the end of the image. platform 0x710A */
  OTA_IMAGE_TRAILING_DATA: "OTA_IMAGE_TRAILING_DATA",
  /** No SHA-256 appended but one is required. platform 0x710B */
  OTA_IMAGE_HASH_MISSING: "OTA_IMAGE_HASH_MISSING",
  /** A segment (or the image end) lies past the declared image size. platform 0x710C */
  OTA_IMAGE_PAST_END: "OTA_IMAGE_PAST_END",
  /** Zero bytes were streamed. platform 0x710D */
  OTA_IMAGE_EMPTY: "OTA_IMAGE_EMPTY",
  /** resume: the slot's prefix is not an image prefix; begin again. platform 0x710E */
  OTA_RESUME_MISMATCH: "OTA_RESUME_MISMATCH",
  /** The image in flash does not verify (read-back after end, or at set-boot). platform 0x1503, 0x2002 */
  OTA_IMAGE_INVALID: "OTA_IMAGE_INVALID",
  /** secure_version below the anti-rollback floor. platform 0x1504 */
  OTA_SECURE_VERSION_TOO_LOW: "OTA_SECURE_VERSION_TOO_LOW",
  /** The target slot is the running one. platform 0x1501 */
  OTA_PARTITION_CONFLICT: "OTA_PARTITION_CONFLICT",
  /** otadata cannot be read. platform 0x1502 */
  OTA_SELECT_INFO_INVALID: "OTA_SELECT_INFO_INVALID",
  /** markInvalidAndReboot with no other app to boot. platform 0x1505 */
  OTA_ROLLBACK_FAILED: "OTA_ROLLBACK_FAILED",
  /** begin while the running app is still PENDING_VERIFY: confirm it first. platform 0x1506 */
  OTA_PENDING_VERIFY: "OTA_PENDING_VERIFY",
  /** The call is not allowed now (write before begin, write before accept, setBoot before end). 0x103 */
  OTA_INVALID_STATE: "OTA_INVALID_STATE",
  /** The platform refused an argument. platform 0x102 */
  OTA_INVALID_ARG: "OTA_INVALID_ARG",
  /** A size is wrong (declared image size larger than the slot). platform 0x104 */
  OTA_INVALID_SIZE: "OTA_INVALID_SIZE",
  /** No such partition (no OTA slot, not booted yet). platform 0x105 */
  OTA_NOT_FOUND: "OTA_NOT_FOUND",
  /** Not supported for this partition (e.g. the state of the factory app). platform 0x106 */
  OTA_NOT_SUPPORTED: "OTA_NOT_SUPPORTED",
  /** Out of memory. platform 0x101 */
  OTA_NO_MEMORY: "OTA_NO_MEMORY",
  /** A flash read/erase/program failed. platform 0x6000..0x60FF, 0x2001 */
  OTA_FLASH_ERROR: "OTA_FLASH_ERROR",
  /** Host simulator: the injected power cut fired. platform 0x7201 */
  OTA_POWER_LOST: "OTA_POWER_LOST",
  /** Host simulator: the flash file could not be opened or mapped (`detail.errno`). platform 0x7202 */
  OTA_FLASH_FILE_ERROR: "OTA_FLASH_FILE_ERROR",
  /** Host simulator: no valid partition table at 0x8000. platform 0x7203 */
  OTA_PARTITION_TABLE_INVALID: "OTA_PARTITION_TABLE_INVALID",
  /** Simulated bootloader: no app verifies — the device is bricked. platform 0x7204 */
  OTA_NO_BOOTABLE_APP: "OTA_NO_BOOTABLE_APP",
  /** Any other platform number (kept in platformCode). */
  OTA_PLATFORM_ERROR: "OTA_PLATFORM_ERROR",
  /** The native module is not built or cannot be loaded (run `npm run build:native`). */
  OTA_NATIVE_UNAVAILABLE: "OTA_NATIVE_UNAVAILABLE",
  /** Policy: the candidate's version is not newer than the running one. */
  OTA_DOWNGRADE_REFUSED: "OTA_DOWNGRADE_REFUSED",
  /** Policy: the candidate's project_name is not this firmware's. */
  OTA_PROJECT_MISMATCH: "OTA_PROJECT_MISMATCH",
} as const;

export type OtaCode = (typeof OTA_CODES)[keyof typeof OTA_CODES];

const BY_NUMBER: ReadonlyMap<number, OtaCode> = new Map<number, OtaCode>([
  [0x7101, OTA_CODES.OTA_IMAGE_BAD_MAGIC],
  [0x7102, OTA_CODES.OTA_IMAGE_BAD_SEGMENT_COUNT],
  [0x7103, OTA_CODES.OTA_IMAGE_WRONG_CHIP],
  [0x7104, OTA_CODES.OTA_IMAGE_BAD_DESCRIPTOR],
  [0x7105, OTA_CODES.OTA_IMAGE_SEGMENT_UNALIGNED],
  [0x7106, OTA_CODES.OTA_IMAGE_BAD_CHECKSUM],
  [0x7107, OTA_CODES.OTA_IMAGE_BAD_HASH],
  [0x7108, OTA_CODES.OTA_IMAGE_TRUNCATED],
  [0x7109, OTA_CODES.OTA_IMAGE_TOO_LARGE],
  [0x710a, OTA_CODES.OTA_IMAGE_TRAILING_DATA],
  [0x710b, OTA_CODES.OTA_IMAGE_HASH_MISSING],
  [0x710c, OTA_CODES.OTA_IMAGE_PAST_END],
  [0x710d, OTA_CODES.OTA_IMAGE_EMPTY],
  [0x710e, OTA_CODES.OTA_RESUME_MISMATCH],
  [0x1501, OTA_CODES.OTA_PARTITION_CONFLICT],
  [0x1502, OTA_CODES.OTA_SELECT_INFO_INVALID],
  [0x1503, OTA_CODES.OTA_IMAGE_INVALID],
  [0x1504, OTA_CODES.OTA_SECURE_VERSION_TOO_LOW],
  [0x1505, OTA_CODES.OTA_ROLLBACK_FAILED],
  [0x1506, OTA_CODES.OTA_PENDING_VERIFY],
  [0x2001, OTA_CODES.OTA_FLASH_ERROR],
  [0x2002, OTA_CODES.OTA_IMAGE_INVALID],
  [0x101, OTA_CODES.OTA_NO_MEMORY],
  [0x102, OTA_CODES.OTA_INVALID_ARG],
  [0x103, OTA_CODES.OTA_INVALID_STATE],
  [0x104, OTA_CODES.OTA_INVALID_SIZE],
  [0x105, OTA_CODES.OTA_NOT_FOUND],
  [0x106, OTA_CODES.OTA_NOT_SUPPORTED],
  [0x7201, OTA_CODES.OTA_POWER_LOST],
  [0x7202, OTA_CODES.OTA_FLASH_FILE_ERROR],
  [0x7203, OTA_CODES.OTA_PARTITION_TABLE_INVALID],
  [0x7204, OTA_CODES.OTA_NO_BOOTABLE_APP],
]);

/** The stable code for a platform number (esp_err_t or simulator number). */
export function otaCodeFor(platformCode: number): OtaCode {
  const code = BY_NUMBER.get(platformCode);
  if (code !== undefined) return code;
  if (platformCode >= 0x6000 && platformCode <= 0x60ff) return OTA_CODES.OTA_FLASH_ERROR;
  return OTA_CODES.OTA_PLATFORM_ERROR;
}

/** The numbers a size refusal carries (ota_size_refusal_t in ota_writer.h), as both bindings name them. */
const SIZE_FIELDS = ["neededBytes", "imageSize", "slotSize"] as const;

/** The sentence a size refusal adds to the native message, e.g. "the image needs at least 977776 bytes, the
 *  slot holds 262144". */
function sizeSentence(size: Partial<Record<(typeof SIZE_FIELDS)[number], number>>): string {
  const parts: string[] = [];
  if (size.neededBytes !== undefined) parts.push(`the image needs at least ${size.neededBytes} bytes`);
  if (size.imageSize !== undefined) parts.push(`the declared image size is ${size.imageSize} bytes`);
  if (size.slotSize !== undefined) parts.push(`the slot holds ${size.slotSize}`);
  return parts.join(", ");
}

/**
 * Turns what a native binding threw into a ShadowOtaError. Native errors carry a numeric `platformCode`
 * (and `errno` for file errors; a size refusal also `neededBytes` / `imageSize` / `slotSize`, which go into
 * `detail` and the message); TypeError / RangeError (bad arguments: a bug in the caller) and anything
 * without a platform code are returned unchanged so they are not disguised as device failures.
 */
export function otaErrorFromNative(e: unknown, operation: string): unknown {
  if (e instanceof TypeError || e instanceof RangeError) return e;
  if (typeof e !== "object" || e === null) return e;
  const platformCode = (e as { platformCode?: unknown }).platformCode;
  if (typeof platformCode !== "number") return e;
  const message = (e as { message?: unknown }).message;
  const errno = (e as { errno?: unknown }).errno;
  const detail: Record<string, string | number | boolean | null> = { operation };
  if (typeof errno === "number") detail.errno = errno;
  const size: Partial<Record<(typeof SIZE_FIELDS)[number], number>> = {};
  for (const field of SIZE_FIELDS) {
    const v = (e as Record<string, unknown>)[field];
    if (typeof v === "number") size[field] = detail[field] = v;
  }
  let text = typeof message === "string" ? message : `${operation} failed`;
  if (Object.keys(size).length > 0) text += `: ${sizeSentence(size)}`;
  return new ShadowOtaError(otaCodeFor(platformCode), text, { platformCode, cause: e, detail });
}
