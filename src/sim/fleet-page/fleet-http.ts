/**
 * The fleet page's HTTP side, mounted in the admin server (admin-http.ts) on loopback:
 *
 *   GET /  and  GET /fleet        the page (index.html), no token needed: it is static and holds no data
 *   GET /fleet/fleet.js, /fleet/fleet.css                           its script and style, the same
 *   GET /fleet/state              {"devices":[FleetDevice],"events":[FleetEvent],"releases":[…],"webhook"}
 *   GET /events[?after=SEQ]       Server-Sent Events: `event: device` (a FleetDevice) and `event: fleet`
 *                                 (a FleetEvent, `id:` its seq); first every device, then the events after
 *                                 SEQ (or, with a Last-Event-ID header, after that), then everything live; a `: keep-alive`
 *                                 comment every 15 s; a SEQ (or Last-Event-ID) that is not one non-negative
 *                                 integer is refused: 400 ADMIN_QUERY_INVALID
 *
 * /fleet/state and /events need the admin token like every other admin route (`Authorization: Bearer`).
 * A browser's EventSource cannot send that header, so the page does not use it: it reads /events with
 * fetch() and a stream reader, sending the header; the token reaches the page in the URL's fragment
 * (`/fleet#token=…`, which a browser never sends to a server, logs or Referer) and is kept in the tab's
 * sessionStorage only. Nothing is authorized by a cookie, so another site cannot make the browser act on
 * the admin API (no CSRF), and no response allows other origins (no CORS headers).
 *
 * Bounded: at most MAX_STREAMS streams at once (503 beyond); a stream whose client stops reading (over
 * MAX_BUFFERED bytes waiting) is closed.
 *
 * Not here: the fleet state itself (fleet-events.ts), the rollout and install routes (rollout-http.ts).
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { ADMIN_CODES } from "../cloud-errors";
import type { FleetChange, FleetEvents } from "../fleet-events";

export const MAX_STREAMS = 32;
const MAX_BUFFERED = 1024 * 1024;
const KEEP_ALIVE_MS = 15_000;

const ASSETS: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/fleet": { file: "index.html", type: "text/html; charset=utf-8" },
  "/fleet/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/fleet/fleet.js": { file: "fleet.js", type: "text/javascript; charset=utf-8" },
  "/fleet/fleet.css": { file: "fleet.css", type: "text/css; charset=utf-8" },
};

/** Headers on every page response: no framing, no other origins' scripts, no inline script. */
const PAGE_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

function pathOf(req: http.IncomingMessage): string {
  const q = (req.url ?? "/").indexOf("?");
  return q < 0 ? (req.url ?? "/") : (req.url ?? "/").slice(0, q);
}

/** Serves the page's static files (GET/HEAD, before the token check); false when `req` is not one of them. */
export function serveFleetPage(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  const asset = ASSETS[pathOf(req)];
  if (asset === undefined || !Object.prototype.hasOwnProperty.call(ASSETS, pathOf(req))) return false;
  const body = fs.readFileSync(path.join(__dirname, asset.file));
  res.writeHead(200, { ...PAGE_HEADERS, "content-type": asset.type, "content-length": body.length });
  res.end(req.method === "HEAD" ? undefined : body);
  return true;
}

const streams = new WeakMap<FleetEvents, Set<http.ServerResponse>>();

/**
 * Serves GET /fleet/state and GET /events for an authorized request; false when `req` is neither (the
 * admin router goes on). With no fleet view (`fleet` undefined) they are left to the router's 404.
 */
export function serveFleetData(fleet: FleetEvents | undefined, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  if (fleet === undefined || req.method !== "GET") return false;
  const p = pathOf(req);
  if (p === "/fleet/state") {
    const body = JSON.stringify({ devices: fleet.devices(), events: fleet.events(), releases: fleet.releases(), webhook: fleet.webhookStats() ?? null });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
    res.end(body);
    return true;
  }
  if (p !== "/events") return false;
  const query = new URLSearchParams((req.url ?? "").slice(p.length + 1));
  // Checked before the stream limit: a malformed request is a 400 however many streams are open.
  const header = req.headers["last-event-id"];
  const [name, last] = header !== undefined ? ["the Last-Event-ID header", typeof header === "string" ? [header] : header] : ["after", query.getAll("after")];
  if (last.length > 1 || (last.length === 1 && !/^[0-9]{1,15}$/.test(last[0]!))) {
    // A bad value is refused, not read as 0: a client that meant to resume would get every event again.
    const shown = last.join("&");
    const body = JSON.stringify({ code: ADMIN_CODES.ADMIN_QUERY_INVALID, message: `${name} must be one event sequence number (a non-negative integer), not ${JSON.stringify(shown.slice(0, 40))}` });
    res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
    return true;
  }
  const after = last.length === 1 ? Number(last[0]) : 0;
  let open = streams.get(fleet);
  if (open === undefined) { open = new Set(); streams.set(fleet, open); }
  if (open.size >= MAX_STREAMS) {
    const body = JSON.stringify({ code: ADMIN_CODES.ADMIN_TOO_MANY_STREAMS, message: `at most ${MAX_STREAMS} event streams at once` });
    res.writeHead(503, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
    return true;
  }
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" });
  const set = open;
  set.add(res);
  const write = (c: FleetChange): void => {
    const chunk = c.kind === "event" ? `id: ${c.event.seq}\nevent: fleet\ndata: ${JSON.stringify(c.event)}\n\n` : `event: device\ndata: ${JSON.stringify(c.device)}\n\n`;
    res.write(chunk);
    if (res.writableLength > MAX_BUFFERED) res.destroy(); // a client that stopped reading
  };
  res.write(": fleet events\n\n");
  for (const device of fleet.devices()) write({ kind: "device", device });
  for (const e of fleet.events(after)) write({ kind: "event", event: e });
  const unsubscribe = fleet.subscribe(write);
  const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), KEEP_ALIVE_MS);
  keepAlive.unref();
  res.on("close", () => {
    clearInterval(keepAlive);
    unsubscribe();
    set.delete(res);
  });
  return true;
}
