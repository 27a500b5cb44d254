/**
 * The OTA controller's download (src/core/ota-controller.ts) as the byte source, the flash and the cloud see
 * it, through a tap on the fake source that records what each read asks for, counts the aborts of each
 * response, can hold an open or each read until the test lets it go, can say other lengths or no ETag, and
 * can hand over more than asked: read sizes that stop at sector boundaries, pieces that end on them when a
 * source ignores the bound, the progress throttle after a forced report and after a resumed boot, a server
 * that claims an empty object, responses closed exactly once, what is sent to the source after a resume
 * mismatch or a retry before the first sector, and a desired change racing the open or the end of the body.
 * Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import { OTA_PROGRESS_KEY, SECTOR_SIZE } from "../../src/core/ota-controller";
import type { ByteSource, ByteSourceRequest, ByteSourceResponse } from "../../src/ports/byte-source";
import type { OtaBeginOptions } from "../../src/ports/ota-slot";
import { FakeSource, fakeImage } from "./ota-fakes";
import { BASE, CONFIG, Rig } from "./ota-rig";
import { settle } from "./fake-ports";

async function run(turns = 60): Promise<void> {
  for (let i = 0; i < turns; i++) await settle();
}

const URL_110 = `${BASE}1.1.0.bin`;

/** A ByteSource over a FakeSource that records and holds what the controller does with it. */
class Tap implements ByteSource {
  /** Every read, by response (0 = the first opened) and the bound it asked for. */
  readonly reads: Array<{ response: number; maxBytes: number | undefined }> = [];
  /** abort() calls per response. */
  readonly aborts: number[] = [];
  /** Reads that may go before they wait for allow(); undefined = no limit. */
  credit: number | undefined;
  /** When set, open() waits for it. */
  openGate: Promise<void> | undefined;
  /** What responses say instead of the object's length / ETag. */
  sayTotal: { value: number | undefined } | undefined;
  sayEtag: { value: string | undefined } | undefined;
  /** Reads ignore the controller's bound (a source breaking the read contract). */
  oversize = false;
  /** Called right after a read has resolved, before the controller's code runs again. */
  afterRead: ((chunk: Uint8Array | undefined) => void) | undefined;
  #waiting: Array<() => void> = [];

  constructor(readonly inner: FakeSource) {}

  allow(n: number): void {
    for (let i = 0; i < n; i++) {
      const w = this.#waiting.shift();
      if (w !== undefined) w();
      else this.credit = (this.credit ?? 0) + 1;
    }
  }

  async open(req: ByteSourceRequest): Promise<ByteSourceResponse> {
    if (this.openGate !== undefined) await this.openGate;
    const resp = await this.inner.open(req);
    const index = this.aborts.push(0) - 1;
    const tap = this;
    let aborted = false;
    let held: { go: () => void; reject: (e: unknown) => void } | undefined;
    const abortedError = (): ShadowOtaError => new ShadowOtaError("DOWNLOAD_ABORTED", "aborted");
    return {
      status: resp.status,
      start: resp.start,
      total: this.sayTotal === undefined ? resp.total : this.sayTotal.value,
      etag: this.sayEtag === undefined ? resp.etag : this.sayEtag.value,
      read(maxBytes?: number): Promise<Uint8Array | undefined> {
        tap.reads.push({ response: index, maxBytes });
        return new Promise((resolve, reject) => {
          const go = (): void => {
            held = undefined;
            if (aborted) { reject(abortedError()); return; }
            resp.read(tap.oversize ? undefined : maxBytes).then((chunk) => { resolve(chunk); tap.afterRead?.(chunk); }, reject);
          };
          if (tap.credit === undefined) go();
          else if (tap.credit > 0) { tap.credit--; go(); }
          else { held = { go, reject }; tap.#waiting.push(go); }
        });
      },
      abort(): void {
        tap.aborts[index]!++;
        aborted = true;
        resp.abort();
        const h = held;
        held = undefined;
        if (h !== undefined) {
          tap.#waiting = tap.#waiting.filter((w) => w !== h.go);
          h.reject(abortedError());
        }
      },
    };
  }
}

function tapped(r: Rig): Tap {
  const tap = new Tap(r.source);
  r.byteSource = tap;
  r.powerOn();
  return tap;
}

/** The bytes of the progress reports (state Downloading), in order. */
function downloading(r: Rig): unknown[] {
  return r.reports.filter((d) => d["state"] === "Downloading").map((d) => d["bytes"]);
}

describe("reads and pieces", () => {
  it("each read asks for at most the bytes up to the next sector boundary", async () => {
    const r = new Rig();
    const tap = tapped(r);
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    // The fake serves at most 1460 bytes per read: 4096, 2636, 1176, 4096, ... and at 20,000 the read that ends the body.
    const expected: number[] = [];
    for (let pos = 0; ;) {
      const bound = (Math.floor(pos / SECTOR_SIZE) + 1) * SECTOR_SIZE - pos;
      expected.push(bound);
      if (pos === 20_000) break;
      pos += Math.min(1460, bound, 20_000 - pos);
    }
    expect(tap.reads.map((x) => x.maxBytes)).toEqual(expected);
  });

  it("a source that hands over more than asked: written in pieces ending on sector boundaries, progress persisted at each", async () => {
    const r = new Rig();
    const tap = tapped(r);
    tap.oversize = true;
    r.source.chunkSize = 10_000;
    const set = r.kv.set.bind(r.kv);
    const progress: string[] = [];
    r.kv.set = (k: string, v: string): void => { if (k === OTA_PROGRESS_KEY) progress.push(v); set(k, v); };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged"); // the slot's end() checked length and checksum
    expect(progress).toEqual(["4096", "8192", "12288", "16384"]);
    expect(r.ota.record.durable).toBe(20_000);
    expect(Array.from(r.flash.slots[1].subarray(0, 20_000))).toEqual(Array.from(r.source.object));
  });
});

describe("progress reports", () => {
  it("a download resumed at power-on reports progress before it verifies", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "cut", at: 10_000, error: new ShadowOtaError("OTA_POWER_LOST", "power cut") });
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.record.durable).toBe(8192);
    const before = r.reports.length;
    r.powerOn();
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.reports.slice(before).map((d) => [d["state"], d["bytes"]])).toEqual([["Downloading", 12_288], ["Verifying", 20_000], ["Staged", 20_000]]);
  });

  it("after a forced report the throttle counts from it: its time and its percent", async () => {
    const r = new Rig(CONFIG, fakeImage({ version: "1.1.0", size: 200_000 }));
    const tap = tapped(r);
    r.source.chunkSize = SECTOR_SIZE; // one sector per read (2.048 % of the image)
    tap.credit = 0;
    r.ota.request("1.1.0");
    await run();
    tap.allow(10);
    await run(); // 40,960 bytes at t = 0: only the first sector is reported (the others are too soon)
    expect(downloading(r)).toEqual([4096]);
    r.clock.advance(3_000);
    r.ota.request("0.9.0"); // refused while downloading: reported at once, at 40,960 bytes (20.48 %)
    expect(downloading(r)).toEqual([4096, 40_960]);
    tap.allow(1);
    await run(); // 45,056 at the same time as the forced report: too soon
    r.clock.advance(3_000);
    tap.allow(1);
    await run(); // 49,152 = 24.6 %: less than 5 points above the forced report
    expect(downloading(r)).toEqual([4096, 40_960]);
    tap.allow(1);
    await run(); // 53,248 = 26.6 %
    expect(downloading(r)).toEqual([4096, 40_960, 53_248]);
    r.ota.close();
  });

  it("a server that claims an empty object yet sends bytes: percent stays 0, no progress report after the forced one", async () => {
    const r = new Rig();
    const tap = tapped(r);
    tap.sayTotal = { value: 0 };
    tap.credit = 0;
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.record.total).toBe(0);
    r.clock.advance(3_000);
    r.ota.request("0.9.0"); // forced report at 0 of "0" bytes
    r.clock.advance(3_000);
    tap.allow(3);
    await run(); // 4096 bytes
    r.clock.advance(3_000);
    tap.allow(3);
    await run(); // 8192 bytes
    expect(r.ota.record.durable).toBe(8192);
    expect(r.reports.map((d) => [d["state"], d["bytes"], d["percent"]])).toEqual([["Downloading", 0, 0]]);
    r.ota.close();
  });
});

describe("responses and requests to the source", () => {
  it("every response is closed exactly once: after a cut, after the image is in, and close() adds nothing", async () => {
    const r = new Rig();
    const tap = tapped(r);
    r.source.faults.push({ kind: "cut", at: 10_000 });
    r.ota.request("1.1.0");
    await run();
    expect(tap.aborts).toEqual([1]);
    r.clock.advance(10_000);
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(tap.aborts).toEqual([1, 1]);
    r.ota.close();
    expect(tap.aborts).toEqual([1, 1]);
  });

  it("a retry before the first sector begins again without resume(); opens carry no validator from 0", async () => {
    const r = new Rig();
    const resumed: number[] = [];
    const resume = r.slot.resume.bind(r.slot);
    r.slot.resume = (offset, options) => { resumed.push(offset); return resume(offset, options); };
    r.source.faults.push({ kind: "cut", at: 1000 });
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.record).toMatchObject({ state: "Downloading", durable: 0, etag: '"v1"', attempt: 2 });
    r.clock.advance(10_000);
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(resumed).toEqual([]);
    expect(r.source.opens).toStrictEqual([{ url: URL_110, offset: 0 }, { url: URL_110, offset: 0 }]);
  });

  it("a resume the slot refuses starts over from 0 without the ETag", async () => {
    const r = new Rig();
    r.source.faults.push({ kind: "cut", at: 10_000 });
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.record).toMatchObject({ durable: 8192, etag: '"v1"' });
    r.slot.resume = () => { throw new ShadowOtaError("OTA_RESUME_MISMATCH", "flash prefix is not an image prefix"); };
    r.clock.advance(10_000);
    await run();
    expect(r.events("ota.resume.mismatch")).toEqual([{ level: "warn", fields: { durable: 8192, code: "OTA_RESUME_MISMATCH" } }]);
    expect(r.source.opens).toStrictEqual([{ url: URL_110, offset: 0 }, { url: URL_110, offset: 0 }]);
    expect(r.ota.state).toBe("Staged");
  });

  it("a response without ETag or length leaves no such member in the record", async () => {
    const r = new Rig();
    const tap = tapped(r);
    tap.sayTotal = { value: undefined };
    tap.sayEtag = { value: undefined };
    r.ota.request("1.1.0");
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.ota.record).toStrictEqual({ state: "Staged", from: "1.0.0", to: "1.1.0", url: URL_110, durable: 20_000, attempt: 1 });
    expect(r.last()).toMatchObject({ state: "Staged", bytes: 20_000, total: null, percent: null });
  });
});

describe("the slot's options", () => {
  it("a configured signing key goes to begin() and resume(); without one the options carry no such member", async () => {
    const key = Uint8Array.from({ length: 65 }, (_, i) => i);
    for (const config of [{ ...CONFIG, signingKey: key }, CONFIG]) {
      const r = new Rig(config);
      const asked: Array<[string, OtaBeginOptions]> = [];
      const begin = r.slot.begin.bind(r.slot);
      const resume = r.slot.resume.bind(r.slot);
      r.slot.begin = (o?: OtaBeginOptions) => { asked.push(["begin", { ...o }]); return begin(o); };
      r.slot.resume = (offset: number, o?: OtaBeginOptions) => { asked.push(["resume", { ...o }]); return resume(offset, o); };
      r.source.faults.push({ kind: "cut", at: 10_000 });
      r.ota.request("1.1.0");
      await run();
      r.clock.advance(10_000);
      await run();
      expect(r.ota.state).toBe("Staged");
      const options = config === CONFIG
        ? { requireHash: true, minSecureVersion: 0, imageSize: 20_000 }
        : { requireHash: true, minSecureVersion: 0, imageSize: 20_000, signingKey: key };
      // resume() calls begin() itself in the fake slot, hence begin after resume.
      expect(asked).toStrictEqual([["begin", options], ["resume", options], ["begin", options]]);
    }
  });
});

describe("a desired change racing the download", () => {
  it("while the open is under way: the superseded response is closed unread, nothing is logged or written for it", async () => {
    const r = new Rig();
    const tap = tapped(r);
    let release: (() => void) | undefined;
    tap.openGate = new Promise<void>((resolve) => { release = resolve; });
    r.ota.request("1.1.0");
    await run();
    expect(r.source.opens).toEqual([]);
    r.source.object = fakeImage({ version: "1.2.0" });
    r.ota.request("1.2.0");
    tap.openGate = undefined;
    release!();
    await run();
    expect(r.ota.state).toBe("Staged");
    expect(r.ota.record).toMatchObject({ to: "1.2.0" });
    expect(tap.reads.filter((x) => x.response === 0)).toEqual([]);
    expect(tap.aborts[0]).toBe(1);
    expect(r.events("ota.download.open").map((e) => e.fields?.["to"])).toEqual(["1.2.0"]);
  });

  it("when the old body's end arrives after the change: the new version is not marked Verifying early", async () => {
    const r = new Rig();
    const tap = tapped(r);
    let changed = false;
    tap.afterRead = (chunk) => {
      if (chunk === undefined && !changed) {
        changed = true;
        r.source.object = fakeImage({ version: "1.2.0" });
        r.ota.request("1.2.0");
      }
    };
    r.ota.request("1.1.0");
    await run();
    expect(changed).toBe(true);
    expect(r.ota.state).toBe("Staged");
    expect(r.reports.filter((d) => d["state"] === "Verifying").map((d) => [d["to"], d["bytes"]])).toEqual([["1.2.0", 20_000]]);
    expect(r.restart.reasons).toEqual(["update to 1.2.0 staged"]);
  });
});
