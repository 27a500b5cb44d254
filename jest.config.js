/** Jest runs the TypeScript sources through ts-jest (transpile only; `npm run typecheck` type-checks). */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: {
    "^.+\\.ts$": ["ts-jest", { isolatedModules: true, tsconfig: { module: "commonjs", moduleResolution: "node10", ignoreDeprecations: "6.0", esModuleInterop: true } }],
  },
  testTimeout: 30000,
};
