/**
 * Where `npm run release` uploads (a build/release tool, Node only): the local cloud's blob server through
 * its admin API, an S3 bucket through `@aws-sdk/client-s3`, an Azure Blob container through
 * `@azure/storage-blob`. Each target answers three questions the same way: what is there now under this
 * name (`existing`: its SHA-256, or undefined), put these bytes there (`put`), and the public URL of a name.
 *
 * Targets (`parseTarget`):
 *   local                                        the running local cloud (`{dataDir}/cloud.json`), container
 *                                                `--container` (default "firmware")
 *   s3://BUCKET[/PREFIX]                         key PREFIX/NAME; endpoint from --endpoint or the SDK's own
 *                                                settings (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, config file)
 *   https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX][?SAS]
 *   https://127.0.0.1:PORT/ACCOUNT/CONTAINER[/PREFIX][?SAS]   an emulator's path-style URL (IP or localhost)
 *
 * Credentials are never taken from the command line (shell history): S3 from the SDK's standard chain
 * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], AWS_PROFILE and the shared config files,
 * SSO, instance roles); Azure from a SAS in the URL, AZURE_STORAGE_CONNECTION_STRING, or
 * AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY (the names the Azure CLI reads), in that order. A SAS is never
 * printed: URLs shown drop the query.
 *
 * Identity of an object: the SHA-256 of its bytes, kept in the object's metadata (`sha256`) when this tool
 * uploads; for an object without it the bytes are read back and hashed (images are at most 16 MiB). On the
 * local blob server the ETag is the first 32 hex digits of the SHA-256 (src/sim/blob-server.ts).
 *
 * Not here: stamping and signing (release.ts), listing or deleting releases, multipart uploads (an image is
 * at most 16 MiB, under S3's 5 GiB single PUT), container or bucket creation (they are the operator's).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";

// The vendors' SDKs are loaded only for their target (import type here, import() below): a release to the
// local cloud does not pay for loading them.
import type { S3ClientConfig } from "@aws-sdk/client-s3";
import type { BlobServiceClient, ContainerClient, StoragePipelineOptions } from "@azure/storage-blob";

import { ShadowOtaError } from "../core/errors";
import type { FirmwareSeed } from "../core/firmware-url";

/** Error codes of the release tool (src/tools/release.ts, release-targets.ts). */
export const RELEASE_CODES = {
  /** A command-line option is unknown, missing its value, or out of range (the message says which). */
  RELEASE_BAD_OPTION: "RELEASE_BAD_OPTION",
  /** `--to` is not `local`, `s3://bucket[/prefix]` or an Azure Blob container URL, or does not match its credentials. */
  RELEASE_TARGET_INVALID: "RELEASE_TARGET_INVALID",
  /** The target does not answer (no running local cloud, connection refused, DNS, TLS): nothing was uploaded. */
  RELEASE_TARGET_UNREACHABLE: "RELEASE_TARGET_UNREACHABLE",
  /** No credentials for the target were found (S3: the SDK's chain found none; Azure: no SAS, connection string or account key). */
  RELEASE_CREDENTIALS_MISSING: "RELEASE_CREDENTIALS_MISSING",
  /** An object with this name already exists with other bytes; `--force` replaces it. */
  RELEASE_OBJECT_EXISTS: "RELEASE_OBJECT_EXISTS",
  /** The target refused a request (access denied, no such bucket or container…); its status and code are in the message. */
  RELEASE_UPLOAD_FAILED: "RELEASE_UPLOAD_FAILED",
} as const;

export type ParsedTarget =
  | { kind: "local" }
  | { kind: "s3"; bucket: string; prefix: string }
  | { kind: "azure"; containerUrl: string; container: string; prefix: string; sas: string | undefined };

function invalidTarget(message: string): ShadowOtaError {
  return new ShadowOtaError(RELEASE_CODES.RELEASE_TARGET_INVALID, message);
}

/** A key prefix: "" or segments joined by "/" ending with "/" (no empty, "." or ".." segment). */
function normalizePrefix(raw: string, what: string): string {
  const parts = raw.split("/").filter((p) => p !== "");
  for (const p of parts) if (p === "." || p === "..") throw invalidTarget(`${what}: "." and ".." are not allowed in the prefix`);
  return parts.length === 0 ? "" : `${parts.join("/")}/`;
}

const IP_HOST = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\])$/;
/** S3 bucket names (the general-purpose rules): 3-63 of a-z 0-9 . -, starting and ending with a letter or digit. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** Azure container names: 3-63 of a-z 0-9 -, starting with a letter or digit, no "--". */
const CONTAINER = /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/;

/** Reads `--to`. Throws RELEASE_TARGET_INVALID. */
export function parseTarget(to: string): ParsedTarget {
  if (to === "local") return { kind: "local" };
  if (to.startsWith("s3://")) {
    const rest = to.slice(5);
    const slash = rest.indexOf("/");
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    if (!BUCKET.test(bucket)) throw invalidTarget(`--to ${to}: "${bucket}" is not an S3 bucket name`);
    return { kind: "s3", bucket, prefix: normalizePrefix(slash < 0 ? "" : rest.slice(slash + 1), `--to ${to}`) };
  }
  if (to.startsWith("https://") || to.startsWith("http://")) {
    let u: URL;
    try {
      u = new URL(to);
    } catch {
      throw invalidTarget(`--to ${to} is not a URL`);
    }
    if (u.username !== "" || u.password !== "" || u.hash !== "") throw invalidTarget(`--to ${u.origin}…: no user info or fragment in a container URL`);
    const segments = u.pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
    // Emulators (Azurite) and IP endpoints put the account in the path: https://127.0.0.1:10000/devstoreaccount1/container.
    const pathStyle = IP_HOST.test(u.hostname) || u.hostname === "localhost";
    const accountSegments = pathStyle ? 1 : 0;
    const container = segments[accountSegments];
    if (container === undefined || !CONTAINER.test(container)) {
      throw invalidTarget(`--to ${u.origin}${u.pathname}: no Azure container name (3-63 of a-z 0-9 -) ${pathStyle ? "after the account " : ""}in the path`);
    }
    const containerUrl = `${u.origin}/${segments.slice(0, accountSegments + 1).map(encodeURIComponent).join("/")}`;
    const prefix = normalizePrefix(segments.slice(accountSegments + 1).join("/"), `--to ${u.origin}${u.pathname}`);
    return { kind: "azure", containerUrl, container, prefix, sas: u.search === "" ? undefined : u.search.slice(1) };
  }
  throw invalidTarget(`--to ${to}: use local, s3://bucket[/prefix] or https://account.blob.core.windows.net/container[/prefix]`);
}

/** The seed whose naming a target uses when --seed is not given: S3 → AWS, Azure Blob → Azure, local → AWS. */
export function defaultSeed(t: ParsedTarget): FirmwareSeed {
  return t.kind === "azure" ? "azure" : "aws";
}

export interface TargetOptions {
  /** Local cloud data dir (default .cloud-data). */
  dataDir: string;
  /** Local blob server container (default "firmware"). */
  container: string;
  /** S3 endpoint override (an emulator, another region's endpoint); path-style addressing then. */
  endpoint: string | undefined;
  region: string | undefined;
  /** Extra CA certificate (PEM) to trust for the upload (an emulator with a test certificate). */
  caPem: string | undefined;
  /** The environment credentials are read from (process.env by default; tests pass their own). */
  env: Readonly<Record<string, string | undefined>>;
}

export interface PutMetadata {
  sha256: string;
  version: string;
  /** Key id of the signing key, when signed. */
  keyId?: string;
  /**
   * Nothing was stored under the name when `existing` looked: a target that can make the write conditional
   * (Azure Blob: If-None-Match: *) refuses with RELEASE_OBJECT_EXISTS when an object appeared since.
   */
  onlyIfAbsent: boolean;
}

/** One upload destination; `name` is the blob name in the seed's convention. */
export interface Target {
  /** Where the object goes, as the operator wrote it (no secrets): "local:firmware/1.1.0.bin", "s3://b/p/1.1.0.bin". */
  describe(name: string): string;
  /** The URL devices download it from (no query). */
  url(name: string): Promise<string>;
  /**
   * What is stored under `name` now: the hex SHA-256 of its bytes (the local blob server: its first 32 hex
   * digits, all its ETag holds), or undefined when nothing is. Compare with `sameBytes`.
   */
  existing(name: string): Promise<string | undefined>;
  put(name: string, bytes: Uint8Array, meta: PutMetadata): Promise<void>;
  close(): void;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** True when `existing` (a Target's answer) names the bytes whose SHA-256 is `sha256`. */
export function sameBytes(existing: string, sha256: string): boolean {
  return existing.length >= 32 && /^[0-9a-f]+$/.test(existing) && sha256.startsWith(existing);
}

/** An error without an HTTP status is the network's: connection refused, DNS, TLS, a timeout. */
function statusOf(e: unknown): number | undefined {
  const o = e as { $metadata?: { httpStatusCode?: number }; statusCode?: number } | undefined;
  return o?.$metadata?.httpStatusCode ?? o?.statusCode;
}

function causeText(e: unknown): string {
  const o = e as { code?: string; name?: string; message?: string; errors?: unknown[] } | undefined;
  // AggregateError (a refused connection to every address of "localhost") carries the first reason inside.
  const inner = Array.isArray(o?.errors) && o!.errors.length > 0 ? (o!.errors[0] as { message?: string }).message : undefined;
  const msg = (o?.message ?? "") || inner || String(e);
  return o?.code !== undefined && !msg.includes(o.code) ? `${o.code}: ${msg}` : msg;
}

function failure(where: string, e: unknown): ShadowOtaError {
  if (e instanceof ShadowOtaError) return e;
  if ((e as { name?: string } | undefined)?.name === "CredentialsProviderError") {
    // The SDK's default chain found nothing (environment, profiles, SSO, container or instance role).
    return new ShadowOtaError(RELEASE_CODES.RELEASE_CREDENTIALS_MISSING,
      `no AWS credentials for ${where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (${causeText(e)})`, { cause: e });
  }
  const status = statusOf(e);
  if (status === undefined) {
    return new ShadowOtaError(RELEASE_CODES.RELEASE_TARGET_UNREACHABLE, `${where} is not reachable: ${causeText(e)}`, { cause: e });
  }
  const o = e as { name?: string; code?: string; message?: string };
  const code = o.code ?? o.name ?? "error";
  return new ShadowOtaError(RELEASE_CODES.RELEASE_UPLOAD_FAILED, `${where} answered ${status} ${code}${o.message !== undefined && o.message !== code ? `: ${o.message.split("\n")[0]}` : ""}`,
    { cause: e, detail: { status } });
}

// ------------------------------------------------------------------------------------------------ local

const CLOUD_INFO_FILE = "cloud.json";

interface LocalBlob { container: string; name: string; etag: string; url: string; size: number }

/** The local cloud's blob server through its admin API (bearer token from cloud.json, as the CLI does). */
function localTarget(o: TargetOptions): Target {
  const file = path.join(o.dataDir, CLOUD_INFO_FILE);
  let info: { adminUrl?: string; adminToken?: string; blobUrl?: string };
  try {
    info = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    throw new ShadowOtaError(RELEASE_CODES.RELEASE_TARGET_UNREACHABLE,
      `no running local cloud: ${file} is missing (start one with: npm run cloud -- start, or give --data-dir)`);
  }
  if (typeof info.adminUrl !== "string" || typeof info.adminToken !== "string") {
    throw new ShadowOtaError(RELEASE_CODES.RELEASE_TARGET_UNREACHABLE, `${file} has no admin API address`);
  }
  const admin = { url: info.adminUrl, token: info.adminToken };
  const where = `the local cloud's admin API at ${admin.url}`;
  const call = async (method: string, p: string, body?: Uint8Array): Promise<unknown> => {
    let res: Response;
    try {
      res = await fetch(admin.url + p, {
        method,
        headers: { authorization: `Bearer ${admin.token}`, "content-type": "application/octet-stream" },
        ...(body === undefined ? {} : { body }),
      });
    } catch (e) {
      throw new ShadowOtaError(RELEASE_CODES.RELEASE_TARGET_UNREACHABLE, `${where} does not answer (${causeText((e as { cause?: unknown }).cause ?? e)}); is the local cloud still running?`, { cause: e });
    }
    const json = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
    if (res.status !== 200) {
      if (res.status === 404 && p === "/firmware") {
        throw new ShadowOtaError(RELEASE_CODES.RELEASE_UPLOAD_FAILED, `${where}: the local cloud runs without a blob server`, { detail: { status: 404 } });
      }
      throw new ShadowOtaError(RELEASE_CODES.RELEASE_UPLOAD_FAILED, `${where} answered ${res.status} ${json.code ?? ""}: ${json.message ?? ""}`.trim(), { detail: { status: res.status } });
    }
    return json;
  };
  const enc = encodeURIComponent;
  const find = async (name: string): Promise<LocalBlob | undefined> => {
    const list = (await call("GET", "/firmware")) as { blobs?: LocalBlob[] };
    return (list.blobs ?? []).find((b) => b.container === o.container && b.name === name);
  };
  return {
    describe: (name) => `local:${o.container}/${name}`,
    async url(name) {
      const b = await find(name);
      if (b !== undefined) return b.url;
      if (typeof info.blobUrl === "string") return new URL(`../${enc(o.container)}/${enc(name)}`, info.blobUrl).toString();
      return `${o.container}/${name}`;
    },
    async existing(name) {
      const b = await find(name);
      if (b === undefined) return undefined;
      // The blob server's ETag is the quoted first 32 hex digits of the SHA-256 (128 bits: enough to tell
      // two images apart), not the whole hash.
      return b.etag.replace(/"/g, "");
    },
    async put(name, bytes) {
      await call("PUT", `/firmware/${enc(o.container)}/${enc(name)}`, bytes);
    },
    close() {},
  };
}

// ------------------------------------------------------------------------------------------------ S3

/** The URL devices download an object from: path-style under an endpoint override, else AWS virtual-hosted style. */
function s3ObjectUrl(endpoint: string | undefined, region: string, bucket: string, key: string): string {
  const k = key.split("/").map(encodeURIComponent).join("/");
  if (endpoint !== undefined) return `${endpoint.replace(/\/+$/, "")}/${bucket}/${k}`;
  return `https://${bucket}.s3.${region}.amazonaws.com/${k}`;
}

async function s3Target(t: Extract<ParsedTarget, { kind: "s3" }>, o: TargetOptions): Promise<Target> {
  const { HeadObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } = await import("@aws-sdk/client-s3");
  const { NodeHttpHandler } = await import("@smithy/node-http-handler");
  const env = o.env;
  const endpoint = o.endpoint ?? env["AWS_ENDPOINT_URL_S3"] ?? env["AWS_ENDPOINT_URL"];
  if (endpoint !== undefined && !/^https?:\/\/[^/?#]+\/?$/.test(endpoint)) {
    throw invalidTarget(`S3 endpoint ${endpoint} is not an http(s) origin (scheme, host and port only)`);
  }
  const region = o.region ?? env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"];
  const config: S3ClientConfig = {
    // Emulators and most S3-compatible servers have no bucket subdomains: path-style with an endpoint override.
    forcePathStyle: endpoint !== undefined,
    maxAttempts: 2,
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(region === undefined ? {} : { region }),
    ...(o.caPem === undefined ? {} : { requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca: o.caPem }) }) }),
  };
  // Static keys from the given environment when present; otherwise the SDK's default chain (profiles, SSO, roles).
  const id = env["AWS_ACCESS_KEY_ID"];
  const secret = env["AWS_SECRET_ACCESS_KEY"];
  if (id !== undefined && secret !== undefined) {
    const token = env["AWS_SESSION_TOKEN"];
    config.credentials = { accessKeyId: id, secretAccessKey: secret, ...(token === undefined ? {} : { sessionToken: token }) };
  }
  const client = new S3Client(config);
  const key = (name: string): string => t.prefix + name;
  const where = (name: string): string => `s3://${t.bucket}/${key(name)}${endpoint === undefined ? "" : ` at ${endpoint}`}`;
  return {
    describe: (name) => `s3://${t.bucket}/${key(name)}`,
    async url(name) {
      let r = region;
      if (r === undefined) {
        try {
          r = await client.config.region();
        } catch (e) {
          throw new ShadowOtaError(RELEASE_CODES.RELEASE_BAD_OPTION, `no AWS region: give --region or set AWS_REGION (${causeText(e)})`, { cause: e });
        }
      }
      return s3ObjectUrl(endpoint, r, t.bucket, key(name));
    },
    async existing(name) {
      let head;
      try {
        head = await client.send(new HeadObjectCommand({ Bucket: t.bucket, Key: key(name) }));
      } catch (e) {
        // HEAD has no body, so a missing bucket is a 404 NotFound too: the PUT then fails with NoSuchBucket.
        if (statusOf(e) === 404) return undefined;
        throw failure(where(name), e);
      }
      const stored = head.Metadata?.["sha256"];
      if (stored !== undefined && /^[0-9a-f]{64}$/.test(stored)) return stored;
      try {
        const got = await client.send(new GetObjectCommand({ Bucket: t.bucket, Key: key(name) }));
        return sha256Hex(await got.Body!.transformToByteArray());
      } catch (e) {
        throw failure(where(name), e);
      }
    },
    async put(name, bytes, meta) {
      try {
        await client.send(new PutObjectCommand({
          Bucket: t.bucket, Key: key(name), Body: bytes, ContentType: "application/octet-stream",
          Metadata: { sha256: meta.sha256, version: meta.version, ...(meta.keyId === undefined ? {} : { keyid: meta.keyId }) },
        }));
      } catch (e) {
        throw failure(where(name), e);
      }
    },
    close() {
      client.destroy();
    },
  };
}

// ------------------------------------------------------------------------------------------------ Azure

async function azureTarget(t: Extract<ParsedTarget, { kind: "azure" }>, o: TargetOptions): Promise<Target> {
  const { AnonymousCredential, BlobServiceClient, ContainerClient, StorageSharedKeyCredential } = await import("@azure/storage-blob");
  const env = o.env;
  const options: StoragePipelineOptions & { tlsOptions?: { ca: string } } = {
    retryOptions: { maxTries: 2, retryDelayInMs: 200, maxRetryDelayInMs: 1000 },
    // Passed through to core-rest-pipeline's createPipelineFromOptions (tlsOptions → the TLS policy).
    ...(o.caPem === undefined ? {} : { tlsOptions: { ca: o.caPem } }),
  };
  let container: ContainerClient;
  const cs = env["AZURE_STORAGE_CONNECTION_STRING"];
  const account = env["AZURE_STORAGE_ACCOUNT"];
  const accountKey = env["AZURE_STORAGE_KEY"];
  if (t.sas !== undefined) {
    container = new ContainerClient(`${t.containerUrl}?${t.sas}`, new AnonymousCredential(), options);
  } else if (cs !== undefined && cs !== "") {
    let service: BlobServiceClient;
    try {
      service = BlobServiceClient.fromConnectionString(cs, options);
    } catch (e) {
      throw invalidTarget(`AZURE_STORAGE_CONNECTION_STRING cannot be read: ${(e as Error).message.split("\n")[0]}`);
    }
    container = service.getContainerClient(t.container);
    const fromCs = container.url.split("?")[0]!.replace(/\/+$/, "");
    if (fromCs.toLowerCase() !== t.containerUrl.toLowerCase()) {
      throw invalidTarget(`AZURE_STORAGE_CONNECTION_STRING is for ${fromCs}, but --to names ${t.containerUrl}`);
    }
  } else if (account !== undefined && accountKey !== undefined) {
    container = new ContainerClient(t.containerUrl, new StorageSharedKeyCredential(account, accountKey), options);
  } else {
    throw new ShadowOtaError(RELEASE_CODES.RELEASE_CREDENTIALS_MISSING,
      `no credentials for ${t.containerUrl}: give a SAS in the URL (…?sv=…&sig=…), or set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY`);
  }
  const blobName = (name: string): string => t.prefix + name;
  const plainUrl = (name: string): string => container.getBlockBlobClient(blobName(name)).url.split("?")[0]!;
  return {
    describe: (name) => plainUrl(name),
    url: async (name) => plainUrl(name),
    async existing(name) {
      const blob = container.getBlockBlobClient(blobName(name));
      let props;
      try {
        props = await blob.getProperties();
      } catch (e) {
        if (statusOf(e) === 404) {
          // 404 for a missing container too: the upload then fails with ContainerNotFound, said as such.
          return undefined;
        }
        throw failure(plainUrl(name), e);
      }
      const stored = props.metadata?.["sha256"];
      if (stored !== undefined && /^[0-9a-f]{64}$/.test(stored)) return stored;
      try {
        return sha256Hex(await blob.downloadToBuffer());
      } catch (e) {
        throw failure(plainUrl(name), e);
      }
    },
    async put(name, bytes, meta) {
      try {
        await container.getBlockBlobClient(blobName(name)).uploadData(bytes, {
          ...(meta.onlyIfAbsent ? { conditions: { ifNoneMatch: "*" } } : {}),
          blobHTTPHeaders: { blobContentType: "application/octet-stream" },
          metadata: { sha256: meta.sha256, version: meta.version, ...(meta.keyId === undefined ? {} : { keyid: meta.keyId }) },
        });
      } catch (e) {
        if (meta.onlyIfAbsent && statusOf(e) === 409 && (e as { code?: string }).code === "BlobAlreadyExists") {
          throw new ShadowOtaError(RELEASE_CODES.RELEASE_OBJECT_EXISTS,
            `${plainUrl(name)} was created by someone else while this release was uploading; run again to compare, --force replaces it`, { cause: e });
        }
        throw failure(plainUrl(name), e);
      }
    },
    close() {},
  };
}

/** Builds the client for a parsed target. Rejects with RELEASE_TARGET_INVALID, _UNREACHABLE (local), _CREDENTIALS_MISSING. */
export async function openTarget(t: ParsedTarget, o: TargetOptions): Promise<Target> {
  switch (t.kind) {
    case "local":
      return localTarget(o);
    case "s3":
      return s3Target(t, o);
    case "azure":
      return azureTarget(t, o);
  }
}
