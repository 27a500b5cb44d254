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

/**
 * A request's whole body, refused with `tooLarge()` (thrown) as soon as more than `limit` bytes arrive, so a
 * hostile client cannot make the server buffer more than that.
 */
export async function readBodyCapped(req: AsyncIterable<unknown>, limit: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
