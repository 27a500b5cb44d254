/**
 * DECLARATIONS FOR THE TYPE CHECK OUTSIDE MCCONFIG ONLY: the Moddable SDK modules and XS globals that
 * src/device imports, declared by this project from the SDK's documentation (documentation/base/base.md
 * "Timers" for `timer` and `time`, documentation/files/files.md for `Resource` and `Preference`,
 * documentation/network/securesocket.md for `securesocket`, documentation/tools/manifest.md for `mc/config`)
 * and only as far as the project uses them. `npm run typecheck` checks src/device against them through
 * tsconfig.device.json, on a machine without the SDK.
 *
 * Not part of a device build: manifest.json does not list this folder, and mcconfig type-checks with the
 * SDK's own typings ($MODDABLE/typings, xs/includes/xs.d.ts), which win wherever the two differ. Declaring
 * these modules in src/device/typings/ (which the manifest does list) would clash with the SDK's own
 * declarations there. The legacy "mqtt" client, for which the SDK ships no typings, is declared in
 * src/device/typings/mqtt.d.ts and used by both checks.
 *
 * Keep it narrow: a member is declared here when src/device uses it, so a typo in the device code fails the
 * check instead of matching an over-broad declaration.
 */

// ------------------------------------------------------------------------------------------------ XS globals

/** A buffer whose bytes live outside the JavaScript heap (flash, resources); XS passes it where an
 *  ArrayBuffer is accepted by host functions. Opaque to script except for its length. */
declare class HostBuffer {
  readonly byteLength: number;
  private readonly hostBufferBrand: unknown;
}

/** Bytes a Moddable API accepts: an ArrayBuffer, a view on one, or a host buffer such as a Resource. */
type ByteBuffer = ArrayBufferLike | ArrayBufferView | HostBuffer;

/** XS's bindings from TypeScript to C (documentation/xs/XS in C.md; `@ "xs_f"` is JavaScript-only syntax).
 *  `native(name)` is the C function `name` as a script function; `Native(destructor)` a base class whose
 *  instances carry host data that `destructor` frees. Needed here because src/device/main.ts imports the
 *  OTA slot binding (src/native/xs/ota-slot-xs.ts). Results are whatever the C code returns. */
declare function native(name: string): (this: object, ...args: unknown[]) => any;
declare function Native(destructor: string): new () => object;

// ------------------------------------------------------------------------------------------------ modules

/** Timers on the app's run loop ("Timers" in the SDK's base documentation). */
declare module "timer" {
  type TimerCallback = (id: Timer) => void;
  /** A timer id: what `set` returns and `clear` takes. Not constructible by script. */
  class Timer {
    private constructor();
    private readonly timerBrand: unknown;
    /** One-shot after `interval` ms (next run-loop turn when omitted or 0); with `repeat`, repeating
     *  every `repeat` ms after the first call. Returns the timer's id. */
    static set(callback: TimerCallback, interval?: number, repeat?: number): Timer;
    /** Cancels a timer that has not fired yet (one-shot timers clear themselves after firing). */
    static clear(id: Timer): void;
  }
  export default Timer;
}

/** The SDK's instrumentation counters (modules/base/instrumentation): values exist only in builds with
 *  instrumentation (debug or -i); otherwise both functions return undefined. */
declare module "instrumentation" {
  class Instrumentation {
    private constructor();
    /** The index of the counter named `name` ("System Free Memory", "XS Slot Heap Used", ...), or undefined. */
    static map(name: string): number | undefined;
    /** The counter's current value, or undefined. */
    static get(index: number): number | undefined;
  }
  export default Instrumentation;
}

/** The system clock and the millisecond tick counter. */
declare module "time" {
  class Time {
    private constructor();
    /** A monotonic millisecond counter, unrelated to the time of day. */
    static readonly ticks: number;
    /** Sets the system clock, in seconds since 1970-01-01 UTC. */
    static set(seconds: number): void;
    /** The time zone's offset from UTC in seconds (settable; 0 until set). */
    static timezone: number;
    /** The daylight-saving offset in seconds (settable; 0 until set). */
    static dst: number;
  }
  export default Time;
}

/** Small persistent values by domain and key (NVS on the ESP32, a JSON file in the simulator). */
declare module "preference" {
  type PreferenceValue = boolean | number | string | ArrayBuffer;
  class Preference {
    private constructor();
    static set(domain: string, key: string, value: PreferenceValue): void;
    /** undefined when the key is not set. */
    static get(domain: string, key: string): PreferenceValue | undefined;
    /** Removes the key; no error when it is not set. */
    static delete(domain: string, key: string): void;
    static keys(domain: string): string[];
  }
  export default Preference;
}

/** Read-only assets listed under "resources" in the manifest (the DER certificates). */
declare module "Resource" {
  class Resource extends HostBuffer {
    /** Throws when no resource has that path. */
    constructor(path: string);
    static exists(path: string): boolean;
    /** A copy of bytes [begin, end) in an ArrayBuffer (end defaults to the resource's length). */
    slice(begin: number, end?: number): ArrayBuffer;
  }
  export default Resource;
}

/**
 * The legacy HTTP client (modules/network/http/http.js; `import {Request} from "http"`), as the HTTPS byte
 * source uses it: one GET per connection (it always sends `Connection: close`), body streamed through the
 * callback because no `response` type is given.
 */
declare module "http" {
  interface RequestDictionary {
    host: string;
    /** Default 80. */
    port?: number;
    /** Path and query; default "/". */
    path?: string;
    /** Default "GET". */
    method?: string;
    /** `[name, value, name, value, …]`; a "Host" entry replaces the one the client would add. */
    headers?: string[];
    /** Socket class, constructed with this whole dictionary (SecureSocket for https). */
    Socket?: new (dictionary: never) => object;
    /** The Socket class's TLS options. */
    secure?: object;
  }
  class Request {
    constructor(dictionary: RequestDictionary);
    /**
     * Called with (1, status code), (2, lowercase header name, value), (3) headers complete,
     * (4, byte count) per body fragment — read them with `read(ArrayBuffer, count)` inside the call, or
     * they may be lost —, (5) body complete; a negative message is an error or a close before the end.
     */
    callback: (message: number, value?: any, value2?: any) => void;
    /** Body bytes now readable (inside a chunked body: what is left of the current chunk). */
    read(): number;
    /** Up to `count` body bytes; undefined when none are readable. */
    read(type: typeof ArrayBuffer, count?: number): ArrayBuffer | undefined;
    /** Closes the connection; no callback follows. */
    close(): void;
  }
}

/** The manifest's "config" object, with the mcconfig command line's `key=value` overrides (strings). */
declare module "mc/config" {
  const config: Readonly<Record<string, unknown>>;
  export default config;
}

/** TLS over the SDK's socket, in JavaScript. Passed to the "mqtt" client as its `Socket` class. */
declare module "securesocket" {
  /** The TLS options the "mqtt" client hands through in `secure` (documentation/network/securesocket.md). */
  interface SecureOptions {
    /** Highest TLS version offered, e.g. 0x0303 for TLS 1.2. */
    protocolVersion?: number;
    /** The CA the server's chain must end in (DER), trusted besides any ca<N>.der resources. */
    certificate?: ByteBuffer;
    /** Check the server's chain, validity dates (the clock must be set) and name. */
    verify?: boolean;
    /** Client certificate chain (DER) and PKCS#8 DER key, for mutual TLS. */
    clientCertificates?: ByteBuffer[];
    clientKey?: ByteBuffer;
    /** ALPN protocol names to offer. */
    applicationLayerProtocolNegotiation?: string[];
    /** The name the server certificate must carry (subjectAltName) and SNI; defaults to the socket's `host`. */
    serverName?: string;
  }
  class SecureSocket {
    /** Connects to `host`:`port` and runs the handshake. The whole dictionary also goes to the raw socket
     *  (`new Socket(dict)`), whose `noDelay: true` turns Nagle off on lwIP (the ESP32); other keys are ignored. */
    constructor(dictionary: { host: string; port: number; secure?: SecureOptions; noDelay?: boolean });
  }
  export default SecureSocket;
}

/**
 * The SDK's ECMA-419 MQTT client (examples/io/tcp/mqttclient/mqttclient.js, SDK 8.2.3; not under modules/).
 * Declared opaque on purpose: src/device/mqtt-419.ts describes the shape it relies on (read from the source)
 * in its own interfaces and casts to them, because the SDK's typings for this module differ from its source
 * (onControl with two parameters, no `write(null, …)`) and an mcconfig build checks against those.
 */
declare module "embedded:network/mqtt/client" {
  class MQTTClient {
    private constructor();
    private readonly mqttClientBrand: unknown;
  }
  export default MQTTClient;
}
