/**
 * DeviceAgent (src/core/device-agent.ts): what the cloud sees in the reported state, and what the device
 * logs, in the cases device-agent.test.ts leaves open — a desired version equal to the running one, errors
 * reported once per repetition but again after another error, transport-level errors only logged, reports
 * that fail. Driven through a real ShadowSync on the fake transport (the test plays the AWS shadow
 * service), or through a stand-in sync where the failure is the point. Jest subset only (runs on XS too).
 */
import { DeviceAgent, type DeviceAgentOptions, type SyncLike } from "../../src/core/device-agent";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { ShadowSync } from "../../src/core/shadow-sync";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";
const FW = ["config", "firmware_version"];

function awsDevice(options: Partial<DeviceAgentOptions> = {}) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const requests: Array<{ version: string; running: string; newer: boolean }> = [];
  const agent = new DeviceAgent({
    firmwareVersion: "1.0.0",
    firmwareVersionPath: FW,
    onFirmwareRequested: (r) => { requests.push({ version: r.version, running: r.running, newer: r.newer }); },
    ...options,
  }, log);
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log }, { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: FW }, agent);
  agent.attach(sync);
  sync.start();
  return { mqtt, log, agent, sync, requests };
}

type Dev = ReturnType<typeof awsDevice>;

/** Connects and answers the get; returns the reported patches published after it. */
async function connectWith(d: Dev, state: JsonObject, version: number): Promise<JsonObject[]> {
  d.mqtt.connect();
  await settle();
  const get = d.mqtt.take().pop()!;
  d.mqtt.deliver(`${P}/get/accepted`, { state, metadata: {}, version, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
  await settle();
  return reports(d);
}

function reports(d: Dev): JsonObject[] {
  return d.mqtt.take().filter((m) => m.topic === `${P}/update`).map((m) => JSON.parse(m.payload).state.reported as JsonObject);
}

/** The cloud accepts every report in flight, one after another; returns those that followed. */
async function acceptAll(d: Dev, version: number): Promise<JsonObject[]> {
  const out: JsonObject[] = [];
  for (let v = version; v < version + 20; v++) {
    const last = d.mqtt.published[d.mqtt.published.length - 1];
    if (last === undefined || last.topic !== `${P}/update`) break;
    const json = JSON.parse(last.payload);
    d.mqtt.deliver(`${P}/update/accepted`, { state: json.state, metadata: {}, version: v, timestamp: 1, clientToken: json.clientToken });
    await settle();
    const more = reports(d);
    if (more.length === 0) break;
    out.push(...more);
  }
  return out;
}

async function delta(d: Dev, version: number, state: JsonObject | string): Promise<void> {
  d.mqtt.deliver(`${P}/update/delta`, typeof state === "string" ? state : { version, timestamp: 1, state, metadata: {} });
  await settle();
}

const JSON_INVALID = { code: SYNC_CODES.SYNC_JSON_INVALID, message: "payload is not valid JSON" };

describe("a desired firmware version of the same precedence as the running one", () => {
  it("is not handed to the OTA hook; the device says what runs when the cloud holds another version", async () => {
    const d = awsDevice();
    const sent = await connectWith(d, { desired: { config: { firmware_version: "1.0.0+build.9" } }, reported: { config: { firmware_version: "0.9.0" } } }, 4);
    expect(d.requests).toEqual([]);
    expect(sent).toEqual([{ config: { firmware_version: "1.0.0" } }]);
  });

  it("sends nothing when the reported state already says so", async () => {
    const d = awsDevice();
    const sent = await connectWith(d, { desired: { config: { firmware_version: "1.0.0+build.9" } }, reported: { config: { firmware_version: "1.0.0" } } }, 4);
    expect(d.requests).toEqual([]);
    expect(sent).toEqual([]);
  });

  it("reports the running version at the configured reported path", async () => {
    const d = awsDevice({ reportedFirmwarePath: ["firmwareVersion"] });
    const sent = await connectWith(d, { desired: { config: { firmware_version: "1.0.0" } }, reported: { firmwareVersion: "1.0.0" } }, 4);
    expect(sent).toEqual([]);
    expect(d.requests).toEqual([]);
  });
});

describe("firmware requests", () => {
  it("hands a newer version on with the running one, once", async () => {
    const d = awsDevice();
    await connectWith(d, { desired: { config: { firmware_version: "1.2.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 4);
    await delta(d, 5, { config: { firmware_version: "1.2.0" } });
    expect(d.requests).toEqual([{ version: "1.2.0", running: "1.0.0", newer: true }]);
  });

  it("a version other than the firmware path's under the same parent is configuration, not firmware", async () => {
    const d = awsDevice();
    const sent = await connectWith(d, { desired: { config: { firmware_channel: "beta" } }, reported: { config: { firmware_version: "1.0.0" } } }, 4);
    expect(sent).toEqual([{ config: { firmware_channel: "beta" } }]);
    expect(d.requests).toEqual([]);
  });
});

describe("reported.lastError", () => {
  it("an error repeated is reported once, even after the cloud accepted it", async () => {
    const d = awsDevice();
    await connectWith(d, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    await delta(d, 0, "{not json");
    expect(reports(d)).toEqual([{ lastError: JSON_INVALID }]);
    await acceptAll(d, 3);
    await delta(d, 0, "{not json");
    await delta(d, 0, "{not json");
    expect(reports(d)).toEqual([]);
  });

  it("the device's own report of an invalid desired version is not sent a second time by the agent", async () => {
    const d = awsDevice();
    const sent = await connectWith(d, { desired: { config: { firmware_version: "1.1" } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(sent.map((r) => (r["lastError"] as JsonObject | undefined)?.["code"])).toEqual([SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID]);
    expect(await acceptAll(d, 3)).toEqual([]);
  });

  it("an error that comes again after another one is reported again (lastError is the latest error)", async () => {
    const d = awsDevice();
    await connectWith(d, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    await delta(d, 0, "{not json");
    expect(reports(d)).toEqual([{ lastError: JSON_INVALID }]);
    await acceptAll(d, 3);
    await delta(d, 4, { config: { firmware_version: "1.1" } }); // ShadowSync reports this one itself
    expect(reports(d).map((r) => (r["lastError"] as JsonObject)["code"])).toEqual([SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID]);
    expect(await acceptAll(d, 5)).toEqual([]);
    await delta(d, 0, "{not json");
    expect(reports(d)).toEqual([{ lastError: JSON_INVALID }]);
  });

  it("a different error replaces the reported one; the platform code goes with it", async () => {
    const d = awsDevice();
    await connectWith(d, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    d.agent.onError(new ShadowOtaError("APP_SENSOR", "sensor gone", { platformCode: 263 }));
    await settle();
    expect(reports(d)).toEqual([{ lastError: { code: "APP_SENSOR", message: "sensor gone", platformCode: 263 } }]);
    await acceptAll(d, 3);
    d.agent.onError(new ShadowOtaError("APP_SENSOR", "sensor gone", { platformCode: 264 }));
    await settle();
    expect(reports(d)).toEqual([{ lastError: { code: "APP_SENSOR", message: "sensor gone", platformCode: 264 } }]);
  });

  it.each([
    SYNC_CODES.SYNC_NOT_CONNECTED, SYNC_CODES.SYNC_TRANSPORT, SYNC_CODES.SYNC_TIMEOUT,
    SYNC_CODES.SYNC_VERSION_STALE, SYNC_CODES.SYNC_VERSION_CONFLICT,
  ])("%s is only logged: reporting it could not succeed or would repeat forever", async (code) => {
    const d = awsDevice();
    await connectWith(d, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    d.agent.onError(new ShadowOtaError(code, "transport-level"));
    await settle();
    expect(reports(d)).toEqual([]);
    expect(d.log.lines.filter((l) => l.event === "agent.error.not-reported")).toEqual([{ level: "info", event: "agent.error.not-reported", fields: { code } }]);
  });

  it.each([SYNC_CODES.SYNC_REJECTED, SYNC_CODES.SYNC_DOCUMENT_INVALID, SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE])("%s is reported", async (code) => {
    const d = awsDevice();
    await connectWith(d, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    d.agent.onError(new ShadowOtaError(code, "the cloud should know"));
    await settle();
    expect(reports(d)).toEqual([{ lastError: { code, message: "the cloud should know" } }]);
  });
});

describe("reports that fail", () => {
  /** A stand-in sync whose reports all fail with `error`. */
  function failingSync(error: unknown): SyncLike & { patches: JsonObject[] } {
    const patches: JsonObject[] = [];
    return {
      patches,
      report(patch) { patches.push(patch); return Promise.reject(error); },
      getState() { return { reported: {} }; },
    };
  }

  it("a report the cloud refused is logged as a warning naming what was reported and why it failed", async () => {
    const log = new MemoryLog();
    const agent = new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW }, log);
    const sync = failingSync(new ShadowOtaError(SYNC_CODES.SYNC_REJECTED, "400 bad"));
    agent.attach(sync);
    await settle();
    expect(sync.patches).toEqual([{ config: { firmware_version: "1.0.0" } }]);
    expect(log.lines.filter((l) => l.event === "agent.report.failed"))
      .toEqual([{ level: "warn", event: "agent.report.failed", fields: { event: "agent.report.firmware", code: SYNC_CODES.SYNC_REJECTED } }]);
  });

  it("a report that waits for the next connect is logged at info level only", async () => {
    const log = new MemoryLog();
    const agent = new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW }, log);
    agent.attach(failingSync(new ShadowOtaError(SYNC_CODES.SYNC_NOT_CONNECTED, "offline")));
    await settle();
    expect(log.lines.filter((l) => l.event === "agent.report.failed"))
      .toEqual([{ level: "info", event: "agent.report.failed", fields: { event: "agent.report.firmware", code: SYNC_CODES.SYNC_NOT_CONNECTED } }]);
  });

  it("a failure that is not a ShadowOtaError is logged as UNKNOWN", async () => {
    const log = new MemoryLog();
    const agent = new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW }, log);
    agent.attach(failingSync(new Error("boom")));
    await settle();
    expect(log.lines.filter((l) => l.event === "agent.report.failed"))
      .toEqual([{ level: "warn", event: "agent.report.failed", fields: { event: "agent.report.firmware", code: "UNKNOWN" } }]);
  });

  it("a configuration report the device refuses to send is logged with the config event", async () => {
    const d = awsDevice();
    await connectWith(d, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    // A leaf nested deeper than AWS allows: ShadowSync refuses the report before sending it.
    const deep: JsonObject = {};
    let at = deep;
    for (let i = 0; i < 7; i++) { const next: JsonObject = {}; at[`k${i}`] = next; at = next; }
    at["v"] = 1;
    d.agent.onDesired({ desired: { config: deep }, delta: { config: deep }, changed: [["config", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "v"]], version: 3 });
    await settle();
    expect(reports(d)).toEqual([]);
    const failed = d.log.lines.filter((l) => l.event === "agent.report.failed" && l.fields?.["event"] === "agent.report.config");
    expect(failed).toEqual([{ level: "warn", event: "agent.report.failed", fields: { event: "agent.report.config", code: SYNC_CODES.SYNC_DEPTH_EXCEEDED } }]);
  });

  it("logs what it reports", async () => {
    const d = awsDevice();
    await connectWith(d, { desired: { config: { interval: 5 } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(d.log.lines.filter((l) => l.event === "agent.report.config")).toEqual([{ level: "info", event: "agent.report.config", fields: { keys: ["config"] } }]);
  });
});

describe("construction", () => {
  it("refuses an empty firmware version path", () => {
    expect(() => new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: [] }, new MemoryLog())).toThrow(new RangeError("firmwareVersionPath must not be empty"));
  });

  it("refuses to report before attach()", () => {
    const agent = new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW }, new MemoryLog());
    expect(() => agent.onError(new ShadowOtaError("APP_X", "x"))).toThrow(expect.objectContaining({ code: SYNC_CODES.SYNC_NOT_CONNECTED, message: "DeviceAgent.attach() was not called" }));
  });
});

describe("over a sync whose reported state is what the cloud last accepted", () => {
  /** A stand-in sync (SyncLike) that records reports and shows a fixed reported state. */
  function standIn(reported: JsonObject): SyncLike & { patches: JsonObject[] } {
    const patches: JsonObject[] = [];
    return { patches, report(patch) { patches.push(patch); return Promise.resolve(); }, getState() { return { reported }; } };
  }
  const change = (version: string) => ({ desired: { config: { firmware_version: version } }, delta: { config: { firmware_version: version } }, changed: [FW], version: 3, firmwareVersion: version });

  it("attach() reports the running version only when the reported state says otherwise", () => {
    const same = standIn({ config: { firmware_version: "1.0.0" } });
    new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW }, new MemoryLog()).attach(same);
    expect(same.patches).toEqual([]);
    const other = standIn({ config: { firmware_version: "0.9.0" } });
    new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW }, new MemoryLog()).attach(other);
    expect(other.patches).toEqual([{ config: { firmware_version: "1.0.0" } }]);
  });

  it("a desired version of the running precedence is answered with the running version while the reported state lags", () => {
    const sync = standIn({ config: { firmware_version: "0.9.0" } });
    const requests: string[] = [];
    const log = new MemoryLog();
    const agent = new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW, onFirmwareRequested: (r) => { requests.push(r.version); } }, log);
    agent.attach(sync);
    agent.onDesired(change("1.0.0+build.2"));
    expect(sync.patches).toEqual([{ config: { firmware_version: "1.0.0" } }, { config: { firmware_version: "1.0.0" } }]);
    expect(requests).toEqual([]);
    expect(log.lines.filter((l) => l.event === "agent.report.firmware")).toEqual([
      { level: "info", event: "agent.report.firmware", fields: { keys: ["config"] } },
      { level: "info", event: "agent.report.firmware", fields: { keys: ["config"] } },
    ]);
  });

  it("an error report that fails is logged with the error event", async () => {
    const log = new MemoryLog();
    const agent = new DeviceAgent({ firmwareVersion: "1.0.0", firmwareVersionPath: FW }, log);
    agent.attach({ report: () => Promise.reject(new ShadowOtaError(SYNC_CODES.SYNC_REJECTED, "no")), getState: () => ({ reported: { config: { firmware_version: "1.0.0" } } }) });
    agent.onError(new ShadowOtaError("APP_X", "x"));
    await settle();
    expect(log.lines.filter((l) => l.event === "agent.report.error")).toEqual([{ level: "info", event: "agent.report.error", fields: { keys: ["lastError"] } }]);
    expect(log.lines.filter((l) => l.event === "agent.report.failed").map((l) => l.fields)).toEqual([{ event: "agent.report.error", code: SYNC_CODES.SYNC_REJECTED }]);
  });
});

describe("what the device logs about desired changes", () => {
  it("a refused configuration leaf: warn, with its path and code", async () => {
    const d = awsDevice({ acceptConfig: (p) => (p[1] === "mode" ? new ShadowOtaError("CONFIG_VALUE_REFUSED", "no") : undefined) });
    await connectWith(d, { desired: { config: { mode: "eco" } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(d.log.lines.filter((l) => l.event === "agent.config.refused")).toEqual([{ level: "warn", event: "agent.config.refused", fields: { path: "config.mode", code: "CONFIG_VALUE_REFUSED" } }]);
  });

  it("a firmware version without a hook: warn, with requested and running", async () => {
    const d = awsDevice({ onFirmwareRequested: undefined });
    await connectWith(d, { desired: { config: { firmware_version: "1.1.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(d.log.lines.filter((l) => l.event === "agent.firmware.unhandled")).toEqual([{ level: "warn", event: "agent.firmware.unhandled", fields: { requested: "1.1.0", running: "1.0.0" } }]);
  });

  it("a version already handed on: debug, with the version", async () => {
    const d = awsDevice();
    await connectWith(d, { desired: { config: { firmware_version: "1.1.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    d.agent.onDesired({ desired: { config: { firmware_version: "1.1.0" } }, delta: { config: { firmware_version: "1.1.0" } }, changed: [FW], version: 3, firmwareVersion: "1.1.0" });
    expect(d.log.lines.filter((l) => l.event === "agent.firmware.already-requested")).toEqual([{ level: "debug", event: "agent.firmware.already-requested", fields: { requested: "1.1.0" } }]);
    expect(d.requests).toHaveLength(1);
  });
});
