/**
 * One worker process of `npm run bench:fleet` (bench/fleet.bench.ts): runs a slice of the simulated fleet
 * — SimDevice (the device app over mqtt.js, the native OTA slot on a flash file, the file NVS) per device —
 * against the local cloud the parent runs. Started with an IPC channel; the parent sends
 * `{ type: "start", ... }`; the worker prepares each device's flash file and answers `ready`; on `go` it
 * powers the devices on (answering `started`); on `probe` it answers `probe` with each device's state
 * (connection, OTA state, running version, restarts, downloads) and its event loop's delays, which is how
 * the parent finds out why devices missed a deadline; on `stop` it answers `stats` (errors, restarts,
 * running versions, memory, CPU) and exits — after closing its devices, but waiting at most
 * CLOSE_WAIT_MS for them: a device that does not close in time is counted (`unclosed`), not waited for.
 * Devices log nothing (a fleet's logs would be the benchmark).
 *
 * Not here: any measurement of latency (the parent times everything from the cloud's side).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";

import { silentLog } from "../src/ports/log";
import { SimDevice, SIM_PROJECT_NAME } from "../src/sim/device";
import { buildImage } from "../src/tools/esp-image";
import { createFlashFile } from "../src/tools/flash-file";

export interface FleetWorkerStart {
  type: "start";
  ids: string[];
  host: string;
  port: number;
  certsDir: string;
  blobBaseUrl: string;
  dataDir: string;
  /** Device starts are spread over [0, spreadMs] (each device's power-on moment, as a fleet's vary). */
  spreadMs: number;
  /** Devices that take their firmware from `badBaseUrl` instead (the rollout phase plants failures there). */
  badIds?: string[];
  badBaseUrl?: string;
}

const devices: SimDevice[] = [];
/** How long `stop` waits for the devices' close() before it sends its stats anyway. */
export const CLOSE_WAIT_MS = 10_000;
/** The event loop's delays from power-on (a loop blocked by synchronous work shows here). */
const loopDelay = monitorEventLoopDelay({ resolution: 20 });
/** Each device's power-on moment (epoch ms, performance.timeOrigin + now), sent with `started`. */
const powerOn: Record<string, number> = {};
/** Time spent inside SimDevice.start (synchronous: flash file, NVS, boot, the app), ms. */
const startMs = { total: 0, max: 0 };

async function start(m: FleetWorkerStart): Promise<void> {
  const ca = fs.readFileSync(path.join(m.certsDir, "ca.cert.pem"), "utf8");
  const bad = new Set(m.badIds ?? []);
  // One factory flash per worker, copied for each device (building 4 MiB per device would be the bench).
  const template = path.join(m.dataDir, `template-${process.pid}.bin`);
  fs.mkdirSync(m.dataDir, { recursive: true });
  createFlashFile(template, { images: { factory: buildImage({ version: "1.0.0", projectName: SIM_PROJECT_NAME, size: 64 * 1024, seed: 7 }) } });
  for (const id of m.ids) {
    const dataDir = path.join(m.dataDir, id);
    fs.mkdirSync(dataDir, { recursive: true });
    fs.copyFileSync(template, path.join(dataDir, "flash.bin"));
  }
  // Ready: the parent starts its clock and says go to every worker at once.
  await new Promise<void>((resolve) => {
    process.on("message", (g: { type: string }) => { if (g.type === "go") resolve(); });
    process.send!({ type: "ready" });
  });
  const cpu0 = process.cpuUsage();
  loopDelay.enable();
  const t0 = performance.now();
  for (let i = 0; i < m.ids.length; i++) {
    const id = m.ids[i]!;
    const dataDir = path.join(m.dataDir, id);
    // Power-on moments spread evenly over spreadMs; between two, the loop turns (the TLS handshakes of the
    // devices already on must not wait behind the next power-on).
    const wait = t0 + (m.spreadMs * i) / m.ids.length - performance.now();
    await new Promise((r) => (wait > 1 ? setTimeout(r, wait) : setImmediate(r)));
    const on = performance.now();
    powerOn[id] = performance.timeOrigin + on;
    devices.push(SimDevice.start({
      id, cloud: "aws", host: m.host, port: m.port, ca,
      cert: fs.readFileSync(path.join(m.certsDir, "clients", `${id}.cert.pem`), "utf8"),
      key: fs.readFileSync(path.join(m.certsDir, "clients", `${id}.key.pem`), "utf8"),
      dataDir, log: silentLog, requestTimeoutMs: 30_000,
      firmware: { baseUrl: bad.has(id) && m.badBaseUrl !== undefined ? m.badBaseUrl : m.blobBaseUrl, ca, connectTimeoutMs: 30_000, idleTimeoutMs: 30_000 },
    }));
    const took = performance.now() - on;
    startMs.total += took;
    startMs.max = Math.max(startMs.max, took);
  }
  process.send!({ type: "started", count: devices.length, startCpuMs: cpuMs(process.cpuUsage(cpu0)), powerOn });
}

function cpuMs(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
}

/** One device's state as `probe` reports it. */
export interface FleetDeviceProbe {
  id: string;
  connected: boolean;
  restarting: boolean;
  ota: string;
  /** The OTA record's last error code (why a download gave up, why an image rolled back), or "". */
  otaError: string;
  running: string;
  restarts: number;
  boots: number;
  downloads: number;
  bytes: number;
  errors: string[];
}

function probe(): void {
  const ms = (ns: number): number => Math.round(ns / 1e6);
  const states: FleetDeviceProbe[] = devices.map((d) => ({
    id: d.id, connected: d.connected, restarting: d.restarting, ota: d.ota.state, otaError: d.ota.record.lastError?.code ?? "", running: d.runningVersion,
    restarts: d.restarts.length, boots: d.boots, downloads: d.downloadRequests, bytes: d.bytesDownloaded, errors: d.errors.map((e) => e.code),
  }));
  process.send!({ type: "probe", devices: states, loopDelayMs: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) } });
}

async function stop(): Promise<void> {
  const errors: Record<string, number> = {};
  for (const d of devices) for (const e of d.errors) errors[e.code] = (errors[e.code] ?? 0) + 1;
  const stats = {
    type: "stats", devices: devices.length, errors,
    restarts: devices.reduce((n, d) => n + d.restarts.length, 0),
    running: devices.reduce<Record<string, number>>((acc, d) => { acc[d.runningVersion] = (acc[d.runningVersion] ?? 0) + 1; return acc; }, {}),
    maxRssMb: process.resourceUsage().maxRSS / 1024, cpuMs: cpuMs(process.cpuUsage()), startMs,
  };
  // Bounded: the stats go out even when some device's close() never settles (they are counted).
  let closed = 0;
  await Promise.race([
    Promise.all(devices.map((d) => d.close().catch(() => undefined).then(() => { closed++; }))),
    new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref()),
  ]);
  process.send!({ ...stats, unclosed: devices.length - closed }, () => process.exit(0));
}

process.on("message", (m: { type: string }) => {
  if (m.type === "start") void start(m as FleetWorkerStart).catch((e: unknown) => { process.send!({ type: "error", message: String(e) }); });
  else if (m.type === "probe") probe();
  else if (m.type === "stop") void stop();
});
process.on("disconnect", () => process.exit(0));
