/**
 * A real Mosquitto 2 for a vitest file: started in a fresh temp dir in beforeAll, stopped and
 * removed in afterAll. The process part is the demo's too (scripts/lib/mosquitto.ts).
 *
 * @example
 *   const broker = useMosquitto();
 *   it('…', async () => { const c = await connectAsync(broker.handle.url, broker.handle.admin); … });
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startMosquitto, type MosquittoHandle, type MosquittoOptions } from '../../scripts/lib/mosquitto.js';

export { startMosquitto, mosquittoConfig, type MosquittoHandle, type MosquittoCredentials } from '../../scripts/lib/mosquitto.js';

export interface MosquittoFixture {
  /** The running broker; valid inside tests (after beforeAll). */
  readonly handle: MosquittoHandle;
}

export function useMosquitto(opts: Omit<MosquittoOptions, 'dir'> = {}): MosquittoFixture {
  let handle: MosquittoHandle | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vp-mosq-'));
    handle = await startMosquitto({ ...opts, dir });
  });
  afterAll(async () => {
    await handle?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get handle(): MosquittoHandle {
      if (!handle) throw new Error('mosquitto is not started yet: use the fixture inside a test or hook');
      return handle;
    },
  };
}
