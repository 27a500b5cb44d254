/**
 * The Moddable MQTT adapter's reconnect (src/device/mqtt-moddable.ts) on Node, with the SDK modules it
 * imports ("mqtt", "securesocket", "timer") replaced by fakes: a client whose callbacks the test fires by
 * hand, and a Timer that records each wait instead of waiting. Checks that the waits between attempts come
 * from the shared backoff policy (src/core/backoff.ts) with the injected random source, that a CONNACK
 * resets it, that a constructor that throws counts as a failed attempt, and that close() stops it.
 *
 * What this is not: a test of the SDK's client or of TLS (the mcconfig build and the simulator runs in
 * docs/moddable.md cover those). The adapter is loaded with require(), so the root tsconfig does not follow
 * it into the SDK imports it cannot resolve; tsconfig.device.json type-checks it.
 */
import { backoffDelay } from "../../src/core/backoff";
import { isShadowOtaError } from "../../src/core/errors";
import type { MqttTransport, MqttTransportEvents } from "../../src/ports/mqtt-transport";

interface FakeClientShape {
  options: { host: string; port: number; id: string; Socket?: new (d: object) => { dictionary: object } };
  onReady?: () => void;
  onClose?: () => void;
  onMessage?: (topic: string, body: ArrayBuffer) => void;
  closed: boolean;
}
interface FakeSdk {
  clients: FakeClientShape[];
  /** When set, the next `new Client()` throws this. */
  throwNext: Error | undefined;
  timers: Array<{ id: number; ms: number; fn: () => void; cleared: boolean }>;
}

jest.mock("mqtt", () => {
  const sdk: FakeSdk = { clients: [], throwNext: undefined, timers: [] };
  (globalThis as { __fakeSdk?: FakeSdk }).__fakeSdk = sdk;
  class Client {
    closed = false;
    parse: { state: number } | undefined = { state: 0 };
    constructor(readonly options: { host: string; port: number; id: string }) {
      if (sdk.throwNext !== undefined) {
        const e = sdk.throwNext;
        sdk.throwNext = undefined;
        throw e;
      }
      sdk.clients.push(this as unknown as FakeClientShape);
    }
    received(_buffer: ArrayBuffer): void {}
    dispatch(_msg: object): void {}
    publish(): void {}
    subscribe(): void {}
    close(): void { this.closed = true; }
  }
  return { __esModule: true, default: Client };
});
jest.mock("securesocket", () => ({
  __esModule: true,
  // Records the dictionary it was built with, as the SDK's SecureSocket hands it to the raw socket.
  default: class SecureSocket { constructor(readonly dictionary: object) {} },
}), { virtual: true });
jest.mock("timer", () => {
  const sdk = (): FakeSdk => (globalThis as unknown as { __fakeSdk: FakeSdk }).__fakeSdk;
  let next = 1;
  return {
    __esModule: true,
    default: {
      set(fn: () => void, ms: number): number {
        const id = next++;
        sdk().timers.push({ id, ms, fn, cleared: false });
        return id;
      },
      clear(id: number): void {
        const t = sdk().timers.find((x) => x.id === id);
        if (t) t.cleared = true;
      },
    },
  };
}, { virtual: true });

type Options = {
  host: string; port: number; clientId: string; ca: ArrayBuffer;
  backoff?: { initialMs: number; maxMs: number }; random?: () => number;
};
const { ModdableMqttTransport } = require("../../src/device/mqtt-moddable") as { ModdableMqttTransport: new (o: Options) => MqttTransport };
const sdk = (globalThis as unknown as { __fakeSdk: FakeSdk }).__fakeSdk;

class Recorder implements MqttTransportEvents {
  readonly events: Array<{ type: string; reason?: Error }> = [];
  connected(): void { this.events.push({ type: "connected" }); }
  disconnected(reason: Error): void { this.events.push({ type: "disconnected", reason }); }
  message(): void { this.events.push({ type: "message" }); }
}

const BACKOFF = { initialMs: 40, maxMs: 160 };

function make(random: () => number): { t: MqttTransport; rec: Recorder } {
  const t = new ModdableMqttTransport({ host: "localhost", port: 8883, clientId: "esp32-01", ca: new ArrayBuffer(0), backoff: BACKOFF, random });
  const rec = new Recorder();
  t.setHandlers(rec);
  return { t, rec };
}

/** The last client built; fails the test when none was. */
function lastClient(): FakeClientShape {
  const c = sdk.clients[sdk.clients.length - 1];
  if (c === undefined) throw new Error("no client was built");
  return c;
}

/** Fires the one pending (not cleared, not yet fired) timer and returns its delay. */
function fireTimer(): number {
  const pending = sdk.timers.filter((x) => !x.cleared);
  expect(pending.length).toBe(1);
  const timer = pending[0]!;
  timer.cleared = true; // a one-shot timer is gone once it fired
  timer.fn();
  return timer.ms;
}

beforeEach(() => {
  sdk.clients.length = 0;
  sdk.timers.length = 0;
  sdk.throwNext = undefined;
});

test("waits between failed attempts come from core/backoff with the injected random; a CONNACK resets them", () => {
  let draws = 0;
  const { t, rec } = make(() => { draws++; return 0.5; });
  t.start();
  const waits: number[] = [];
  for (let i = 0; i < 4; i++) {
    lastClient().onClose!(); // refused before CONNACK
    waits.push(fireTimer());
  }
  // Full jitter, half of caps 40, 80, 160, 160 (the adapter's old [cap/2, cap] formula gave 30, 60, 120, 120).
  expect(waits).toEqual([20, 40, 80, 80]);
  expect(waits).toEqual([0, 1, 2, 3].map((f) => backoffDelay(f, BACKOFF, () => 0.5)));
  expect(draws).toBe(4);
  expect(sdk.clients.length).toBe(5);

  lastClient().onReady!();
  lastClient().onClose!(); // a session that was up ends
  expect(fireTimer()).toBe(20);
  expect(rec.events.map((e) => e.type)).toEqual(["disconnected", "disconnected", "disconnected", "disconnected", "connected", "disconnected"]);
  expect(rec.events.filter((e) => e.reason !== undefined).map((e) => e.reason!.message))
    .toEqual(["connect failed", "connect failed", "connect failed", "connect failed", "connection lost"]);
});

test("a client constructor that throws is a failed attempt: reported from a timer, then retried with backoff", () => {
  const { t, rec } = make(() => 1);
  sdk.throwNext = new Error("certificate not yet valid");
  t.start();
  expect(rec.events).toEqual([]); // never from inside start()
  expect(fireTimer()).toBe(0); // the report's own turn
  expect(rec.events.length).toBe(1);
  expect(isShadowOtaError(rec.events[0]!.reason, "SYNC_TRANSPORT")).toBe(true);
  expect(fireTimer()).toBe(40); // the first backoff wait (cap 40, random 1)
  expect(sdk.clients.length).toBe(1);
});

test("close() cancels a pending reconnect and builds no client afterwards", async () => {
  const { t } = make(() => 1);
  t.start();
  lastClient().onClose!();
  expect(sdk.timers.filter((x) => !x.cleared).length).toBe(1);
  await t.close();
  expect(sdk.timers.filter((x) => !x.cleared).length).toBe(0);
  expect(sdk.clients.length).toBe(1);
});

test("the client's socket turns Nagle off: SecureSocket gets noDelay: true with the client's host, port and TLS options", () => {
  const { t } = make(() => 0);
  t.start();
  const c = lastClient();
  const Socket = c.options.Socket;
  expect(Socket).toBeDefined();
  const secure = { protocolVersion: 0x303 };
  const socket = new Socket!({ host: "localhost", port: 8883, secure });
  expect(socket.dictionary).toEqual({ host: "localhost", port: 8883, secure, noDelay: true });
  void t.close();
});
