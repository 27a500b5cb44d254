/**
 * Reads the device app's configuration: the `config` object of manifest.json as the Moddable SDK hands it
 * to the app (`import config from "mc/config"`), where any key may have been overridden on the mcconfig
 * command line (`cloud=azure thing=esp32-01 port=8883` — such overrides always arrive as strings, so numbers
 * are accepted as decimal strings too).
 *
 * Keys (defaults in manifest.json):
 *   cloud                "aws" | "azure"
 *   thing                AWS thing name / Azure device id; also the MQTT client id (checked by ShadowSync)
 *   shadow               AWS named shadow; "" = the classic shadow (AWS only)
 *   host, port           the MQTT broker (TLS); the server certificate must name `host`
 *   firmwareVersion      the version this build reports as running (strict SemVer, checked by DeviceAgent)
 *   firmwareVersionPath  dotted path of the desired firmware version; "" = the seed's default
 *                        (aws: config.firmware_version, azure: updateVersion)
 *   reportedFirmwarePath dotted path where the running version is reported; "" = the seed's default
 *                        (aws: same as firmwareVersionPath, azure: firmwareVersion)
 *   mqttUser             MQTT user name; "" = none for AWS, `<host>/<thing>/?api-version=2021-04-12` for Azure
 *   alpn                 TLS ALPN protocol, "" = none (e.g. "x-amzn-mqtt-ca" for AWS IoT on port 443)
 *   keepaliveMs          MQTT keepalive in milliseconds
 *   mqttClient           which SDK MQTT client the transport runs on: "419" (the ECMA-419 client,
 *                        src/device/mqtt-419.ts: QoS 1, publish resolved on PUBACK) or "legacy" (the "mqtt"
 *                        module, src/device/mqtt-moddable.ts: QoS 0); "" = "419"
 * OTA keys (OtaControllerConfig, src/core/ota-controller.ts; DeviceAppConfig, src/core/device-app.ts):
 *   firmwareBaseUrl      https base URL ending with "/" the images are fetched from ({base}1.0.5.bin on AWS,
 *                        {base}v1_0_5.bin on Azure); "" = none configured: every update is refused with
 *                        DOWNLOAD_URL_INVALID (reported), the sync still runs
 *   firmwareHosts        the download allow-list: an array of host names, or one string of comma-separated
 *                        names (command line); "" = the host of firmwareBaseUrl alone
 *   firmwareBaseUrlPath  dotted desired path that may carry another base URL (used only for allowed hosts);
 *                        "" = none
 *   projectName          esp_app_desc_t.project_name every image must carry; default "xs_esp32" (the ESP-IDF
 *                        project the Moddable SDK builds, build/devices/esp32/xsProj-esp32)
 *   chipId               esp_image_header_t.chip_id images must carry (0 = ESP32, 2 = ESP32-S2, 9 = ESP32-S3,
 *                        ...); "" = the controller does not check (the native slot still checks the chip it
 *                        was built for)
 *   chipRevision         this chip's revision as major*100+minor (e.g. 301 for v3.1); "" = unchecked
 *   allowDowngrade       true/false (default false): accept a desired version older than the running one
 *   selfTestWindowMs     time after a restart into a new image to reconnect and get the twin (default 60000)
 *   updateReportKey      the reported member carrying the update's progress (default "firmwareUpdate")
 *   otaFlashFile         Moddable's desktop simulator only: the flash file the OTA slot runs on (absolute
 *                        path); ignored on the ESP32
 * Logs to the cloud (LogMirror, src/core/log-mirror.ts; DeviceAppConfig.logs):
 *   logLevel             lowest level mirrored to the cloud: debug | info | warn | error, or off (no mirror);
 *                        default warn
 *   logRatePerMin        lines a minute (a token bucket holding min(10, rate)): 1..6000; default 30
 *   healthEveryMs        health line period (uptime, reconnects, OTA state, heap): 0 = none, else
 *                        1000..86400000; default 300000
 * Local time (update windows, src/core/update-policy.ts):
 *   utcOffsetMinutes     the device's offset from UTC in minutes, -720..840 (a leading "-" allowed in the
 *                        string form); main.ts sets the SDK's Time.timezone from it. Default: none (UTC)
 * The running version comes from the booted image's descriptor; `firmwareVersion` is its fallback for an
 * image whose descriptor version is not SemVer (the factory app, an unstamped Moddable build).
 * Other keys (ssid, password, sntp, file, …) belong to the SDK and are ignored here.
 *
 * Pure: no Moddable import, so Jest tests it on Node (test/device/device-config.test.ts). Not here: the
 * certificates (resources, read in main.ts), name and SemVer grammars (ShadowSync and DeviceAgent check them).
 */
import { ShadowOtaError } from "../core/errors";
import type { CloudKind } from "../core/cloud-protocol";
import { urlHost } from "../core/firmware-url";
import { DEFAULT_HEALTH_EVERY_MS, DEFAULT_LOG_MIN_LEVEL, DEFAULT_LOG_RATE_PER_MIN, LOG_LEVELS, MIN_HEALTH_EVERY_MS } from "../core/log-mirror";
import type { LogLevel } from "../ports/log";
import { DEVICE_CODES } from "./device-errors";

export interface DeviceConfig {
  cloud: CloudKind;
  thing: string;
  shadowName?: string;
  host: string;
  port: number;
  firmwareVersion: string;
  firmwareVersionPath: string[];
  reportedFirmwarePath: string[];
  mqttUser?: string;
  alpn?: string;
  keepaliveMs: number;
  mqttClient: MqttClientKind;
  ota: DeviceOtaConfig;
  /** Absent when logLevel is "off". */
  logs?: DeviceLogsConfig;
  /** Offset from UTC for update windows; absent = not configured (UTC). */
  utcOffsetMinutes?: number;
}

export interface DeviceLogsConfig {
  minLevel: LogLevel;
  ratePerMin: number;
  healthEveryMs: number;
}

export interface DeviceOtaConfig {
  /** "" when none is configured. */
  firmwareBaseUrl: string;
  /** Lowercase host names; never empty when firmwareBaseUrl is set. */
  allowedHosts: string[];
  firmwareBaseUrlPath?: string[];
  projectName: string;
  chipId?: number;
  chipRevFull?: number;
  allowDowngrade: boolean;
  selfTestWindowMs: number;
  updateReportKey: string;
  flashFile?: string;
}

/** The SDK MQTT clients the device app can run over (docs/moddable.md, "MQTT on the device"). */
export type MqttClientKind = "419" | "legacy";
export const DEFAULT_MQTT_CLIENT: MqttClientKind = "419";

export const DEFAULT_PROJECT_NAME = "xs_esp32";
export const DEFAULT_SELF_TEST_WINDOW_MS = 60_000;
export const DEFAULT_UPDATE_REPORT_KEY = "firmwareUpdate";

/** The seeds' paths (see the issue: AWS `config.firmware_version`, Azure `updateVersion`). */
export const DEFAULT_FIRMWARE_PATHS: Readonly<Record<CloudKind, { desired: string; reported: string }>> = {
  aws: { desired: "config.firmware_version", reported: "config.firmware_version" },
  azure: { desired: "updateVersion", reported: "firmwareVersion" },
};

/** Azure IoT Hub's MQTT user name for a device (X.509 authentication: no password). */
export const AZURE_API_VERSION = "2021-04-12";

function invalid(key: string, value: unknown, why: string): ShadowOtaError {
  const shown = typeof value === "string" ? value.slice(0, 40) : typeof value;
  return new ShadowOtaError(DEVICE_CODES.DEVICE_CONFIG_INVALID, `config.${key} ${why}`, { detail: { key, value: shown } });
}

function text(raw: Record<string, unknown>, key: string, options: { required: boolean }): string {
  const v = raw[key];
  if (v === undefined || v === "") {
    if (options.required) throw invalid(key, v, "is required");
    return "";
  }
  if (typeof v !== "string") throw invalid(key, v, "must be a string");
  if (/[\u0000-\u001f\u007f]/.test(v)) throw invalid(key, v, "must not contain control characters");
  return v;
}

function integer(raw: Record<string, unknown>, key: string, min: number, max: number): number {
  const v = raw[key];
  let n: number;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && /^[0-9]{1,10}$/.test(v)) n = Number(v);
  else throw invalid(key, v, `must be an integer ${min}..${max}`);
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(key, v, `must be an integer ${min}..${max}`);
  return n;
}

/** "a.b.c" -> ["a","b","c"]; every segment non-empty and free of "$" and spaces (not valid twin keys). */
function dottedPath(raw: Record<string, unknown>, key: string, fallback: string): string[] {
  const given = text(raw, key, { required: false });
  const p = (given === "" ? fallback : given).split(".");
  if (p.length > 8 || p.some((s) => s.length === 0 || s.length > 64 || /[$\s]/.test(s))) {
    throw invalid(key, given, "must be a dotted path of 1..8 non-empty keys without '$' or spaces");
  }
  return p;
}

function boolean(raw: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = raw[key];
  if (v === undefined || v === "") return fallback;
  if (v === true || v === "true") return true;
  if (v === false || v === "false") return false;
  throw invalid(key, v, "must be true or false");
}

/** An integer, or undefined when the key is absent or "". */
function optionalInteger(raw: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = raw[key];
  return v === undefined || v === "" ? undefined : integer(raw, key, min, max);
}

/** A host name or IPv4 address as the HTTPS byte source takes it (lowercase; no IPv6 literal, no port). */
const HOST_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

function hostList(raw: Record<string, unknown>, key: string): string[] {
  const v = raw[key];
  if (v === undefined || v === "") return [];
  let items: unknown[];
  if (typeof v === "string") items = v.split(",").map((h) => h.trim());
  else if (Array.isArray(v)) items = v;
  else throw invalid(key, v, "must be an array of host names or a comma-separated string");
  if (items.length > 16) throw invalid(key, `${items.length} hosts`, "must name at most 16 hosts");
  return items.map((h) => {
    if (typeof h !== "string" || h.length > 253 || !HOST_NAME.test(h.toLowerCase())) {
      throw invalid(key, typeof h === "string" ? h : typeof h, "must hold host names or IPv4 addresses (letters, digits, '-', '.'), no ports");
    }
    return h.toLowerCase();
  });
}

/** A reported-state member name: 1..64 characters, no '$', '.', spaces or controls. */
function memberName(raw: Record<string, unknown>, key: string, fallback: string): string {
  const given = text(raw, key, { required: false });
  const v = given === "" ? fallback : given;
  if (v.length > 64 || /[$.\s]/.test(v)) throw invalid(key, v, "must be 1..64 characters without '$', '.' or spaces");
  return v;
}

function otaConfig(raw: Record<string, unknown>): DeviceOtaConfig {
  const firmwareBaseUrl = text(raw, "firmwareBaseUrl", { required: false });
  let allowedHosts = hostList(raw, "firmwareHosts");
  if (firmwareBaseUrl !== "") {
    if (!/^https:\/\/[^\s/?#]+\/[^\s?#]*$/.test(firmwareBaseUrl) || !firmwareBaseUrl.endsWith("/")) {
      throw invalid("firmwareBaseUrl", firmwareBaseUrl, 'must be an https URL ending with "/" (no query)');
    }
    const host = urlHost(firmwareBaseUrl);
    if (host === undefined || host.includes(":")) throw invalid("firmwareBaseUrl", firmwareBaseUrl, "must name a host name or IPv4 address");
    if (allowedHosts.length === 0) allowedHosts = [host];
    else if (!allowedHosts.includes(host)) throw invalid("firmwareHosts", allowedHosts.join(","), `must include the host of firmwareBaseUrl (${host})`);
  }
  const projectName = text(raw, "projectName", { required: false }) || DEFAULT_PROJECT_NAME;
  // esp_app_desc_t.project_name is 32 bytes with its NUL.
  if (projectName.length > 31 || !/^[\x20-\x7e]+$/.test(projectName)) throw invalid("projectName", projectName, "must be 1..31 printable ASCII characters");
  const out: DeviceOtaConfig = {
    firmwareBaseUrl,
    allowedHosts,
    projectName,
    allowDowngrade: boolean(raw, "allowDowngrade", false),
    selfTestWindowMs: raw["selfTestWindowMs"] === undefined || raw["selfTestWindowMs"] === ""
      ? DEFAULT_SELF_TEST_WINDOW_MS : integer(raw, "selfTestWindowMs", 5_000, 3_600_000),
    updateReportKey: memberName(raw, "updateReportKey", DEFAULT_UPDATE_REPORT_KEY),
  };
  if (text(raw, "firmwareBaseUrlPath", { required: false }) !== "") out.firmwareBaseUrlPath = dottedPath(raw, "firmwareBaseUrlPath", "");
  const chipId = optionalInteger(raw, "chipId", 0, 0xfffe); // 0xFFFF is ESP_CHIP_ID_INVALID
  if (chipId !== undefined) out.chipId = chipId;
  const chipRevFull = optionalInteger(raw, "chipRevision", 0, 0xfffe);
  if (chipRevFull !== undefined) out.chipRevFull = chipRevFull;
  const flashFile = text(raw, "otaFlashFile", { required: false });
  if (flashFile !== "") out.flashFile = flashFile;
  return out;
}

function logsConfig(raw: Record<string, unknown>): DeviceLogsConfig | undefined {
  const level = text(raw, "logLevel", { required: false }) || DEFAULT_LOG_MIN_LEVEL;
  if (level === "off") return undefined;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw invalid("logLevel", level, `must be one of ${LOG_LEVELS.join(", ")} or off`);
  const ratePerMin = optionalInteger(raw, "logRatePerMin", 1, 6000) ?? DEFAULT_LOG_RATE_PER_MIN;
  const healthEveryMs = optionalInteger(raw, "healthEveryMs", 0, 86_400_000) ?? DEFAULT_HEALTH_EVERY_MS;
  if (healthEveryMs !== 0 && healthEveryMs < MIN_HEALTH_EVERY_MS) throw invalid("healthEveryMs", healthEveryMs, `must be 0 (none) or ${MIN_HEALTH_EVERY_MS}..86400000`);
  return { minLevel: level as LogLevel, ratePerMin, healthEveryMs };
}

/**
 * Validates `raw` (mc/config) and fills in the defaults that depend on the cloud.
 * Throws DEVICE_CONFIG_INVALID with `detail.key` for the first bad key.
 */
export function parseDeviceConfig(raw: Record<string, unknown>): DeviceConfig {
  const cloud = text(raw, "cloud", { required: true });
  if (cloud !== "aws" && cloud !== "azure") throw invalid("cloud", cloud, 'must be "aws" or "azure"');
  const thing = text(raw, "thing", { required: true });
  const shadow = text(raw, "shadow", { required: false });
  if (shadow !== "" && cloud !== "aws") throw invalid("shadow", shadow, "is AWS only (named shadows)");
  const host = text(raw, "host", { required: true });
  const port = integer(raw, "port", 1, 65535);
  const firmwareVersion = text(raw, "firmwareVersion", { required: true });
  const defaults = DEFAULT_FIRMWARE_PATHS[cloud];
  const firmwareVersionPath = dottedPath(raw, "firmwareVersionPath", defaults.desired);
  // AWS reports the running version where desired holds the wanted one, so the delta clears by itself.
  const reportedFirmwarePath = dottedPath(raw, "reportedFirmwarePath",
    cloud === "aws" ? firmwareVersionPath.join(".") : defaults.reported);
  let mqttUser = text(raw, "mqttUser", { required: false });
  if (mqttUser === "" && cloud === "azure") mqttUser = `${host}/${thing}/?api-version=${AZURE_API_VERSION}`;
  const alpn = text(raw, "alpn", { required: false });
  const keepaliveMs = raw["keepaliveMs"] === undefined ? 60_000 : integer(raw, "keepaliveMs", 0, 65_535_000);
  const mqttClient = text(raw, "mqttClient", { required: false }) || DEFAULT_MQTT_CLIENT;
  if (mqttClient !== "419" && mqttClient !== "legacy") throw invalid("mqttClient", mqttClient, 'must be "419" or "legacy"');

  const ota = otaConfig(raw);
  const logs = logsConfig(raw);

  const out: DeviceConfig = { cloud, thing, host, port, firmwareVersion, firmwareVersionPath, reportedFirmwarePath, keepaliveMs, mqttClient, ota };
  if (shadow !== "") out.shadowName = shadow;
  if (mqttUser !== "") out.mqttUser = mqttUser;
  if (alpn !== "") out.alpn = alpn;
  if (logs !== undefined) out.logs = logs;
  if (raw["utcOffsetMinutes"] !== undefined) out.utcOffsetMinutes = signedInteger(raw, "utcOffsetMinutes", -720, 840);
  return out;
}

/** As integer(), with an optional leading "-" in the string form (config values given to mcconfig are strings). */
function signedInteger(raw: Record<string, unknown>, key: string, min: number, max: number): number {
  const v = raw[key];
  let n: number;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && /^-?[0-9]{1,10}$/.test(v)) n = Number(v);
  else throw invalid(key, v, `must be an integer ${min}..${max}`);
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(key, v, `must be an integer ${min}..${max}`);
  return n;
}
