/**
 * One place that decides whether the broker tests can run on Debian's mosquitto, and the Jest wrappers that
 * turn "not installed" into SKIPPED tests (Jest's `○ skipped`), never into tests that return early and count
 * as passed.
 *
 * The executable is found the way the simulator finds it (findMosquitto in src/sim/broker-mosquitto.ts:
 * PATH, then /usr/sbin, /usr/local/sbin, /usr/bin, /usr/local/bin), once per test file.
 * SHADOW_OTA_TEST_NO_MOSQUITTO=1 hides an installed mosquitto, so the skip path can be checked on a machine
 * that has it (PATH alone cannot hide it: the fixed directories are searched too):
 *
 *     SHADOW_OTA_TEST_NO_MOSQUITTO=1 npx jest test/sim/shadow-service.test.ts   # the mosquitto test: skipped
 *
 * Not here: starting mosquitto (src/sim/broker-mosquitto.ts, startPlainMosquitto in cloud-fixtures.ts).
 */
import { findMosquitto } from "../../src/sim/broker-mosquitto";

/** The mosquitto executable the tests may use, or undefined (not installed, or hidden on purpose). */
export const MOSQUITTO: string | undefined = process.env.SHADOW_OTA_TEST_NO_MOSQUITTO === "1" ? undefined : findMosquitto();

/** Why the mosquitto tests are skipped, or undefined when they run. */
export const MOSQUITTO_SKIP_REASON: string | undefined = MOSQUITTO !== undefined ? undefined
  : process.env.SHADOW_OTA_TEST_NO_MOSQUITTO === "1" ? "hidden by SHADOW_OTA_TEST_NO_MOSQUITTO=1"
  : "not installed (scripts/bootstrap.sh installs it)";

/** `it` when mosquitto can run, `it.skip` otherwise. */
export const itMosquitto: jest.It = MOSQUITTO !== undefined ? it : it.skip;
/** `describe` when mosquitto can run, `describe.skip` otherwise. */
export const describeMosquitto: jest.Describe = MOSQUITTO !== undefined ? describe : describe.skip;

export type TestBroker = "aedes" | "mosquitto";

/** The same suite on aedes and on mosquitto; the mosquitto one is skipped when mosquitto cannot run.
 *  `%s` in the title is replaced by the broker's name. */
export function describeEachBroker(title: string, body: (broker: TestBroker) => void): void {
  describe(title.replace("%s", "aedes"), () => body("aedes"));
  describeMosquitto(title.replace("%s", "mosquitto"), () => body("mosquitto"));
}

/** The same test on aedes and on mosquitto; the mosquitto one is skipped when mosquitto cannot run. */
export function itEachBroker(title: string, fn: (broker: TestBroker) => Promise<void>, timeoutMs?: number): void {
  it(title.replace("%s", "aedes"), () => fn("aedes"), timeoutMs);
  itMosquitto(title.replace("%s", "mosquitto"), () => fn("mosquitto"), timeoutMs);
}

/** Says once per file why its mosquitto tests are skipped (Jest shows them as skipped either way). */
export function noteMosquittoSkipped(file: string): void {
  if (MOSQUITTO_SKIP_REASON !== undefined) console.log(`mosquitto ${MOSQUITTO_SKIP_REASON}: the mosquitto tests of ${file} are skipped`);
}
