/**
 * The device app's entry point on the Moddable SDK (manifest.json: module "device/main", `creation.main`).
 * The SDK runs its setup first (on the ESP32: Wi-Fi from `ssid`/`password`, then SNTP, so the clock is set
 * before TLS checks certificate dates), then calls the default export.
 *
 * Thin on purpose: it reads mc/config (device-config.ts), builds the Moddable ports and hands them to the one
 * app assembly every platform runs, `DeviceApp.start` (src/core/device-app.ts), exactly as the Node simulated
 * device (src/sim/device.ts) does. The ports:
 * - mqtt: Mqtt419Transport (the SDK's ECMA-419 MQTT client over SecureSocket) or, with `mqttClient: "legacy"`,
 *   ModdableMqttTransport (the legacy "mqtt" client over SecureSocket); both with the pinned CA, client
 *   certificate and key resources;
 * - kv: PreferenceStore (NVS); clock: moddableClock (Timer/Time); log: TraceLog; restart: SystemRestart over
 *   platformRestart (esp_restart() on the ESP32, a re-exec of mcsim in the simulator: src/device/restart);
 * - slot: XsOtaSlot, the xsmc binding of the native OTA module (src/native/xs/ota-slot-xs.ts; on the
 *   simulator over the flash file `otaFlashFile`);
 * - source: ModdableHttpsSource (http Request + SecureSocket, the same pinned CA, the configured allow-list);
 * - heap: moddableHeap (the SDK's instrumentation counters), read by the log mirror when `logLevel` is not off.
 * So at power-on the OTA controller reads the booted image (its descriptor's version, `firmwareVersion` only
 * as the fallback for an unstamped image) and what the last restart meant, the sync reports that version,
 * and a desired version other than it runs the update (download → verify → stage → restart → self-test →
 * markValid or rollback), reported under `reported.{updateReportKey}`.
 *
 * Not here: protocol and OTA logic (src/core), retries (the transport and the controller own them).
 */
import config from "mc/config";
import Resource from "Resource";
import { DeviceApp, type DeviceAppConfig } from "../core/device-app";
import { ShadowOtaError } from "../core/errors";
import type { OtaControllerConfig } from "../core/ota-controller";
import { XsOtaSlot, type XsOtaSlotOptions } from "../native/xs/ota-slot-xs";
import type { Log } from "../ports/log";
import { parseDeviceConfig } from "./device-config";
import { DEVICE_CODES } from "./device-errors";
import { moddableHeap } from "./heap-moddable";
import { ModdableHttpsSource } from "./https-moddable";
import { moddableClock, setUtcOffsetMinutes } from "./moddable-clock";
import { Mqtt419Transport } from "./mqtt-419";
import { ModdableMqttTransport, type ModdableMqttOptions } from "./mqtt-moddable";
import { PreferenceStore } from "./preference-kv";
import { CERT_RESOURCES, SIGNING_KEY_RESOURCE } from "./resources";
import { SystemRestart } from "./system-restart";
import { platformRestart } from "./restart/platform-restart";
import { TraceLog } from "./trace-log";

export { CERT_RESOURCES };

function resource(name: string): ByteBuffer {
  if (!Resource.exists(name)) {
    throw new ShadowOtaError(DEVICE_CODES.DEVICE_RESOURCE_MISSING, `resource ${name} is not in the build`, { detail: { resource: name } });
  }
  return new Resource(name);
}

/** Builds the ports and starts the app. Throws ShadowOtaError (config, resources, OTA slot, names, version). */
export function startDevice(rawConfig: Record<string, unknown>, log: Log): DeviceApp {
  const cfg = parseDeviceConfig(rawConfig);
  log.log("info", "device.start", {
    cloud: cfg.cloud, thing: cfg.thing, host: cfg.host, port: cfg.port, mqttClient: cfg.mqttClient, firmwareVersion: cfg.firmwareVersion,
    firmwareVersionPath: cfg.firmwareVersionPath.join("."), firmwareBaseUrl: cfg.ota.firmwareBaseUrl,
    firmwareHosts: cfg.ota.allowedHosts.join(","),
  });

  const ca = resource(CERT_RESOURCES.ca);
  const mqttOptions: ModdableMqttOptions = {
    host: cfg.host,
    port: cfg.port,
    clientId: cfg.thing,
    ca,
    clientCertificate: resource(CERT_RESOURCES.certificate),
    clientKey: resource(CERT_RESOURCES.key),
    keepaliveMs: cfg.keepaliveMs,
  };
  if (cfg.mqttUser !== undefined) mqttOptions.user = cfg.mqttUser;
  if (cfg.alpn !== undefined) mqttOptions.alpn = cfg.alpn;

  const slotOptions: XsOtaSlotOptions = {};
  if (cfg.ota.flashFile !== undefined) slotOptions.flashPath = cfg.ota.flashFile;
  const slot = new XsOtaSlot(slotOptions);

  const ota: OtaControllerConfig = {
    source: { naming: cfg.cloud, baseUrl: cfg.ota.firmwareBaseUrl, allowedHosts: cfg.ota.allowedHosts },
    projectName: cfg.ota.projectName,
    allowDowngrade: cfg.ota.allowDowngrade,
    selfTestWindowMs: cfg.ota.selfTestWindowMs,
    fallbackVersion: cfg.firmwareVersion,
  };
  if (cfg.ota.chipId !== undefined) ota.chipId = cfg.ota.chipId;
  if (cfg.ota.chipRevFull !== undefined) ota.chipRevFull = cfg.ota.chipRevFull;
  // The trusted image-signing key, when the build carries one (docs/signing.md): then only signed images boot.
  if (Resource.exists(SIGNING_KEY_RESOURCE)) ota.signingKey = new Uint8Array(resource(SIGNING_KEY_RESOURCE) as ArrayBuffer);

  const appConfig: DeviceAppConfig = {
    cloud: cfg.cloud,
    thingName: cfg.thing,
    firmwareVersionPath: cfg.firmwareVersionPath,
    reportedFirmwarePath: cfg.reportedFirmwarePath,
    updateReportKey: cfg.ota.updateReportKey,
    ota,
  };
  if (cfg.shadowName !== undefined) appConfig.shadowName = cfg.shadowName;
  if (cfg.ota.firmwareBaseUrlPath !== undefined) appConfig.firmwareBaseUrlPath = cfg.ota.firmwareBaseUrlPath;
  if (cfg.logs !== undefined) appConfig.logs = cfg.logs;

  // Local time for update windows (moddableClock.utcOffsetMinutes reads Time.timezone + Time.dst).
  if (cfg.utcOffsetMinutes !== undefined) setUtcOffsetMinutes(cfg.utcOffsetMinutes);

  try {
    const app = DeviceApp.start({
      // The same options suit both (Mqtt419Options is a superset of ModdableMqttOptions).
      mqtt: cfg.mqttClient === "legacy" ? new ModdableMqttTransport(mqttOptions) : new Mqtt419Transport({ ...mqttOptions, log }),
      kv: new PreferenceStore(),
      clock: moddableClock,
      log,
      slot,
      source: new ModdableHttpsSource({ ca, allowedHosts: cfg.ota.allowedHosts }),
      restart: new SystemRestart(log, platformRestart),
      heap: moddableHeap(),
    }, appConfig);
    log.log("info", "device.boot", { version: app.boot.runningVersion, partition: app.boot.partition, ota: app.boot.state });
    return app;
  } catch (e) {
    slot.close(); // the app did not start: nothing else holds the native slot
    throw e;
  }
}

let app: DeviceApp | undefined;

export default function main(): void {
  const log = new TraceLog("info");
  try {
    app = startDevice(config, log);
  } catch (e) {
    // Nothing can reach the cloud without a valid configuration, certificates and OTA slot: say why, once.
    if (e instanceof ShadowOtaError) log.log("error", e.code, { message: e.message, ...(e.detail ?? {}), platformCode: e.platformCode ?? null });
    else log.log("error", "device.start-failed", { message: e instanceof Error ? e.message : String(e) });
  }
}

/** The running app, for the debugger (xsbug); undefined when start failed. */
export function runningApp(): DeviceApp | undefined {
  return app;
}
