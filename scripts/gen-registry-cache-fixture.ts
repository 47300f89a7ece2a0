/**
 * Writes test/data/registry-cache-v1/: a registry cache (registry-cache.json) and its pseudonym
 * directory (directory.json) as ChainRegistry writes them, from a real anvil. The fixture was
 * first written by the ChainRegistry that kept its own polling and cache code (before it moved
 * onto gateway/chain/log-follower.ts), so the test that loads it
 * (test/gateway/registry/chain-registry.test.ts) shows that caches of gateways running that
 * code still load. Re-running it is only needed to add a case; block times and hashes differ
 * per run.
 *
 *   npm run build && node dist/scripts/gen-registry-cache-fixture.js [--out DIR]
 *
 * Three devices with fixed keys: two enrolled, one of them revoked, and one enrolled with a
 * key that breaks the key rule (PROTOCOL.md §2.2: it is on chain, so it is in the cache, and
 * the registry must refuse it at load).
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { devWallet, startAnvil } from '../gateway/chain/anvil.js';
import { deployContracts } from '../gateway/chain/deploy.js';
import { deviceRegistryAt } from '../gateway/chain/contracts.js';
import { deviceIdToBytes8, patientRefOf, siteIdOf } from '../gateway/chain/ids.js';
import { ChainRegistry, CACHE_FILE } from '../gateway/registry/chain-registry.js';
import { DIRECTORY_FILE } from '../gateway/registry/directory.js';
import { deviceIdFromKey, generateKeys } from '../firmware-proto/signing.js';
import { JsonRpcProvider } from 'ethers';

/** The patient-ref key of the fixture (DEV ONLY: 32 fixed bytes). */
export const FIXTURE_PATIENT_REF_KEY = createHash('sha256').update('registry-cache-v1 fixture patient-ref key').digest();
/** A small-order key (the identity point, PROTOCOL.md §2.2): on chain, refused by the gateway. */
const IDENTITY_KEY = `01${'00'.repeat(31)}`;

function device(label: string): { deviceId: string; publicKey: string; patient: string; sensors: string[] } {
  const keys = generateKeys(createHash('sha256').update(`registry-cache-v1:${label}`).digest());
  return { deviceId: deviceIdFromKey(keys.publicKey), publicKey: Buffer.from(keys.publicKey).toString('hex'), patient: `pt-${label}`, sensors: ['heart_rate'] };
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--out');
  const out = resolve(i > 0 ? process.argv[i + 1]! : 'test/data/registry-cache-v1');
  const work = mkdtempSync(join(tmpdir(), 'vp-registry-fixture-'));
  const anvil = await startAnvil({ dataDir: join(work, 'anvil'), checkpointIntervalMs: 0 });
  const provider = new JsonRpcProvider(anvil.url, anvil.chainId, { staticNetwork: true, cacheTimeout: -1, pollingInterval: 20 });
  try {
    const admin = devWallet(0, provider);
    const { record } = await deployContracts(admin);
    const dataDir = join(work, 'registry');
    const registry = new ChainRegistry({
      provider,
      deviceRegistryAddress: record.deviceRegistry.address,
      deployBlock: record.deployBlock,
      chainId: anvil.chainId,
      dataDir,
      signer: admin,
      site: 'icu-north',
      patientRefKey: FIXTURE_PATIENT_REF_KEY,
      follow: false,
    });
    const [kept, revoked] = [device('kept'), device('revoked')];
    await registry.enrol([kept, revoked]);
    const enrolled = registry.get(revoked.deviceId)!.enrolledAtMs;
    await registry.revoke(revoked.deviceId, enrolled + 60_000);
    // The bad key goes on chain directly, as any HOSPITAL_ADMIN_ROLE account can (docs/contracts.md, "The key rule").
    const badId = deviceIdFromKey(Buffer.from(IDENTITY_KEY, 'hex'));
    const tx = await deviceRegistryAt(record.deviceRegistry.address, admin).enrol(
      deviceIdToBytes8(badId),
      `0x${IDENTITY_KEY}`,
      patientRefOf('pt-bad-key', FIXTURE_PATIENT_REF_KEY),
      siteIdOf('icu-north'),
    );
    await tx.wait();
    await registry.sync();
    await registry.close();
    mkdirSync(out, { recursive: true });
    for (const f of [CACHE_FILE, DIRECTORY_FILE]) copyFileSync(join(dataDir, f), join(out, f));
    process.stdout.write(
      `wrote ${out}: contract ${record.deviceRegistry.address}, deploy block ${record.deployBlock}, devices ${kept.deviceId} ${revoked.deviceId} ${badId}\n`,
    );
  } finally {
    provider.destroy();
    await anvil.kill();
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
