// The fleet page's script (plain browser JavaScript, no framework, no build step; served as is by
// fleet-http.ts). Everything a device reported is put into the page with textContent or attribute setters,
// never parsed as HTML: a device controls its reported state. docs/fleet-page.md says what it shows.
//
// Auth: the admin token arrives in the URL's fragment (#token=…), is moved to sessionStorage and removed from
// the address bar; every request sends it as `Authorization: Bearer`. The live feed is GET /events read with
// fetch() (an EventSource cannot send that header), parsed as Server-Sent Events, reopened after a drop with
// ?after= the last event seen.
"use strict";

(function () {
  const TOKEN_KEY = "shadow-ota-admin-token";
  const MAX_EVENTS_SHOWN = 200;
  const devices = new Map(); // id → latest FleetDevice
  const accepted = new Map(); // id → the version the operator accepted here (kept across re-renders of its row)
  let lastSeq = 0;
  let token = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }

  function setStatus(state, text) {
    const s = $("status");
    s.dataset.state = state;
    s.textContent = text;
  }

  async function api(method, path, body) {
    const init = { method, headers: { authorization: "Bearer " + token } };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let json = null;
    try { json = text.length > 0 ? JSON.parse(text) : null; } catch (e) { json = null; }
    if (!res.ok) {
      const err = new Error((json && json.message) || res.status + " " + res.statusText);
      err.status = res.status;
      err.code = json && json.code;
      throw err;
    }
    return json;
  }

  // ---- devices ------------------------------------------------------------------------------------

  function relative(iso) {
    if (typeof iso !== "string") return "never";
    const t = Date.parse(iso);
    if (!Number.isFinite(t)) return "?";
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    return s < 60 ? s + " s ago" : s < 3600 ? Math.floor(s / 60) + " min ago" : new Date(t).toLocaleString();
  }

  function progressCell(u) {
    const td = el("td", { class: "progress" });
    if (!u) return td;
    if (typeof u.percent === "number") {
      const bar = el("progress", { max: "100", value: String(Math.max(0, Math.min(100, u.percent))), "data-testid": "progress" });
      td.append(bar, el("span", { class: "pct", text: u.percent + " %" }));
      if (typeof u.bytes === "number" && typeof u.total === "number") td.title = u.bytes + " / " + u.total + " bytes";
    }
    return td;
  }

  function renderDevice(d) {
    const tbody = $("devices").tBodies[0];
    let tr = null;
    for (const row of tbody.rows) if (row.dataset.device === d.id) tr = row;
    const u = d.update;
    let install = null;
    if (d.pendingConsent && accepted.get(d.id) === d.pendingConsent) {
      install = el("button", { type: "button", class: "install", text: "accepted" });
      install.disabled = true;
    } else if (d.pendingConsent) {
      install = el("button", { type: "button", class: "install", text: "install " + d.pendingConsent });
      const version = d.pendingConsent;
      install.addEventListener("click", () => installOn(d.id, version, install));
    }
    const cells = [
      el("td", { class: "id", text: d.id }),
      el("td", { class: "cloud", text: d.cloud }),
      el("td", { class: "version", text: d.version || "—" }),
      el("td", { class: "desired", text: d.desiredVersion || "—" }),
      el("td", { class: "state", "data-state": u ? u.state : "", text: u ? u.state + (u.to ? " → " + u.to : "") : "—" }),
      progressCell(u),
      el("td", { class: "error", title: d.lastError ? d.lastError.message : null, text: d.lastError ? d.lastError.code : "" }),
      el("td", { class: "seen", "data-iso": d.lastSeen || "", text: relative(d.lastSeen) }),
      el("td", { class: "available", text: d.available ? d.available.version : "" }),
      el("td", { class: "actions" }, install),
    ];
    const next = el("tr", { "data-device": d.id }, ...cells);
    if (tr) tr.replaceWith(next);
    else {
      let before = null;
      for (const row of tbody.rows) if (before === null && row.dataset.device > d.id) before = row;
      tbody.insertBefore(next, before);
    }
  }

  async function installOn(id, version, button) {
    button.disabled = true;
    try {
      await api("POST", "/devices/" + encodeURIComponent(id) + "/install");
      accepted.set(id, version);
      button.textContent = "accepted";
    } catch (e) {
      button.disabled = false;
      button.textContent = "install failed: " + (e.code || e.message);
    }
  }

  // ---- events -------------------------------------------------------------------------------------

  function describe(e) {
    if (e.type === "release-published" && e.release) {
      const n = e.release.devices ? e.release.devices.length : 0;
      return "release " + e.release.version + " published for " + e.release.cloud + " (" + e.release.name + "): available on " + n + " device" + (n === 1 ? "" : "s");
    }
    const what = e.type === "updated" ? "updated" : e.type === "rolled-back" ? "rolled back" : e.type === "failed" ? "update failed" : e.type;
    let s = (e.deviceId || "?") + " " + what + " " + (e.from || "?") + " → " + (e.to || "?");
    if (e.type !== "updated") s += ", runs " + (e.version || "?");
    if (e.error) s += ": " + e.error.code + " " + e.error.message;
    return s;
  }

  function renderEvent(e) {
    if (typeof e.seq !== "number" || e.seq <= lastSeq) return;
    lastSeq = e.seq;
    const list = $("events");
    const li = el("li", { "data-seq": e.seq, "data-type": e.type, class: "event " + e.type },
      el("time", { datetime: e.time, text: new Date(e.time).toLocaleTimeString() }), " ", el("span", { text: describe(e) }));
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_EVENTS_SHOWN) list.lastChild.remove();
    scheduleRollouts();
  }

  // ---- the live feed ------------------------------------------------------------------------------

  function handleSse(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (data.length === 0) return;
    let v;
    try { v = JSON.parse(data.join("\n")); } catch (e) { return; }
    if (type === "device") {
      devices.set(v.id, v);
      renderDevice(v);
    } else if (type === "fleet") renderEvent(v);
  }

  async function stream() {
    for (;;) {
      try {
        const res = await fetch("/events?after=" + lastSeq, { headers: { authorization: "Bearer " + token } });
        if (res.status === 401) {
          sessionStorage.removeItem(TOKEN_KEY);
          setStatus("unauthorized", "the admin token was refused (has the cloud restarted? open the address it printed)");
          $("login").hidden = false;
          return;
        }
        if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
        setStatus("live", "live");
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
          let k;
          while ((k = buf.indexOf("\n\n")) >= 0) {
            handleSse(buf.slice(0, k));
            buf = buf.slice(k + 2);
          }
        }
        throw new Error("the stream ended");
      } catch (e) {
        setStatus("reconnecting", "reconnecting (" + e.message + ")");
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  // ---- rollouts -----------------------------------------------------------------------------------

  let rolloutTimer = null;
  function scheduleRollouts() {
    if (rolloutTimer !== null) return;
    rolloutTimer = setTimeout(() => { rolloutTimer = null; refreshRollouts(); }, 300);
  }

  function pct(x) {
    if (typeof x !== "number" || !Number.isFinite(x)) return "?";
    return (x <= 1 ? x * 100 : x).toFixed(1) + " %";
  }

  function renderRollout(r) {
    const box = el("article", { class: "rollout", "data-rollout": r.id, "data-state": r.state });
    box.append(el("h3", {},
      el("span", { class: "version", text: String(r.version) }), " ",
      el("span", { class: "rollout-state", text: String(r.state) }), " ",
      el("span", { class: "rate", text: "failure " + pct(r.failureRate) + " of max " + pct(r.maxFailure) })));
    if (r.reason) box.append(el("p", { class: "reason", text: String(r.reason) }));
    const waves = el("table", { class: "waves" }, el("thead", {}, el("tr", {},
      el("th", { text: "wave" }), el("th", { text: "size" }), el("th", { text: "state" }), el("th", { text: "updated" }),
      el("th", { text: "failed" }), el("th", { text: "pending" }), el("th", { text: "reverted" }),
      el("th", { text: "installed after cancel", title: "desired was put back, but the device was already Staged and runs the version" }),
      el("th", { text: "devices" }))));
    const body = el("tbody");
    for (const w of Array.isArray(r.waves) ? r.waves : []) {
      const list = Array.isArray(w.devices) ? w.devices.map((d) => (typeof d === "string" ? d : d && d.id)).join(", ") : "";
      body.append(el("tr", { "data-wave": w.index, "data-state": w.state },
        el("td", { text: String(w.index) }), el("td", { text: String(w.size) }), el("td", { class: "wave-state", text: String(w.state) }),
        el("td", { class: "updated", text: String(w.updated ?? "") }), el("td", { class: "failed", text: String(w.failed ?? "") }),
        el("td", { class: "pending", text: String(w.pending ?? "") }), el("td", { class: "reverted", text: String(w.reverted ?? "") }),
        el("td", { class: "installed-after-cancel", text: String(w.installedAfterCancel ?? "") }), el("td", { class: "devices", text: list })));
    }
    waves.append(body);
    box.append(waves);
    const actions = el("div", { class: "actions" });
    const live = r.state === "running" || r.state === "paused" || r.state === "waiting-window";
    for (const action of ["pause", "resume", "cancel"]) {
      const b = el("button", { type: "button", class: action, text: action });
      b.disabled = !live || (action === "pause" && r.state === "paused") || (action === "resume" && r.state !== "paused");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try { await api("POST", "/rollouts/" + encodeURIComponent(r.id) + "/" + action); } catch (e) { $("rollouts-note").textContent = action + " failed: " + (e.code || "") + " " + e.message; }
        refreshRollouts();
      });
      actions.append(b);
    }
    box.append(actions);
    return box;
  }

  async function refreshRollouts() {
    let list;
    try {
      list = await api("GET", "/rollouts");
    } catch (e) {
      $("rollouts-note").textContent = e.status === 404 ? "this cloud has no rollout engine" : "rollouts: " + e.message;
      return;
    }
    const box = $("rollouts");
    box.replaceChildren(...(list && Array.isArray(list.rollouts) ? list.rollouts.slice().reverse().map(renderRollout) : []));
  }

  async function startRollout(ev) {
    ev.preventDefault();
    const f = ev.target;
    const body = { version: f.version.value.trim(), waves: f.waves.value.trim(), maxFailure: f.maxFailure.value.trim() };
    const list = f.devices.value.trim();
    if (list === "" || list === "all") body.all = true;
    else body.devices = list.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
    if (f.window.value.trim() !== "") body.window = f.window.value.trim();
    try {
      await api("POST", "/rollouts", body);
      $("rollouts-note").textContent = "";
    } catch (e) {
      $("rollouts-note").textContent = "start failed: " + (e.code || "") + " " + e.message;
    }
    refreshRollouts();
  }

  // ---- start --------------------------------------------------------------------------------------

  function open() {
    $("login").hidden = true;
    $("main").hidden = false;
    $("rollout-start").addEventListener("submit", startRollout);
    refreshRollouts();
    setInterval(refreshRollouts, 3000);
    setInterval(() => { for (const td of document.querySelectorAll("td.seen")) td.textContent = relative(td.dataset.iso || null); }, 5000);
    stream();
  }

  function init() {
    const m = /(?:^#|&)token=([0-9A-Za-z]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, m[1]);
      history.replaceState(null, "", location.pathname + location.search);
    }
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token").value.trim();
      if (!/^[0-9A-Za-z]+$/.test(t)) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      location.reload();
    });
    token = sessionStorage.getItem(TOKEN_KEY);
    if (token) return open();
    setStatus("login", "needs the admin token");
    $("login").hidden = false;
  }

  init();
})();
