/**
 * The device app's configuration reader (src/device/device-config.ts) with the `config` object of the real
 * manifest.json — what mcconfig hands the app as mc/config — and with command-line style overrides, which
 * always arrive as strings. Also the trace() log line format. Runs on Node: both modules import nothing
 * from the Moddable SDK (the rest of src/device is type-checked by tsconfig.device.json and the mcconfig build,
 * docs/moddable.md).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { DEFAULT_MQTT_CLIENT, parseDeviceConfig } from "../../src/device/device-config";
import { DEVICE_CODES } from "../../src/device/device-errors";
import { formatLogLine } from "../../src/device/trace-log";
import { isShadowOtaError } from "../../src/core/errors";

const manifest = JSON.parse(readFileSync(path.resolve(__dirname, "..", "..", "manifest.json"), "utf8")) as { config: Record<string, unknown> };

/** mc/config as mcconfig builds it: manifest config, then `key=value` arguments (strings) on top. */
function mcConfig(overrides: Record<string, string> = {}): Record<string, unknown> {
  return { sntp: "pool.ntp.org", file: { root: "build/sim-files/" }, ...manifest.config, ...overrides };
}

function codeOf(fn: () => unknown): { code: string; key: unknown } {
  try {
    fn();
  } catch (e) {
    if (isShadowOtaError(e)) return { code: e.code, key: e.detail?.key };
    throw e;
  }
  throw new Error("did not throw");
}

describe("parseDeviceConfig with manifest.json's config", () => {
  it("gives the AWS seed's defaults", () => {
    expect(parseDeviceConfig(mcConfig())).toEqual({
      cloud: "aws", thing: "esp32-01", host: "localhost", port: 8883, firmwareVersion: "0.1.0",
      firmwareVersionPath: ["config", "firmware_version"], reportedFirmwarePath: ["config", "firmware_version"],
      keepaliveMs: 60_000, mqttClient: "419",
      ota: {
        firmwareBaseUrl: "", allowedHosts: [], projectName: "xs_esp32", allowDowngrade: false,
        selfTestWindowMs: 60_000, updateReportKey: "firmwareUpdate",
      },
      logs: { minLevel: "warn", ratePerMin: 30, healthEveryMs: 300_000 },
    });
  });

  it("switches to the Azure seed's paths and user name with cloud=azure", () => {
    const c = parseDeviceConfig(mcConfig({ cloud: "azure", thing: "dev-7", host: "hub.example.test" }));
    expect(c.firmwareVersionPath).toEqual(["updateVersion"]);
    expect(c.reportedFirmwarePath).toEqual(["firmwareVersion"]);
    expect(c.mqttUser).toBe("hub.example.test/dev-7/?api-version=2021-04-12");
    expect(c.shadowName).toBeUndefined();
  });

  it("takes mqttClient 419 or legacy; \"\" is the default", () => {
    expect(parseDeviceConfig(mcConfig({ mqttClient: "419" })).mqttClient).toBe("419");
    expect(parseDeviceConfig(mcConfig({ mqttClient: "legacy" })).mqttClient).toBe("legacy");
    expect(parseDeviceConfig(mcConfig({ mqttClient: "" })).mqttClient).toBe(DEFAULT_MQTT_CLIENT);
  });

  it("accepts command-line strings for numbers and explicit paths", () => {
    const c = parseDeviceConfig(mcConfig({ port: "443", keepaliveMs: "30000", alpn: "x-amzn-mqtt-ca", shadow: "ota", firmwareVersionPath: "fw.version" }));
    expect(c).toMatchObject({ port: 443, keepaliveMs: 30_000, alpn: "x-amzn-mqtt-ca", shadowName: "ota", firmwareVersionPath: ["fw", "version"], reportedFirmwarePath: ["fw", "version"] });
  });

  it.each([
    [{ cloud: "gcp" }, "cloud"],
    [{ cloud: "" }, "cloud"],
    [{ thing: "" }, "thing"],
    [{ host: "" }, "host"],
    [{ host: "a\nb" }, "host"],
    [{ port: "0" }, "port"],
    [{ port: "65536" }, "port"],
    [{ port: "88a" }, "port"],
    [{ port: "-1" }, "port"],
    [{ port: "1e3" }, "port"],
    [{ keepaliveMs: "x" }, "keepaliveMs"],
    [{ mqttClient: "mqtt5" }, "mqttClient"],
    [{ firmwareVersion: "" }, "firmwareVersion"],
    [{ firmwareVersionPath: "config..fw" }, "firmwareVersionPath"],
    [{ firmwareVersionPath: "$version" }, "firmwareVersionPath"],
    [{ reportedFirmwarePath: "a b" }, "reportedFirmwarePath"],
    [{ cloud: "azure", shadow: "ota" }, "shadow"],
    [{ firmwareBaseUrl: "http://fw.example.test/fw/" }, "firmwareBaseUrl"],
    [{ firmwareBaseUrl: "https://fw.example.test/fw" }, "firmwareBaseUrl"],
    [{ firmwareBaseUrl: "https://fw.example.test/fw/?sig=1" }, "firmwareBaseUrl"],
    [{ firmwareBaseUrl: "https://user@fw.example.test/fw/" }, "firmwareBaseUrl"],
    [{ firmwareBaseUrl: "https://[::1]/fw/" }, "firmwareBaseUrl"],
    [{ firmwareBaseUrl: "https://fw.example.test/fw/", firmwareHosts: "other.example.test" }, "firmwareHosts"],
    [{ firmwareHosts: "fw.example.test:443" }, "firmwareHosts"],
    [{ firmwareHosts: "fw.example.test,,x" }, "firmwareHosts"],
    [{ firmwareHosts: "-bad.example" }, "firmwareHosts"],
    [{ firmwareBaseUrlPath: "a..b" }, "firmwareBaseUrlPath"],
    [{ projectName: "x".repeat(32) }, "projectName"],
    [{ chipId: "65535" }, "chipId"],
    [{ chipId: "0x9" }, "chipId"],
    [{ chipRevision: "-1" }, "chipRevision"],
    [{ allowDowngrade: "yes" }, "allowDowngrade"],
    [{ selfTestWindowMs: "1000" }, "selfTestWindowMs"],
    [{ selfTestWindowMs: "3600001" }, "selfTestWindowMs"],
    [{ updateReportKey: "firmware.update" }, "updateReportKey"],
    [{ updateReportKey: "$fw" }, "updateReportKey"],
  ])("refuses %j with DEVICE_CONFIG_INVALID naming %s", (over, key) => {
    expect(codeOf(() => parseDeviceConfig(mcConfig(over as Record<string, string>)))).toEqual({ code: DEVICE_CODES.DEVICE_CONFIG_INVALID, key });
  });

  it("refuses a non-string where a string belongs and a fractional port", () => {
    expect(codeOf(() => parseDeviceConfig({ ...mcConfig(), thing: 7 }))).toEqual({ code: "DEVICE_CONFIG_INVALID", key: "thing" });
    expect(codeOf(() => parseDeviceConfig({ ...mcConfig(), port: 8883.5 }))).toEqual({ code: "DEVICE_CONFIG_INVALID", key: "port" });
  });
});

describe("parseDeviceConfig: the OTA keys", () => {
  it("takes the base URL's host as the allow-list when firmwareHosts is empty", () => {
    const c = parseDeviceConfig(mcConfig({ firmwareBaseUrl: "https://FW.example.test:8443/firmware/" }));
    expect(c.ota.firmwareBaseUrl).toBe("https://FW.example.test:8443/firmware/");
    expect(c.ota.allowedHosts).toEqual(["fw.example.test"]);
  });

  it("reads firmwareHosts as a comma-separated string (command line) or an array (manifest), lowercased", () => {
    const base = "https://blob.example.test/c/";
    expect(parseDeviceConfig(mcConfig({ firmwareBaseUrl: base, firmwareHosts: " blob.example.test , CDN.example.test" })).ota.allowedHosts)
      .toEqual(["blob.example.test", "cdn.example.test"]);
    expect(parseDeviceConfig({ ...mcConfig({ firmwareBaseUrl: base }), firmwareHosts: ["blob.example.test", "10.0.0.7"] }).ota.allowedHosts)
      .toEqual(["blob.example.test", "10.0.0.7"]);
  });

  it("accepts the command line's strings for every OTA key", () => {
    const c = parseDeviceConfig(mcConfig({
      firmwareBaseUrl: "https://fw.example.test/f/", firmwareBaseUrlPath: "firmware.baseUrl", projectName: "shadow_ota",
      chipId: "9", chipRevision: "301", allowDowngrade: "true", selfTestWindowMs: "90000", updateReportKey: "fwUpdate",
      otaFlashFile: "build/sim-flash.bin",
    }));
    expect(c.ota).toEqual({
      firmwareBaseUrl: "https://fw.example.test/f/", allowedHosts: ["fw.example.test"], firmwareBaseUrlPath: ["firmware", "baseUrl"],
      projectName: "shadow_ota", chipId: 9, chipRevFull: 301, allowDowngrade: true, selfTestWindowMs: 90_000,
      updateReportKey: "fwUpdate", flashFile: "build/sim-flash.bin",
    });
  });

  it("takes JSON types from the manifest (booleans and numbers)", () => {
    const c = parseDeviceConfig({ ...mcConfig(), allowDowngrade: true, chipId: 0, chipRevision: 100 });
    expect(c.ota).toMatchObject({ allowDowngrade: true, chipId: 0, chipRevFull: 100 });
    expect(parseDeviceConfig({ ...mcConfig(), allowDowngrade: "false" }).ota.allowDowngrade).toBe(false);
  });

  it("refuses a firmwareHosts that is neither a string nor an array, and non-string entries", () => {
    expect(codeOf(() => parseDeviceConfig({ ...mcConfig(), firmwareHosts: 7 }))).toEqual({ code: "DEVICE_CONFIG_INVALID", key: "firmwareHosts" });
    expect(codeOf(() => parseDeviceConfig({ ...mcConfig(), firmwareHosts: ["ok.example", 7] }))).toEqual({ code: "DEVICE_CONFIG_INVALID", key: "firmwareHosts" });
    expect(codeOf(() => parseDeviceConfig({ ...mcConfig(), firmwareHosts: Array.from({ length: 17 }, (_, i) => `h${i}.example`) })))
      .toEqual({ code: "DEVICE_CONFIG_INVALID", key: "firmwareHosts" });
  });
});

describe("formatLogLine", () => {
  it("prints level, event and JSON fields on one line", () => {
    expect(formatLogLine("info", "device.start", { port: 8883 })).toBe('info device.start {"port":8883}\n');
    expect(formatLogLine("warn", "x")).toBe("warn x\n");
  });
  it("never throws on fields JSON cannot print", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(formatLogLine("error", "e", cyclic)).toBe("error e [unprintable]\n");
    expect(formatLogLine("error", "e", { n: 10n })).toBe("error e [unprintable]\n");
  });
});

describe("parseDeviceConfig: the logs keys (log mirror)", () => {
  it("takes a level, a rate and a health period, as numbers or command-line strings; off turns the mirror off", () => {
    expect(parseDeviceConfig(mcConfig({ logLevel: "info", logRatePerMin: "120", healthEveryMs: "0" })).logs).toEqual({ minLevel: "info", ratePerMin: 120, healthEveryMs: 0 });
    expect(parseDeviceConfig({ ...mcConfig(), logRatePerMin: 6000, healthEveryMs: 1000 }).logs).toEqual({ minLevel: "warn", ratePerMin: 6000, healthEveryMs: 1000 });
    expect(parseDeviceConfig(mcConfig({ logLevel: "off" })).logs).toBeUndefined();
  });

  it.each([
    [{ logLevel: "trace" }, "logLevel"],
    [{ logLevel: "WARN" }, "logLevel"],
    [{ logRatePerMin: "0" }, "logRatePerMin"],
    [{ logRatePerMin: "6001" }, "logRatePerMin"],
    [{ logRatePerMin: "1.5" }, "logRatePerMin"],
    [{ healthEveryMs: "999" }, "healthEveryMs"],
    [{ healthEveryMs: "86400001" }, "healthEveryMs"],
  ])("refuses %j with DEVICE_CONFIG_INVALID naming %s", (over, key) => {
    expect(codeOf(() => parseDeviceConfig(mcConfig(over as Record<string, string>)))).toEqual({ code: DEVICE_CODES.DEVICE_CONFIG_INVALID, key });
  });
});
