/**
 * The AWS IoT data plane's shadow REST API on the local cloud, over HTTPS with the local CA's server
 * certificate and SigV4 signatures (service `iotdata`) checked against locally generated access keys — so
 * that the unchanged AWS SDK (`@aws-sdk/client-iot-data-plane`) works against it with only an endpoint, the
 * credentials and the CA. Shapes per the AWS IoT API Reference ("AWS IoT data plane", restJson1):
 *
 *   GET    /things/{thingName}/shadow[?name=N]     GetThingShadow: 200, the shadow document
 *   POST   /things/{thingName}/shadow[?name=N]     UpdateThingShadow: body the update document (desired and/or
 *                                                  reported, version, clientToken); 200, update/accepted
 *   DELETE /things/{thingName}/shadow[?name=N]     DeleteThingShadow: 200, {"version","timestamp"}
 *   GET    /api/things/shadow/ListNamedShadowsForThing/{thingName}[?nextToken=T&pageSize=N]
 *                                                  200, {"results":[names],"nextToken"?,"timestamp"}
 *
 * Errors: the status AWS gives, the error's name in `x-amzn-ErrorType` (what the SDK turns into the
 * exception class: ResourceNotFoundException, ConflictException, …) and the Device Shadow error document
 * `{"code","message"}` as body; a missing, malformed, stale (over 5 minutes) or wrong signature and an
 * unknown access key are 403 with AWS's messages (sigv4.ts). Updates go through the same engine as the
 * devices' MQTT requests (shadow-service.ts `request`), so they publish accepted, delta and documents.
 *
 * Not here: Publish, retained messages (not served: 405/404), session tokens, IAM policies (every configured
 * key may do everything).
 */
import * as crypto from "node:crypto";
import * as https from "node:https";
import { closeHttpServer, listenOn, readBodyCapped, urlOf } from "./listen";
import { validateShadowName, validateThingName } from "../core/aws-shadow";
import type { JsonObject } from "../core/json";
import type { Clock } from "../ports/clock";
import type { Log } from "../ports/log";
import { notFoundMessage, SHADOW_ERROR_MESSAGES } from "./shadow-engine";
import type { ShadowService } from "./shadow-service";
import { verifySigV4, type SigV4Key } from "./sigv4";

/** The signing name of the AWS IoT data plane. */
export const IOT_DATA_SIGNING_SERVICE = "iotdata";
/** Largest request body read: AWS IoT Core's 128 KB message limit plus room; the engine judges the rest. */
const MAX_BODY = 256 * 1024;
/** ListNamedShadowsForThing's largest page (the API reference: pageSize 1..100). */
const MAX_PAGE = 100;

/** The exception names the SDK maps each status to (AWS IoT API Reference, each operation's "Errors"). */
export const DATAPLANE_ERROR_TYPES: Readonly<Record<number, string>> = {
  400: "InvalidRequestException",
  401: "UnauthorizedException",
  404: "ResourceNotFoundException",
  405: "MethodNotAllowedException",
  409: "ConflictException",
  413: "RequestEntityTooLargeException",
  415: "UnsupportedDocumentEncodingException",
  429: "ThrottlingException",
  500: "InternalFailureException",
  503: "ServiceUnavailableException",
};

/** A new random key pair in AWS's formats: `AKIA` + 16 upper-case letters/digits, a 40-character secret. */
export function generateAccessKey(): SigV4Key {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const id = [...crypto.randomBytes(16)].map((b) => alphabet[b % 32]).join("");
  return { accessKeyId: `AKIA${id}`, secretAccessKey: crypto.randomBytes(30).toString("base64") };
}

export interface AwsDataPlaneOptions {
  shadows: ShadowService;
  keys: readonly SigV4Key[];
  host: string;
  /** 0: any free port. */
  port: number;
  certPem: string;
  keyPem: string;
  clock: Clock;
  log: Log;
}

class DataPlaneError extends Error {
  constructor(readonly status: number, message: string, readonly errorType = DATAPLANE_ERROR_TYPES[status] ?? "InternalFailureException") {
    super(message);
  }
}

export class AwsDataPlaneServer {
  /** `https://127.0.0.1:PORT`: what goes into the SDK's `endpoint`. */
  readonly url: string;
  readonly #server: https.Server;

  private constructor(server: https.Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(o: AwsDataPlaneOptions): Promise<AwsDataPlaneServer> {
    const server = https.createServer({ cert: o.certPem, key: o.keyPem, minVersion: "TLSv1.2" }, (req, res) => {
      const send = (status: number, body: JsonObject, errorType?: string): void => {
        if (res.headersSent) return;
        const text = JSON.stringify(body);
        const headers: Record<string, string | number> = {
          "content-type": "application/json", "content-length": Buffer.byteLength(text),
          "x-amzn-requestid": crypto.randomUUID(),
        };
        if (errorType !== undefined) headers["x-amzn-errortype"] = errorType;
        res.writeHead(status, headers);
        res.end(text);
      };
      handle(o, req).then(
        (body) => send(200, body),
        (e: unknown) => {
          if (e instanceof DataPlaneError) {
            send(e.status, e.status === 403 ? { message: e.message } : { code: e.status, message: e.message }, e.errorType);
            return;
          }
          o.log.log("error", "dataplane.failed", { method: req.method ?? null, url: (req.url ?? "").slice(0, 200), message: String(e) });
          send(500, { code: 500, message: SHADOW_ERROR_MESSAGES.INTERNAL_FAILURE }, "InternalFailureException");
        })
        .catch((e: unknown) => o.log.log("error", "dataplane.failed", { message: String(e) }));
    });
    server.on("tlsClientError", (_e, socket) => socket.destroy());
    const a = await listenOn(server, o.port, o.host);
    return new AwsDataPlaneServer(server, urlOf("https", a));
  }

  close(): Promise<void> {
    return closeHttpServer(this.#server);
  }
}

async function readBody(req: import("node:http").IncomingMessage): Promise<Buffer> {
  return readBodyCapped(req, MAX_BODY, () => new DataPlaneError(413, SHADOW_ERROR_MESSAGES.PAYLOAD_TOO_LARGE));
}

/** A name checked with the core's rules; a bad one is AWS's 400 InvalidRequestException. */
function checked<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new DataPlaneError(400, e instanceof Error ? e.message : String(e));
  }
}

async function handle(o: AwsDataPlaneOptions, req: import("node:http").IncomingMessage): Promise<JsonObject> {
  const method = req.method ?? "GET";
  const body = await readBody(req);
  const rawUrl = req.url ?? "/";
  const auth = verifySigV4({ method, url: rawUrl, headers: req.headers, body }, o.keys, IOT_DATA_SIGNING_SERVICE, o.clock.epochSeconds());
  if (!auth.ok) throw new DataPlaneError(auth.status, auth.message, auth.errorType);

  let url: URL;
  let parts: string[];
  try {
    url = new URL(rawUrl, "https://iot-data");
    parts = url.pathname.split("/").filter((p) => p.length > 0).map(decodeURIComponent);
  } catch {
    throw new DataPlaneError(400, "the request path is not a valid URL (malformed percent-escape?)");
  }
  const shadowName = url.searchParams.get("name") ?? undefined;

  if (parts.length === 3 && parts[0] === "things" && parts[2] === "shadow") {
    const thing = parts[1]!;
    checked(() => { validateThingName(thing); if (shadowName !== undefined) validateShadowName(shadowName); });
    if (method === "GET") {
      const doc = await o.shadows.getShadow(thing, shadowName);
      if (doc === undefined) throw new DataPlaneError(404, notFoundMessage(thing, shadowName));
      return doc;
    }
    if (method === "POST" || method === "DELETE") {
      const r = await o.shadows.request(thing, method === "POST" ? "update" : "delete", new Uint8Array(body), shadowName);
      if (r.status !== 200) throw new DataPlaneError(r.status, String(r.response["message"]));
      return r.response;
    }
    throw new DataPlaneError(405, `${method} is not supported on this resource`);
  }
  if (parts.length === 5 && parts.slice(0, 4).join("/") === "api/things/shadow/ListNamedShadowsForThing") {
    if (method !== "GET") throw new DataPlaneError(405, `${method} is not supported on this resource`);
    const thing = parts[4]!;
    checked(() => validateThingName(thing));
    const pageText = url.searchParams.get("pageSize");
    const pageSize = pageText === null ? MAX_PAGE : Number(pageText);
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE) throw new DataPlaneError(400, `pageSize must be 1..${MAX_PAGE}`);
    const names = o.shadows.namedShadows(thing);
    const token = url.searchParams.get("nextToken");
    // The token is opaque to clients: here the last name of the previous page, base64url-encoded.
    const after = token === null ? undefined : Buffer.from(token, "base64url").toString("utf8");
    const rest = after === undefined ? names : names.filter((n) => n > after);
    const page = rest.slice(0, pageSize);
    const out: JsonObject = { results: page, timestamp: Math.floor(o.clock.epochSeconds()) };
    if (rest.length > page.length) out["nextToken"] = Buffer.from(page[page.length - 1]!, "utf8").toString("base64url");
    return out;
  }
  throw new DataPlaneError(404, `no data-plane route ${method} ${url.pathname}`, "ResourceNotFoundException");
}
