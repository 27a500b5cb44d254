/**
 * The local cloud's admin API over HTTP on loopback, shaped like the clouds' own service APIs so that a
 * script written against it reads like one written against AWS or Azure:
 *
 *   GET    /things/{thing}/shadow[?name=N]      the shadow document (AWS IoT data plane GetThingShadow)
 *   POST   /things/{thing}/shadow[?name=N]      body {"state":{"desired":{…}}, "version"?} (UpdateThingShadow;
 *                                               only `desired` is accepted: reported belongs to the device)
 *   DELETE /things/{thing}/shadow[?name=N]      (DeleteThingShadow)
 *   GET    /twins/{id}                          {"deviceId","properties":{"desired":{…,$version},"reported":{…}}}
 *   PATCH  /twins/{id}                          body {"properties":{"desired":{…}}} (IoT Hub's twin update)
 *   POST   /twins/{id}/methods                  body {"methodName","payload","responseTimeoutInSeconds"?}
 *                                               → {"status","payload"} (IoT Hub's invoke device method)
 *   GET    /devices                             {"devices":{id: "aws"|"azure"}}
 *   GET    /devices/{id}/logs[?after=N&limit=M] the device's mirrored log lines after cloudSeq N (at most M,
 *                                               ≤ 1000): {"deviceId","lines":[…],"next","missed"} (log-service.ts)
 *   POST   /devices                             body {"id","cloud"}: issue a certificate (and an Azure broker)
 *   GET    /firmware                            {"blobs":[{"container","name","path","size","etag","url"}]}
 *   PUT    /firmware/{container}/{name}         body: the image bytes (any content type, at most 16 MiB)
 *                                               → that blob's {"container","name","path","size","etag","url"}
 *   DELETE /firmware/{container}/{name}         {"deleted": "container/name"} (404 CLOUD_BLOB_NOT_FOUND)
 *   POST   /firmware/{container}/{name}/faults  body {"fault":{…BlobFault},"after"?,"times"?: n|"always"}:
 *                                               arm a fault for the next request(s) (src/sim/blob-server.ts)
 *   DELETE /firmware/{container}/{name}/faults  drop that blob's armed faults
 *   GET    /, /fleet, /fleet/state, /events      the fleet page (no token for the static page), its state and its
 *                                               Server-Sent Events (src/sim/fleet-page/fleet-http.ts)
 *   /rollouts…, POST /devices/{id}/install      staged rollouts and consent (src/sim/rollout-http.ts)
 *
 * Every request needs `Authorization: Bearer {token}`; the token is random per start and written, with the
 * URL, to {dataDir}/cloud.json (0600). Errors come back as {"code","message"} with the status the service
 * gave (a shadow rejection keeps its AWS status: 400, 404, 409, 413, 429 …), 401 without the token, 404
 * for an unknown route (and for /firmware when the cloud runs without a blob server), 413 for a JSON body
 * over 64 KB or a firmware body over 16 MiB, 400/404 for a bad or missing blob name. Every malformed input
 * is a 4xx naming what is wrong: a bad thing, shadow or device name 400 SYNC_NAME_INVALID /
 * CLOUD_DEVICE_ID_INVALID (for POST and DELETE as for GET), a malformed percent-escape 400
 * CLOUD_ADMIN_URL_INVALID, a JSON body nested deeper than 64 levels 400 SYNC_DEPTH_EXCEEDED (checked without
 * recursion, before anything walks the document), a reserved device id 400 CLOUD_DEVICE_ID_RESERVED.
 * A 500 (ADMIN_INTERNAL) means a bug in the local cloud, and is logged. The API's own codes (ADMIN_*) are
 * listed in ADMIN_CODES (cloud-errors.ts) and docs/error-codes.md.
 *
 * Not here: TLS (loopback only; the device-facing broker is the TLS surface), any shadow rule.
 */
import * as crypto from "node:crypto";
import * as http from "node:http";
import { closeHttpServer, listenOn, readBodyCapped, urlOf } from "./listen";
import type { CloudKind } from "../core/cloud-protocol";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, jsonDepth, type Json, type JsonObject } from "../core/json";
import type { Log } from "../ports/log";
import { MAX_BLOB_SIZE, parseBlobFault } from "./blob-server";
import { ADMIN_CODES, CLOUD_CODES } from "./cloud-errors";
import type { LocalCloud } from "./local-cloud";
import { serveFleetData, serveFleetPage } from "./fleet-page/fleet-http";
import { RolloutRoutes, rolloutStatus } from "./rollout-http";

const MAX_BODY = 64 * 1024;
/** Deepest JSON body accepted: far above the clouds' own limits (AWS 6, Azure 10 under their wrappers), so
 *  the services still give their own messages, and far below what would exhaust a recursive walk. */
const MAX_BODY_DEPTH = 64;

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function statusOf(e: unknown): number {
  if (e instanceof HttpError) return e.status;
  const rollout = rolloutStatus(e);
  if (rollout !== undefined) return rollout;
  if (e instanceof ShadowOtaError) {
    const s = e.detail?.["status"];
    if (typeof s === "number" && s >= 400 && s < 600) return s;
    if (e.code === "CLOUD_DEVICE_ID_INVALID" || e.code.startsWith("SYNC_") || e.code.startsWith("PKI_NAME")) return 400;
    if (e.code === CLOUD_CODES.CLOUD_DEVICE_ID_RESERVED || e.code === CLOUD_CODES.CLOUD_ADMIN_URL_INVALID) return 400;
    if (e.code === "CLOUD_SERVICE_CLOSED") return 503;
    if (e.code === CLOUD_CODES.CLOUD_BLOB_NAME_INVALID || e.code === CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID) return 400;
    if (e.code === CLOUD_CODES.CLOUD_BLOB_NOT_FOUND || e.code === CLOUD_CODES.CLOUD_BLOB_SERVER_DISABLED) return 404;
    if (e.code === CLOUD_CODES.CLOUD_BLOB_TOO_LARGE) return 413;
  }
  return 500;
}

async function readJson(req: http.IncomingMessage): Promise<JsonObject> {
  const body = await readBodyCapped(req, MAX_BODY, () => new HttpError(413, ADMIN_CODES.ADMIN_BODY_TOO_LARGE, `request body over ${MAX_BODY} bytes`));
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch {
    throw new HttpError(400, "SYNC_JSON_INVALID", "request body is not JSON");
  }
  if (!isJsonObject(v as Json)) throw new HttpError(400, "SYNC_DOCUMENT_INVALID", "request body must be a JSON object");
  const depth = jsonDepth(v as Json); // iterative: safe at any depth JSON.parse accepted
  if (depth > MAX_BODY_DEPTH) throw new HttpError(400, "SYNC_DEPTH_EXCEEDED", `request body nests ${depth} levels; the admin API accepts at most ${MAX_BODY_DEPTH}`);
  return v as JsonObject;
}

/** The raw request body, at most `limit` bytes (413 CLOUD_BLOB_TOO_LARGE beyond). */
async function readBytes(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = (): HttpError => new HttpError(413, CLOUD_CODES.CLOUD_BLOB_TOO_LARGE, `firmware body over ${limit} bytes`);
  if (Number(req.headers["content-length"] ?? 0) > limit) throw tooLarge();
  return readBodyCapped(req, limit, tooLarge);
}

export interface AdminHttpOptions {
  cloud: LocalCloud;
  host: string;
  port: number;
  log: Log;
}

export class AdminHttpServer {
  readonly url: string;
  readonly token: string;
  readonly #server: http.Server;
  /** The rollout engine and its routes (/rollouts, /devices/{id}/install: rollout-http.ts). */
  readonly rollouts: RolloutRoutes;

  private constructor(server: http.Server, url: string, token: string, rollouts: RolloutRoutes) {
    this.#server = server;
    this.rollouts = rollouts;
    this.url = url;
    this.token = token;
  }

  static async start(o: AdminHttpOptions): Promise<AdminHttpServer> {
    const token = crypto.randomBytes(24).toString("hex");
    const expected = Buffer.from(`Bearer ${token}`);
    const rollouts = RolloutRoutes.open({ cloud: o.cloud, log: o.log });
    const server = http.createServer((req, res) => {
      const send = (status: number, body: Json): void => {
        let text: string;
        try {
          text = JSON.stringify(body);
        } catch (e) { // a document the services accepted but JSON.stringify cannot write (too deep): a bug here
          o.log.log("error", "admin.failed", { method: req.method ?? null, url: req.url ?? null, code: ADMIN_CODES.ADMIN_INTERNAL, message: String(e) });
          status = 500;
          text = JSON.stringify({ code: ADMIN_CODES.ADMIN_INTERNAL, message: "the response could not be encoded" });
        }
        if (res.headersSent) return;
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
      };
      if (serveFleetPage(req, res)) return;
      const auth = Buffer.from(req.headers.authorization ?? "");
      if (auth.length !== expected.length || !crypto.timingSafeEqual(auth, expected)) {
        send(401, { code: ADMIN_CODES.ADMIN_UNAUTHORIZED, message: "missing or wrong bearer token (see cloud.json)" });
        return;
      }
      if (serveFleetData(o.cloud.fleet, req, res)) return;
      route(o.cloud, req, rollouts).then(
        (body) => send(200, body),
        (e: unknown) => {
          const status = statusOf(e);
          const code = e instanceof HttpError || e instanceof ShadowOtaError ? e.code : ADMIN_CODES.ADMIN_INTERNAL;
          const message = e instanceof Error ? e.message : String(e);
          if (status >= 500) o.log.log("error", "admin.failed", { method: req.method, url: req.url, code, message });
          send(status, { code, message });
        })
        .catch((e: unknown) => o.log.log("error", "admin.failed", { method: req.method ?? null, url: req.url ?? null, code: ADMIN_CODES.ADMIN_INTERNAL, message: String(e) }));
    });
    const a = await listenOn(server, o.port, o.host);
    return new AdminHttpServer(server, urlOf("http", a), token, rollouts);
  }

  async close(): Promise<void> {
    await this.rollouts.close();
    return closeHttpServer(this.#server);
  }
}

async function route(cloud: LocalCloud, req: http.IncomingMessage, rollouts: RolloutRoutes): Promise<Json> {
  let url: URL;
  let parts: string[];
  try {
    url = new URL(req.url ?? "/", "http://admin");
    parts = url.pathname.split("/").filter((p) => p.length > 0).map(decodeURIComponent);
  } catch {
    throw new HttpError(400, CLOUD_CODES.CLOUD_ADMIN_URL_INVALID, `the request path ${JSON.stringify((req.url ?? "").slice(0, 200))} is not a valid URL (malformed percent-escape?)`);
  }
  const method = req.method ?? "GET";
  const shadowName = url.searchParams.get("name") ?? undefined;
  if (RolloutRoutes.handles(parts)) {
    const r = await rollouts.route(method, parts, () => readJson(req));
    if (r !== undefined) return r;
  }

  if (parts.length === 3 && parts[0] === "things" && parts[2] === "shadow") {
    const thing = parts[1]!;
    if (method === "GET") {
      const doc = await cloud.shadows.getShadow(thing, shadowName);
      if (doc === undefined) throw new HttpError(404, "CLOUD_REQUEST_REJECTED", `No shadow exists with name: '${shadowName ?? thing}'`);
      return doc;
    }
    if (method === "POST") {
      const body = await readJson(req);
      const state = body["state"];
      if (!isJsonObject(state) || Object.keys(state).some((k) => k !== "desired")) {
        throw new HttpError(400, "SYNC_DOCUMENT_INVALID", 'body must be {"state":{"desired":{…}}}; reported belongs to the device');
      }
      const desired = state["desired"];
      if (desired !== null && !isJsonObject(desired ?? null)) throw new HttpError(400, "SYNC_DOCUMENT_INVALID", "state.desired must be an object or null");
      const options: { shadowName?: string; version?: number } = {};
      if (shadowName !== undefined) options.shadowName = shadowName;
      const version = body["version"];
      if (version !== undefined && typeof version !== "number") throw new HttpError(400, "SYNC_DOCUMENT_INVALID", "version must be a number");
      if (typeof version === "number") options.version = version;
      return cloud.shadows.updateDesired(thing, (desired ?? null) as JsonObject | null, options);
    }
    if (method === "DELETE") return cloud.shadows.deleteShadow(thing, shadowName);
  }

  if (parts[0] === "twins" && parts.length >= 2) {
    const id = parts[1]!;
    if (parts.length === 2 && method === "GET") {
      const t = await cloud.twins.getTwin(id);
      return { deviceId: id, properties: { desired: { ...t.desired, $version: t.desiredVersion }, reported: { ...t.reported, $version: t.reportedVersion } } };
    }
    if (parts.length === 2 && method === "PATCH") {
      const body = await readJson(req);
      const props = body["properties"];
      const desired = isJsonObject(props ?? null) ? (props as JsonObject)["desired"] : undefined;
      if (!isJsonObject(desired ?? null)) throw new HttpError(400, "SYNC_DOCUMENT_INVALID", 'body must be {"properties":{"desired":{…}}}');
      return (await cloud.twins.updateDesired(id, desired as JsonObject)) as unknown as Json;
    }
    if (parts.length === 3 && parts[2] === "methods" && method === "POST") {
      const body = await readJson(req);
      const name = body["methodName"];
      if (typeof name !== "string") throw new HttpError(400, "SYNC_DOCUMENT_INVALID", "methodName must be a string");
      const timeout = body["responseTimeoutInSeconds"];
      const options = typeof timeout === "number" && timeout > 0 && timeout <= 300 ? { timeoutMs: timeout * 1000 } : {};
      const r = await cloud.twins.invokeMethod(id, name, body["payload"] ?? null, options);
      return { status: r.status, payload: r.payload };
    }
  }

  if (parts.length === 3 && parts[0] === "devices" && parts[2] === "logs" && method === "GET") {
    const id = parts[1]!;
    if (!cloud.devices.has(id)) throw new HttpError(404, CLOUD_CODES.CLOUD_DEVICE_ID_INVALID, `unknown device ${id.slice(0, 128)}`);
    const count = (name: string): number | undefined => {
      const v = url.searchParams.get(name);
      if (v === null) return undefined;
      if (!/^[0-9]{1,15}$/.test(v)) throw new HttpError(400, ADMIN_CODES.ADMIN_QUERY_INVALID, `${name} must be a non-negative integer, not ${JSON.stringify(v.slice(0, 40))}`);
      return Number(v);
    };
    const after = count("after");
    const limit = count("limit");
    return cloud.logs.tail(id, { ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit }) }) as unknown as Json;
  }
  if (parts.length === 1 && parts[0] === "devices") {
    if (method === "GET") return { devices: Object.fromEntries(cloud.devices) };
    if (method === "POST") {
      const body = await readJson(req);
      const id = body["id"];
      const kind = body["cloud"];
      if (typeof id !== "string" || (kind !== "aws" && kind !== "azure")) throw new HttpError(400, "SYNC_DOCUMENT_INVALID", 'body must be {"id": string, "cloud": "aws"|"azure"}');
      const c = await cloud.addDevice(id, kind as CloudKind);
      return { id: c.id, cloud: c.cloud, host: c.host, port: c.port };
    }
  }
  if (parts[0] === "firmware") {
    if (parts.length === 1 && method === "GET") return { blobs: cloud.blobs.list() as unknown as Json };
    if (parts.length === 3) {
      const [, container, name] = parts as [string, string, string];
      if (method === "PUT") return cloud.publishFirmware(container, name, await readBytes(req, MAX_BLOB_SIZE)) as unknown as Json;
      if (method === "DELETE") {
        cloud.blobs.remove(container, name);
        return { deleted: `${container}/${name}` };
      }
    }
    if (parts.length === 4 && parts[3] === "faults") {
      const blobPath = `${parts[1]}/${parts[2]}`;
      if (method === "POST") {
        const body = await readJson(req);
        const times = body["times"];
        const after = body["after"];
        if (times !== undefined && times !== "always" && typeof times !== "number") throw new HttpError(400, CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID, 'times must be a number or "always"');
        if (after !== undefined && typeof after !== "number") throw new HttpError(400, CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID, "after must be a number");
        const when: { after?: number; times?: number | "always" } = {};
        if (after !== undefined) when.after = after as number;
        if (times !== undefined) when.times = times as number | "always";
        cloud.blobs.setFault(blobPath, parseBlobFault(body["fault"]), when);
        return { path: blobPath, armed: true };
      }
      if (method === "DELETE") {
        cloud.blobs.clearFaults(blobPath);
        return { path: blobPath, cleared: true };
      }
    }
  }
  throw new HttpError(404, ADMIN_CODES.ADMIN_NOT_FOUND, `no route ${method} ${url.pathname}`);
}
