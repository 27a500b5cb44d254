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
 *   keepaliveMs          MQTT keepalive in milliseconds (the SDK client's `timeout`)
 * Other keys (ssid, password, sntp, file, …) belong to the SDK and are ignored here.
 *
 * Pure: no Moddable import, so Jest tests it on Node (test/device/device-config.test.ts). Not here: the
 * certificates (resources, read in main.ts), name and SemVer grammars (ShadowSync and DeviceAgent check them).
 */
import { ShadowOtaError } from "../core/errors";
import type { CloudKind } from "../core/cloud-protocol";
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
}

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

  const out: DeviceConfig = { cloud, thing, host, port, firmwareVersion, firmwareVersionPath, reportedFirmwarePath, keepaliveMs };
  if (shadow !== "") out.shadowName = shadow;
  if (mqttUser !== "") out.mqttUser = mqttUser;
  if (alpn !== "") out.alpn = alpn;
  return out;
}
