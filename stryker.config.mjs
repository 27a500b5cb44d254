/**
 * StrykerJS over the platform-neutral core (src/core): jest runner, TypeScript checker, incremental.
 *
 * `npm run test:mutation` (scripts/mutation-run.mjs) runs Stryker once per core file, mutating only that
 * file and running only the test files listed for it in CORE_TESTS below (its own tests, not every test
 * that happens to reach it), with `coverageAnalysis: "perTest"` so a mutant runs only the tests that
 * execute it. Each file keeps its own incremental file and JSON/HTML report under reports/mutation/
 * (out of git), so a rerun retests only mutants whose code or tests changed.
 *
 * `npx stryker run` with this file alone mutates all of src/core against all of test/core in one run
 * (slower per mutant, stronger tests per file); the per-file script is the one the documented scores
 * come from (docs/mutation.md).
 *
 * concurrency 1: the machine has 2 cores and others run CPU-sensitive benchmarks on it.
 */

/** Each core file and the test files that are its own (paths relative to test/core). */
export const CORE_TESTS = {
  "aws-shadow.ts": ["aws-shadow.test.ts", "aws-shadow-refusals.test.ts"],
  "azure-topics.ts": ["azure-topics.test.ts"],
  "azure-twin.ts": ["azure-twin.test.ts", "azure-twin-refusals.test.ts"],
  "backoff.ts": ["backoff.test.ts"],
  "cloud-protocol.ts": ["cloud-protocol.test.ts", "frozen-builtins.test.ts"],
  "config-diff.ts": ["config-diff.test.ts", "config-diff-edges.test.ts"],
  "device-agent.ts": ["device-agent.test.ts", "device-agent-reports.test.ts", "device-agent-revert.test.ts"],
  "device-app.ts": ["device-app.test.ts", "device-app-logs.test.ts", "device-app-revert.test.ts", "update-policy.test.ts"],
  "download-errors.ts": ["firmware-url.test.ts", "error-codes.test.ts"],
  "errors.ts": ["error-codes.test.ts", "xs-smoke.test.ts"],
  "firmware-url.ts": ["firmware-url.test.ts"],
  "hmac-sha256.ts": ["sas-token.test.ts", "hmac-sha256.test.ts"],
  "json.ts": ["xs-smoke.test.ts", "json-utf8.test.ts"],
  "log-mirror.ts": ["log-mirror.test.ts", "log-mirror-config.test.ts", "log-mirror-bookkeeping.test.ts"],
  // Not ota-controller-property.test.ts: its 60 random sequences (over a second) cover nearly every mutant
  // and would run for each; the example tests have to pin the controller's behaviour on their own.
  "ota-controller.ts": ["ota-controller.test.ts", "ota-controller-edges.test.ts", "ota-policy.test.ts", "ota-log.test.ts",
    "ota-controller-unconfirmed.test.ts", "ota-controller-reports.test.ts", "ota-controller-records.test.ts",
    "ota-controller-transfer.test.ts", "ota-cancel.test.ts"],
  "sas-token.ts": ["sas-token.test.ts", "sas-token-refusals.test.ts"],
  "semver.ts": ["semver.test.ts", "semver-messages.test.ts"],
  "shadow-sync.ts": ["shadow-sync.test.ts", "shadow-sync-reports.test.ts", "shadow-sync-ports.test.ts", "shadow-sync-states.test.ts",
    "shadow-sync-throttle.test.ts", "shadow-sync-log.test.ts", "persisted-identity.test.ts",
    "shadow-sync-get-throttle.test.ts", "shadow-sync-report-lost.test.ts", "shadow-sync-overtaken.test.ts",
    "shadow-sync-reentry.test.ts", "shadow-sync-get-pending.test.ts", "shadow-sync-edges.test.ts"],
  "sync-errors.ts": ["error-codes.test.ts"],
  "update-errors.ts": ["error-codes.test.ts"],
  "update-policy.ts": ["update-policy.test.ts", "update-policy-gate.test.ts"],
  "utf8.ts": ["xs-smoke.test.ts", "json-utf8.test.ts"],
};

/** Set by scripts/mutation-run.mjs: the one core file (a key of CORE_TESTS) this run mutates. */
const file = process.env.MUTATION_FILE;
if (file !== undefined && !(file in CORE_TESTS)) throw new Error(`MUTATION_FILE=${file} is not a key of CORE_TESTS in stryker.config.mjs`);
const name = file === undefined ? "all" : file.replace(/\.ts$/, "");

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: "npm",
  testRunner: "jest",
  testRunnerNodeArgs: [],
  jest: {
    projectType: "custom",
    configFile: "jest.config.js",
    // Only the core's tests: the rest (simulator, brokers, native module) are not the core's own and
    // need ports, sockets and processes.
    config: {
      roots: ["<rootDir>/test/core"],
      ...(file === undefined ? {} : { testMatch: CORE_TESTS[file].map((t) => `<rootDir>/test/core/${t}`) }),
    },
    enableFindRelatedTests: true,
  },
  checkers: ["typescript"],
  // The core and its tests only, so an edit elsewhere in the tree (others work on src/node, src/sim)
  // cannot stop a mutation run.
  tsconfigFile: "stryker.tsconfig.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: "perTest",
  mutate: [file === undefined ? "src/core/**/*.ts" : `src/core/${file}`],
  concurrency: 1,
  timeoutMS: 10000,
  incremental: true,
  incrementalFile: `reports/mutation/incremental/${name}.json`,
  reporters: ["json", "html", "clear-text", "progress"],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: false },
  tempDirName: ".stryker-tmp",
  cleanTempDir: true,
  // Copy only what the core's tests need into the sandbox (not build outputs, flash files, certificates).
  ignorePatterns: [
    "/*",
    "!/src",
    "/src/*",
    "!/src/core",
    "!/src/ports",
    "!/test",
    "/test/*",
    "!/test/core",
    "!/test/vectors",
    "!/package.json",
    "!/jest.config.js",
    "!/tsconfig.json",
    "!/stryker.tsconfig.json",
  ],
  thresholds: { high: 90, low: 85, break: null },
};
