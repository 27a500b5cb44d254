/**
 * The Moddable SDK freezes the built-ins after preload (its documentation/xs/preload.md): assigning a
 * property that a frozen prototype holds then throws in strict code. `this.name = "…"` in an Error subclass
 * is the classic case: it worked on Node and plain xsnap and aborted the device app. This file freezes the
 * prototypes the core touches, as the SDK does, and runs core paths that build errors and documents. Each
 * test file runs in its own realm (a Jest context, an xsnap process), so the freeze stays in this file.
 */
import { ShadowOtaError } from "../../src/core/errors";
import { parseSemver, SEMVER_CODES } from "../../src/core/semver";
import { awsProtocol } from "../../src/core/cloud-protocol";
import { computeDelta } from "../../src/core/config-diff";
import { utf8Encode } from "../../src/core/utf8";

// Only what is not frozen yet: in a Moddable app (npm run test:mcsim) the preload has frozen them already,
// and Object.freeze on a preloaded prototype that holds an accessor (Object.prototype.__proto__) writes its
// flags into the read-only preloaded heap: SIGSEGV in fxOrdinaryDefineOwnProperty with the SDK's XS 17.
const freeze = (o: object): void => {
  if (!Object.isFrozen(o)) Object.freeze(o);
};
for (const ctor of [Error, TypeError, RangeError, SyntaxError]) freeze(ctor.prototype);
freeze(Object.prototype);
freeze(Array.prototype);

describe("the core with frozen built-ins (as after Moddable's preload)", () => {
  it("Error.prototype really is frozen here", () => {
    expect(Object.isFrozen(Error.prototype)).toBe(true);
  });

  it("constructs ShadowOtaError with its name and code", () => {
    const e = new ShadowOtaError("SYNC_TIMEOUT", "no answer");
    expect(e.name).toBe("ShadowOtaError");
    expect(e.code).toBe("SYNC_TIMEOUT");
    expect(e instanceof Error).toBe(true);
  });

  it("refuses a hostile version with a typed error", () => {
    let code: string | undefined;
    try { parseSemver("1.0.0/../x"); } catch (e) { code = (e as ShadowOtaError).code; }
    expect(code).toBe(SEMVER_CODES.VERSION_INVALID);
  });

  it("classifies a malformed shadow message and computes a delta", () => {
    const p = awsProtocol({ thingName: "esp32-01" });
    const ev = p.classify("$aws/things/esp32-01/shadow/update/delta", utf8Encode("{nope"));
    expect(ev.kind).toBe("invalid");
    expect(computeDelta({ a: { b: 1 }, c: [1] }, { a: { b: 2 } })).toEqual({ a: { b: 1 }, c: [1] });
  });
});
