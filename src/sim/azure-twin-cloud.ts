/**
 * The hub's half of the Azure IoT Hub twin codec: the topics and bodies only the service builds (twin
 * responses, desired-property notifications, direct-method requests, GET bodies) and parsing a reported
 * PATCH body as the hub does. Pure, like src/core/azure-twin.ts, whose checks it uses.
 *
 * It lives with the local cloud, not in src/core, because a device never builds these: manifest.json maps
 * core/* into the firmware, and nothing here belongs on the ESP32.
 *
 * Source of the rules: docs/protocols.md §3 ("Azure IoT Hub device twin over MQTT"). Failures are
 * ShadowOtaError with SYNC_CODES, as in azure-twin.ts.
 */
import {
  checkStatus,
  checkTwinSection,
  decodeAzurePayload,
  twinDocumentInvalid,
  validateMethodName,
  validateRid,
  type AzurePayloadLimits,
  type TwinDocument,
} from "../core/azure-twin";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type JsonObject } from "../core/json";
import { SYNC_CODES } from "../core/sync-errors";

/** A `$version` the hub sends, a non-negative safe integer, or SYNC_DOCUMENT_INVALID (field `$version`). */
function checkVersion(version: number): number {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, "$version must be a non-negative integer", { detail: { field: "$version" } });
  }
  return version;
}

/** `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`. */
export function twinResponseTopic(status: number, rid: string, version?: number): string {
  checkStatus(status);
  const v = version === undefined ? "" : `&$version=${checkVersion(version)}`;
  return `$iothub/twin/res/${status}/?$rid=${validateRid(rid)}${v}`;
}

/** `$iothub/twin/PATCH/properties/desired/?$version={v}`. */
export function desiredPatchTopic(version: number): string {
  return `$iothub/twin/PATCH/properties/desired/?$version=${checkVersion(version)}`;
}

/** `$iothub/methods/POST/{method}/?$rid={rid}`. */
export function methodRequestTopic(name: string, rid: string): string {
  return `$iothub/methods/POST/${validateMethodName(name)}/?$rid=${validateRid(rid)}`;
}

/** Parses a reported PATCH body as the hub would. Errors as checkTwinSection + decode. */
export function parseReportedPatchBody(bytes: Uint8Array, limits: AzurePayloadLimits = {}): JsonObject {
  const o = decodeAzurePayload(bytes, limits);
  if (!isJsonObject(o)) throw twinDocumentInvalid("document", "reported patch is not a JSON object");
  checkTwinSection(o, "reported");
  return o;
}

/** A desired notification body `{…patch, "$version": v}`. */
export function buildDesiredNotification(patch: JsonObject, version: number): string {
  checkTwinSection(patch, "desired");
  return JSON.stringify({ ...patch, $version: checkVersion(version) });
}

/** A GET body. */
export function buildTwinGetBody(doc: TwinDocument): string {
  return JSON.stringify({
    desired: { ...doc.desired, $version: checkVersion(doc.desiredVersion) },
    reported: { ...doc.reported, $version: checkVersion(doc.reportedVersion) },
  });
}

