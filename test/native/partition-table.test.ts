/**
 * Partition tables (src/tools/partition-table.ts): CSV parsing and gen_esp32part-style placement against
 * the offsets ESP-IDF documents for its two-OTA table, the binary form byte by byte, the round trips
 * CSV -> binary -> entries -> CSV, a cross-check against the independent table writer of the native tests
 * (test/native/fixtures.ts), and every validation error with its code. Also the flash file maker.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import fc from "fast-check";

import {
  FLASH_FILE_CODES,
  TEST_SMALL_CSV,
  TEST_SMALL_FLASH_SIZE,
  buildFlash,
  createFlashFile,
  espCrc32Le,
  otaSelectEntry,
} from "../../src/tools/flash-file";
import {
  PARTITION_TABLE_CODES,
  PartitionEntry,
  loadPartitionCsv,
  parsePartitionCsv,
  parsePartitionTableBinary,
  parseSize,
  partitionTableBinary,
  partitionsToCsv,
} from "../../src/tools/partition-table";
import { SMALL_FLASH_SIZE, SMALL_TWO_OTA, partitionTable as fixtureTable } from "./fixtures";

const ROOT = path.resolve(__dirname, "..", "..");
const MB4 = 4 * 1024 * 1024;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? `not a coded error: ${String(e)}`;
  }
  return "no error";
}

describe("parseSize", () => {
  it.each([
    ["0x10000", 0x10000],
    ["64K", 65536],
    ["64k", 65536],
    ["1M", 0x100000],
    ["4096", 4096],
    ["0x10K", 0x4000],
    [" 8K ", 8192],
  ])("%s = %d", (text, value) => expect(parseSize(text)).toBe(value));
  it.each(["", "1G", "-4", "0x", "12.5K", "K", "0x1000000000"])("refuses %j", (text) => expect(parseSize(text)).toBeUndefined());
});

describe("partitions/partitions.csv", () => {
  const parts = loadPartitionCsv(path.join(ROOT, "partitions", "partitions.csv"), { flashSize: MB4 });

  it("is ESP-IDF's two-OTA layout with the documented offsets", () => {
    expect(parts.map((p) => [p.name, p.type, p.subtype, p.offset, p.size])).toEqual([
      ["nvs", 1, 0x02, 0x9000, 0x4000],
      ["otadata", 1, 0x00, 0xd000, 0x2000],
      ["phy_init", 1, 0x01, 0xf000, 0x1000],
      ["factory", 0, 0x00, 0x10000, 0x100000],
      ["ota_0", 0, 0x10, 0x110000, 0x100000],
      ["ota_1", 0, 0x11, 0x210000, 0x100000],
    ]);
  });

  it("binary form: entries, MD5 entry, 0xFF fill to 0xC00", () => {
    const bin = partitionTableBinary(parts);
    expect(bin.length).toBe(0xc00);
    // first entry, byte by byte: AA 50 | 01 02 | 00 90 00 00 | 00 40 00 00 | "nvs" NUL x13 | flags 0
    expect(Buffer.from(bin.subarray(0, 32)).toString("hex")).toBe(
      "aa50" + "0102" + "00900000" + "00400000" + Buffer.from("nvs").toString("hex") + "00".repeat(13) + "00000000",
    );
    const m = parts.length * 32;
    expect([bin[m], bin[m + 1]]).toEqual([0xeb, 0xeb]);
    expect(bin.subarray(m + 2, m + 16).every((b) => b === 0xff)).toBe(true);
    expect(Buffer.from(bin.subarray(m + 16, m + 32))).toEqual(createHash("md5").update(bin.subarray(0, m)).digest());
    expect(bin.subarray(m + 32).every((b) => b === 0xff)).toBe(true);
  });

  it("round trips: CSV -> binary -> entries -> CSV -> entries", () => {
    const back = parsePartitionTableBinary(partitionTableBinary(parts));
    expect(back).toEqual(parts);
    expect(parsePartitionCsv(partitionsToCsv(back))).toEqual(parts);
  });
});

describe("partitions/test-small.csv", () => {
  it("fits 1 MiB, same shape, and matches the native tests' independent table writer byte for byte", () => {
    const parts = loadPartitionCsv(TEST_SMALL_CSV, { flashSize: TEST_SMALL_FLASH_SIZE });
    expect(parts.map((p) => p.name)).toEqual(["nvs", "otadata", "phy_init", "factory", "ota_0", "ota_1"]);
    expect(parts.find((p) => p.name === "ota_1")).toMatchObject({ offset: 0x90000, size: 0x40000 });
    // fixtures.ts builds its table without this module: same entries must give the same bytes.
    const asEntries: PartitionEntry[] = SMALL_TWO_OTA.map((p) => ({ name: p.label, type: p.type, subtype: p.subtype, offset: p.offset, size: p.size, flags: 0 }));
    expect(Buffer.from(partitionTableBinary(asEntries, { flashSize: SMALL_FLASH_SIZE }))).toEqual(Buffer.from(fixtureTable(SMALL_TWO_OTA)));
  });
});

describe("CSV parsing", () => {
  it("skips comments and blank lines, accepts CRLF, missing trailing fields and flags", () => {
    const t = parsePartitionCsv(
      "# Name, Type, SubType, Offset, Size, Flags\r\n\r\n   # indented comment\r\nnvs,data,nvs,0x9000,24K\r\n" +
        "phy_init, data, phy, 0xf000, 0x1000, \r\nfactory, app, factory, 0x10000, 1M, encrypted\r\n" +
        "storage, data, spiffs, , 64K, encrypted:readonly\r\ncustom, 0x40, 0x01, , 4K\r\n",
    );
    expect(t).toEqual([
      { name: "nvs", type: 1, subtype: 2, offset: 0x9000, size: 0x6000, flags: 0 },
      { name: "phy_init", type: 1, subtype: 1, offset: 0xf000, size: 0x1000, flags: 0 },
      { name: "factory", type: 0, subtype: 0, offset: 0x10000, size: 0x100000, flags: 1 },
      { name: "storage", type: 1, subtype: 0x82, offset: 0x110000, size: 0x10000, flags: 3 },
      { name: "custom", type: 0x40, subtype: 1, offset: 0x120000, size: 0x1000, flags: 0 },
    ]);
  });

  it("auto-places app partitions on 64 KiB and data partitions on 4 KiB boundaries", () => {
    const t = parsePartitionCsv("nvs, data, nvs, , 0x5000\nphy, data, phy, , 0x1000\nfactory, app, factory, , 64K\nx, data, fat, , 4K\nota_0, app, ota_0, , 64K\notadata, data, ota, , 8K\n");
    expect(t.map((p) => p.offset)).toEqual([0x9000, 0xe000, 0x10000, 0x20000, 0x30000, 0x40000]);
  });

  it("an empty data subtype is 'undefined' (0x06)", () => {
    expect(parsePartitionCsv("blob, data, , , 4K")[0]!.subtype).toBe(0x06);
  });

  it.each([
    ["unknown type", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, foo, nvs, , 4K"],
    ["empty type", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, , nvs, , 4K"],
    ["unknown subtype", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, data, nope, , 4K"],
    ["app without subtype", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, app, , , 64K"],
    ["bad size", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, data, nvs, , 4Q"],
    ["empty size", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, data, nvs, 0x9000, "],
    ["bad offset", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, data, nvs, zz, 4K"],
    ["unknown flag", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, data, nvs, , 4K, secret"],
    ["seventh field", PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, "x, data, nvs, , 4K, , surplus"],
    ["name of 17 characters", PARTITION_TABLE_CODES.PARTITION_BAD_NAME, "abcdefghijklmnopq, data, nvs, , 4K"],
    ["empty name", PARTITION_TABLE_CODES.PARTITION_BAD_NAME, ", data, nvs, , 4K"],
    ["duplicate name", PARTITION_TABLE_CODES.PARTITION_BAD_NAME, "a, data, nvs, , 4K\na, data, phy, , 4K"],
    ["app offset not 64 KiB aligned", PARTITION_TABLE_CODES.PARTITION_MISALIGNED, "f, app, factory, 0x18000, 64K"],
    ["data offset not 4 KiB aligned", PARTITION_TABLE_CODES.PARTITION_MISALIGNED, "n, data, nvs, 0x9800, 4K"],
    ["size not a sector multiple", PARTITION_TABLE_CODES.PARTITION_MISALIGNED, "n, data, nvs, , 0x1800"],
    ["size 0", PARTITION_TABLE_CODES.PARTITION_MISALIGNED, "n, data, nvs, , 0"],
    ["explicit offset before the previous end", PARTITION_TABLE_CODES.PARTITION_OVERLAP, "a, data, nvs, 0x9000, 16K\nb, data, phy, 0xa000, 4K"],
    ["inside the table's sector", PARTITION_TABLE_CODES.PARTITION_OVERLAP, "a, data, nvs, 0x8000, 4K"],
    ["OTA slots without otadata", PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, "f, app, factory, , 64K\no, app, ota_0, , 64K"],
    ["otadata of the wrong size", PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, "d, data, ota, , 4K\no, app, ota_0, , 64K"],
    ["two otadata", PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, "d, data, ota, , 8K\ne, data, ota, , 8K"],
    ["ota_0 twice", PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, "d, data, ota, , 8K\na, app, ota_0, , 64K\nb, app, ota_0, , 64K"],
    ["95 entries", PARTITION_TABLE_CODES.PARTITION_TABLE_TOO_LONG, Array.from({ length: 95 }, (_, i) => `p${i}, data, fat, , 4K`).join("\n")],
  ])("%s -> %s", (_what, code, csv) => {
    expect(codeOf(() => parsePartitionCsv(csv))).toBe(code);
  });

  it("reports the CSV line of a syntax error", () => {
    try {
      parsePartitionCsv("# header\nnvs, data, nvs, , 4K\nbad, data, nope, , 4K\n");
      throw new Error("accepted");
    } catch (e) {
      expect(e).toMatchObject({ code: PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, detail: { line: 3 } });
    }
  });

  it("refuses partitions past the flash size", () => {
    const csv = fs.readFileSync(path.join(ROOT, "partitions", "partitions.csv"), "utf8");
    expect(codeOf(() => parsePartitionCsv(csv, { flashSize: 2 * 1024 * 1024 }))).toBe(PARTITION_TABLE_CODES.PARTITION_OUT_OF_FLASH);
  });

  it("94 entries still fit (the 95th would leave no room for the MD5 entry)", () => {
    const t = parsePartitionCsv(Array.from({ length: 94 }, (_, i) => `p${i}, data, fat, , 4K`).join("\n"));
    expect(parsePartitionTableBinary(partitionTableBinary(t))).toHaveLength(94);
  });
});

describe("binary parsing", () => {
  const parts = loadPartitionCsv(TEST_SMALL_CSV);
  const good = (): Uint8Array => partitionTableBinary(parts);
  const m = parts.length * 32;

  it.each([
    ["entry magic damaged", (b: Uint8Array) => (b[32] = 0xab)],
    ["a label byte changed (MD5 mismatch)", (b: Uint8Array) => (b[12] ^= 0x20)],
    ["MD5 entry padding changed", (b: Uint8Array) => (b[m + 5] = 0)],
    ["MD5 itself changed", (b: Uint8Array) => (b[m + 31] ^= 1)],
    ["MD5 entry erased (no MD5)", (b: Uint8Array) => b.fill(0xff, m, m + 32)],
    ["no end marker", (b: Uint8Array) => b.fill(0x00, m + 32)],
    ["an entry after the MD5 entry", (b: Uint8Array) => b.set(b.subarray(0, 32), m + 32)],
  ])("%s -> PARTITION_BINARY_INVALID", (_what, edit) => {
    const b = good();
    edit(b);
    expect(codeOf(() => parsePartitionTableBinary(b))).toBe(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID);
  });

  it("refuses fewer than 0xC00 bytes", () => {
    expect(codeOf(() => parsePartitionTableBinary(good().subarray(0, 0x400)))).toBe(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID);
  });

  it("a well-formed binary that breaks a layout rule is refused with that rule's code", () => {
    const overlapping = parts.map((p) => (p.name === "ota_1" ? { ...p, offset: 0x80000 } : p));
    // write the bad table by hand: partitionTableBinary itself validates
    const b = good();
    new DataView(b.buffer).setUint32(5 * 32 + 4, overlapping[5]!.offset, true);
    b.set(createHash("md5").update(b.subarray(0, m)).digest(), m + 16);
    expect(codeOf(() => parsePartitionTableBinary(b))).toBe(PARTITION_TABLE_CODES.PARTITION_OVERLAP);
  });

  it("property: any valid generated table survives binary and CSV round trips", () => {
    const entryArb = fc.record({
      kind: fc.constantFrom("app", "data"),
      gapSectors: fc.nat({ max: 40 }),
      sizeSectors: fc.integer({ min: 1, max: 64 }),
      flags: fc.nat({ max: 3 }),
      dataSubtype: fc.constantFrom(0x01, 0x02, 0x03, 0x81, 0x82, 0x99),
    });
    fc.assert(
      fc.property(fc.array(entryArb, { minLength: 1, maxLength: 20 }), (spec) => {
        let end = 0x9000;
        let app = 0;
        const t: PartitionEntry[] = spec.map((s, i) => {
          const align = s.kind === "app" ? 0x10000 : 0x1000;
          const offset = Math.ceil((end + s.gapSectors * 0x1000) / align) * align;
          const size = s.sizeSectors * 0x1000;
          end = offset + size;
          return s.kind === "app"
            ? { name: `app${i}`, type: 0, subtype: app++ === 0 ? 0x00 : 0x20 + app, offset, size, flags: s.flags }
            : { name: `data_${i}`, type: 1, subtype: s.dataSubtype, offset, size, flags: s.flags };
        });
        const back = parsePartitionTableBinary(partitionTableBinary(t));
        expect(back).toEqual(t);
        expect(parsePartitionCsv(partitionsToCsv(back))).toEqual(t);
      }),
      { numRuns: 200 },
    );
  });
});

describe("flash files", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flash-file-test-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("otadata CRC matches ESP-IDF's check values", () => {
    const crc = (seq: number): number => espCrc32Le(new Uint8Array(new Uint32Array([seq]).buffer));
    expect([crc(1), crc(2), crc(3)]).toEqual([0x4743989a, 0x55f63774, 0xed4a5011]);
    const e = otaSelectEntry(2, 2);
    expect(Buffer.from(e).toString("hex")).toBe("02000000" + "ff".repeat(20) + "02000000" + "7437f655");
  });

  it("default: 4 MiB of 0xFF with the table at 0x8000 and nothing else", () => {
    const { flash, partitions } = buildFlash();
    expect(flash.length).toBe(MB4);
    expect(Buffer.from(flash.subarray(0x8000, 0x8c00))).toEqual(Buffer.from(partitionTableBinary(partitions)));
    expect(flash.subarray(0, 0x8000).every((b) => b === 0xff)).toBe(true);
    expect(flash.subarray(0x8c00).every((b) => b === 0xff)).toBe(true);
  });

  it("writes images into their partitions and an otadata entry, and refuses bad requests", () => {
    const img = new Uint8Array(5000).map((_, i) => i & 0xff);
    const file = path.join(dir, "sub", "flash.bin");
    const parts = createFlashFile(file, { partitions: TEST_SMALL_CSV, size: TEST_SMALL_FLASH_SIZE, images: { ota_0: img }, boot: { slot: 0, state: "PENDING_VERIFY" } });
    const flash = fs.readFileSync(file);
    expect(flash.length).toBe(TEST_SMALL_FLASH_SIZE);
    expect(flash.subarray(0x50000, 0x50000 + 5000).equals(Buffer.from(img))).toBe(true);
    expect(flash.subarray(0x50000 + 5000, 0x90000).every((b) => b === 0xff)).toBe(true);
    expect(flash.subarray(0xd000, 0xd020).equals(Buffer.from(otaSelectEntry(1, 1)))).toBe(true);
    expect(flash.subarray(0xe000, 0xf000).every((b) => b === 0xff)).toBe(true);
    expect(parsePartitionTableBinary(flash.subarray(0x8000, 0x9000))).toEqual(parts);

    const small = { partitions: TEST_SMALL_CSV, size: TEST_SMALL_FLASH_SIZE };
    expect(codeOf(() => buildFlash({ ...small, images: { nvs: img } }))).toBe(FLASH_FILE_CODES.FLASH_FILE_BAD_IMAGE);
    expect(codeOf(() => buildFlash({ ...small, images: { ota_9: img } }))).toBe(FLASH_FILE_CODES.FLASH_FILE_BAD_IMAGE);
    expect(codeOf(() => buildFlash({ ...small, images: { factory: new Uint8Array(0x40001) } }))).toBe(FLASH_FILE_CODES.FLASH_FILE_BAD_IMAGE);
    expect(codeOf(() => buildFlash({ ...small, boot: { slot: 2 } }))).toBe(FLASH_FILE_CODES.FLASH_FILE_BAD_BOOT);
    expect(codeOf(() => buildFlash({ ...small, size: 0x1234 }))).toBe(FLASH_FILE_CODES.FLASH_FILE_BAD_SIZE);
    expect(codeOf(() => buildFlash({ size: TEST_SMALL_FLASH_SIZE }))).toBe(PARTITION_TABLE_CODES.PARTITION_OUT_OF_FLASH);
  });
});
