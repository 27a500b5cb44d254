/**
 * Listening and closing for the local cloud's servers (admin API, blob server, AWS data plane, IoT Hub REST,
 * MQTT fault proxy): one way to bind, one way to name the bound address, one way to close.
 */
import type { AddressInfo, Server } from "node:net";
import type { Server as HttpServer } from "node:http";

/** Binds `server` to `host:port` (0 = any free port). Rejects with the server's own error (EADDRINUSE, EACCES…). */
export async function listenOn(server: Server, port: number, host: string): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => { server.off("error", reject); resolve(); });
  });
  return server.address() as AddressInfo;
}

/** `scheme://host:port` for a bound address, IPv6 in brackets. */
export function urlOf(scheme: "http" | "https", a: AddressInfo): string {
  return `${scheme}://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
}

/** Stops accepting and ends every connection, idle or not; resolves once the server has closed. */
export function closeHttpServer(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
