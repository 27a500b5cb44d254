/**
 * `errorOf(fn)` and `rejection(promise)`: the ShadowOtaError that `fn` throws or the promise rejects with,
 * for asserting codes and details. Anything else thrown is rethrown; not throwing (or resolving) fails the
 * test. Pure TypeScript (no Node imports), so core tests using it run on XS too.
 */
import { ShadowOtaError } from "../../src/core/errors";

export function errorOf(fn: () => unknown): ShadowOtaError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ShadowOtaError) return e;
    throw e;
  }
  throw new Error("expected a ShadowOtaError");
}

/** The ShadowOtaError a promise rejects with; anything else is rethrown, and resolving fails the test. */
export async function rejection(p: Promise<unknown>): Promise<ShadowOtaError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ShadowOtaError) return e;
    throw e;
  }
  throw new Error("expected a rejection");
}
