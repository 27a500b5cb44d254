/**
 * Azure IoT Hub's service REST API for device twins and direct methods on the local cloud, over HTTPS with
 * SAS tokens verified against a locally generated shared access policy — close enough that the unchanged
 * `azure-iothub` SDK works with a local connection string
 * (`HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={key}`). Per IoT Hub's REST reference
 * ("Devices – Get Twin", "Devices – Update Twin", "Devices – Invoke Method") and "Understand and invoke
 * direct methods from IoT Hub":
 *
 *   GET   /twins/{id}?api-version=V          200 the twin: deviceId, etag, version, status, connectionState,
 *                                           authenticationType, properties.desired/reported with $version
 *   PATCH /twins/{id}?api-version=V          body {"properties":{"desired":{…}}} (null deletes), If-Match: etag
 *                                           or *; 200 the twin after the patch; 412 for another etag
 *   POST  /twins/{id}/methods?api-version=V  body {"methodName","payload","responseTimeoutInSeconds" (5..300,
 *                                           default 30),"connectTimeoutInSeconds" (0..300, default 0)};
 *                                           200 {"status","payload"} — the device's own status and payload
 *
 * A registered device that is not connected (or has not subscribed to `$iothub/methods/POST/#`) answers a
 * direct method with 404 DeviceNotOnline (IoT Hub's error 404103) once `connectTimeoutInSeconds` has passed
 * without it coming online — immediately with the default 0; a device that does not reply within
 * `responseTimeoutInSeconds` gives 504 GatewayTimeout (504101). An unknown device is 404 DeviceNotFound.
 * Errors use IoT Hub's body `{"Message":"ErrorCode:{Code};{message}","ExceptionMessage":""}` (what the SDK's
 * parser reads), 401 IotHubUnauthorizedAccess for a missing, malformed, expired or wrong SAS token.
 *
 * Why port 443 matters: the SDK hands the connection string's HostName to https.request as the host, with
 * no port, so it always connects to 443 and a "127.0.0.1:PORT" host name fails its DNS lookup. The local
 * cloud therefore serves this API on a loopback address at 443 when asked (LocalCloud `iothub`), and a
 * client trusts the local CA through NODE_EXTRA_CA_CERTS (the SDK has no public CA option).
 *
 * Not here: the device registry API (devices are registered with the admin API), tags, $metadata (the
 * twin engine does not keep them), jobs, queries, modules.
 */
import * as crypto from "node:crypto";
import type * as http from "node:http";
import * as https from "node:https";
import { closeHttpServer, listenOn, readBodyCapped, urlOf } from "./listen";
import { isJsonObject, jsonDepth, type Json, type JsonObject } from "../core/json";
import { verifySasToken } from "../core/sas-token";
import type { Clock } from "../ports/clock";
import type { Log } from "../ports/log";
import { isDeviceId } from "./twin-engine";
import type { TwinService } from "./twin-service";

/** The policy name the local cloud's service connection string carries (IoT Hub's built-in full-rights policy). */
export const IOTHUB_OWNER_POLICY = "iothubowner";
const MAX_BODY = 128 * 1024; // direct-method payloads are at most 128 KB; a twin patch far less
const MAX_BODY_DEPTH = 64;

export interface IotHubRestOptions {
  twins: TwinService;
  /** The hub's host name, as in connection strings and the tokens' sr (e.g. "127.0.0.1"). */
  hubHost: string;
  /** Shared access policies: name → base64 key. */
  policies: ReadonlyMap<string, string>;
  /** Whether `id` is a registered Azure device. */
  isDevice: (id: string) => boolean;
  /** Whether the device is connected and subscribed to direct methods; undefined when the broker cannot say
   *  (mosquitto), which then lets the request go out and time out as a lost one would. */
  isOnline: (id: string) => boolean | undefined;
  host: string;
  port: number;
  certPem: string;
  keyPem: string;
  clock: Clock;
  log: Log;
}

class HubError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** The twin's etag: base64 of its desired `$version` as 8 bytes (IoT Hub's etags look like this). */
export function twinEtag(desiredVersion: number): string {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(desiredVersion));
  return b.toString("base64");
}

export class IotHubRestServer {
  readonly url: string;
  readonly #server: https.Server;

  private constructor(server: https.Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(o: IotHubRestOptions): Promise<IotHubRestServer> {
    const server = https.createServer({ cert: o.certPem, key: o.keyPem, minVersion: "TLSv1.2" }, (req, res) => {
      const send = (status: number, body: Json): void => {
        if (res.headersSent) return;
        const text = JSON.stringify(body);
        res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
        res.end(text);
      };
      handle(o, req).then(
        (body) => send(200, body),
        (e: unknown) => {
          const err = e instanceof HubError ? e : new HubError(500, "ServerError", "internal error");
          if (!(e instanceof HubError)) o.log.log("error", "iothub.failed", { method: req.method ?? null, url: (req.url ?? "").slice(0, 200), message: String(e) });
          if (res.headersSent) return;
          const text = JSON.stringify({ Message: `ErrorCode:${err.code};${err.message}`, ExceptionMessage: `Tracking ID:${crypto.randomUUID().replace(/-/g, "")}-G:0-TimeStamp:${new Date().toISOString()}` });
          res.writeHead(err.status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), "iothub-errorcode": err.code });
          res.end(text);
        })
        .catch((e: unknown) => o.log.log("error", "iothub.failed", { message: String(e) }));
    });
    server.on("tlsClientError", (_e, socket) => socket.destroy());
    const a = await listenOn(server, o.port, o.host);
    return new IotHubRestServer(server, urlOf("https", a));
  }

  close(): Promise<void> {
    return closeHttpServer(this.#server);
  }
}

async function readJson(req: http.IncomingMessage): Promise<JsonObject> {
  const body = await readBodyCapped(req, MAX_BODY, () => new HubError(413, "RequestEntityTooLarge", `the request body is over ${MAX_BODY} bytes`));
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch {
    throw new HubError(400, "ArgumentInvalid", "the request body is not JSON");
  }
  if (!isJsonObject(v as Json)) throw new HubError(400, "ArgumentInvalid", "the request body must be a JSON object");
  if (jsonDepth(v as Json) > MAX_BODY_DEPTH) throw new HubError(400, "ArgumentInvalid", `the request body nests deeper than ${MAX_BODY_DEPTH} levels`);
  return v as JsonObject;
}

function authorize(o: IotHubRestOptions, req: http.IncomingMessage): void {
  const auth = req.headers.authorization;
  if (auth === undefined || auth === "") throw new HubError(401, "IotHubUnauthorizedAccess", "Unauthorized: no SharedAccessSignature in the Authorization header");
  const v = verifySasToken(auth, o.hubHost, o.clock.epochSeconds(), (name) => (name === undefined ? undefined : o.policies.get(name)));
  if (!v.ok) throw new HubError(401, "IotHubUnauthorizedAccess", `Unauthorized: ${v.message}`);
}

async function twinOf(o: IotHubRestOptions, id: string): Promise<JsonObject> {
  const t = await o.twins.getTwin(id);
  const online = o.isOnline(id);
  return {
    deviceId: id, etag: twinEtag(t.desiredVersion), deviceEtag: twinEtag(t.reportedVersion), status: "enabled",
    connectionState: online === true ? "Connected" : "Disconnected", authenticationType: "sas",
    version: t.desiredVersion + t.reportedVersion,
    properties: { desired: { ...t.desired, $version: t.desiredVersion }, reported: { ...t.reported, $version: t.reportedVersion } },
  };
}

function seconds(v: Json | undefined, name: string, min: number, max: number, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new HubError(400, "ArgumentInvalid", `${name} must be a whole number of seconds in ${min}..${max}`);
  return v;
}

async function handle(o: IotHubRestOptions, req: http.IncomingMessage): Promise<Json> {
  authorize(o, req);
  const method = req.method ?? "GET";
  let url: URL;
  let parts: string[];
  try {
    url = new URL(req.url ?? "/", "https://iothub");
    parts = url.pathname.split("/").filter((p) => p.length > 0).map(decodeURIComponent);
  } catch {
    throw new HubError(400, "ArgumentInvalid", "the request path is not a valid URL (malformed percent-escape?)");
  }
  if (parts[0] !== "twins" || parts.length < 2 || parts.length > 3 || (parts.length === 3 && parts[2] !== "methods")) {
    throw new HubError(404, "NotFound", `no route ${method} ${url.pathname.slice(0, 200)}`);
  }
  const id = parts[1]!;
  if (!isDeviceId(id)) throw new HubError(400, "ArgumentInvalid", "the device id is not 1..128 of IoT Hub's device-id characters");
  if (!o.isDevice(id)) throw new HubError(404, "DeviceNotFound", `Device ${id} not registered`);

  if (parts.length === 2 && method === "GET") return twinOf(o, id);
  if (parts.length === 2 && method === "PATCH") {
    const ifMatch = req.headers["if-match"];
    const body = await readJson(req);
    const current = await o.twins.getTwin(id);
    const etag = ifMatch?.replace(/^"(.*)"$/, "$1"); // the SDK quotes it (also "*")
    if (etag !== undefined && etag !== "*" && etag !== twinEtag(current.desiredVersion)) {
      throw new HubError(412, "PreconditionFailed", `Precondition failed: the twin's etag is not ${etag.slice(0, 64)}`);
    }
    const tags = body["tags"];
    if (tags !== undefined && tags !== null && !(isJsonObject(tags) && Object.keys(tags).length === 0)) {
      throw new HubError(400, "ArgumentInvalid", "tags are not kept by the local cloud");
    }
    const props = body["properties"];
    const desired = isJsonObject(props ?? null) ? (props as JsonObject)["desired"] : undefined;
    if (desired !== undefined && !isJsonObject(desired)) throw new HubError(400, "ArgumentInvalid", "properties.desired must be an object");
    if (isJsonObject(props ?? null) && (props as JsonObject)["reported"] !== undefined) throw new HubError(400, "ArgumentInvalid", "reported properties belong to the device");
    if (desired !== undefined) {
      try {
        await o.twins.updateDesired(id, desired as JsonObject);
      } catch (e) {
        throw new HubError(400, "ArgumentInvalid", e instanceof Error ? e.message : String(e));
      }
    }
    return twinOf(o, id);
  }
  if (parts.length === 3 && method === "POST") {
    const body = await readJson(req);
    const name = body["methodName"];
    if (typeof name !== "string" || name === "") throw new HubError(400, "ArgumentInvalid", "methodName must be a non-empty string");
    const responseTimeout = seconds(body["responseTimeoutInSeconds"], "responseTimeoutInSeconds", 5, 300, 30);
    const connectTimeout = seconds(body["connectTimeoutInSeconds"], "connectTimeoutInSeconds", 0, 300, 0);
    const until = o.clock.monotonicMs() + connectTimeout * 1000;
    while (o.isOnline(id) === false) {
      if (o.clock.monotonicMs() >= until) throw new HubError(404, "DeviceNotOnline", "Timed out waiting for device to connect.");
      await new Promise<void>((resolve) => { o.clock.setTimer(250, resolve); });
    }
    let r: { status: number; payload: Json };
    try {
      r = await o.twins.invokeMethod(id, name, body["payload"] ?? null, { timeoutMs: responseTimeout * 1000 });
    } catch (e) {
      throw new HubError(400, "ArgumentInvalid", e instanceof Error ? e.message : String(e));
    }
    // twin-service answers 504 when the device does not reply in time and 404 when it has no route.
    if (r.status === 504 && isJsonObject(r.payload) && /^Timed out/.test(String(r.payload["message"]))) throw new HubError(504, "GatewayTimeout", "Timed out waiting for the response from device.");
    if (r.status === 404 && isJsonObject(r.payload) && /not connected/.test(String(r.payload["message"]))) throw new HubError(404, "DeviceNotOnline", "Timed out waiting for device to connect.");
    return { status: r.status, payload: r.payload };
  }
  throw new HubError(405, "MethodNotAllowed", `${method} is not supported on ${url.pathname.slice(0, 200)}`);
}
