/**
 * The device app, assembled once for every platform: ports and configuration in, a running device out.
 * The Moddable entry point (src/device/main.ts) and the Node simulated device (src/sim/device.ts) both call
 * `DeviceApp.start`, so the device and the simulator cannot behave differently.
 *
 * Boot order (what a power-on does):
 * 1. OtaController.boot(): the running version from the booted slot's app descriptor (configuration only
 *    as a fallback for an unstamped image), and what the last restart meant (PendingVerify after an
 *    update, RolledBack when the bootloader went back, a download to resume).
 * 2. DeviceAgent with that running version; ShadowSync with the agent as its handlers, the controller's
 *    onSynced as the self-test's signal.
 * 3. sync.start(), then ota.start() (resumes a download, or starts the self-test window).
 *
 * Wiring: a desired firmware version goes DeviceAgent → OtaController.request (with a base URL from desired
 * state when `firmwareBaseUrlPath` is set; the controller uses it only for allow-listed hosts); the
 * controller's reports go to `reported.{updateReportKey}` (default `firmwareUpdate`) through ShadowSync.
 *
 * Logs to the cloud (optional, `config.logs`): a LogMirror (src/core/log-mirror.ts) becomes the Log every
 * part gets and watches the MQTT transport's connects and drops; its health line carries the controller's
 * state and last error. It is built first (a bad setting throws LOG_CONFIG_INVALID before anything starts),
 * its health timer starts with the sync and stops at close.
 *
 * Not here: adapters (each platform builds its ports), the cloud protocol details (ShadowSync), OTA policy
 * (OtaController).
 */
import { getPath } from "./config-diff";
import { DeviceAgent, type DeviceAgentOptions } from "./device-agent";
import type { ShadowOtaError } from "./errors";
import type { JsonObject } from "./json";
import { OtaController, type AppCheck, type OtaBootInfo, type OtaControllerConfig, type OtaControllerPorts } from "./ota-controller";
import { ShadowSync, type DesiredChange, type ShadowSyncConfig, type ShadowSyncPorts } from "./shadow-sync";
import type { CloudKind } from "./cloud-protocol";
import { LogMirror, type LogMirrorConfig } from "./log-mirror";
import { UpdateGate } from "./update-policy";
import { unknownHeap, type HeapProbe } from "../ports/heap-probe";

export interface DeviceAppConfig {
  cloud: CloudKind;
  /** AWS thing name / Azure device id. */
  thingName: string;
  shadowName?: string;
  /** Where desired holds the firmware version (AWS seed ["config","firmware_version"], Azure seed ["updateVersion"]). */
  firmwareVersionPath: string[];
  /** Where the running version is reported (Azure seed ["firmwareVersion"]). Default: firmwareVersionPath. */
  reportedFirmwarePath?: string[];
  /** The reported member that carries the update's progress. Default "firmwareUpdate". */
  updateReportKey?: string;
  /** A desired path holding a firmware base URL (used only when its host is on the allow-list). */
  firmwareBaseUrlPath?: string[];
  requestTimeoutMs?: number;
  ota: OtaControllerConfig;
  acceptConfig?: DeviceAgentOptions["acceptConfig"];
  /** Mirror log lines to the cloud (cloud and thing name from above). Absent: no mirror. */
  logs?: Omit<LogMirrorConfig, "cloud" | "thingName">;
}

/** `heap` is read only by the log mirror (absent: heap figures are null). */
export type DeviceAppPorts = ShadowSyncPorts & OtaControllerPorts & { heap?: HeapProbe };

export interface DeviceAppHooks {
  /** The application's own check during the self-test after an update. */
  appCheck?: AppCheck;
  /** Observers (the simulator and tests watch the device through them). */
  onDesired?(change: DesiredChange): void;
  onError?(err: ShadowOtaError): void;
  /** Sees every firmware version the agent hands to the controller (before the controller decides). */
  onFirmwareRequested?(request: { version: string; running: string; newer: boolean }): void;
}

export class DeviceApp {
  readonly sync: ShadowSync;
  readonly agent: DeviceAgent;
  readonly ota: OtaController;
  readonly boot: OtaBootInfo;
  /** The log mirror when `config.logs` is set. */
  readonly logs: LogMirror | undefined;
  /** Holds a requested version while desired `firmwareUpdatePolicy` says wait (update-policy.ts). */
  readonly gate: UpdateGate;
  #closed = false;

  private constructor(given: DeviceAppPorts, config: DeviceAppConfig, hooks: DeviceAppHooks) {
    let ports = given;
    if (config.logs !== undefined) {
      const mirror = new LogMirror({
        clock: given.clock, heap: given.heap ?? unknownHeap, log: given.log, mqtt: given.mqtt,
        health: () => ({ ota: this.ota.state, otaError: this.ota.record.lastError?.code ?? null }),
      }, { ...config.logs, cloud: config.cloud, thingName: config.thingName });
      ports = { ...given, log: mirror, mqtt: mirror.watch(given.mqtt) };
      this.logs = mirror;
    }
    const key = config.updateReportKey ?? "firmwareUpdate";
    let sync: ShadowSync | undefined;
    const otaHooks: ConstructorParameters<typeof OtaController>[2] = {
      report: (update: JsonObject) => (sync === undefined ? Promise.resolve() : sync.report({ [key]: update })),
    };
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (its reader takes undefined as the default).
    if (hooks.appCheck !== undefined) otaHooks.appCheck = hooks.appCheck;
    this.ota = new OtaController(ports, config.ota, otaHooks);
    this.boot = this.ota.boot();

    const ota = this.ota;
    const gate = new UpdateGate({ clock: ports.clock, log: ports.log }, {
      running: this.boot.runningVersion, firmwareVersionPath: config.firmwareVersionPath,
      start: (version, base) => ota.request(version, base),
      report: (update) => { void otaHooks.report(update).catch(() => undefined); },
      otaReported: () => ota.reported(),
      // Stryker disable next-line ArrowFunction: ShadowSync hands every desired document to onDesiredDocument, which tells the gate (even when onDesired's handlers throw), and a change's desired is the sync's own; this view is the gate's safety net for other wirings.
      desired: () => sync?.getState().desired,
    });
    this.gate = gate;
    const agentOptions: DeviceAgentOptions = {
      firmwareVersion: this.boot.runningVersion,
      firmwareVersionPath: config.firmwareVersionPath,
      onFirmwareRequested: ({ version, running, newer, change }) => {
        hooks.onFirmwareRequested?.({ version, running, newer });
        const base = config.firmwareBaseUrlPath === undefined ? undefined : getPath(change.desired, config.firmwareBaseUrlPath);
        gate.request(version, typeof base === "string" ? base : undefined, change.desired);
      },
      // A revert: the download of that version stops (OtaController.cancel); a wait in the gate ends through
      // gate.onDesired below.
      onFirmwareWithdrawn: ({ version, desired }) => { ota.cancel(version, `desired names ${typeof desired === "string" ? desired : "no version"}`); },
    };
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (its reader takes undefined as the default).
    if (config.reportedFirmwarePath !== undefined) agentOptions.reportedFirmwarePath = config.reportedFirmwarePath;
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (its reader takes undefined as the default).
    if (config.acceptConfig !== undefined) agentOptions.acceptConfig = config.acceptConfig;
    this.agent = new DeviceAgent(agentOptions, ports.log);

    const syncConfig: ShadowSyncConfig = { cloud: config.cloud, thingName: config.thingName, firmwareVersionPath: config.firmwareVersionPath };
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (its reader takes undefined as the default).
    if (config.shadowName !== undefined) syncConfig.shadowName = config.shadowName;
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (its reader takes undefined as the default).
    if (config.requestTimeoutMs !== undefined) syncConfig.requestTimeoutMs = config.requestTimeoutMs;
    const agent = this.agent;
    sync = new ShadowSync(ports, syncConfig, {
      onDesired: (c) => { agent.onDesired(c); gate.onDesired(c.desired); hooks.onDesired?.(c); },
      onError: (e) => { agent.onError(e); hooks.onError?.(e); },
      onSynced: () => ota.onSynced(),
      onDesiredDocument: (d) => { agent.onDesiredDocument(d); gate.onDesired(d); },
    });
    this.sync = sync;
    agent.attach(sync);
  }

  /** Boots the OTA state, builds the agent and the sync, and starts them. Throws VERSION_INVALID when the
   *  running version (descriptor or fallback) is not SemVer, SYNC_NAME_INVALID for a bad thing name. */
  static start(ports: DeviceAppPorts, config: DeviceAppConfig, hooks: DeviceAppHooks = {}): DeviceApp {
    const app = new DeviceApp(ports, config, hooks);
    app.sync.start();
    app.ota.start();
    app.logs?.start();
    return app;
  }

  /** Stops the OTA controller and the sync (closes the transport). Safe twice. */
  async close(): Promise<void> {
    // Stryker disable next-line ConditionalExpression: OtaController.close() and ShadowSync.close() are each safe twice; this guard only saves the calls.
    if (this.#closed) return;
    // Stryker disable next-line BooleanLiteral: as above.
    this.#closed = true;
    this.logs?.close();
    this.gate.close();
    this.ota.close();
    await this.sync.close();
  }
}
