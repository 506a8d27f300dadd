// Vitest configuration for the release tooling's own tests (tools/prebuild/test), which the root
// vitest.config.ts (packages/*/test only) does not pick up. Run from the repository root:
//   npx vitest run --config tools/prebuild/vitest.config.mjs
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['tools/prebuild/test/**/*.test.ts'],
    testTimeout: 600_000,
    pool: 'forks',
    maxWorkers: 1,
  },
});
