/**
 * The device app's entry point on the Moddable SDK (manifest.json: module "device/main", `creation.main`).
 * The SDK runs its setup first (on the ESP32: Wi-Fi from `ssid`/`password`, then SNTP, so the clock is set
 * before TLS checks certificate dates), then calls the default export.
 *
 * It reads mc/config (device-config.ts), builds the Moddable adapters — ModdableMqttTransport (mqtt +
 * SecureSocket with the CA, client certificate and key from the build's resources), PreferenceStore, the
 * Timer/Time clock, a trace() log and System.restart — and runs the platform-neutral core: ShadowSync for the
 * configured cloud and firmware version path, with DeviceAgent as its handlers. So the device
 * - reports its running firmware version at start (DeviceAgent, unless the reported state already says so),
 * - applies desired configuration by reporting it, and
 * - reports errors the cloud should see in `reported.lastError` (ShadowSync's onError -> DeviceAgent).
 * A desired firmware version other than the running one is logged and reported as
 * `firmwareUpdate: {status: "pending", version}` — nothing more yet: downloading, writing the slot
 * (src/native/xs/ota-slot-xs.ts) and restarting belong to the OTA flow of a later issue, and nothing here
 * pretends to do them.
 *
 * Not here: protocol logic (src/core), retries (the transport and the sync own them).
 */
import config from "mc/config";
import Resource from "Resource";
import { DeviceAgent } from "../core/device-agent";
import { ShadowOtaError } from "../core/errors";
import { jsonEqual, type JsonObject } from "../core/json";
import { ShadowSync } from "../core/shadow-sync";
import type { Log } from "../ports/log";
import type { Restart } from "../ports/restart";
import { parseDeviceConfig, type DeviceConfig } from "./device-config";
import { DEVICE_CODES } from "./device-errors";
import { moddableClock } from "./moddable-clock";
import { ModdableMqttTransport } from "./mqtt-moddable";
import { PreferenceStore } from "./preference-kv";
import { SystemRestart } from "./system-restart";
import { TraceLog } from "./trace-log";

/** Resource names manifest.json gives the generated DER files (see docs/moddable.md). */
export const CERT_RESOURCES = {
  ca: "ota-ca.der",
  certificate: "device-cert.der",
  key: "device-key.der",
} as const;

/** What a running device app holds; the OTA flow (later issue) takes `restart` from here. */
export interface DeviceApp {
  config: DeviceConfig;
  sync: ShadowSync;
  agent: DeviceAgent;
  restart: Restart;
}

function resource(name: string): ByteBuffer {
  if (!Resource.exists(name)) {
    throw new ShadowOtaError(DEVICE_CODES.DEVICE_RESOURCE_MISSING, `resource ${name} is not in the build`, { detail: { resource: name } });
  }
  return new Resource(name);
}

/** Builds the adapters and the core and starts the sync. Throws ShadowOtaError (config, resources, names). */
export function startDevice(rawConfig: Record<string, unknown>, log: Log): DeviceApp {
  const cfg = parseDeviceConfig(rawConfig);
  log.log("info", "device.start", {
    cloud: cfg.cloud, thing: cfg.thing, host: cfg.host, port: cfg.port, firmwareVersion: cfg.firmwareVersion,
    firmwareVersionPath: cfg.firmwareVersionPath.join("."),
  });

  const mqttOptions: ConstructorParameters<typeof ModdableMqttTransport>[0] = {
    host: cfg.host,
    port: cfg.port,
    clientId: cfg.thing,
    ca: resource(CERT_RESOURCES.ca),
    clientCertificate: resource(CERT_RESOURCES.certificate),
    clientKey: resource(CERT_RESOURCES.key),
    keepaliveMs: cfg.keepaliveMs,
  };
  if (cfg.mqttUser !== undefined) mqttOptions.user = cfg.mqttUser;
  if (cfg.alpn !== undefined) mqttOptions.alpn = cfg.alpn;
  const mqtt = new ModdableMqttTransport(mqttOptions);
  const restart = new SystemRestart(log);

  let sync: ShadowSync | undefined;
  const agent = new DeviceAgent({
    firmwareVersion: cfg.firmwareVersion,
    firmwareVersionPath: cfg.firmwareVersionPath,
    reportedFirmwarePath: cfg.reportedFirmwarePath,
    onFirmwareRequested: ({ version, running, newer }) => {
      log.log("info", "device.firmware.requested", { version, running, newer });
      if (sync === undefined) return;
      const pending: JsonObject = { status: "pending", version };
      if (jsonEqual(sync.getState().reported["firmwareUpdate"] ?? null, pending)) return; // already said so
      sync.report({ firmwareUpdate: pending }).catch((e: unknown) => {
        log.log("warn", "device.firmware.report-failed", { version, code: e instanceof ShadowOtaError ? e.code : "UNKNOWN" });
      });
    },
  }, log);

  const syncConfig: ConstructorParameters<typeof ShadowSync>[1] = {
    cloud: cfg.cloud,
    thingName: cfg.thing,
    firmwareVersionPath: cfg.firmwareVersionPath,
  };
  if (cfg.shadowName !== undefined) syncConfig.shadowName = cfg.shadowName;
  sync = new ShadowSync({ mqtt, kv: new PreferenceStore(), clock: moddableClock, log }, syncConfig, agent);
  agent.attach(sync);
  sync.start();
  return { config: cfg, sync, agent, restart };
}

let app: DeviceApp | undefined;

export default function main(): void {
  const log = new TraceLog("info");
  try {
    app = startDevice(config, log);
  } catch (e) {
    // Nothing can reach the cloud without a valid configuration and certificates: say why, once.
    if (e instanceof ShadowOtaError) log.log("error", e.code, { message: e.message, ...(e.detail ?? {}) });
    else log.log("error", "device.start-failed", { message: e instanceof Error ? e.message : String(e) });
  }
}

/** The running app, for the debugger (xsbug) and later modules; undefined when start failed. */
export function runningApp(): DeviceApp | undefined {
  return app;
}
