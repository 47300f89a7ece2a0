/**
 * A real influxd for a vitest suite: started in a fresh temp dir before the suite's tests,
 * stopped and removed after them.
 *
 * @example
 *   const influx = useInfluxd();
 *   it('writes', async () => { const sink = new InfluxSink({ url: influx.handle.url, ... }) });
 */
import { afterAll, beforeAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startInfluxd, type InfluxdHandle, type InfluxdOptions } from '../../gateway/storage/influxd.js';

export interface InfluxdFixture {
  /** The running server; valid inside tests (after beforeAll). */
  readonly handle: InfluxdHandle;
  readonly dataDir: string;
}

export function useInfluxd(opts: Omit<InfluxdOptions, 'dataDir'> = {}): InfluxdFixture {
  let handle: InfluxdHandle | undefined;
  let dataDir: string | undefined;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'vp-influxd-'));
    handle = await startInfluxd({ ...opts, dataDir });
  });
  afterAll(async () => {
    await handle?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    get handle(): InfluxdHandle {
      if (!handle) throw new Error('influxd is not started yet: use the fixture inside a test or hook');
      return handle;
    },
    get dataDir(): string {
      if (!dataDir) throw new Error('influxd is not started yet');
      return dataDir;
    },
  };
}
