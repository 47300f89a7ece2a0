import { defineConfig } from 'vitest/config';

// Integration suites start real servers (influxd, the gateway process, Mosquitto, anvil) on
// free loopback ports with their own temporary dirs, so files do not share anything. Two files
// at a time: most of a suite's time is spent waiting on those servers, and two cores run two
// such files in about 60 % of the time one after another does (CI must stay under 15 min).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
