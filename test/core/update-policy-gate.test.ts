/**
 * The update gate (src/core/update-policy.ts) on its own, as the cloud and the device's log see it: the
 * messages a refused policy puts in `reported.lastError`, where a window's timer fires to the second, a wait
 * that moves from one state to another, the wall clock's first valid second, a gate with and without the
 * sync's view of desired, a revert the sync knows before the gate is told, and what `close()` leaves behind.
 * Complements update-policy.test.ts (the gate inside DeviceApp). Jest subset only (runs on XS too).
 */
import type { JsonObject } from "../../src/core/json";
import { localMinute, parsePolicy, parseWindow, CLOCK_SET_AFTER, UpdateGate } from "../../src/core/update-policy";
import { ManualClock, MemoryLog } from "./fake-ports";

function refusal(fn: () => unknown): { code?: string; message: string } | undefined {
  try {
    fn();
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
  return undefined;
}

/** A ManualClock that holds its port's contract: `cancel` takes only a handle `setTimer` returned. */
class StrictClock extends ManualClock {
  readonly #issued = new Set<unknown>();
  /** The wall clock at monotonic 0 (ManualClock's own: 1700000000); SNTP setting the clock changes it. */
  wallAtZero = 1700000000;
  override epochSeconds(): number { return this.wallAtZero + Math.floor(this.now / 1000); }
  override setTimer(ms: number, fn: () => void): unknown {
    const h = super.setTimer(ms, fn);
    this.#issued.add(h);
    return h;
  }
  override cancel(handle: unknown): void {
    if (!this.#issued.has(handle)) throw new Error(`cancel(${String(handle)}): not a timer handle`);
    super.cancel(handle);
  }
}

/** ManualClock's wall clock starts at 1700000000 = 22:13:20 UTC: second 20 of minute 22*60+13. */
const START_MINUTE = 22 * 60 + 13;
const hhmm = (m: number): string => `${String(Math.floor(m / 60) % 24).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;

interface Rig {
  clock: StrictClock;
  log: MemoryLog;
  gate: UpdateGate;
  started: string[];
  /** Each report as "state to code". */
  reports: string[];
  /** The last report's lastError message, if any. */
  lastMessage(): string | undefined;
  setDesired(d: JsonObject): void;
}

function rig(initial: JsonObject, withDesiredPort = true): Rig {
  const clock = new StrictClock();
  const log = new MemoryLog();
  const started: string[] = [];
  const reports: string[] = [];
  const docs: JsonObject[] = [];
  let desired = initial;
  const gate = new UpdateGate({ clock, log }, {
    running: "1.0.0",
    firmwareVersionPath: ["updateVersion"],
    start: (v) => started.push(v),
    report: (u) => {
      docs.push(u);
      const code = (u["lastError"] as JsonObject | null | undefined)?.["code"];
      reports.push(`${String(u["state"])}${u["to"] === undefined ? "" : ` ${String(u["to"])}`}${typeof code === "string" ? ` ${code}` : ""}`);
    },
    otaReported: () => ({ state: "Idle" }),
    ...(withDesiredPort ? { desired: () => desired } : {}),
  });
  return {
    clock, log, gate, started, reports,
    lastMessage: () => ((docs[docs.length - 1]?.["lastError"] as JsonObject | null | undefined)?.["message"] as string | undefined),
    setDesired: (d) => { desired = d; },
  };
}

describe("a refused policy says why, in words the operator can act on", () => {
  it("window: the text it got (at most 40 characters of it) and the form it wants", () => {
    expect(refusal(() => parseWindow("2-4"))).toEqual({ code: "POLICY_WINDOW_INVALID", message: 'update window "2-4" is not HH:MM-HH:MM' });
    const long = `02:00-04:00${"x".repeat(100)}`;
    const r = refusal(() => parseWindow(long))!;
    expect(r.code).toBe("POLICY_WINDOW_INVALID");
    expect(r.message).toBe(`update window ${JSON.stringify(long.slice(0, 40))} is not HH:MM-HH:MM`);
    expect(refusal(() => parseWindow("03:00-03:00"))).toEqual({ code: "POLICY_WINDOW_INVALID", message: "update window 03:00-03:00 is empty (start = end)" });
  });

  it("window: nothing before or after the two times, and a non-string is refused, not thrown as a TypeError", () => {
    for (const bad of ["x02:00-04:00", "02:00-04:00x", " 02:00-04:00", "02:00-04:00\n"]) expect(refusal(() => parseWindow(bad))?.code).toBe("POLICY_WINDOW_INVALID");
    for (const bad of [7, null, undefined, { start: 1 }, ["02:00-04:00"], { toString: () => "02:00-04:00" }] as unknown[]) {
      expect(refusal(() => parseWindow(bad as string))?.code).toBe("POLICY_WINDOW_INVALID");
    }
  });

  it("the policy document: each refusal names the member and what it must be", () => {
    for (const notObject of ["x", 7, true, [], ["window"]] as unknown[]) {
      expect(refusal(() => parsePolicy(notObject as JsonObject))).toEqual({ code: "POLICY_INVALID", message: "firmwareUpdatePolicy must be an object" });
    }
    expect(refusal(() => parsePolicy({ window: 7 }))).toEqual({ code: "POLICY_WINDOW_INVALID", message: "firmwareUpdatePolicy.window must be a string HH:MM-HH:MM" });
    expect(refusal(() => parsePolicy({ requireConsent: "yes" }))).toEqual({ code: "POLICY_INVALID", message: "firmwareUpdatePolicy.requireConsent must be true or false" });
    expect(refusal(() => parsePolicy({ accept: 7 }))).toEqual({ code: "POLICY_INVALID", message: "firmwareUpdatePolicy.accept must be a version string" });
    expect(refusal(() => parsePolicy({ other: 1 }))).toEqual({ code: "POLICY_INVALID", message: 'firmwareUpdatePolicy has an unknown member "other"' });
    expect(refusal(() => parsePolicy({ other: null }))).toEqual({ code: "POLICY_INVALID", message: 'firmwareUpdatePolicy has an unknown member "other"' });
    const longKey = "k".repeat(100);
    expect(refusal(() => parsePolicy({ [longKey]: 1 }))?.message).toBe(`firmwareUpdatePolicy has an unknown member ${JSON.stringify("k".repeat(40))}`);
  });

  it("accept: a version of up to 64 characters is taken, 65 is refused", () => {
    expect(parsePolicy({ accept: "1".repeat(64) }).accept).toBe("1".repeat(64));
    expect(refusal(() => parsePolicy({ accept: "1".repeat(65) }))?.code).toBe("POLICY_INVALID");
  });
});

describe("the wall clock", () => {
  it("its first valid second is 2020-01-01T00:00:00Z itself", () => {
    expect(localMinute(CLOCK_SET_AFTER, 0)).toBe(0);
    expect(localMinute(CLOCK_SET_AFTER, 90)).toBe(90);
  });
});

describe("the gate on its own", () => {
  it("a window timer fires on the minute the window opens, not up to 59 s later", () => {
    const open = START_MINUTE + 30;
    const r = rig({ updateVersion: "1.1.0", firmwareUpdatePolicy: { window: `${hhmm(open)}-${hhmm(open + 60)}` } });
    r.gate.request("1.1.0", undefined, { updateVersion: "1.1.0" });
    expect(r.reports).toEqual(["WaitingWindow 1.1.0"]);
    expect(r.clock.pending).toBe(1);
    // 22:13:20 → 22:43:00 is 29 min 40 s.
    r.clock.advance(29 * 60_000 + 40_000 - 1);
    expect(r.started).toEqual([]);
    r.clock.advance(1);
    expect(r.started).toEqual(["1.1.0"]);
    expect(r.gate.waiting).toBeUndefined();
    expect(r.log.lines.filter((l) => l.event.startsWith("policy."))).toEqual([
      { level: "info", event: "policy.wait", fields: { state: "WaitingWindow", version: "1.1.0" } },
      { level: "info", event: "policy.go", fields: { version: "1.1.0" } },
    ]);
  });

  it("a wall clock that is not set yet is looked at again a minute later", () => {
    const r = rig({ updateVersion: "1.1.0", firmwareUpdatePolicy: { window: "00:00-23:59" } });
    r.clock.wallAtZero = 0; // 1970: no SNTP yet
    r.gate.request("1.1.0", undefined, { updateVersion: "1.1.0" });
    expect(r.reports).toEqual(["WaitingWindow 1.1.0"]);
    r.clock.advance(20_000);
    r.clock.wallAtZero = 1700000000 - 20; // SNTP set the clock (22:13:20 now, inside the window)
    r.clock.advance(40_000 - 1);
    expect(r.started).toEqual([]);
    r.clock.advance(1);
    expect(r.started).toEqual(["1.1.0"]);
  });

  it("a wait that changes state is reported again: consent given, now the window", () => {
    const r = rig({ updateVersion: "1.1.0", firmwareUpdatePolicy: { requireConsent: true, window: `${hhmm(START_MINUTE + 60)}-${hhmm(START_MINUTE + 90)}` } });
    r.gate.request("1.1.0", undefined, { updateVersion: "1.1.0" });
    expect(r.reports).toEqual(["WaitingConsent 1.1.0"]);
    expect(r.gate.waiting).toBe("WaitingConsent");
    const consent = { updateVersion: "1.1.0", firmwareUpdatePolicy: { requireConsent: true, accept: "1.1.0", window: `${hhmm(START_MINUTE + 60)}-${hhmm(START_MINUTE + 90)}` } };
    r.setDesired(consent);
    r.gate.onDesired(consent);
    expect(r.reports).toEqual(["WaitingConsent 1.1.0", "WaitingWindow 1.1.0"]);
    expect(r.gate.waiting).toBe("WaitingWindow");
    r.gate.onDesired(consent); // the same wait again: not reported twice
    expect(r.reports).toHaveLength(2);
  });

  it("an invalid policy is logged with its code and message, and reported once", () => {
    const bad = { updateVersion: "1.1.0", firmwareUpdatePolicy: { window: "25:00-26:00" } };
    const r = rig(bad);
    r.gate.request("1.1.0", undefined, bad);
    expect(r.reports).toEqual(["Failed 1.1.0 POLICY_WINDOW_INVALID"]);
    expect(r.lastMessage()).toBe('update window "25:00-26:00" is not HH:MM-HH:MM');
    expect(r.gate.waiting).toBe("Failed");
    expect(r.log.lines.find((l) => l.event === "policy.invalid")).toEqual({
      level: "warn", event: "policy.invalid", fields: { code: "POLICY_WINDOW_INVALID", message: 'update window "25:00-26:00" is not HH:MM-HH:MM' },
    });
    r.gate.onDesired(bad);
    expect(r.reports).toHaveLength(1);
  });

  it("without the sync's view of desired: consent in a later desired starts the held version", () => {
    const r = rig({}, false);
    const wait = { updateVersion: "1.1.0", firmwareUpdatePolicy: { requireConsent: true } };
    r.gate.request("1.1.0", undefined, wait);
    expect(r.reports).toEqual(["WaitingConsent 1.1.0"]);
    r.gate.onDesired({ updateVersion: "1.1.0", firmwareUpdatePolicy: { requireConsent: true, accept: "1.1.0" } });
    expect(r.started).toEqual(["1.1.0"]);
  });

  it("without the sync's view of desired: a desired version that moves on ends the wait, logged with both versions", () => {
    const r = rig({}, false);
    r.gate.request("1.1.0", undefined, { updateVersion: "1.1.0", firmwareUpdatePolicy: { requireConsent: true } });
    r.gate.onDesired({ updateVersion: "1.0.0", firmwareUpdatePolicy: { requireConsent: true, accept: "1.1.0" } });
    expect(r.started).toEqual([]);
    expect(r.reports).toEqual(["WaitingConsent 1.1.0", "Idle"]);
    expect(r.gate.waiting).toBeUndefined();
    expect(r.log.lines.find((l) => l.event === "policy.wait-ended")).toEqual({ level: "info", event: "policy.wait-ended", fields: { version: "1.1.0", desired: "1.0.0" } });
  });

  it("a desired that no longer names a version ends the wait and logs desired as null", () => {
    const r = rig({}, false);
    r.gate.request("1.1.0", undefined, { updateVersion: "1.1.0", firmwareUpdatePolicy: { requireConsent: true } });
    r.gate.onDesired({ firmwareUpdatePolicy: { requireConsent: true } });
    expect(r.reports).toEqual(["WaitingConsent 1.1.0", "Idle"]);
    expect(r.log.lines.find((l) => l.event === "policy.wait-ended")?.fields).toEqual({ version: "1.1.0", desired: null });
  });

  it("the version a wait belongs to is the one the sync's desired names at the request, not the document handed over", () => {
    const r = rig({ updateVersion: "1.0.0", firmwareUpdatePolicy: { requireConsent: true } });
    // A direct method asks for 1.2.0 while desired still names the running version; the agent's copy is older.
    r.gate.request("1.2.0", undefined, { updateVersion: "1.2.0" });
    expect(r.reports).toEqual(["WaitingConsent 1.2.0"]);
    expect(r.gate.waiting).toBe("WaitingConsent");
  });

  it("a window that opens after the sync's desired went back (not yet handed to the gate) starts nothing and clears the wait", () => {
    const open = START_MINUTE + 10;
    const policy = { window: `${hhmm(open)}-${hhmm(open + 20)}` };
    const r = rig({ updateVersion: "1.1.0", firmwareUpdatePolicy: policy });
    r.gate.request("1.1.0", undefined, { updateVersion: "1.1.0", firmwareUpdatePolicy: policy });
    r.setDesired({ updateVersion: "1.0.0", firmwareUpdatePolicy: policy });
    r.clock.advance(15 * 60_000);
    expect(r.started).toEqual([]);
    expect(r.reports).toEqual(["WaitingWindow 1.1.0", "Idle"]);
    expect(r.gate.waiting).toBeUndefined();
    expect(r.clock.pending).toBe(0);
  });

  it("when the window opens, the policy is read from the sync's desired as it is then", () => {
    const open = START_MINUTE + 10;
    const window = `${hhmm(open)}-${hhmm(open + 20)}`;
    const r = rig({ updateVersion: "1.1.0", firmwareUpdatePolicy: { window } });
    r.gate.request("1.1.0", undefined, { updateVersion: "1.1.0", firmwareUpdatePolicy: { window } });
    // The operator added a consent requirement; the delta has not reached the gate yet.
    r.setDesired({ updateVersion: "1.1.0", firmwareUpdatePolicy: { window, requireConsent: true } });
    r.clock.advance(15 * 60_000);
    expect(r.started).toEqual([]);
    expect(r.reports).toEqual(["WaitingWindow 1.1.0", "WaitingConsent 1.1.0"]);
  });

  it("a re-evaluation replaces the window timer instead of adding one", () => {
    const window = `${hhmm(START_MINUTE + 30)}-${hhmm(START_MINUTE + 40)}`;
    const doc = { updateVersion: "1.1.0", firmwareUpdatePolicy: { window } };
    const r = rig(doc);
    r.gate.request("1.1.0", undefined, doc);
    r.gate.onDesired({ ...doc, other: 1 });
    r.gate.onDesired({ ...doc, other: 2 });
    expect(r.clock.pending).toBe(1);
  });

  it("close() cancels the window timer, and a closed gate takes no request", () => {
    const window = `${hhmm(START_MINUTE + 5)}-${hhmm(START_MINUTE + 40)}`;
    const doc = { updateVersion: "1.1.0", firmwareUpdatePolicy: { window } };
    const r = rig(doc);
    r.gate.request("1.1.0", undefined, doc);
    expect(r.clock.pending).toBe(1);
    r.gate.close();
    r.gate.close(); // safe twice
    expect(r.clock.pending).toBe(0);
    r.clock.advance(10 * 60_000);
    r.gate.request("1.2.0", undefined, { updateVersion: "1.2.0" });
    r.gate.onDesired({ updateVersion: "1.1.0", firmwareUpdatePolicy: { window, requireConsent: false } });
    expect(r.started).toEqual([]);
    expect(r.reports).toEqual(["WaitingWindow 1.1.0"]);
  });
});
