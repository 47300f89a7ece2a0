/**
 * gateway/registry/chain-registry.ts against a real anvil and the real DeviceRegistry
 * contract: enrolment through one registry seen by others on the same chain, what does and
 * does not reach the chain, refusals, idempotence, revocation and its event, the cache while
 * the chain is down, the `ref-` pseudonym of devices enrolled elsewhere, and reorgs.
 * Synchronisation is by sync()/ready() or by the registry's own events, never by sleeping.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { hexlify, type JsonRpcProvider } from 'ethers';
import { pino } from 'pino';
import { deployContracts, type DeploymentRecord } from '../../../gateway/chain/deploy.js';
import { deviceRegistryAt } from '../../../gateway/chain/contracts.js';
import { deviceIdToBytes8, patientRefOf, siteIdOf } from '../../../gateway/chain/ids.js';
import { findFreePort } from '../../../gateway/util/net.js';
import {
  CACHE_FILE,
  ChainRegistry,
  isChainRegistryError,
  type ChainRegistryErrorCode,
  type ChainRegistryOptions,
  type RegistryLog,
} from '../../../gateway/registry/chain-registry.js';
import { DIRECTORY_FILE, loadOrCreatePatientRefKey, PATIENT_REF_KEY_FILE, PseudonymDirectory } from '../../../gateway/registry/directory.js';
import { PSEUDONYM } from '../../../gateway/registry/registry.js';
import { localProvider, useAnvil } from '../../support/anvil.js';
import { until } from '../../support/device-registry-suite.js';
import { testDevice } from '../../support/devices.js';
import { mined } from '../../support/contracts.js';

const chain = useAnvil();

// A pino Logger is what the gateway passes; it must fit the registry's log type.
const pinoFits: RegistryLog = pino({ level: 'silent' });
void pinoFits;

let record: DeploymentRecord;
const dirs: string[] = [];
const open: ChainRegistry[] = [];
const extraProviders: JsonRpcProvider[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-chain-registry-'));
  dirs.push(d);
  return d;
}

/** A captured log, to assert what the registry reported. */
function captureLog(): { log: RegistryLog; events(name: string): Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg, ...obj });
  return { log: { info: at('info'), warn: at('warn'), error: at('error') }, events: (name) => lines.filter((l) => l['event'] === name) };
}

/** A registry on the test chain's DeviceRegistry; closed after the test. */
function registry(dataDir: string, opts: Partial<ChainRegistryOptions> = {}): ChainRegistry {
  const r = new ChainRegistry({
    provider: chain.provider,
    deviceRegistryAddress: record.deviceRegistry.address,
    deployBlock: record.deployBlock,
    dataDir,
    pollIntervalMs: 50,
    maxBackoffMs: 200,
    ...opts,
  });
  open.push(r);
  return r;
}

/** The registry with the hospital admin's key (dev account 0, granted HOSPITAL_ADMIN_ROLE at deployment). */
function adminRegistry(dataDir: string, opts: Partial<ChainRegistryOptions> = {}): ChainRegistry {
  return registry(dataDir, { signer: chain.wallet(0), follow: false, ...opts });
}

async function expectRegistryError(action: Promise<unknown>, code: ChainRegistryErrorCode): Promise<Record<string, unknown>> {
  const e = await action.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(isChainRegistryError(e, code), `expected ChainRegistryError ${code}, got ${String(e)}`).toBe(true);
  return { ...(e as { detail: Record<string, unknown> }).detail };
}

const utf8Hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex');

/** Every transaction input, log topic and log data of blocks (from, to], lowercase hex without 0x. */
async function chainBytes(from: number, to: number): Promise<{ txs: number; blobs: string[] }> {
  const blobs: string[] = [];
  let txs = 0;
  for (let n = from + 1; n <= to; n++) {
    const block = await chain.provider.getBlock(n, true);
    for (const tx of block?.prefetchedTransactions ?? []) {
      txs++;
      blobs.push(tx.data.toLowerCase().replace(/^0x/, ''));
      const receipt = await chain.provider.getTransactionReceipt(tx.hash);
      for (const log of receipt?.logs ?? [])
        blobs.push(log.data.toLowerCase().replace(/^0x/, ''), ...log.topics.map((t) => t.toLowerCase().replace(/^0x/, '')));
    }
  }
  return { txs, blobs };
}

beforeAll(async () => {
  ({ record } = await deployContracts(chain.wallet(0)));
});

afterEach(async () => {
  for (const r of open.splice(0)) await r.close();
  for (const p of extraProviders.splice(0)) p.destroy();
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('ChainRegistry: enrolment', () => {
  it('enrols through one registry; a follower on the same data dir sees key, pseudonym and sensors from its event, and a later read-only registry after its sync', async () => {
    const dir = tempDir();
    const follower = registry(dir); // a running gateway: started before the enrolment, reading the directory before it existed
    await follower.ready();
    const admin = adminRegistry(dir); // the CLI
    const dev = testDevice('enrol-a', 'pt-enrol-a');
    const entry = { ...dev.enrolment, sensors: ['heart_rate', 'spo2'], firmware: '1.4.2' };

    const seen = until(follower, () => follower.get(dev.id) !== undefined, 'the follower to see the enrolment');
    const result = await admin.enrol([entry]);
    expect(result).toEqual({ enrolled: [dev.id], unchanged: [], refused: [] });
    // enrol resolves with the device already in the local view.
    const own = admin.get(dev.id);
    expect(own?.patient).toBe('pt-enrol-a');

    await seen;
    const rec = follower.get(dev.id)!;
    expect(Buffer.from(rec.publicKey).equals(Buffer.from(dev.keys.publicKey))).toBe(true);
    expect(rec).toMatchObject({ deviceId: dev.id, patient: 'pt-enrol-a', sensors: ['heart_rate', 'spo2'], firmware: '1.4.2' });
    expect(rec.revokedAtMs).toBeUndefined();
    const onChain = await deviceRegistryAt(record.deviceRegistry.address, chain.provider).device(deviceIdToBytes8(dev.id));
    expect(rec.enrolledAtMs).toBe(Number(onChain.enrolledAtMs));
    expect(follower.list().map((r) => r.deviceId)).toContain(dev.id);

    const later = registry(dir, { follow: false });
    await later.sync();
    expect(later.get(dev.id)).toMatchObject({ deviceId: dev.id, patient: 'pt-enrol-a', sensors: ['heart_rate', 'spo2'], enrolledAtMs: rec.enrolledAtMs });
    expect(later.status()).toMatchObject({ following: true, devices: follower.status().devices, chainId: 31337 });
  });

  it('puts the patientRef made with the data dir patient-ref.key (mode 0600) on chain, and never the pseudonym or the sensor list', async () => {
    const dir = tempDir();
    const admin = adminRegistry(dir, { site: 'icu-north' });
    const dev = testDevice('never-on-chain', 'pt-secret-7731');
    const start = await chain.provider.getBlockNumber();
    await admin.enrol([{ ...dev.enrolment, sensors: ['heart_rate', 'skin_temperature'] }]);
    await admin.revoke(dev.id, admin.get(dev.id)!.enrolledAtMs + 1000);
    const end = await chain.provider.getBlockNumber();

    const keyPath = join(dir, PATIENT_REF_KEY_FILE);
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    const key = loadOrCreatePatientRefKey(dir);
    expect(key).toMatchObject({ created: false, path: keyPath });
    expect(key.key).toHaveLength(32);
    const onChain = await deviceRegistryAt(record.deviceRegistry.address, chain.provider).device(deviceIdToBytes8(dev.id));
    expect(onChain.patientRef).toBe(patientRefOf('pt-secret-7731', key.key));
    expect(onChain.site).toBe(siteIdOf('icu-north'));

    const { txs, blobs } = await chainBytes(start, end);
    expect(txs).toBe(2); // the enrolment and the revocation, both scanned
    for (const needle of ['pt-secret-7731', 'heart_rate', 'skin_temperature', 'icu-north']) {
      for (const blob of blobs) expect(blob.includes(utf8Hex(needle)), `"${needle}" found on chain`).toBe(false);
    }
    const directory = JSON.parse(readFileSync(join(dir, DIRECTORY_FILE), 'utf8')) as { devices: Record<string, unknown> };
    expect(directory.devices[dev.id]).toEqual({ patient: 'pt-secret-7731', patientRef: onChain.patientRef, sensors: ['heart_rate', 'skin_temperature'] });
  });

  it('refuses bad keys, bad pseudonyms, bad ids and id/key mismatches with the file registry reasons, sending no transaction', async () => {
    const admin = adminRegistry(tempDir());
    await admin.sync();
    const a = testDevice('refuse-a');
    const b = testDevice('refuse-b');
    const nonce = await chain.wallet(0).getNonce('pending');
    const head = await chain.provider.getBlockNumber();
    const result = await admin.enrol([
      { ...a.enrolment, publicKey: `01${'00'.repeat(31)}` }, // the identity point: small order
      { ...a.enrolment, patient: 'John Smith' },
      { ...a.enrolment, deviceId: b.id }, // a's key under b's id
      { ...a.enrolment, deviceId: 'NOT-AN-ID' },
    ]);
    expect(result.enrolled).toEqual([]);
    expect(result.unchanged).toEqual([]);
    expect(result.refused.map((r) => [r.deviceId, r.reason])).toEqual([
      [a.id, 'KEY_SMALL_ORDER'],
      [a.id, 'BAD_PSEUDONYM'],
      [b.id, 'DEVICE_ID_MISMATCH'],
      ['NOT-AN-ID', 'BAD_DEVICE_ID'],
    ]);
    expect(await chain.wallet(0).getNonce('pending')).toBe(nonce);
    expect(await chain.provider.getBlockNumber()).toBe(head);
    expect(admin.get(a.id)).toBeUndefined();
  });

  it('reports a device enrolled already as unchanged without a transaction, and one enrolled for another patient as KEY_CONFLICT', async () => {
    const admin = adminRegistry(tempDir());
    const dev = testDevice('re-enrol', 'pt-re-enrol');
    const other = testDevice('re-enrol-2', 'pt-re-enrol-2');
    expect(await admin.enrol([dev.enrolment])).toEqual({ enrolled: [dev.id], unchanged: [], refused: [] });
    const nonce = await chain.wallet(0).getNonce('pending');

    const again = await admin.enrol([dev.enrolment, { ...dev.enrolment, patient: 'pt-someone-else' }]);
    expect(again.enrolled).toEqual([]);
    expect(again.unchanged).toEqual([dev.id]);
    expect(again.refused).toEqual([{ deviceId: dev.id, reason: 'KEY_CONFLICT', detail: expect.stringContaining('another patient') as string }]);
    expect(await chain.wallet(0).getNonce('pending')).toBe(nonce);

    // One batch naming a new device twice, for two patients: enrolled once, the second refused.
    const twice = await admin.enrol([other.enrolment, { ...other.enrolment, patient: 'pt-other-patient' }]);
    expect(twice.enrolled).toEqual([other.id]);
    expect(twice.refused.map((r) => [r.deviceId, r.reason])).toEqual([[other.id, 'KEY_CONFLICT']]);
    expect(await chain.wallet(0).getNonce('pending')).toBe(nonce + 1);
    expect(admin.get(other.id)?.patient).toBe('pt-re-enrol-2');
  });

  it('enrols a batch with consecutive nonces, and re-enrolling writes back a lost directory entry', async () => {
    const dir = tempDir();
    const admin = adminRegistry(dir);
    const devs = ['batch-1', 'batch-2', 'batch-3'].map((n) => testDevice(n));
    const nonce = await chain.wallet(0).getNonce('pending');
    const result = await admin.enrol(devs.map((d) => d.enrolment));
    expect(result.enrolled).toEqual(devs.map((d) => d.id));
    expect(await chain.wallet(0).getNonce('pending')).toBe(nonce + 3);
    await admin.close();

    rmSync(join(dir, DIRECTORY_FILE));
    const restarted = adminRegistry(dir);
    await restarted.sync();
    expect(restarted.get(devs[0]!.id)?.patient).toMatch(/^ref-[0-9a-f]{16}$/);
    const again = await restarted.enrol(devs.map((d) => d.enrolment));
    expect(again.unchanged).toEqual(devs.map((d) => d.id));
    expect(devs.map((d) => restarted.get(d.id)?.patient)).toEqual(devs.map((d) => d.patient));
  });

  it('writes the directory before sending: a signer without HOSPITAL_ADMIN_ROLE is refused on chain, and its entry stays inert', async () => {
    const dir = tempDir();
    const outsider = registry(dir, { signer: chain.wallet(3), follow: false });
    const dev = testDevice('not-authorized', 'pt-not-authorized');
    const detail = await expectRegistryError(outsider.enrol([dev.enrolment]), 'REGISTRY_NOT_AUTHORIZED');
    expect(detail['account']).toBe(chain.wallet(3).address);
    expect(new PseudonymDirectory(join(dir, DIRECTORY_FILE)).get(dev.id)?.patient).toBe('pt-not-authorized');
    expect(outsider.get(dev.id)).toBeUndefined();
    await expectRegistryError(outsider.revoke(dev.id, Date.now()), 'REGISTRY_NOT_AUTHORIZED');
    await expectRegistryError(registry(dir, { follow: false }).enrol([dev.enrolment]), 'REGISTRY_NO_SIGNER');

    const admin = adminRegistry(dir);
    expect((await admin.enrol([dev.enrolment])).enrolled).toEqual([dev.id]);
    expect(admin.get(dev.id)?.patient).toBe('pt-not-authorized');
  });
});

describe('ChainRegistry: revocation', () => {
  it('revokes with an effective time: the follower emits revoked once and get() carries revokedAtMs; a second revoke returns the record as it is', async () => {
    const dir = tempDir();
    const follower = registry(dir);
    const admin = adminRegistry(dir);
    const dev = testDevice('revoke-a');
    await admin.enrol([dev.enrolment]);
    await follower.ready();
    await until(follower, () => follower.get(dev.id) !== undefined, 'the enrolment');
    let adminRevocations = 0;
    admin.on('revoked', () => adminRevocations++);

    const at = admin.get(dev.id)!.enrolledAtMs + 60_000;
    const event = once(follower, 'revoked') as Promise<[{ deviceId: string; revokedAtMs?: number }]>;
    const rec = await admin.revoke(dev.id, at);
    expect(rec).toMatchObject({ deviceId: dev.id, revokedAtMs: at });
    expect(admin.get(dev.id)?.revokedAtMs).toBe(at);
    const [revoked] = await event;
    expect(revoked).toMatchObject({ deviceId: dev.id, revokedAtMs: at });
    expect(follower.get(dev.id)?.revokedAtMs).toBe(at);

    const again = await admin.revoke(dev.id, at + 5_000);
    expect(again.revokedAtMs).toBe(at);
    await admin.sync();
    expect(adminRevocations).toBe(1);
    expect(admin.status()).toMatchObject({ revoked: expect.any(Number) as number });
    expect(admin.status().revoked).toBeGreaterThanOrEqual(1);
  });

  it('refuses to revoke an unknown device, and a time before the enrolment with both times', async () => {
    const admin = adminRegistry(tempDir());
    const unknown = testDevice('revoke-unknown');
    const u = await expectRegistryError(admin.revoke(unknown.id, Date.now()), 'REGISTRY_UNKNOWN_DEVICE');
    expect(u['deviceId']).toBe(unknown.id);

    const dev = testDevice('revoke-early');
    await admin.enrol([dev.enrolment]);
    const enrolledAtMs = admin.get(dev.id)!.enrolledAtMs;
    const d = await expectRegistryError(admin.revoke(dev.id, enrolledAtMs - 1), 'REGISTRY_REVOCATION_BEFORE_ENROLMENT');
    expect(d).toEqual({ deviceId: dev.id, enrolledAtMs, effectiveTimeMs: enrolledAtMs - 1 });
    expect(admin.get(dev.id)?.revokedAtMs).toBeUndefined();
    await expect(admin.revoke('not-an-id', Date.now())).rejects.toThrow(TypeError);
  });
});

describe('ChainRegistry: devices enrolled elsewhere', () => {
  it('gives a device without a directory entry, or with one for another patientRef, the ref- pseudonym of its patientRef', async () => {
    const dir = tempDir();
    const { log, events } = captureLog();
    const follower = registry(dir, { log });
    await follower.ready();
    const otherSiteKey = createHash('sha256').update('another hospital site key').digest();
    const contract = deviceRegistryAt(record.deviceRegistry.address, chain.wallet(0));
    const elsewhere = testDevice('other-site');
    const mismatched = testDevice('other-site-2');
    const refA = patientRefOf('pt-elsewhere', otherSiteKey);
    const refB = patientRefOf('pt-elsewhere-2', otherSiteKey);
    // A stale local entry for the second device, naming another patientRef than the chain will.
    new PseudonymDirectory(join(dir, DIRECTORY_FILE)).put(
      new Map([[mismatched.id, { patient: 'pt-stale', patientRef: `0x${'ab'.repeat(32)}`, sensors: ['heart_rate'] }]]),
    );

    await mined(contract.enrol(deviceIdToBytes8(elsewhere.id), hexlify(elsewhere.keys.publicKey), refA, siteIdOf('other-site')));
    await mined(contract.enrol(deviceIdToBytes8(mismatched.id), hexlify(mismatched.keys.publicKey), refB, siteIdOf('other-site')));
    await until(follower, () => follower.get(elsewhere.id) !== undefined && follower.get(mismatched.id) !== undefined, 'the other site enrolments');

    const a = follower.get(elsewhere.id)!;
    expect(a).toMatchObject({ patient: `ref-${refA.slice(2, 18)}`, sensors: [] });
    expect(PSEUDONYM.test(a.patient)).toBe(true);
    expect(Buffer.from(a.publicKey).equals(Buffer.from(elsewhere.keys.publicKey))).toBe(true);
    expect(follower.get(mismatched.id)).toMatchObject({ patient: `ref-${refB.slice(2, 18)}`, sensors: [] });
    expect(events('registry_directory_mismatch').map((e) => e['device'])).toEqual([mismatched.id]);
  });
});

describe('ChainRegistry: cache and an unreachable chain', () => {
  it('serves the cache while the RPC endpoint is down (following false, logged once), then catches up with the events it missed', async () => {
    const dir = tempDir();
    const first = adminRegistry(dir);
    const x = testDevice('cache-x', 'pt-cache-x');
    const y = testDevice('cache-y', 'pt-cache-y');
    await first.enrol([x.enrolment]);
    await first.close();
    expect(existsSync(join(dir, CACHE_FILE))).toBe(true);

    const cachePath = join(dir, CACHE_FILE);
    const stoppedCache = readFileSync(cachePath, 'utf8');
    // The contract holds the devices of the earlier tests too.
    const cached = JSON.parse(stoppedCache) as { devices: { revokedAtMs?: number }[] };
    const cachedRevoked = cached.devices.filter((d) => d.revokedAtMs !== undefined).length;

    // While that registry is stopped, the CLI enrols y and revokes x; the next start reads
    // the cache as the stopped registry left it (restored here: the CLI wrote its own).
    const cli = adminRegistry(dir);
    await cli.enrol([y.enrolment]);
    const revokedAt = cli.get(x.id)!.enrolledAtMs + 1_000;
    await cli.revoke(x.id, revokedAt);
    await cli.close();
    writeFileSync(cachePath, stoppedCache);

    const deadUrl = `http://127.0.0.1:${await findFreePort()}`;
    const dead = localProvider(deadUrl, 31337);
    extraProviders.push(dead);
    const { log, events } = captureLog();
    const down = registry(dir, { provider: dead, follow: false, log });
    expect(down.get(x.id)).toMatchObject({ patient: 'pt-cache-x', sensors: ['heart_rate'] });
    expect(down.get(x.id)?.revokedAtMs).toBeUndefined();
    for (let i = 0; i < 3; i++) await expect(down.sync()).rejects.toThrow();
    await expect(down.ready()).rejects.toThrow();
    const st = down.status();
    expect(st).toMatchObject({ following: false, devices: cached.devices.length, revoked: cachedRevoked, failures: 4 });
    expect(st.lastError).toBeTruthy();
    expect(events('registry_chain_unreachable')).toHaveLength(1);
    expect(down.get(x.id)?.patient).toBe('pt-cache-x');
    await down.close();

    const back = registry(dir);
    expect(back.get(x.id)?.revokedAtMs).toBeUndefined(); // served from the cache before any round
    const revoked = once(back, 'revoked') as Promise<[{ deviceId: string; revokedAtMs?: number }]>;
    await back.ready();
    expect((await revoked)[0]).toMatchObject({ deviceId: x.id, revokedAtMs: revokedAt });
    expect(back.get(y.id)).toMatchObject({ patient: 'pt-cache-y' });
    expect(back.status()).toMatchObject({ following: true, devices: cached.devices.length + 1, revoked: cachedRevoked + 1 });
  });

  it('drops a cache of another chain id at first contact, and rebuilds it', async () => {
    const dir = tempDir();
    const admin = adminRegistry(dir);
    const dev = testDevice('cache-other-chain');
    await admin.enrol([dev.enrolment]);
    await admin.close();
    const cachePath = join(dir, CACHE_FILE);
    const cache = JSON.parse(readFileSync(cachePath, 'utf8')) as { chainId: number; devices: { deviceId: string }[] };
    cache.chainId = 1; // as if written against mainnet
    cache.devices = cache.devices.filter((d) => d.deviceId === dev.id);
    writeFileSync(cachePath, JSON.stringify(cache));

    const told = registry(dir, { chainId: 31337, follow: false, log: captureLog().log });
    expect(told.get(dev.id)).toBeUndefined(); // the expected chain id is known: dropped at load
    await told.close();

    const { log, events } = captureLog();
    const r = registry(dir, { log });
    expect(r.get(dev.id)).toBeDefined(); // nothing tells it yet that the cache is of another chain
    const changed = once(r, 'changed');
    await r.ready();
    await changed;
    expect(events('registry_cache_ignored')).toMatchObject([{ reason: 'another chain id', cached: 1, chainId: 31337 }]);
    expect(r.get(dev.id)).toBeDefined(); // rebuilt from this chain, where the device is enrolled
    expect(r.status().devices).toBeGreaterThan(1);
    await r.close();
    expect((JSON.parse(readFileSync(cachePath, 'utf8')) as { chainId: number }).chainId).toBe(31337);
  });

  it('ignores a cache of another contract and rebuilds it', async () => {
    const dir = tempDir();
    const admin = adminRegistry(dir);
    const dev = testDevice('cache-other-contract');
    await admin.enrol([dev.enrolment]);
    await admin.close();

    const second = (await deployContracts(chain.wallet(0))).record;
    const { log, events } = captureLog();
    const r = registry(dir, { deviceRegistryAddress: second.deviceRegistry.address, deployBlock: second.deployBlock, log });
    expect(r.get(dev.id)).toBeUndefined();
    expect(events('registry_cache_ignored').map((e) => e['reason'])).toEqual(['another contract']);
    await r.ready();
    expect(r.list()).toEqual([]);
    await r.close();
    const cache = JSON.parse(readFileSync(join(dir, CACHE_FILE), 'utf8')) as { contract: string; devices: unknown[] };
    expect(cache).toMatchObject({ contract: second.deviceRegistry.address, devices: [] });
  });

  it('keeps serving while the node is down, and follows the restarted chain', async () => {
    const dir = tempDir();
    const admin = adminRegistry(dir);
    const x = testDevice('restart-x');
    const y = testDevice('restart-y');
    await admin.enrol([x.enrolment]);
    const { log, events } = captureLog();
    const follower = registry(dir, { log });
    await follower.ready();
    expect(follower.get(x.id)).toBeDefined();

    await chain.handle.stop();
    await expect(follower.sync()).rejects.toThrow();
    expect(follower.status().following).toBe(false);
    expect(follower.get(x.id)?.patient).toBe(x.patient);

    await chain.handle.restart();
    await admin.enrol([y.enrolment]);
    await admin.revoke(x.id, admin.get(x.id)!.enrolledAtMs + 1);
    await until(
      follower,
      () => follower.get(y.id) !== undefined && follower.get(x.id)?.revokedAtMs !== undefined,
      'the follower to catch up after the restart',
    );
    expect(follower.status()).toMatchObject({ following: true });
    expect(follower.get(y.id)?.patient).toBe(y.patient);
    // anvil reloads the same blocks: the follower went on from its last block, no rescan.
    expect(events('registry_chain_reachable')).toHaveLength(1);
    expect(events('registry_reorg')).toEqual([]);
  });
});

describe('ChainRegistry: reorganisations', () => {
  it('rescans from the deploy block when the block it ended at was replaced, and forgets the reverted enrolment', async () => {
    const dir = tempDir();
    const { log, events } = captureLog();
    const admin = adminRegistry(dir, { log });
    const kept = testDevice('reorg-kept');
    const lost = testDevice('reorg-lost');
    await admin.enrol([kept.enrolment]);

    const snap = (await chain.provider.send('evm_snapshot', [])) as string;
    await admin.enrol([lost.enrolment]);
    expect(admin.get(lost.id)).toBeDefined();
    const sawUpTo = admin.status().lastBlock;

    await chain.provider.send('evm_revert', [snap]);
    await chain.provider.send('anvil_mine', ['0x3']); // a new branch, longer than the old one
    const head = await chain.provider.getBlockNumber();
    expect(head).toBeGreaterThan(sawUpTo);

    const changed = once(admin, 'changed');
    await admin.sync();
    await changed;
    expect(admin.get(lost.id)).toBeUndefined();
    expect(admin.get(kept.id)).toBeDefined();
    expect(admin.status().lastBlock).toBe(head);
    expect(events('registry_reorg')).toHaveLength(1);
    expect(events('registry_reorg')[0]).toMatchObject({ block: sawUpTo });
    const cache = JSON.parse(readFileSync(join(dir, CACHE_FILE), 'utf8')) as { devices: { deviceId: string }[]; lastBlock: number };
    expect(cache.devices.map((d) => d.deviceId)).not.toContain(lost.id);
    expect(cache.lastBlock).toBe(head);
  });
});
