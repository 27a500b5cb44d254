#!/usr/bin/env node
/**
 * mcsim-run.mjs — runs a Moddable app built with `mcconfig -d -p lin` (its mc.so) in the SDK's Linux
 * simulator, headless, and prints what the app traces. Used for the device-app runs in docs/moddable.md;
 * scripts/test-mcsim.mjs uses only its `startXvfb` (its release app prints to stdout, no debugger).
 *
 * What it does, the way the SDK's own `xsbug-log` runs a simulator (tools/xsbug-log, `mcconfig -dl`):
 * listens for the debug connection on 127.0.0.1 (XSBUG_HOST/XSBUG_PORT, which the simulator's XS reads at
 * start), starts `$MODDABLE/build/bin/lin/release/mcsim <mc.so>` on an X display (its own Xvfb unless
 * --display is given; see `startXvfb`), and reads the xsbug protocol with the SDK's parser (xsbug-log's
 * xsbug-machine.js, `npm install` in $MODDABLE/tools/xsbug-log once). Each trace line is printed as is; `--instruments`
 * adds one line per sample the debug build sends (about one a second): `#instruments {"Chunk used": …}`.
 * Breaks (exceptions, debugger statements) are printed with their stack and resumed. Unlike xsbug-log it
 * never reads stdin and never runs `pkill mcsim`, so it can run beside other simulators.
 *
 * A simulator that re-executes itself (the app's restart, src/device/restart/restart_xs.c) connects again;
 * each connection prints `#mcsim connected (N)`.
 *
 * Stops --linger seconds (default 0) after a trace line matches --until (exit 0), after --timeout seconds
 * (exit 3), or when mcsim exits (exit 0 if --until was not given, else 1). Always kills its mcsim and Xvfb.
 *
 * Usage: node scripts/mcsim-run.mjs MC_SO [--until REGEX [--linger SECONDS]] [--timeout SECONDS] [--instruments]
 *        [--display :N]
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Starts an X server of its own (Xvfb) and resolves once it accepts clients: { display, stop() }. Xvfb
 * picks a free display number itself and writes it to a pipe when it is ready (-displayfd), so nothing
 * waits on the clock and two runs beside each other never take the same display.
 */
export function startXvfb() {
  return new Promise((resolvePromise, reject) => {
    const xvfb = spawn("Xvfb", ["-displayfd", "3", "-screen", "0", "1024x768x24", "-nolisten", "tcp"], { stdio: ["ignore", "ignore", "pipe", "pipe"] });
    let text = "";
    let stderr = "";
    xvfb.stderr.setEncoding("utf8").on("data", (d) => { stderr += d; });
    xvfb.stdio[3].setEncoding("utf8").on("data", (d) => {
      text += d;
      if (!text.includes("\n")) return;
      const stop = () => { if (xvfb.exitCode === null && xvfb.signalCode === null) xvfb.kill("SIGTERM"); };
      resolvePromise({ display: `:${text.trim()}`, stop });
    });
    xvfb.on("error", (e) => reject(new Error(`cannot start Xvfb: ${e.message}`)));
    xvfb.on("exit", (code, signal) => {
      if (!text.includes("\n")) reject(new Error(`Xvfb exited (${signal ?? code}) before it was ready: ${stderr.trim().split("\n").slice(-3).join(" / ")}`));
    });
  });
}

/** Starts mcsim on `so` and resolves when the run ends: { code, reason }. `onLine` sees every output line. */
export async function runMcsim(so, options = {}) {
  const moddable = process.env.MODDABLE;
  if (!moddable) throw new Error("MODDABLE is not set");
  const mcsim = join(moddable, "build/bin/lin/release/mcsim");
  if (!existsSync(mcsim)) throw new Error(`${mcsim} does not exist: build the SDK's Linux tools first`);
  const require = createRequire(join(moddable, "tools/xsbug-log/"));
  let Machine;
  try {
    ({ Machine } = require("./xsbug-machine.js"));
  } catch (e) {
    throw new Error(`cannot load the SDK's xsbug-machine.js (run npm install in $MODDABLE/tools/xsbug-log): ${e.message}`);
  }
  const onLine = options.onLine ?? ((line) => console.log(line));
  const timeoutSec = options.timeoutSec ?? 300;
  const until = options.until;

  let xvfb;
  let display = options.display;
  if (!display) {
    xvfb = await startXvfb();
    display = xvfb.display;
  }

  class PrintingMachine extends Machine {
    log = "";
    onTitleChanged(title, tag) {
      super.onTitleChanged(title, tag); // resumes the machine (doGo)
    }
    onLogged(path, line, data) {
      this.log += data;
      let nl;
      while ((nl = this.log.indexOf("\n")) >= 0) {
        const text = this.log.slice(0, nl);
        this.log = this.log.slice(nl + 1);
        emit(text);
      }
    }
    onInstrumentValues(values) {
      super.onInstrumentValues(values);
      if (options.instruments) {
        const o = {};
        for (const i of this.instruments ?? []) o[i.name] = Number(i.value);
        emit(`#instruments ${JSON.stringify(o)}`);
      }
    }
    onBroken(path, line, text) {
      emit(`#break ${path ?? ""}:${line ?? ""} ${text ?? ""}`);
      super.onBroken(path, line, text); // doGo
    }
  }

  let finish;
  const done = new Promise((r) => { finish = r; });
  let ended = false;
  let matched = false;
  function end(code, reason) {
    if (ended) return;
    ended = true;
    finish({ code, reason });
  }
  function emit(text) {
    onLine(text);
    if (until && until.test(text) && !matched) {
      matched = true;
      // --linger: keep running (and printing) a while after the match, e.g. for a report to go out.
      setTimeout(() => end(0, `matched ${until}`), (options.lingerSec ?? 0) * 1000);
    }
  }

  let connections = 0;
  const sockets = new Set();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.setEncoding("utf8");
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    emit(`#mcsim connected (${connections})`);
    new PrintingMachine(socket, socket);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;

  // XDG_CONFIG_HOME of its own: mcsim copies the app's mc.so with `cp -p` (in place) to
  // $XDG_CONFIG_HOME/tech.moddable.mcsim/mc.so, one path for every simulator of the user, and loads that
  // copy (tools/mcsim/main.js launchScreen), so a second simulator started meanwhile (another app, a
  // test:mcsim run) rewrote the library under this one. The app's own preferences are not there (lin's
  // Preference writes under the file module's root). The mc.so path is made absolute: mcsim passes
  // realpath()'s result to XS without checking it (modules/piu/PC/lin/piuMain.c, gtk_piu_application_open).
  const configHome = mkdtempSync(join(tmpdir(), "mcsim-config-"));
  const child = spawn(mcsim, [resolve(so)], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, DISPLAY: display, XSBUG_HOST: "127.0.0.1", XSBUG_PORT: String(port), XDG_CONFIG_HOME: configHome },
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => { for (const l of d.split("\n")) if (l.trim()) emit(`#mcsim stderr: ${l}`); });
  child.on("exit", (code, signal) => {
    emit(`#mcsim exited (${signal ?? code})`);
    end(until ? 1 : 0, `mcsim exited (${signal ?? code})`);
  });
  const timer = setTimeout(() => end(3, `timeout after ${timeoutSec} s`), timeoutSec * 1000);
  // Stopped from outside (SIGTERM, Ctrl-C): take the simulator and the X server down too.
  const stop = () => end(130, "stopped by a signal");
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);

  const result = await done;
  clearTimeout(timer);
  if (child.exitCode === null) child.kill("SIGTERM");
  for (const s of sockets) s.destroy();
  server.close();
  if (xvfb) xvfb.stop();
  if (child.exitCode === null && child.signalCode === null) {
    // Wait for it to go before removing its config folder; SIGKILL if SIGTERM was not enough.
    const gone = new Promise((r) => child.once("exit", r));
    const late = setTimeout(() => child.kill("SIGKILL"), 5000);
    await gone;
    clearTimeout(late);
  }
  rmSync(configHome, { recursive: true, force: true });
  process.off("SIGTERM", stop);
  process.off("SIGINT", stop);
  return result;
}

async function main(argv) {
  const options = {};
  let so;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--until") options.until = new RegExp(argv[++i]);
    else if (a === "--timeout") options.timeoutSec = Number(argv[++i]);
    else if (a === "--instruments") options.instruments = true;
    else if (a === "--linger") options.lingerSec = Number(argv[++i]);
    else if (a === "--display") options.display = argv[++i];
    else if (!a.startsWith("-") && so === undefined) so = a;
    else {
      console.error("usage: node scripts/mcsim-run.mjs MC_SO [--until REGEX [--linger SECONDS]] [--timeout SECONDS] [--instruments] [--display :N]");
      return 2;
    }
  }
  if (so === undefined) { console.error("mcsim-run: MC_SO is required"); return 2; }
  const t0 = Date.now();
  const stamp = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
  const r = await runMcsim(so, { ...options, onLine: (l) => console.log(`${stamp()} ${l}`) });
  console.log(`#mcsim-run: ${r.reason}`);
  return r.code;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => { console.error(`mcsim-run: ${e.message}`); process.exitCode = 1; });
}
