/**
 * Simulated devices that restart together take turns: every SimDevice in a process powers on again at most
 * once per turn of the event loop, so one device's power-on (synchronous: flash file, NVS, the app) never
 * runs back to back with hundreds of others while their sockets and timers wait. Without it a fleet whose
 * update finished together restarted as one long synchronous stretch per worker, and at 2,000 devices the
 * stretch outlasted the broker's handshake deadline and the devices' own deadlines (docs/local-cloud.md,
 * "Scale"). Counted, never timed: the event loop's turns are counted by an immediate that re-arms itself
 * (an immediate set from inside one runs in the next turn).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";

jest.setTimeout(120_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const N = 24;

describe("SimDevice restarts", () => {
  let dir: string;
  let cloud: LocalCloud;
  const ids = Array.from({ length: N }, (_, i) => `restart-turn-${String(i).padStart(2, "0")}`);
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-restart-turns-"));
    // The broker's per-address cap just above the fleet (plus the service link): a restart that left its old
    // connection open, or reconnected before closing it, would be refused here.
    cloud = await LocalCloud.start({ broker: "aedes", dataDir: path.join(dir, "cloud"), certsDir: PKI, adminPort: false,
      blobPort: false, brokerLimits: { maxConnectionsPerAddress: N + 2 } });
    const key = cloud.pki.client(ids[0]!).keyPem; // one RSA key for all: generating 24 is not the test
    for (const id of ids) {
      cloud.pki.client(id, { keyPem: key });
      await cloud.addDevice(id, "aws");
    }
  });
  afterAll(async () => {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`${N} devices restarted in the same tick power on one per event-loop turn, and all reconnect`, async () => {
    let turn = 0;
    let ticking = true;
    const tick = (): void => { turn++; if (ticking) setImmediate(tick); };
    setImmediate(tick);
    const bootTurns: number[] = [];
    const devices = ids.map((id) => SimDevice.start({
      ...cloud.credentials(id), dataDir: path.join(dir, id), log: { log() {} }, logs: false,
      onBoot: () => { bootTurns.push(turn); },
    }));
    try {
      await Promise.all(devices.map((d) => d.waitFor((s) => s.connected, 60_000, "connected")));
      bootTurns.length = 0;
      for (const d of devices) d.restart("test: the fleet restarts together");
      await Promise.all(devices.map((d) => d.waitFor((s) => s.connected && d.boots === 2, 60_000, "connected after the restart")));
      expect(bootTurns).toHaveLength(N);
      const perTurn = new Map<number, number>();
      for (const t of bootTurns) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
      expect(Math.max(...perTurn.values())).toBe(1);
      expect(devices.map((d) => d.restarts.length)).toEqual(ids.map(() => 1));
    } finally {
      ticking = false;
      await Promise.all(devices.map((d) => d.close()));
    }
  });
});
