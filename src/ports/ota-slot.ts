/**
 * Port: the OTA slot — writing a new app image into the inactive slot and switching boots, in ESP-IDF's
 * verbs (esp_ota_begin / esp_ota_resume / esp_ota_write / esp_ota_end / esp_ota_abort /
 * esp_ota_set_boot_partition / esp_ota_mark_app_valid_cancel_rollback /
 * esp_ota_mark_app_invalid_rollback_and_reboot / esp_ota_get_state_partition).
 *
 * Satisfied by the N-API binding over the host flash (src/native/ota-slot.ts) and by the xsmc binding on
 * the ESP32 / Moddable simulator (src/native/xs/). Both run the same C core (src/native/core/), so an
 * image refused on Node is refused on the device with the same code.
 *
 * The descriptor gate: `write` keeps the first 288 bytes (header + first segment header + app descriptor)
 * in RAM and returns the candidate's descriptor on the call that completes them. Nothing is written to
 * flash until `accept()`; `abort()` instead leaves the flash untouched. So the caller's policy (right
 * project, no downgrade) runs before the first erase.
 *
 * Errors: every method throws ShadowOtaError with a code from OTA_CODES (src/native/ota-errors.ts) and the
 * platform's own number in `platformCode`; TypeError / RangeError only for bad arguments.
 * Not here: policy, retries, HTTP, state persistence (the OTA state machine in the core owns those).
 */

/** esp_app_desc_t, decoded (strings as Latin-1 so that no byte of a hostile image is lost). */
export interface AppDescriptor {
  readonly magicWord: number;
  readonly secureVersion: number;
  readonly version: string;
  readonly projectName: string;
  readonly time: string;
  readonly date: string;
  readonly idfVer: string;
  /** 64 lowercase hex characters. */
  readonly appElfSha256: string;
  /** From the image header (esp_image_header_t), returned with the descriptor by both bindings:
   *  chip_id, min_chip_rev_full and max_chip_rev_full (major * 100 + minor; 0xffff = no maximum).
   *  Optional for images read by older bindings; the OTA controller checks them when present. */
  readonly chipId?: number;
  readonly minChipRevFull?: number;
  readonly maxChipRevFull?: number;
}

/** esp_ota_img_states_t, ESP-IDF's words. "UNDEFINED" also stands for any value the bootloader does not know. */
export type OtaImageState = "NEW" | "PENDING_VERIFY" | "VALID" | "INVALID" | "ABORTED" | "UNDEFINED";

/** One partition table entry. */
export interface OtaPartitionInfo {
  readonly label: string;
  readonly type: number;
  readonly subtype: number;
  readonly address: number;
  readonly size: number;
}

export interface OtaBeginOptions {
  /** Declared image length (HTTP Content-Length); omitted = unknown. Larger than the slot: OTA_INVALID_SIZE. */
  imageSize?: number;
  /** Refuse images without an appended SHA-256 (default true). */
  requireHash?: boolean;
  /** Anti-rollback floor for the descriptor's secure_version (default 0). */
  minSecureVersion?: number;
  /** The trusted ECDSA P-256 public key (91-byte DER SubjectPublicKeyInfo). With it, end() refuses an image
   *  without a signature block (OTA_SIGNATURE_MISSING) or signed otherwise (OTA_SIGNATURE_INVALID) before
   *  setBootPartition can run; without it, a well-formed block is accepted unchecked. docs/signing.md. */
  signingKey?: Uint8Array;
}

export interface OtaSlot {
  /** Starts writing into the next update partition (returned). Writes nothing yet.
   *  Throws OTA_PENDING_VERIFY while the running app is unconfirmed, OTA_INVALID_SIZE, OTA_NOT_FOUND. */
  begin(options?: OtaBeginOptions): OtaPartitionInfo;
  /** Continues an interrupted download: `offset` = bytes known written. Returns the offset to restart the
   *  stream from (rounded down to a 4 KiB sector; 0 = start over, the descriptor gate applies again).
   *  When > 0, `candidateDescriptor()` describes the stored image: compare it with what you expect.
   *  Throws OTA_RESUME_MISMATCH when the flash prefix is not an image prefix, and begin's errors. */
  resume(offset: number, options?: OtaBeginOptions): number;
  /** Streams a chunk. Returns the candidate's descriptor on the call that completed the first 288 bytes,
   *  else undefined; after it, call accept() (or abort()) before writing on — the rest of that chunk is
   *  kept and written by accept(). Throws OTA_IMAGE_* codes as soon as the bytes are refused. */
  write(chunk: Uint8Array): AppDescriptor | undefined;
  /** Accepts the candidate: the first sector is erased and the buffered bytes are written. */
  accept(): void;
  /** The stream is over: checks completeness, then re-reads and re-verifies the image in flash. */
  end(): void;
  /** Drops the session; safe in any state and twice. Never throws. */
  abort(): void;
  /** Boots the ended image next (state NEW). Throws OTA_INVALID_STATE before a successful end(). */
  setBootPartition(): void;
  /** The partition the running app booted from. */
  runningPartition(): OtaPartitionInfo;
  /** The running app's otadata state; undefined for the factory app or a slot without an otadata entry. */
  runningState(): OtaImageState | undefined;
  /** PENDING_VERIFY -> VALID (no-op when nothing is pending). */
  markValid(): void;
  /** INVALID, then reboot into the previous app. Throws OTA_ROLLBACK_FAILED when there is none. */
  markInvalidAndReboot(): void;
  /** The running app's descriptor. */
  runningDescriptor(): AppDescriptor | undefined;
  /** The candidate's descriptor once its first 288 bytes are in (or after resume). */
  candidateDescriptor(): AppDescriptor | undefined;
}

/** esp_image_header_t.chip_id values. */
export const ESP_CHIP_ID = {
  ESP32: 0x0000,
  ESP32S2: 0x0002,
  ESP32C3: 0x0005,
  ESP32S3: 0x0009,
  ESP32C2: 0x000c,
  ESP32C6: 0x000d,
  ESP32H2: 0x0010,
} as const;

const STATES: readonly OtaImageState[] = ["NEW", "PENDING_VERIFY", "VALID", "INVALID", "ABORTED"];

/** Maps the numeric esp_ota_img_states_t to its name (unknown numbers -> "UNDEFINED"). */
export function otaStateName(value: number): OtaImageState {
  return STATES[value] ?? "UNDEFINED";
}
