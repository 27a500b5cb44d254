/**
 * What scripts/test-xs.mjs (xsnap) and scripts/test-mcsim.mjs (the Moddable simulator) share: which files
 * are the core's XS tests, and how one is bundled for XS — esbuild, ESM, platform neutral, ES2022, JSON
 * imports, test/xs/jest-shim.ts injected for the Jest globals, and Node built-ins refused with a clear message.
 */
import { existsSync, readdirSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import * as esbuild from "esbuild";

export const TEST_DIRS = ["test/core", "test/xs"];

/** Every `*.test.ts` under `root/dir`, as paths relative to `root`, sorted. */
export function findTests(root, dir) {
  const abs = join(root, dir);
  if (!existsSync(abs)) return [];
  const out = [];
  for (const entry of readdirSync(abs, { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...findTests(root, rel));
    else if (entry.isFile() && entry.name.endsWith(".test.ts")) out.push(rel);
  }
  return out.sort();
}

const NODE_BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith("_")));

/** Refuses Node built-ins with a clear message, and maps `@jest/globals` to the shim. */
function xsPlugin(root, shim) {
  return {
    name: "xs-test",
    setup(build) {
      build.onResolve({ filter: /^@jest\/globals$/ }, () => ({ path: shim }));
      build.onResolve({ filter: /^(node:)?[a-z_]+(\/[a-z_]+)*$/ }, (args) => {
        if (!args.path.startsWith("node:") && !NODE_BUILTINS.has(args.path)) return undefined;
        return {
          errors: [{ text: `Node built-in module "${args.path}" imported by ${relative(root, args.importer) || "(entry)"}: XS has no Node modules (the core and its tests must not use them)` }],
        };
      });
    },
  };
}

/**
 * Bundles test `file` (relative to `root`) into `outfile`: an entry that imports it and then runs its tests
 * through the shim's `runTests`. `plugins`: more esbuild plugins, run before the XS one (test-mcsim.mjs
 * adds one; test-xs.mjs none). Returns esbuild's result; throws esbuild's error (with `.errors`) on failure.
 */
export function bundleTestFile({ root, shim, file, outfile, label, plugins = [] }) {
  const entry = [
    `import { runTests } from ${JSON.stringify(shim)};`,
    `let loadError;`,
    `try { await import(${JSON.stringify(join(root, file))}); } catch (e) { loadError = e; }`,
    `await runTests(${JSON.stringify(file)}, loadError);`,
  ].join("\n");
  return esbuild.build({
    stdin: { contents: entry, resolveDir: root, sourcefile: `${file} (${label} entry)`, loader: "js" },
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    loader: { ".json": "json" },
    inject: [shim],
    plugins: [...plugins, xsPlugin(root, shim)],
    outfile,
    write: true,
    logLevel: "silent",
  });
}
