/**
 * `npm run release -- IMAGE.bin --version 1.1.0 [options]`: one command from a built ESP32 app image to a
 * published release (a build/release tool, Node only; docs/release.md).
 *
 *   1. stamps the version (and --project) into a copy of the image (the image tool's stamp: descriptor,
 *      checksum, appended SHA-256); the input file is not changed;
 *   2. with --sign KEY.pem, appends the ECDSA P-256 signature block (src/tools/image-sign.ts,
 *      docs/signing.md); without it, a stale block of that format from an earlier signing is dropped;
 *   3. names the file in the seed's convention (src/core/firmware-url.ts): `1.1.0.bin` for the AWS seed,
 *      `v1_1_0.bin` for the Azure seed;
 *   4. uploads it (release-targets.ts): to the running local cloud's blob server (the default), an S3 bucket
 *      or an Azure Blob container; an object already there with the same bytes is left as it is, one with
 *      other bytes is refused unless --force;
 *   5. prints what it published (target, URL, size, SHA-256, signature or "unsigned") and, as the last line,
 *      one JSON object with the same facts.
 *
 * Options:
 *   --version X          SemVer (src/core/semver.ts), at most 31 bytes (esp_app_desc_t.version)
 *   --to T               local (default) | s3://BUCKET[/PREFIX] | https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]
 *   --seed aws|azure     naming convention (default: aws for local and S3, azure for Azure Blob)
 *   --sign KEY.pem       ECDSA P-256 private key (PEM or PKCS#8 DER)
 *   --project NAME       also stamp esp_app_desc_t.project_name
 *   --force              replace an object that exists with other bytes
 *   --out FILE           also write the published bytes there
 *   --data-dir DIR       the local cloud's data dir (default .cloud-data); --container C (default firmware)
 *   --endpoint URL       S3 endpoint override (S3-compatible servers, emulators; path-style then)
 *   --region R           S3 region (else AWS_REGION / AWS_DEFAULT_REGION / the SDK's config)
 *   --ca FILE            an extra CA certificate (PEM) to trust for the upload (an emulator's test certificate)
 *
 * Exit status: 0 published (or already there with the same bytes), 1 refused (one line: `error CODE:
 * message`), 2 usage. Not here: setting desired versions or rollouts (the cloud CLI), key generation
 * (`npm run image -- keygen`, image-sign.ts).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../core/errors";
import { awsBlobName, azureBlobName, type FirmwareSeed } from "../core/firmware-url";
import { formatSemver, parseSemver } from "../core/semver";
import { inspectImage, stampImage } from "./image-cli";
import { keyIdOf, readPrivateKeyFile, readSignatureBlock, signImage } from "./image-sign";
import { defaultSeed, openTarget, parseTarget, RELEASE_CODES, sameBytes, type ParsedTarget, type TargetOptions } from "./release-targets";

export { RELEASE_CODES } from "./release-targets";

export interface ReleaseOptions {
  /** The built image (bytes as read from the file). */
  image: Uint8Array;
  version: string;
  projectName?: string;
  /** Private key (PEM text or DER bytes) to sign with; undefined: unsigned. */
  signingKey?: string | Uint8Array;
  /** "local" (default), "s3://bucket/prefix" or an Azure container URL. */
  to?: string;
  seed?: FirmwareSeed;
  force?: boolean;
  dataDir?: string;
  container?: string;
  endpoint?: string;
  region?: string;
  caPem?: string;
  env?: Readonly<Record<string, string | undefined>>;
}

export interface PreparedRelease {
  version: string;
  /** The bytes to publish: the stamped image, followed by its signature block when signed. */
  bytes: Uint8Array;
  imageLength: number;
  /** Hex SHA-256 of `bytes` (what a download must hash to). */
  sha256: string;
  /** The image's appended SHA-256 (what the signature covers). */
  imageDigest: string;
  signature: { alg: "ECDSA-P256-SHA256"; keyId: string; base64: string } | undefined;
  /** A signature block from an earlier signing was dropped (unsigned release of a signed input). */
  droppedStaleSignature: boolean;
  projectName: string;
}

export interface ReleaseResult extends PreparedRelease {
  seed: FirmwareSeed;
  target: ParsedTarget["kind"];
  /** The object as the operator names it ("local:firmware/1.1.0.bin", "s3://bucket/p/1.1.0.bin", container URL + name). */
  object: string;
  name: string;
  /** The URL devices download from; the base URL to configure on them is this without `name`. */
  url: string;
  baseUrl: string;
  /** uploaded: new; unchanged: the same bytes were already there (nothing sent); replaced: --force over other bytes. */
  status: "uploaded" | "unchanged" | "replaced";
}

function badOption(message: string): ShadowOtaError {
  return new ShadowOtaError(RELEASE_CODES.RELEASE_BAD_OPTION, message);
}

/**
 * Steps 1-2: stamp and (optionally) sign, in memory. Throws VERSION_INVALID (not SemVer),
 * ESP_IMAGE_* (not an ESP32 app image, damaged input), IMAGE_SIGN_* (a key that cannot sign, an image
 * without an appended SHA-256, foreign bytes after the image).
 */
export function prepareRelease(o: Pick<ReleaseOptions, "image" | "version" | "projectName" | "signingKey">): PreparedRelease {
  const version = formatSemver(parseSemver(o.version));
  // Foreign bytes after the image (a Secure Boot V2 block over the old image) would be wrong after the stamp.
  const stale = readSignatureBlock(o.image) !== undefined;
  const input = stale ? o.image.subarray(0, inspectImage(o.image).imageLength) : o.image;
  const stamped = stampImage(input, o.projectName === undefined ? { version } : { version, projectName: o.projectName }).bytes;
  let bytes = stamped;
  let signature: PreparedRelease["signature"];
  if (o.signingKey !== undefined) {
    const s = signImage(stamped, o.signingKey);
    bytes = s.bytes;
    signature = { alg: "ECDSA-P256-SHA256", keyId: s.keyId, base64: s.signatureBase64 };
  }
  const report = inspectImage(stamped);
  return {
    version,
    bytes,
    imageLength: report.imageLength,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    imageDigest: report.sha256?.computed ?? "",
    signature,
    droppedStaleSignature: stale && o.signingKey === undefined,
    projectName: report.descriptor!.projectName,
  };
}

/** Steps 1-4. Throws as prepareRelease, plus RELEASE_* (release-targets.ts). */
export async function release(o: ReleaseOptions): Promise<ReleaseResult> {
  const target = parseTarget(o.to ?? "local");
  const seed = o.seed ?? defaultSeed(target);
  const prepared = prepareRelease(o);
  const name = seed === "aws" ? awsBlobName(prepared.version) : azureBlobName(prepared.version);
  const options: TargetOptions = {
    dataDir: o.dataDir ?? ".cloud-data",
    container: o.container ?? "firmware",
    endpoint: o.endpoint,
    region: o.region,
    caPem: o.caPem,
    env: o.env ?? process.env,
  };
  const t = await openTarget(target, options);
  try {
    const existing = await t.existing(name);
    let status: ReleaseResult["status"] = "uploaded";
    if (existing !== undefined) {
      if (sameBytes(existing, prepared.sha256)) status = "unchanged";
      else if (o.force === true) status = "replaced";
      else {
        throw new ShadowOtaError(RELEASE_CODES.RELEASE_OBJECT_EXISTS,
          `${t.describe(name)} already exists with other bytes (sha256 ${existing.slice(0, 16)}…, this release ${prepared.sha256.slice(0, 16)}…); --force replaces it`,
          { detail: { object: t.describe(name), existing, sha256: prepared.sha256 } });
      }
    }
    if (status !== "unchanged") {
      await t.put(name, prepared.bytes, {
        sha256: prepared.sha256, version: prepared.version, onlyIfAbsent: status === "uploaded",
        ...(prepared.signature === undefined ? {} : { keyId: prepared.signature.keyId }),
      });
    }
    const url = await t.url(name);
    return { ...prepared, seed, target: target.kind, object: t.describe(name), name, url, baseUrl: url.slice(0, url.length - name.length), status };
  } finally {
    t.close();
  }
}

/** The lines `npm run release` prints for a result; the last is one JSON object. */
export function formatRelease(r: ReleaseResult): string[] {
  const extra = r.bytes.length - r.imageLength;
  const lines = [
    `${r.status === "unchanged" ? "already published (same bytes, nothing uploaded)" : r.status === "replaced" ? "published, replacing other bytes (--force)" : "published"}: ${r.projectName} ${r.version} as ${r.object} (${r.seed} seed)`,
    `  url        ${r.url}`,
    `  base URL   ${r.baseUrl}   (the devices' firmware base URL)`,
    `  size       ${r.bytes.length} bytes${extra > 0 ? ` (image ${r.imageLength} + signature block ${extra})` : ""}`,
    `  sha256     ${r.sha256}`,
    r.signature === undefined
      ? "  signature  unsigned"
      : `  signature  ECDSA P-256, key id ${r.signature.keyId}\n             ${r.signature.base64}`,
  ];
  if (r.droppedStaleSignature) lines.push("  note       the input carried a signature block from an earlier signing; it was dropped (it no longer matched)");
  lines.push(JSON.stringify({
    version: r.version, project: r.projectName, seed: r.seed, target: r.target, object: r.object, name: r.name, url: r.url,
    baseUrl: r.baseUrl, size: r.bytes.length, imageLength: r.imageLength, sha256: r.sha256, imageSha256: r.imageDigest,
    signature: r.signature === undefined ? null : { alg: r.signature.alg, keyId: r.signature.keyId, value: r.signature.base64 },
    status: r.status,
  }));
  return lines;
}

// ------------------------------------------------------------------------------------------------- CLI

export const USAGE = `usage: npm run release -- IMAGE.bin --version X.Y.Z [--sign KEY.pem] [--to local|s3://BUCKET[/PREFIX]|https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]]
         [--seed aws|azure] [--project NAME] [--force] [--out FILE] [--data-dir DIR] [--container C]
         [--endpoint URL] [--region R] [--ca FILE]`;

const VALUED = new Set(["--version", "--sign", "--to", "--seed", "--project", "--out", "--data-dir", "--container", "--endpoint", "--region", "--ca"]);

export interface ReleaseIo {
  print(line: string): void;
  error(line: string): void;
  env?: Readonly<Record<string, string | undefined>>;
}

function readFileFor(what: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw badOption(`${what} ${file} cannot be read: ${(e as Error).message}`);
  }
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit status. */
export async function main(argv: readonly string[], io: ReleaseIo = { print: console.log, error: console.error }): Promise<number> {
  const values = new Map<string, string>();
  let force = false;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      io.print(USAGE);
      return 0;
    }
    if (a === "--force") force = true;
    else if (VALUED.has(a)) {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) {
        io.error(`${a} needs a value\n${USAGE}`);
        return 2;
      }
      if (values.has(a)) {
        io.error(`${a} given twice\n${USAGE}`);
        return 2;
      }
      values.set(a, v);
    } else if (a.startsWith("-")) {
      io.error(`unknown option ${a}\n${USAGE}`);
      return 2;
    } else files.push(a);
  }
  const version = values.get("--version");
  if (files.length !== 1 || version === undefined) {
    io.error(`${files.length !== 1 ? "one image file is required" : "--version is required"}\n${USAGE}`);
    return 2;
  }
  const seed = values.get("--seed");
  if (seed !== undefined && seed !== "aws" && seed !== "azure") {
    io.error(`--seed must be aws or azure, not ${seed}\n${USAGE}`);
    return 2;
  }
  try {
    const file = files[0]!;
    const key = values.get("--sign");
    const ca = values.get("--ca");
    const o: ReleaseOptions = {
      image: new Uint8Array(readFileFor("image", file)),
      version,
      force,
      env: io.env ?? process.env,
      ...(values.has("--project") ? { projectName: values.get("--project")! } : {}),
      ...(key === undefined ? {} : { signingKey: readPrivateKeyFile(key, "--sign", (why) => badOption(`signing key (--sign) ${why}`)) }),
      ...(values.has("--to") ? { to: values.get("--to")! } : {}),
      ...(seed === undefined ? {} : { seed }),
      ...(values.has("--data-dir") ? { dataDir: values.get("--data-dir")! } : {}),
      ...(values.has("--container") ? { container: values.get("--container")! } : {}),
      ...(values.has("--endpoint") ? { endpoint: values.get("--endpoint")! } : {}),
      ...(values.has("--region") ? { region: values.get("--region")! } : {}),
      ...(ca === undefined ? {} : { caPem: readFileFor("CA certificate", ca).toString("utf8") }),
    };
    const r = await release(o);
    const out = values.get("--out");
    if (out !== undefined) {
      fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
      fs.writeFileSync(out, r.bytes);
    }
    for (const line of formatRelease(r)) io.print(line);
    return 0;
  } catch (e) {
    if (e instanceof ShadowOtaError) {
      io.error(`error ${e.code}: ${e.message.split("\n")[0]}`);
      return 1;
    }
    throw e;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((status) => { process.exitCode = status; });
}
