import { defineConfig } from "vitest/config";

// `npm test` runs everything but the slow suites (*.slow.test.ts); `npm run test:slow`
// (SLOW=1) runs those as well and deepens the property tests.
const slow = process.env.SLOW === "1";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: slow ? ["**/node_modules/**"] : ["**/node_modules/**", "**/*.slow.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
