/**
 * gateway/registry/chain-registry.ts against a real anvil: the shared DeviceRegistry suite
 * (test/support/device-registry-suite.ts; each store a fresh deployment and data dir, a
 * follower a registry that follows the chain), and the registry cache in the format written
 * before the registry moved onto gateway/chain/log-follower.ts: the fixture of
 * test/data/registry-cache-v1/ (written by that code, scripts/gen-registry-cache-fixture.ts)
 * loads, and a cache in that format is followed on from its lastBlock, not rescanned from the
 * deploy block. Contract behaviour is in test/gateway/registry/chain-registry-follow.test.ts and chain-registry-keys.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import type { JsonRpcProvider } from 'ethers';
import { deployContracts, type DeploymentRecord } from '../../../gateway/chain/deploy.js';
import { deviceRegistryAt } from '../../../gateway/chain/contracts.js';
import { deviceIdToBytes8, siteIdOf } from '../../../gateway/chain/ids.js';
import { findFreePort } from '../../../gateway/util/net.js';
import { CACHE_FILE, ChainRegistry, type ChainRegistryOptions, type RegistryLog } from '../../../gateway/registry/chain-registry.js';
import { DIRECTORY_FILE } from '../../../gateway/registry/directory.js';
import { localProvider, useAnvil } from '../../support/anvil.js';
import { testDevice } from '../../support/devices.js';
import { deviceRegistrySuite } from '../../support/device-registry-suite.js';

const chain = useAnvil();
const FIXTURE = fileURLToPath(new URL('../../data/registry-cache-v1/', import.meta.url));

interface Store {
  record: DeploymentRecord;
  dataDir: string;
}

const dirs: string[] = [];
const providers: JsonRpcProvider[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-chain-registry-suite-'));
  dirs.push(d);
  return d;
}

afterAll(() => {
  for (const p of providers) p.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function registry(store: Store, opts: Partial<ChainRegistryOptions> = {}): ChainRegistry {
  return new ChainRegistry({
    provider: chain.provider,
    deviceRegistryAddress: store.record.deviceRegistry.address,
    deployBlock: store.record.deployBlock,
    dataDir: store.dataDir,
    signer: chain.wallet(0),
    pollIntervalMs: 50,
    maxBackoffMs: 200,
    ...opts,
  });
}

function captureLog(): { log: RegistryLog; events(prefix: string): Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg, ...obj });
  return { log: { info: at('info'), warn: at('warn'), error: at('error') }, events: (prefix) => lines.filter((l) => String(l['event']).startsWith(prefix)) };
}

deviceRegistrySuite<Store>('ChainRegistry', {
  newStore: async () => ({ record: (await deployContracts(chain.wallet(0))).record, dataDir: tempDir() }),
  open: (store, { follow }) => registry(store, { follow }),
  // Any HOSPITAL_ADMIN_ROLE account can call the contract directly, past the gateway's checks.
  plant: async (store, e) => {
    const ref = `0x${createHash('sha256').update(e.patient).digest('hex')}`;
    const tx = await deviceRegistryAt(store.record.deviceRegistry.address, chain.wallet(0)).enrol(
      deviceIdToBytes8(e.deviceId),
      `0x${e.publicKey}`,
      ref,
      siteIdOf('default'),
    );
    await tx.wait();
  },
});

/** The fields of registry-cache.json, in order, as the registry wrote them before LogFollower. */
const CACHE_FIELDS = ['version', 'chainId', 'contract', 'deployBlock', 'lastBlock', 'lastBlockHash', 'devices'];

describe('ChainRegistry: caches written before it followed through LogFollower', () => {
  it('loads the fixture written by that code and serves it before the chain answers', async () => {
    const cache = JSON.parse(readFileSync(join(FIXTURE, CACHE_FILE), 'utf8')) as {
      chainId: number;
      contract: string;
      deployBlock: number;
      lastBlock: number;
      devices: { deviceId: string; revokedAtMs?: number }[];
    };
    expect(Object.keys(cache)).toEqual(CACHE_FIELDS);
    const dataDir = tempDir();
    for (const f of [CACHE_FILE, DIRECTORY_FILE]) copyFileSync(join(FIXTURE, f), join(dataDir, f));
    const dead = localProvider(`http://127.0.0.1:${await findFreePort()}`, cache.chainId);
    providers.push(dead);
    const { log, events } = captureLog();
    const r = new ChainRegistry({
      provider: dead,
      deviceRegistryAddress: cache.contract,
      deployBlock: cache.deployBlock,
      chainId: cache.chainId,
      dataDir,
      follow: false,
      rpcTimeoutMs: 2_000,
      log,
    });
    try {
      const [kept, revoked, bad] = cache.devices;
      expect(r.get(kept!.deviceId)).toMatchObject({ patient: 'pt-kept', sensors: ['heart_rate'] });
      expect(r.get(kept!.deviceId)?.revokedAtMs).toBeUndefined();
      expect(r.get(revoked!.deviceId)).toMatchObject({ patient: 'pt-revoked', revokedAtMs: revoked!.revokedAtMs });
      expect(
        r
          .list()
          .map((d) => d.deviceId)
          .sort(),
      ).toEqual([kept!.deviceId, revoked!.deviceId].sort());
      expect(r.get(bad!.deviceId)).toBeUndefined(); // the identity key: refused at load, from the cache
      expect(r.refusedKeys()).toEqual([expect.objectContaining({ deviceId: bad!.deviceId, reason: 'SMALL_ORDER' })]);
      expect(r.status()).toMatchObject({ lastBlock: cache.lastBlock, devices: 3, revoked: 1, refusedKeys: 1, chainId: cache.chainId });
      expect(events('registry_cache_ignored')).toEqual([]);
      await expect(r.sync()).rejects.toThrow(); // nothing answers: the cache is all it has
      expect(r.list()).toHaveLength(2);
    } finally {
      await r.close();
    }
  });

  it('follows on from the lastBlock of a cache in that format, without a rescan from the deploy block, and keeps the format', async () => {
    const store: Store = { record: (await deployContracts(chain.wallet(0))).record, dataDir: tempDir() };
    const x = testDevice('v1-cache-x');
    const y = testDevice('v1-cache-y');
    const writer = registry(store, { follow: false });
    await writer.enrol([x.enrolment]);
    await writer.close();

    // The cache as the earlier code wrote it (indented, devices at top level), with one device
    // the chain never had: a rescan from the deploy block would drop it, following on keeps it.
    const cachePath = join(store.dataDir, CACHE_FILE);
    const written = JSON.parse(readFileSync(cachePath, 'utf8')) as Record<string, unknown> & { devices: Record<string, unknown>[]; lastBlock: number };
    expect(Object.keys(written)).toEqual(CACHE_FIELDS);
    const ghost = testDevice('v1-cache-ghost');
    const ghostEntry = {
      deviceId: ghost.id,
      publicKey: ghost.enrolment.publicKey,
      patientRef: `0x${'ab'.repeat(32)}`,
      site: siteIdOf('default'),
      enrolledAtMs: 1_700_000_000_000,
      block: written.lastBlock,
    };
    const v1 = {
      version: 1,
      chainId: written['chainId'],
      contract: written['contract'],
      deployBlock: written['deployBlock'],
      lastBlock: written.lastBlock,
      lastBlockHash: written['lastBlockHash'],
      devices: [...written.devices, ghostEntry],
    };
    writeFileSync(cachePath, `${JSON.stringify(v1, null, 2)}\n`);

    const other = registry({ ...store, dataDir: tempDir() }, { follow: false });
    await other.enrol([y.enrolment]); // after the cached lastBlock
    await other.close();

    const { log, events } = captureLog();
    const r = registry(store, { follow: false, log });
    try {
      expect(r.get(ghost.id)).toBeDefined(); // served from the cache at once
      await r.sync();
      expect(r.get(y.id)).toBeDefined(); // the events after lastBlock were read
      expect(r.get(x.id)).toMatchObject({ patient: x.patient });
      expect(r.get(ghost.id)).toMatchObject({ enrolledAtMs: 1_700_000_000_000 }); // no rescan dropped it
      expect(r.status().lastBlock).toBeGreaterThan(written.lastBlock);
      expect(events('registry_reorg')).toEqual([]);
      expect(events('registry_rescanned')).toEqual([]);
      expect(events('registry_cache_ignored')).toEqual([]);
    } finally {
      await r.close();
    }
    const text = readFileSync(cachePath, 'utf8');
    expect(text.startsWith('{\n  "version": 1,\n')).toBe(true);
    const after = JSON.parse(text) as { devices: { deviceId: string }[] };
    expect(Object.keys(after)).toEqual(CACHE_FIELDS);
    expect(after.devices.map((d) => d.deviceId).sort()).toEqual([x.id, ghost.id, y.id].sort());
  });
});
