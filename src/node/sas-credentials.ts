/**
 * The Node adapter between a device connection string and NodeMqttTransport's `credentials` hook: before
 * each connection attempt it mints a SAS token with the core (src/core/sas-token.ts) valid for `ttlSeconds`
 * and asks the transport to end the session `marginSeconds` before that token expires, so the device
 * reconnects with a fresh token while the old one is still good — the Azure seed's connection-string flow.
 * Not here: the token format and the renewal arithmetic (core), MQTT (mqtt-node.ts).
 */
import {
  deviceSasCredentials,
  parseConnectionString,
  SAS_DEFAULT_RENEW_MARGIN_SECONDS,
  SAS_DEFAULT_TTL_SECONDS,
  sasRenewAt,
  type ConnectionString,
} from "../core/sas-token";
import type { Clock } from "../ports/clock";
import { NodeClock } from "./node-clock";

export interface SasCredentialOptions {
  clock?: Clock;
  /** Token lifetime (default one hour). */
  ttlSeconds?: number;
  /** Renew this long before expiry (default 15 minutes); must be below ttlSeconds. */
  marginSeconds?: number;
}

/** A `credentials` callback for NodeMqttTransport. Throws SAS_CONNECTION_STRING_INVALID / SAS_KEY_INVALID
 *  at once for a bad connection string (not at the first connect). */
export function sasCredentialSource(connectionString: string | ConnectionString, o: SasCredentialOptions = {}): () => { username: string; password: string; renewInMs: number } {
  const cs = typeof connectionString === "string" ? parseConnectionString(connectionString) : connectionString;
  const clock = o.clock ?? new NodeClock();
  const ttl = o.ttlSeconds ?? SAS_DEFAULT_TTL_SECONDS;
  const margin = Math.min(o.marginSeconds ?? SAS_DEFAULT_RENEW_MARGIN_SECONDS, ttl);
  deviceSasCredentials(cs, clock.epochSeconds(), ttl); // fail now on a service string or a bad key
  return () => {
    const now = clock.epochSeconds();
    const c = deviceSasCredentials(cs, now, ttl);
    return { username: c.username, password: c.password, renewInMs: Math.max(0, (sasRenewAt(c.expiry, margin) - now) * 1000) };
  };
}
