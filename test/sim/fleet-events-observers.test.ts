/**
 * The observer API the fleet view watches through: CloudStore.onRecord and BlobServer.onPublish. Through the
 * real local cloud on aedes, a listener sees exactly the changes the services accepted and stored — a
 * device's AWS shadow report, an Azure twin PATCH, an admin update, a firmware publish — and none of the
 * refused ones (a shadow update with a stale version, a twin PATCH with a `$` key, a blob with a bad name or
 * too large); on a bare store, a write whose commit fails is never seen. A throwing listener is logged and
 * neither the store, the blob server nor the other listeners notice. Bounded waits only (waitUntil).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { CloudStore, type CloudStoreRecord } from "../../src/sim/cloud-store";
import type { BlobInfo } from "../../src/sim/blob-server";
import { MAX_BLOB_SIZE } from "../../src/sim/blob-server";
import { LocalCloud } from "../../src/sim/local-cloud";
import type { StoredShadow } from "../../src/sim/shadow-engine";
import { MemoryLog } from "../core/fake-ports";
import { connectClient, publish, subscribe, type TestClient } from "./broker-fixtures";
import { waitUntil } from "./wait-until";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");

/** What a record says, short: kind, key and the reported section. */
function brief(r: CloudStoreRecord): [string, string, unknown] {
  return r.kind === "shadow" ? ["shadow", r.key, r.shadow.state.reported] : ["twin", r.deviceId, r.twin.reported];
}

describe("through the local cloud", () => {
  const log = new MemoryLog();
  let dir: string;
  let cloud: LocalCloud;
  const open: TestClient[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-observers-"));
    cloud = await LocalCloud.start({
      dataDir: path.join(dir, "cloud"), certsDir: PKI, log, shadowEngine: { rateLimitPerSecond: 0 },
      devices: [{ id: "ob-aws", cloud: "aws" }, { id: "ob-az", cloud: "azure" }],
    });
  });
  afterAll(async () => {
    await Promise.all(open.splice(0).map((c) => c.end()));
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function device(id: string): Promise<TestClient> {
    const c = cloud.credentials(id);
    const t = await connectClient(c.port, { caPem: c.ca, certPem: c.cert, keyPem: c.key }, id);
    open.push(t);
    return t;
  }

  it("onRecord sees each accepted shadow and twin change once it is stored, and no refused one", async () => {
    const seen: CloudStoreRecord[] = [];
    const unsubscribe = cloud.store.onRecord((r) => {
      // Durable and applied before the listener runs: the store already serves it.
      const stored = r.kind === "shadow" ? cloud.store.shadows[r.key] : cloud.store.twins[r.deviceId];
      expect(stored).toBe(r.kind === "shadow" ? r.shadow : r.twin);
      seen.push(r);
    });
    const aws = await device("ob-aws");
    await subscribe(aws, ["$aws/things/ob-aws/shadow/update/accepted", "$aws/things/ob-aws/shadow/update/rejected"]);
    const az = await device("ob-az");
    await subscribe(az, "$iothub/twin/res/#");

    await publish(aws, "$aws/things/ob-aws/shadow/update", JSON.stringify({ state: { reported: { n: 1 } } }));
    await waitUntil(() => aws.received.find((m) => m.topic.endsWith("/update/accepted")), 10_000, "accepted");
    // Refused: a version that is not the current one (AWS 409).
    await publish(aws, "$aws/things/ob-aws/shadow/update", JSON.stringify({ state: { reported: { n: 2 } }, version: 99 }));
    await waitUntil(() => aws.received.find((m) => m.topic.endsWith("/update/rejected")), 10_000, "rejected");

    await publish(az, "$iothub/twin/PATCH/properties/reported/?$rid=1", JSON.stringify({ n: 1 }));
    await waitUntil(() => az.received.find((m) => m.topic.startsWith("$iothub/twin/res/204/")), 10_000, "204");
    // Refused: IoT Hub does not allow `$` in a property name (400).
    await publish(az, "$iothub/twin/PATCH/properties/reported/?$rid=2", JSON.stringify({ bad$key: 1 }));
    await waitUntil(() => az.received.find((m) => m.topic.startsWith("$iothub/twin/res/400/")), 10_000, "400");

    // The admin API's update goes through the same store.
    const res = await fetch(`${cloud.adminUrl}/things/ob-aws/shadow`, {
      method: "POST", headers: { authorization: `Bearer ${cloud.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ state: { desired: { d: 1 } } }),
    });
    expect(res.status).toBe(200);
    await cloud.store.flush();

    expect(seen.map(brief)).toEqual([
      ["shadow", "ob-aws", { n: 1 }],
      ["twin", "ob-az", { n: 1 }],
      ["shadow", "ob-aws", { n: 1 }],
    ]);
    expect((seen[2] as { shadow: StoredShadow }).shadow.state.desired).toEqual({ d: 1 });

    unsubscribe();
    await publish(aws, "$aws/things/ob-aws/shadow/update", JSON.stringify({ state: { reported: { n: 3 } } }));
    await waitUntil(() => (cloud.store.shadows["ob-aws"]?.state.reported?.["n"] === 3 ? true : undefined), 10_000, "n = 3 stored");
    expect(seen).toHaveLength(3); // nothing after unsubscribe
  });

  it("onPublish sees each stored blob, none refused; a throwing listener is logged and changes nothing", async () => {
    const seen: BlobInfo[] = [];
    const offThrowing = cloud.blobs.onPublish(() => { throw new Error("listener bug"); });
    const off = cloud.blobs.onPublish((info) => {
      expect(fs.readFileSync(path.join(cloud.blobs.dir, info.container, info.name)).length).toBe(info.size); // in place
      seen.push(info);
    });
    const put = (name: string, bytes: Buffer): Promise<Response> => fetch(`${cloud.adminUrl}/firmware/firmware/${name}`, { method: "PUT", headers: { authorization: `Bearer ${cloud.adminToken}` }, body: bytes });
    expect((await put("2.0.0.bin", Buffer.alloc(16, 1))).status).toBe(200);
    expect((await put(".hidden.bin", Buffer.alloc(16, 1))).status).toBe(400);
    expect(() => cloud.publishFirmware("firmware", "big.bin", new Uint8Array(MAX_BLOB_SIZE + 1))).toThrow(/over/);
    const info = cloud.publishFirmware("firmware", "v2_0_0.bin", Buffer.alloc(8, 2));
    expect(info.name).toBe("v2_0_0.bin"); // publish returned despite the throwing listener
    expect(seen.map((b) => [b.path, b.size])).toEqual([["firmware/2.0.0.bin", 16], ["firmware/v2_0_0.bin", 8]]);
    expect(log.lines.filter((l) => l.event === "blobs.listener-threw")).toHaveLength(2);
    // The fleet view, a listener too, still saw both releases.
    expect(cloud.fleet.releases().find((r) => r.version === "2.0.0")).toEqual({ version: "2.0.0", clouds: ["aws", "azure"] });
    off();
    offThrowing();
    cloud.publishFirmware("firmware", "2.0.1.bin", Buffer.alloc(8));
    expect(seen).toHaveLength(2);
  });
});

describe("a bare store", () => {
  const shadow: StoredShadow = { exists: true, version: 1, state: { reported: { a: 1 } }, metadata: {} };

  it("a write whose commit fails is never seen; a throwing listener is logged, the put still resolves", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-observers-store-"));
    const log = new MemoryLog();
    let failNext = false;
    const store = CloudStore.open(dir, {
      log,
      io: {
        // A full disk, which cannot be made on demand here: the next write fails with ENOSPC.
        write: async (fd, data, position) => {
          if (failNext) { failNext = false; throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" }); }
          await new Promise<void>((res, rej) => fs.write(fd, data, 0, data.length, position, (e) => (e ? rej(e) : res())));
        },
      },
    });
    try {
      const seen: string[] = [];
      store.onRecord(() => { throw new Error("listener bug"); });
      store.onRecord((r) => seen.push(brief(r)[1]));
      await store.putShadow("a", shadow);
      failNext = true;
      await expect(store.putShadow("b", shadow)).rejects.toMatchObject({ code: "CLOUD_STORE_IO" });
      await store.putTwin("t", { desired: {}, desiredVersion: 1, reported: { x: 1 }, reportedVersion: 2 });
      expect(seen).toEqual(["a", "t"]);
      expect(log.lines.filter((l) => l.event === "cloud-store.listener-threw").map((l) => l.fields?.["kind"])).toEqual(["shadow", "twin"]);
      expect(Object.keys(store.shadows)).toEqual(["a"]);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
