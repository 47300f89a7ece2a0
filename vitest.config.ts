import { defineConfig } from 'vitest/config';

// Integration suites start real servers (influxd, the gateway process); two cores
// cannot run many of them at once, so files run one after another.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
