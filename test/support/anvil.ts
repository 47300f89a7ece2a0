/**
 * A real anvil for a vitest suite: started in a fresh temp dir before the suite's tests,
 * stopped and removed after them. With `snapshotEach`, every test starts from the chain as
 * beforeAll left it (evm_snapshot before each test, evm_revert after).
 *
 * @example
 *   const chain = useAnvil({ snapshotEach: true });
 *   beforeAll(async () => { registry = await deploy(chain.wallet(0)) });
 *   it('enrols', async () => { ... chain.provider ... });
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonRpcProvider, type HDNodeWallet } from 'ethers';
import { devWallet, startAnvil, type AnvilHandle, type AnvilOptions } from '../../gateway/chain/anvil.js';

export interface AnvilFixture {
  /** The running node; valid inside tests (after beforeAll). */
  readonly handle: AnvilHandle;
  readonly provider: JsonRpcProvider;
  readonly dataDir: string;
  /** DEV ONLY account `i` (0-9) of the test mnemonic, connected to the provider. */
  wallet(i: number): HDNodeWallet;
  /** Sets the timestamp (Unix seconds) of the next mined block. */
  setNextBlockTimestamp(seconds: number): Promise<void>;
  /** Timestamp (Unix seconds) of the latest block. */
  latestTimestamp(): Promise<number>;
}

/** An ethers provider tuned for a local automining node: no network detection, no caching, fast polling. */
export function localProvider(url: string, chainId: number): JsonRpcProvider {
  return new JsonRpcProvider(url, chainId, { staticNetwork: true, cacheTimeout: -1, pollingInterval: 20 });
}

export function useAnvil(opts: Omit<AnvilOptions, 'dataDir'> & { snapshotEach?: boolean } = {}): AnvilFixture {
  let handle: AnvilHandle | undefined;
  let provider: JsonRpcProvider | undefined;
  let dataDir: string | undefined;
  let snap: string | undefined;
  const { snapshotEach, ...anvilOpts } = opts;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'vp-anvil-'));
    handle = await startAnvil({ checkpointIntervalMs: 0, ...anvilOpts, dataDir });
    provider = localProvider(handle.url, handle.chainId);
  });
  afterAll(async () => {
    provider?.destroy();
    await handle?.kill(); // its state is thrown away with the dir: no final checkpoint needed
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });
  if (snapshotEach) {
    beforeEach(async () => {
      snap = (await fixture.provider.send('evm_snapshot', [])) as string;
    });
    afterEach(async () => {
      if (snap) await fixture.provider.send('evm_revert', [snap]);
      snap = undefined;
    });
  }
  const fixture: AnvilFixture = {
    get handle(): AnvilHandle {
      if (!handle) throw new Error('anvil is not started yet: use the fixture inside a test or hook');
      return handle;
    },
    get provider(): JsonRpcProvider {
      if (!provider) throw new Error('anvil is not started yet');
      return provider;
    },
    get dataDir(): string {
      if (!dataDir) throw new Error('anvil is not started yet');
      return dataDir;
    },
    wallet: (i) => devWallet(i, fixture.provider),
    setNextBlockTimestamp: async (seconds) => {
      await fixture.provider.send('evm_setNextBlockTimestamp', [seconds]);
    },
    latestTimestamp: async () => {
      const b = await fixture.provider.getBlock('latest');
      if (!b) throw new Error('no latest block');
      return b.timestamp;
    },
  };
  return fixture;
}
