/**
 * Benchmark (`npm run bench:fleet [-- --devices N] [--workers W] [--spread-ms MS]`): one local cloud (aedes,
 * mutual TLS, the real store, the blob server) in this process and a fleet of simulated devices (default
 * 1,000) in W worker processes (bench/fleet-worker.ts, default 3), on loopback. Every figure in the scale
 * section of docs/local-cloud.md comes from this command. It checks outcomes (who converged), never speed:
 * a missed target is printed, not hidden. Not part of `npm test`.
 *
 * Phases, timed from the cloud's side by an observer client (service certificate) that receives every
 * shadow's update/documents:
 * 1. Connect: the workers power their devices on, spread over --spread-ms (default 20 ms per device: a
 *    simulated power-on is synchronous work in its worker, and a burst of them would starve the TLS
 *    handshakes of the devices already on, whose 10 s connect deadline then expires); each device connects
 *    over mutual TLS, gets its shadow and reports 1.0.0. Time until every device has reported, and per
 *    device from its own power-on (p50, p99).
 * 2. One device's round trip, the fleet connected and idle: desired config.probe set through the service
 *    (as the admin API does) → the device's report of it reaches the observer. 15 runs, 200 ms apart (the
 *    shadow's 20 requests/s limit), median and minimum.
 * 3. Config change: desired config.interval set on every device at once; per device the time until its
 *    report arrives: p50, p99, max.
 * 4. Firmware: a small ESP32 app image (64 KiB, version 1.1.0) published to the blob server, desired
 *    config.firmware_version = 1.1.0 set on every device at once; each downloads it over HTTPS, verifies,
 *    restarts into it and reports 1.1.0. `seconds` = from setting it to the last device's report.
 * 5. Rollout: 1.2.0 published, and in a second container a 1.2.0 whose self-test fails, from which every
 *    tenth device (planted: 10 %) takes its firmware; a staged rollout (src/sim/rollout.ts, through the AWS
 *    SDK against the cloud's data-plane endpoint) with waves 1%,10%,50%,100% and --max-failure 5 %. It must
 *    stop within the first wave that holds a planted device, and no later wave may get desired 1.2.0.
 * Around them: the cloud process's peak RSS and CPU time per phase (it also runs the observer), the
 * system's TCP listen-queue overflows (/proc/net/netstat, system-wide), the load average, the workers'
 * peak RSS and the errors the devices raised. When devices miss the firmware deadline, the workers are
 * probed and the devices that missed it are printed grouped by state (connected, OTA state, running
 * version, restarts), with the workers' event-loop delays and the cloud's warnings and errors counted by
 * event (`broker.limit` by rule). `--max-connections N` lowers the broker's per-address cap
 * (maxConnectionsPerAddress, default 2,048) to reproduce a fleet at the cap with fewer devices;
 * `--cpu-prof DIR` has each worker write a V8 CPU profile there (node --cpu-prof) when it exits.
 *
 * Output: lines per phase, then as the LAST line one JSON object: devices, seconds (firmware phase; null
 * when some device missed the deadline), failures (devices that did not reach a phase's state within its
 * deadline, summed), and the rest.
 * Targets on a 2-core machine: 1,000 devices, 0 failures, seconds ≤ 60, config p99 < 5 s, round trip < 15 ms.
 */
import { fork, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mqtt, { type MqttClient } from "mqtt";

import { SELFTEST_FAIL_MARKER, SIM_PROJECT_NAME } from "../src/sim/device";
import { RolloutEngine } from "../src/sim/rollout";
import { cloudFleet } from "../src/sim/rollout-http";
import { DEFAULT_FIRMWARE_CONTAINER, LocalCloud } from "../src/sim/local-cloud";
import { CLOUD_SERVICE_IDENTITY } from "../src/sim/pki";
import { buildImage } from "../src/tools/esp-image";
import type { FleetDeviceProbe, FleetWorkerStart } from "./fleet-worker";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 1) { console.error(`${name} needs a positive integer`); process.exit(2); }
  return v;
}

const DEVICES = arg("--devices", 1000);
const WORKERS = Math.min(arg("--workers", 3), DEVICES);
/** Power-on spread: 20 ms per device by default (20 s for 1,000), as a fleet's power-ons are spread. */
const SPREAD_MS = process.argv.includes("--spread-ms") ? arg("--spread-ms", 1) : DEVICES * 20;
const PROBES = 15;
const MAX_CONNECTIONS = process.argv.includes("--max-connections") ? arg("--max-connections", 1) : undefined;
/** `--cpu-prof DIR`: each worker writes a V8 CPU profile there when it exits (node --cpu-prof). */
const CPU_PROF_DIR = process.argv.includes("--cpu-prof") ? process.argv[process.argv.indexOf("--cpu-prof") + 1] : undefined;
const DEADLINE = { connect: 300_000, config: 120_000, firmware: 300_000, rollout: 600_000 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ids = Array.from({ length: DEVICES }, (_, i) => `fleet-${String(i).padStart(4, "0")}`);
/** The rollout phase's planted failures: every tenth device (fleet-0003, fleet-0013, …). */
const badIds = ids.filter((_, i) => i % 10 === 3);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function listenOverflows(): number {
  try {
    const lines = fs.readFileSync("/proc/net/netstat", "utf8").split("\n").filter((l) => l.startsWith("TcpExt:"));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    return Number(values[names.indexOf("ListenOverflows")]);
  } catch {
    return NaN;
  }
}

/** What the observer saw of each thing's reported config, with the time each value first arrived. */
class Observer {
  readonly seen = new Map<string, Map<string, number>>(); // thing → "key=value" → time first seen
  #waiters = new Set<() => void>();
  constructor(readonly client: MqttClient) {
    client.on("message", (topic, payload) => {
      const thing = topic.split("/")[2]!;
      let config: Record<string, unknown> | undefined;
      try {
        config = (JSON.parse(payload.toString("utf8")) as { current?: { state?: { reported?: { config?: Record<string, unknown> } } } }).current?.state?.reported?.config;
      } catch {
        return;
      }
      if (config === undefined) return;
      const now = performance.timeOrigin + performance.now(); // epoch ms, comparable with the workers'
      let m = this.seen.get(thing);
      if (m === undefined) { m = new Map(); this.seen.set(thing, m); }
      for (const [k, v] of Object.entries(config)) {
        const key = `${k}=${JSON.stringify(v)}`;
        if (!m.has(key)) m.set(key, now);
      }
      for (const w of [...this.#waiters]) w();
    });
  }

  at(thing: string, key: string, value: unknown): number | undefined {
    return this.seen.get(thing)?.get(`${key}=${JSON.stringify(value)}`);
  }

  /** Resolves when every thing has reported key=value, or at the deadline; returns the missing ones. */
  waitAll(things: readonly string[], key: string, value: unknown, deadlineMs: number): Promise<string[]> {
    return new Promise((resolve) => {
      const missing = (): string[] => things.filter((t) => this.at(t, key, value) === undefined);
      const check = (): void => { if (missing().length === 0) done(); };
      const done = (): void => { this.#waiters.delete(check); clearTimeout(timer); resolve(missing()); };
      const timer = setTimeout(done, deadlineMs);
      this.#waiters.add(check);
      check();
    });
  }
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-"));
  // Certificates are kept between runs (issuing 1,000 RSA keys takes minutes on this machine).
  const certsDir = path.join(os.tmpdir(), "shadow-ota-bench-pki");
  const lines: string[] = [];
  const say = (s: string): void => { lines.push(s); console.log(s); };
  say(`fleet bench: ${DEVICES} devices in ${WORKERS} workers, one local cloud (aedes, mutual TLS); ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);

  const tCerts = performance.now();
  // The cloud's warnings and errors, counted by event (and broker.limit by rule): why devices are refused.
  const cloudEvents: Record<string, number> = {};
  const cloudLog = { log(level: string, event: string, fields?: Record<string, unknown>): void {
    if (level !== "warn" && level !== "error") return;
    const key = event === "broker.limit" ? `${event}:${String(fields?.rule)}` : event;
    cloudEvents[key] = (cloudEvents[key] ?? 0) + 1;
  } };
  const cloud = await LocalCloud.start({
    dataDir: path.join(root, "cloud"), certsDir, adminPort: false, log: cloudLog,
    ...(MAX_CONNECTIONS === undefined ? {} : { brokerLimits: { maxConnectionsPerAddress: MAX_CONNECTIONS } }),
  });
  // One RSA key for the fleet (each device still has its own certificate and CN): generating 1,000 keys
  // would be the benchmark. The TLS work per connection is the same as with a key per device.
  const fleetKey = cloud.pki.client(ids[0]!).keyPem;
  for (const id of ids) {
    cloud.pki.client(id, { keyPem: fleetKey });
    await cloud.addDevice(id, "aws");
  }
  say(`setup: cloud started and ${DEVICES} device certificates ready in ${((performance.now() - tCerts) / 1000).toFixed(1)} s (reused from ${certsDir} when present)`);

  const svc = cloud.pki.client(CLOUD_SERVICE_IDENTITY);
  const client = await mqtt.connectAsync({
    protocol: "mqtts", host: cloud.host, port: cloud.mqttPort, clientId: `${CLOUD_SERVICE_IDENTITY}-bench`, ca: svc.caPem, cert: svc.certPem, key: svc.keyPem,
    rejectUnauthorized: true, protocolVersion: 4, clean: true, reconnectPeriod: 1000,
  });
  (client.stream as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true);
  const observer = new Observer(client);
  await client.subscribeAsync("$aws/things/+/shadow/update/documents", { qos: 1 });

  let peakRss = 0;
  const rssTimer = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 200);
  const phaseCpu = (): (() => number) => { const c0 = process.cpuUsage(); return () => { const c = process.cpuUsage(c0); return (c.user + c.system) / 1e6; }; };
  let failures = 0;
  const result: Record<string, unknown> = { devices: DEVICES, workers: WORKERS };

  // ---- 1. connect ------------------------------------------------------------------------------------
  const overflows0 = listenOverflows();
  const workers: ChildProcess[] = [];
  const workerStats: Array<Record<string, unknown> | undefined> = [];
  type ProbeAnswer = { devices: FleetDeviceProbe[]; loopDelayMs: { p50: number; p99: number; max: number } };
  const probeWaiters: Array<((a: ProbeAnswer) => void) | undefined> = [];
  const powerOn: Record<string, number> = {};
  const ready: Array<Promise<void>> = [];
  for (let w = 0; w < WORKERS; w++) {
    const child = fork(path.join(__dirname, "fleet-worker.ts"), [], { execArgv: ["--require", require.resolve("tsx/cjs"), ...(CPU_PROF_DIR === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", CPU_PROF_DIR])], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    workers.push(child);
    ready.push(new Promise<void>((resolve) => child.on("message", (m: { type: string }) => { if (m.type === "ready") resolve(); })));
    child.on("message", (m: { type: string; message?: string; powerOn?: Record<string, number> }) => {
      if (m.type === "started") Object.assign(powerOn, m.powerOn);
      if (m.type === "stats") workerStats[w] = m as Record<string, unknown>;
      if (m.type === "probe") probeWaiters[w]?.(m as unknown as ProbeAnswer);
      if (m.type === "error") console.error(`worker ${w}: ${m.message}`);
    });
    const start: FleetWorkerStart = {
      type: "start", ids: ids.filter((_, i) => i % WORKERS === w), host: cloud.host, port: cloud.mqttPort, certsDir,
      blobBaseUrl: cloud.blobBaseUrl, dataDir: path.join(root, "devices"), spreadMs: SPREAD_MS,
      badIds: badIds.filter((id) => ids.indexOf(id) % WORKERS === w), badBaseUrl: cloud.blobs.baseUrl("bad"),
    };
    child.send(start);
  }
  await Promise.all(ready); // flash files made, code loaded: the clock starts at power-on
  const cpuConnect = phaseCpu();
  const t0 = performance.timeOrigin + performance.now();
  for (const w of workers) w.send({ type: "go" });
  const notConnected = await observer.waitAll(ids, "firmware_version", "1.0.0", DEADLINE.connect);
  const connectTimes = ids.map((id) => observer.at(id, "firmware_version", "1.0.0")).filter((t): t is number => t !== undefined).map((t) => t - t0).sort((a, b) => a - b);
  const connectSeconds = (connectTimes[connectTimes.length - 1] ?? NaN) / 1000;
  // Per device: its own power-on → its first report (TLS handshake, CONNACK, subscribe, get, report).
  await sleep(500); // the workers' `started` (with the power-on moments) follows their last power-on
  const ownLatency = ids.flatMap((id) => { const r = observer.at(id, "firmware_version", "1.0.0"); const on = powerOn[id]; return r === undefined || on === undefined ? [] : [r - on]; }).sort((a, b) => a - b);
  failures += notConnected.length;
  const overflows = listenOverflows() - overflows0;
  const connectCpu = cpuConnect();
  say(`connect: ${connectTimes.length}/${DEVICES} devices connected and reported 1.0.0 in ${connectSeconds.toFixed(1)} s (power-ons spread over ${(SPREAD_MS / 1000).toFixed(1)} s); each device from its own power-on: p50 ${(percentile(ownLatency, 50) / 1000).toFixed(2)} s, p99 ${(percentile(ownLatency, 99) / 1000).toFixed(2)} s; listen-queue overflows ${overflows} (system-wide); cloud CPU ${connectCpu.toFixed(1)} s`);
  Object.assign(result, { connectSeconds: Number(connectSeconds.toFixed(1)), connectP50Ms: Math.round(percentile(ownLatency, 50)), connectP99Ms: Math.round(percentile(ownLatency, 99)), connected: connectTimes.length, listenOverflows: overflows });
  await sleep(1000);

  // ---- 2. one device's round trip ---------------------------------------------------------------------
  const probeId = ids[0]!;
  const trips: number[] = [];
  for (let k = 1; k <= PROBES; k++) {
    const start = performance.timeOrigin + performance.now();
    await cloud.shadows.updateDesired(probeId, { config: { probe: k } });
    const missing = await observer.waitAll([probeId], "probe", k, 10_000);
    if (missing.length === 0) trips.push(observer.at(probeId, "probe", k)! - start);
    await sleep(200);
  }
  trips.sort((a, b) => a - b);
  const roundTripMs = percentile(trips, 50);
  say(`round trip (${probeId}, fleet idle): desired set → report received, median ${roundTripMs.toFixed(1)} ms, min ${(trips[0] ?? NaN).toFixed(1)} ms, max ${(trips[trips.length - 1] ?? NaN).toFixed(1)} ms over ${trips.length}/${PROBES} runs`);
  Object.assign(result, { roundTripMs: Number(roundTripMs.toFixed(1)), roundTripMinMs: Number((trips[0] ?? NaN).toFixed(1)) });

  // ---- 3. config change on every device ----------------------------------------------------------------
  const cpuConfig = phaseCpu();
  const writes0 = cloud.store.writes;
  const commits0 = cloud.store.commits;
  const tc = performance.timeOrigin + performance.now();
  const sets = ids.map((id) => cloud.shadows.updateDesired(id, { config: { interval: 30 } }).then(() => performance.timeOrigin + performance.now() - tc, () => NaN));
  const setTimes = await Promise.all(sets);
  const notConfigured = await observer.waitAll(ids, "interval", 30, DEADLINE.config);
  failures += notConfigured.length;
  const configTimes = ids.map((id) => observer.at(id, "interval", 30)).filter((t): t is number => t !== undefined).map((t) => t - tc).sort((a, b) => a - b);
  const setAll = Math.max(...setTimes);
  const configCpu = cpuConfig();
  say(`config change: desired set on ${DEVICES} at once (all accepted by ${(setAll / 1000).toFixed(2)} s); reports p50 ${(percentile(configTimes, 50) / 1000).toFixed(2)} s, p99 ${(percentile(configTimes, 99) / 1000).toFixed(2)} s, max ${((configTimes[configTimes.length - 1] ?? NaN) / 1000).toFixed(2)} s; ${configTimes.length}/${DEVICES} reported; store ${cloud.store.writes - writes0} records in ${cloud.store.commits - commits0} group commits; cloud CPU ${configCpu.toFixed(1)} s`);
  Object.assign(result, { configP50Ms: Math.round(percentile(configTimes, 50)), configP99Ms: Math.round(percentile(configTimes, 99)), configured: configTimes.length });

  // ---- 4. firmware update ------------------------------------------------------------------------------
  const image = buildImage({ version: "1.1.0", projectName: SIM_PROJECT_NAME, size: 64 * 1024, seed: 11 });
  cloud.publishFirmware(DEFAULT_FIRMWARE_CONTAINER, "1.1.0.bin", image);
  cloud.publishFirmware("bad", "1.1.0.bin", image); // the planted devices' container: a good 1.1.0 here
  const cpuFw = phaseCpu();
  const tf = performance.timeOrigin + performance.now();
  await Promise.all(ids.map((id) => cloud.shadows.updateDesired(id, { config: { firmware_version: "1.1.0" } }).catch(() => undefined)));
  const notUpdated = await observer.waitAll(ids, "firmware_version", "1.1.0", DEADLINE.firmware);
  failures += notUpdated.length;
  const fwTimes = ids.map((id) => observer.at(id, "firmware_version", "1.1.0")).filter((t): t is number => t !== undefined).map((t) => t - tf).sort((a, b) => a - b);
  const seconds = (fwTimes[fwTimes.length - 1] ?? NaN) / 1000;
  const fwCpu = cpuFw();
  say(`firmware: ${image.length} B image 1.1.0 set as desired on ${DEVICES}; ${fwTimes.length}/${DEVICES} reported 1.1.0, the last after ${seconds.toFixed(1)} s (p50 ${(percentile(fwTimes, 50) / 1000).toFixed(1)} s, p99 ${(percentile(fwTimes, 99) / 1000).toFixed(1)} s); cloud CPU ${fwCpu.toFixed(1)} s`);
  if (notUpdated.length > 0) {
    // Why: every worker says what each of its devices is doing; the devices that missed it, grouped by state.
    const answers = await Promise.all(workers.map((wk, w) => new Promise<ProbeAnswer | undefined>((resolve) => {
      const timer = setTimeout(() => { probeWaiters[w] = undefined; resolve(undefined); }, 30_000);
      probeWaiters[w] = (a) => { clearTimeout(timer); probeWaiters[w] = undefined; resolve(a); };
      wk.send({ type: "probe" });
    })));
    const missed = new Set(notUpdated);
    const groups = new Map<string, string[]>();
    for (const a of answers) for (const d of a?.devices ?? []) {
      if (!missed.has(d.id)) continue;
      const key = `${d.connected ? "connected" : d.restarting ? "restarting" : "not connected"}, OTA ${d.ota}${d.otaError === "" ? "" : ` ${d.otaError}`}, runs ${d.running}, ${d.restarts} restarts, ${d.downloads} downloads${d.errors.length > 0 ? `, errors ${d.errors.join(" ")}` : ""}`;
      groups.set(key, [...(groups.get(key) ?? []), d.id]);
    }
    for (const [key, group] of [...groups].sort((x, y) => y[1].length - x[1].length)) say(`  not updated: ${group.length} × ${key} (e.g. ${group.slice(0, 3).join(", ")})`);
    say(`  workers' event-loop delay since power-on: ${answers.map((a, w) => a === undefined ? `worker ${w} did not answer` : `p50 ${a.loopDelayMs.p50} ms, p99 ${a.loopDelayMs.p99} ms, max ${a.loopDelayMs.max} ms`).join("; ")}`);
    say(`  cloud warnings and errors so far: ${JSON.stringify(cloudEvents)}`);
  }
  // `seconds` only when every device got there: a deadline cut short is not a time to update the fleet.
  Object.assign(result, { seconds: notUpdated.length === 0 ? Number(seconds.toFixed(1)) : null, updated: fwTimes.length });

  // ---- 5. staged rollout with planted failures ------------------------------------------------------------
  cloud.publishFirmware(DEFAULT_FIRMWARE_CONTAINER, "1.2.0.bin", buildImage({ version: "1.2.0", projectName: SIM_PROJECT_NAME, size: 64 * 1024, seed: 12 }));
  cloud.publishFirmware("bad", "1.2.0.bin", buildImage({ version: "1.2.0", projectName: SIM_PROJECT_NAME, size: 64 * 1024, seed: 12, marker: SELFTEST_FAIL_MARKER }));
  const cpuRollout = phaseCpu();
  const engine = RolloutEngine.open({ dataDir: path.join(root, "cloud"), fleet: cloudFleet(cloud), devices: () => cloud.devices, log: { log() {} }, pollMs: 1000 });
  const tr = performance.now();
  const started = await engine.start({ version: "1.2.0", all: true, waves: "1%,10%,50%,100%", maxFailure: "5%", waveDeadlineMs: DEADLINE.rollout });
  for (let i = 0; i < DEADLINE.rollout / 500 && engine.active() !== undefined; i++) await sleep(500); // bounded
  const r = engine.get(started.id);
  const rolloutSeconds = (performance.now() - tr) / 1000;
  await engine.close();
  const waveOf = new Map(r.devices.map((d) => [d.id, d.wave]));
  const firstFailingWave = Math.min(...badIds.map((id) => waveOf.get(id) ?? Infinity));
  const touchedLater = r.devices.filter((d) => d.wave > firstFailingWave && d.outcome !== "waiting").length;
  const stoppedInFirstFailing = r.state === "aborted" && r.current === firstFailingWave && touchedLater === 0;
  const rolloutCpu = cpuRollout();
  const count = (o: string): number => r.devices.filter((d) => d.outcome === o).length;
  say(`rollout: 1.2.0 over ${DEVICES} in waves of ${r.waves.map((w) => w.size).join(", ")}, ${badIds.length} planted self-test failures (${((badIds.length / DEVICES) * 100).toFixed(0)} %), max failure 5 %: ${r.state} in wave ${r.current + 1} (the first with a planted device: ${firstFailingWave + 1}) after ${rolloutSeconds.toFixed(1)} s; ${count("updated")} updated, ${count("failed")} failed, ${count("reverted")} reverted, ${count("waiting")} never touched; devices of later waves touched: ${touchedLater}; ${r.reason ?? ""}; cloud CPU ${rolloutCpu.toFixed(1)} s`);
  Object.assign(result, {
    rolloutState: r.state, rolloutStoppedWave: r.current + 1, rolloutFirstFailingWave: firstFailingWave + 1, // 1-based, as printed rolloutStoppedInFirstFailingWave: stoppedInFirstFailing,
    rolloutSeconds: Number(rolloutSeconds.toFixed(1)), rolloutUpdated: count("updated"), rolloutFailed: count("failed"), rolloutUntouched: count("waiting"),
  });

  // ---- wrap up ------------------------------------------------------------------------------------------
  clearInterval(rssTimer);
  for (const w of workers) w.send({ type: "stop" });
  // A worker sends its stats within its own bounded close (fleet-worker.ts CLOSE_WAIT_MS); one that has not
  // exited 30 s after `stop` is killed, and said so below.
  await Promise.all(workers.map((w) => new Promise<void>((r) => { if (w.exitCode !== null) r(); else w.once("exit", () => r()); setTimeout(() => { w.kill("SIGKILL"); r(); }, 30_000).unref(); })));
  const silent = workers.map((_, w) => w).filter((w) => workerStats[w] === undefined);
  if (silent.length > 0) say(`workers that sent no stats (killed or crashed; their figures are missing below): ${silent.join(", ")} of ${WORKERS}`);
  const unclosed = workerStats.reduce((n, s) => n + ((s?.unclosed as number | undefined) ?? 0), 0);
  if (unclosed > 0) say(`devices whose close() did not settle within the workers' wait: ${unclosed}`);
  const answered = workerStats.filter((s): s is Record<string, unknown> => s !== undefined);
  const errors: Record<string, number> = {};
  for (const s of answered) for (const [k, v] of Object.entries(s.errors as Record<string, number>)) errors[k] = (errors[k] ?? 0) + v;
  const workerRss = answered.map((s) => Math.round(s.maxRssMb as number));
  const startMs = answered.map((s) => s.startMs as { total: number; max: number });
  const cloudCpu = process.cpuUsage();
  say(`cloud process: peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MB, CPU ${((cloudCpu.user + cloudCpu.system) / 1e6).toFixed(1)} s in all (phases: connect ${connectCpu.toFixed(1)}, config ${configCpu.toFixed(1)}, firmware ${fwCpu.toFixed(1)}); workers' peak RSS ${workerRss.join(", ")} MB, time inside SimDevice.start ${startMs.map((x) => `${(x.total / 1000).toFixed(1)} s (max ${x.max.toFixed(0)} ms)`).join(", ")}; device errors ${JSON.stringify(errors)}; load average now ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const targets = [
    [`devices ${DEVICES} ≥ 1000`, DEVICES >= 1000], [`failures ${failures} = 0`, failures === 0], [`seconds ${seconds.toFixed(1)} ≤ 60`, seconds <= 60],
    [`config p99 ${(percentile(configTimes, 99) / 1000).toFixed(2)} s < 5 s`, percentile(configTimes, 99) < 5000], [`round trip ${roundTripMs.toFixed(1)} ms < 15 ms`, roundTripMs < 15],
    [`rollout stopped in the first failing wave`, stoppedInFirstFailing],
  ] as const;
  say(`targets: ${targets.map(([t, ok]) => `${t} ${ok ? "met" : "MISSED"}`).join("; ")}`);
  Object.assign(result, {
    failures, cloudPeakRssMb: Math.round(peakRss / 2 ** 20), cloudCpuSeconds: Number(((cloudCpu.user + cloudCpu.system) / 1e6).toFixed(1)),
    workerPeakRssMb: workerRss, deviceErrors: errors, workersSilent: silent.length, cloudWarnings: cloudEvents, loadAverage: os.loadavg().map((l) => Number(l.toFixed(1))),
  });
  await client.endAsync(true).catch(() => undefined);
  await cloud.close();
  fs.rmSync(root, { recursive: true, force: true });
  console.log(JSON.stringify(result));
  process.exit(0);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
