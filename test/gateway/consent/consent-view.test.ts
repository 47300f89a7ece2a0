/**
 * gateway/consent/consent-view.ts against a real anvil and the real ConsentRegistry: the
 * events a live transport cuts subscriptions on (granted, revoked with the revoking block's
 * time, expired by a timer at the expiry instant), the cache across a restart and while the
 * chain is down, a reorganisation, pseudonyms through the device registry's directory, and,
 * last (it moves the chain's clock ahead), decide()/checkGrant() against the contract's
 * isPermitted()/checkGrant() over many random cases. Synchronisation is by sync()/syncTo() or
 * by the view's own events, never by sleeping.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { JsonRpcProvider, type Filter, type FilterByBlockHash, type HDNodeWallet, type Log, type TransactionReceipt } from 'ethers';
import {
  consentRegistryAt,
  consentRegistryInterface as iface,
  grantStatusName,
  ROLES,
  sensorMaskOf,
  type ConsentRegistryContract,
  type ConsentRegistryErrors,
} from '../../../gateway/chain/contracts.js';
import { patientRefOf } from '../../../gateway/chain/ids.js';
import {
  CONSENT_CACHE_FILE,
  ConsentView,
  type ConsentGrant,
  type ConsentViewOptions,
  type DecisionCode,
  type RevokedEvent,
} from '../../../gateway/consent/consent-view.js';
import { fallbackPseudonym, PseudonymDirectory } from '../../../gateway/registry/directory.js';
import { findFreePort } from '../../../gateway/util/net.js';
import { localProvider, useAnvil } from '../../support/anvil.js';
import { prng } from '../../support/prng.js';
import { decodeRevert } from '../../../gateway/chain/contracts.js';
import { deployConsentRegistry, eventsOf, mined } from '../../support/contracts.js';

const chain = useAnvil();

const KEY = createHash('sha256').update('test patient-ref key (consent view)').digest();
const PURPOSE = `0x${createHash('sha256').update('purpose: consent view tests').digest('hex')}`;
const T0 = 1_795_000_000_000n;
const HOUR = 3_600_000n;
const HR = 1;
const SPO2 = 2;

let admin: HDNodeWallet;
let patients: HDNodeWallet[];
let researchers: HDNodeWallet[];
let outsider: HDNodeWallet;
const dirs: string[] = [];
const views: ConsentView[] = [];
const providers: JsonRpcProvider[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-consent-view-'));
  dirs.push(d);
  return d;
}

/** A fresh ConsentRegistry with `admin` as hospital admin and patient i bound to ref(i). */
async function deployBound(): Promise<{ registry: ConsentRegistryContract; deployBlock: number; refs: string[] }> {
  const registry = await deployConsentRegistry(admin, admin.address);
  const deployBlock = await chain.provider.getBlockNumber(); // automine: the deployment's block
  await mined(registry.grantRole(ROLES.HOSPITAL_ADMIN, admin.address));
  const refs = patients.map((_, i) => patientRefOf(`pt-view-${i}`, KEY));
  for (const [i, p] of patients.entries()) await mined(registry.bindPatient(refs[i]!, p.address));
  return { registry, deployBlock, refs };
}

function view(registry: ConsentRegistryContract, deployBlock: number, dataDir: string, opts: Partial<ConsentViewOptions> = {}): ConsentView {
  const v = new ConsentView({
    provider: chain.provider,
    consentRegistryAddress: registry.target as string,
    deployBlock,
    dataDir,
    pollIntervalMs: 50,
    maxBackoffMs: 200,
    ...opts,
  });
  views.push(v);
  return v;
}

interface GrantOpts {
  sensors?: number[];
  from?: bigint;
  to?: bigint;
  expiresAtMs?: bigint;
}

async function grant(
  registry: ConsentRegistryContract,
  patient: HDNodeWallet,
  ref: string,
  researcher: string,
  o: GrantOpts = {},
): Promise<{ id: bigint; receipt: TransactionReceipt }> {
  const now = BigInt(await chain.latestTimestamp()) * 1000n;
  const receipt = await mined(
    consentRegistryAt(registry.target as string, patient).grant(
      ref,
      researcher,
      sensorMaskOf(o.sensors ?? [HR]),
      o.from ?? T0,
      o.to ?? T0 + HOUR,
      o.expiresAtMs ?? now + 30n * 24n * HOUR,
      PURPOSE,
    ),
  );
  const ev = eventsOf(receipt, iface).find((e) => e.name === 'ConsentGranted');
  if (!ev) throw new Error('no ConsentGranted');
  return { id: ev.args[0] as bigint, receipt };
}

/** The next `name` event of `v`, with the wall time it was emitted at. */
function next<K extends 'granted' | 'revoked' | 'expired'>(
  v: ConsentView,
  name: K,
): Promise<{ at: number; value: K extends 'revoked' ? RevokedEvent : ConsentGrant }> {
  return new Promise((resolve) => {
    v.once(name, ((value: unknown) => resolve({ at: Date.now(), value: value as K extends 'revoked' ? RevokedEvent : ConsentGrant })) as never);
  });
}

beforeAll(() => {
  admin = chain.wallet(0);
  patients = [1, 2, 3].map((i) => chain.wallet(i));
  researchers = [4, 5, 6].map((i) => chain.wallet(i));
  outsider = chain.wallet(7);
});

afterEach(async () => {
  for (const v of views.splice(0)) await v.close();
});

afterAll(() => {
  for (const p of providers) p.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('ConsentView: events for the live transport', () => {
  it("emits granted, then revoked with the revoking block's number, hash and time, within 2 s of sending the revocation (500 ms polling)", async () => {
    const { registry, deployBlock, refs } = await deployBound();
    const v = view(registry, deployBlock, tempDir(), { pollIntervalMs: 500 });
    await v.ready();
    const granted = next(v, 'granted');
    const { id } = await grant(registry, patients[0]!, refs[0]!, researchers[0]!.address, { sensors: [HR, SPO2] });
    expect((await granted).value).toMatchObject({
      grantId: id,
      patientRef: refs[0],
      researcher: researchers[0]!.address,
      sensorMask: sensorMaskOf([HR, SPO2]),
      revokedAtMs: 0n,
    });
    expect(v.decide(researchers[0]!.address, refs[0]!, HR, T0)).toEqual({ ok: true, grantId: id });

    const revoked = next(v, 'revoked');
    const sentAt = Date.now();
    const receipt = await mined(consentRegistryAt(registry.target as string, patients[0]!).revoke(id));
    const ev = await revoked;
    const block = (await chain.provider.getBlock(receipt.blockNumber))!;
    expect(ev.value).toMatchObject({ cause: 'revoked', blockNumber: receipt.blockNumber, txHash: receipt.hash, revokedAtMs: block.timestamp * 1000 });
    expect(ev.value.grant.revokedAtMs).toBe(BigInt(block.timestamp) * 1000n);
    // Ordering: the event follows the transaction; the view refuses from then on, with the reason.
    expect(ev.at).toBeGreaterThanOrEqual(sentAt);
    expect(v.decide(researchers[0]!.address, refs[0]!, HR, T0)).toEqual({ ok: false, code: 'REVOKED' });
    expect(v.checkGrant(id, researchers[0]!.address, HR, T0)).toBe('REVOKED');
    const sinceSent = ev.at - sentAt;
    const sinceBlockTime = ev.at - block.timestamp * 1000; // block time has whole seconds: up to 1 s more
    console.log(
      `revocation → 'revoked' event: ${sinceSent} ms after the revoke was sent (automine), ${sinceBlockTime} ms after the block's timestamp (whole seconds), poll 500 ms`,
    );
    expect(sinceSent).toBeLessThan(2000);
  });

  it('emits expired from a timer at the expiry instant, not from polling, and decide() turns EXPIRED as the contract does', async () => {
    const { registry, deployBlock, refs } = await deployBound();
    const v = view(registry, deployBlock, tempDir(), { follow: false });
    await v.ready();
    const expiresAtMs = BigInt(Date.now() + 1500);
    const { id, receipt } = await grant(registry, patients[1]!, refs[1]!, researchers[1]!.address, { expiresAtMs });
    const expired = next(v, 'expired');
    await v.syncTo(receipt.blockNumber); // one round; no more polling after it (follow: false)
    expect(v.decide(researchers[1]!.address, refs[1]!, HR, T0)).toEqual({ ok: true, grantId: id });
    const ev = await expired;
    expect(ev.value.grantId).toBe(id);
    expect(ev.at).toBeGreaterThanOrEqual(Number(expiresAtMs));
    console.log(`expiry → 'expired' event: ${ev.at - Number(expiresAtMs)} ms after expiresAtMs`);
    expect(ev.at - Number(expiresAtMs)).toBeLessThan(2000);
    expect(v.decide(researchers[1]!.address, refs[1]!, HR, T0)).toEqual({ ok: false, code: 'EXPIRED' });
    // The contract agrees once a block carries a time at or after the expiry.
    const s = Math.ceil(Number(expiresAtMs) / 1000);
    if ((await chain.latestTimestamp()) < s) await chain.setNextBlockTimestamp(s);
    await chain.provider.send('evm_mine', []);
    expect(grantStatusName(await registry.checkGrant(id, researchers[1]!.address, HR, T0))).toBe('EXPIRED');
    // A revoked grant's timer is disarmed: revoke before expiry, and no 'expired' follows.
    const { id: id2, receipt: r2 } = await grant(registry, patients[1]!, refs[1]!, researchers[1]!.address, { expiresAtMs: BigInt(Date.now() + 60_000) });
    await mined(consentRegistryAt(registry.target as string, patients[1]!).revoke(id2));
    const seen: bigint[] = [];
    v.on('expired', (g) => seen.push(g.grantId));
    await v.syncTo(r2.blockNumber + 1);
    expect(v.grant(id2)?.revokedAtMs).not.toBe(0n);
    expect(v.status()).toMatchObject({ grants: 2, inForce: 0, patients: 3 });
    expect(seen).toEqual([]);
  });

  it('waits for the configured confirmations before applying an event', async () => {
    const { registry, deployBlock, refs } = await deployBound();
    const v = view(registry, deployBlock, tempDir(), { follow: false, confirmations: 3 });
    const { id, receipt } = await grant(registry, patients[0]!, refs[0]!, researchers[2]!.address);
    await v.sync();
    expect(v.grant(id)).toBeUndefined();
    expect(v.decide(researchers[2]!.address, refs[0]!, HR, T0)).toEqual({ ok: false, code: 'NO_GRANT' });
    await chain.provider.send('anvil_mine', ['0x2']);
    await v.sync();
    expect(v.grant(id)).toMatchObject({ grantId: id, block: receipt.blockNumber, txHash: receipt.hash });
  });
});

class CountingProvider extends JsonRpcProvider {
  readonly filters: Filter[] = [];
  override async getLogs(filter: Filter | FilterByBlockHash): Promise<Log[]> {
    this.filters.push(filter as Filter);
    return super.getLogs(filter);
  }
}

describe('ConsentView: cache, restart and an unreachable chain', () => {
  it('restarts from its cache file (no rescan from the deploy block), serves the cache while the chain is down, then catches up with what it missed', async () => {
    const { registry, deployBlock, refs } = await deployBound();
    const dir = tempDir();
    const r = researchers[0]!.address;
    const first = view(registry, deployBlock, dir);
    const { id: g1, receipt } = await grant(registry, patients[2]!, refs[2]!, r, { sensors: [SPO2] });
    await first.syncTo(receipt.blockNumber);
    // Written as soon as a round changed the view, not only at close.
    const cache = JSON.parse(readFileSync(join(dir, CONSENT_CACHE_FILE), 'utf8')) as { lastBlock: number; contract: string; data: { grants: unknown[] } };
    expect(cache).toMatchObject({ contract: registry.target, data: { grants: [expect.objectContaining({ id: g1.toString() })] } });
    expect(cache.lastBlock).toBeGreaterThanOrEqual(receipt.blockNumber);
    await first.close();

    // While it is stopped: g1 revoked, g2 granted.
    const revokeReceipt = await mined(consentRegistryAt(registry.target as string, patients[2]!).revoke(g1));
    const { id: g2 } = await grant(registry, patients[2]!, refs[2]!, r, { sensors: [HR] });

    const dead = localProvider(`http://127.0.0.1:${await findFreePort()}`, chain.handle.chainId);
    providers.push(dead);
    const down = view(registry, deployBlock, dir, { provider: dead, follow: false });
    expect(down.decide(r, refs[2]!, SPO2, T0)).toEqual({ ok: true, grantId: g1 }); // from the cache, before any round
    await expect(down.sync()).rejects.toThrow();
    expect(down.status()).toMatchObject({ following: false, failures: 1, grants: 1 });
    const stoppedAt = down.status().lastBlock;
    expect(down.decide(r, refs[2]!, SPO2, T0)).toEqual({ ok: true, grantId: g1 });
    await down.close();

    const counting = new CountingProvider(chain.handle.url, chain.handle.chainId, { staticNetwork: true, cacheTimeout: -1, pollingInterval: 20 });
    providers.push(counting);
    const back = view(registry, deployBlock, dir, { provider: counting });
    const revoked = next(back, 'revoked');
    const granted = next(back, 'granted');
    await back.ready();
    expect(counting.filters[0]?.fromBlock).toBe(stoppedAt + 1);
    expect(counting.filters.every((f) => Number(f.fromBlock) > deployBlock)).toBe(true);
    expect((await revoked).value).toMatchObject({ cause: 'revoked', blockNumber: revokeReceipt.blockNumber, grant: { grantId: g1 } });
    expect((await granted).value.grantId).toBe(g2);
    expect(back.decide(r, refs[2]!, SPO2, T0)).toEqual({ ok: false, code: 'REVOKED' });
    expect(back.decide(r, refs[2]!, HR, T0)).toEqual({ ok: true, grantId: g2 });
    expect(back.decide(r, refs[2]!, SPO2 + 1, T0)).toEqual({ ok: false, code: 'SENSOR_NOT_GRANTED' });
    expect(back.status()).toMatchObject({ following: true, failures: 0, grants: 2, inForce: 1 });
  });

  it('ignores a cache of another contract', async () => {
    const a = await deployBound();
    const b = await deployBound();
    const dir = tempDir();
    const { id, receipt } = await grant(a.registry, patients[0]!, a.refs[0]!, researchers[0]!.address);
    const va = view(a.registry, a.deployBlock, dir, { follow: false });
    await va.syncTo(receipt.blockNumber);
    await va.close();
    const lines: Record<string, unknown>[] = [];
    const log = { info: () => undefined, warn: (o: object) => void lines.push(o as Record<string, unknown>), error: () => undefined };
    const vb = view(b.registry, b.deployBlock, dir, { follow: false, log });
    expect(vb.grant(id)).toBeUndefined();
    expect(lines.map((l) => l['event'])).toEqual(['consent_cache_ignored']);
    expect(lines[0]).toMatchObject({ reason: 'another contract' });
  });
});

describe('ConsentView: reorganisations', () => {
  it('rescans when the block it ended at was replaced: a grant of the lost branch is announced as revoked (cause reorg) and is gone', async () => {
    const { registry, deployBlock, refs } = await deployBound();
    const lines: Record<string, unknown>[] = [];
    const log = { info: () => undefined, warn: (o: object) => void lines.push(o as Record<string, unknown>), error: () => undefined };
    const v = view(registry, deployBlock, tempDir(), { follow: false, log });
    const { id: kept, receipt: k } = await grant(registry, patients[0]!, refs[0]!, researchers[1]!.address);
    await v.syncTo(k.blockNumber);
    const snap = (await chain.provider.send('evm_snapshot', [])) as string;
    const { id: lost, receipt } = await grant(registry, patients[0]!, refs[0]!, researchers[1]!.address, { sensors: [SPO2] });
    await v.syncTo(receipt.blockNumber);
    expect(v.decide(researchers[1]!.address, refs[0]!, SPO2, T0)).toEqual({ ok: true, grantId: lost });
    await chain.provider.send('evm_revert', [snap]);
    await chain.provider.send('anvil_mine', ['0x3']);
    const head = await chain.provider.getBlockNumber();
    const revoked = next(v, 'revoked');
    await v.sync();
    expect((await revoked).value).toMatchObject({ cause: 'reorg', blockNumber: head, grant: { grantId: lost } });
    expect(v.grant(lost)).toBeUndefined();
    expect(v.grant(kept)).toBeDefined();
    expect(v.decide(researchers[1]!.address, refs[0]!, SPO2, T0)).toEqual({ ok: false, code: 'SENSOR_NOT_GRANTED' });
    expect(v.status().lastBlock).toBe(head);
    expect(lines.filter((l) => l['event'] === 'consent_reorg')).toHaveLength(1);
  });
});

describe('ConsentView: pseudonyms', () => {
  it("maps pseudonym ↔ patientRef through the device registry's directory, the patient-ref key, or the ref- fallback", async () => {
    const { registry, deployBlock, refs } = await deployBound();
    const dir = tempDir();
    const directory = new PseudonymDirectory(join(dir, 'directory.json'));
    directory.put(new Map([['0011223344556677', { patient: 'pt-view-0', patientRef: refs[0]!, sensors: ['heart_rate'] }]]));
    const v = view(registry, deployBlock, dir, { follow: false, directory });
    await v.ready();
    expect(v.patientRefOf('pt-view-0')).toBe(refs[0]);
    expect(v.pseudonymOf(refs[0]!)).toBe('pt-view-0');
    // Not in the directory: the ref- pseudonym, and back to the bound ref the view knows.
    expect(v.pseudonymOf(refs[1]!)).toBe(fallbackPseudonym(refs[1]!));
    expect(v.patientRefOf(fallbackPseudonym(refs[1]!))).toBe(refs[1]);
    expect(v.patientRefOf('pt-view-1')).toBeUndefined();
    expect(v.patientOf(refs[1]!)).toBe(patients[1]!.address);
    expect(v.patientRefOfAddress(patients[1]!.address.toLowerCase())).toBe(refs[1]);
    // Another process enrols a device: the directory is re-read when it changed on disk.
    new PseudonymDirectory(join(dir, 'directory.json')).put(new Map([['8899aabbccddeeff', { patient: 'pt-view-1', patientRef: refs[1]!, sensors: [] }]]));
    expect(v.patientRefOf('pt-view-1')).toBe(refs[1]);
    const keyed = view(registry, deployBlock, tempDir(), { follow: false, patientRefKey: KEY });
    expect(keyed.patientRefOf('pt-view-2')).toBe(refs[2]);
    expect(existsSync(join(dir, CONSENT_CACHE_FILE))).toBe(true);
  });
});

describe('ConsentView: the same answers as the contract', () => {
  it('decide(), checkGrant(), grant(), grantsOf(), grantsFor() and patientOf() agree with the contract over many random grants, revocations, expiries and queries (pruning included)', async () => {
    const rng = prng(20260504);
    const { registry, deployBlock, refs } = await deployBound();
    const v = view(registry, deployBlock, tempDir(), { follow: false });
    const as = (w: HDNodeWallet): ConsentRegistryContract => consentRegistryAt(registry.target as string, w);
    const idsByPair = new Map<string, bigint[]>();
    let granted = 0;
    let pruneGrants = 0;
    let maxId = 0n;
    for (let k = 0; k < 90; k++) {
      const pi = rng.bool(0.5) ? 0 : rng.int(3);
      const ri = pi === 0 && rng.bool(0.8) ? 0 : rng.int(3);
      const patient = patients[pi]!;
      const pair = `${pi}:${ri}`;
      let mask = (1 + rng.int(0xffff)) & ~1;
      if (mask === 0) mask = 2;
      const from = T0 + BigInt(rng.int(10)) * HOUR;
      const to = from + BigInt(rng.int(5)) * HOUR;
      const nowS = await chain.latestTimestamp();
      const expiresAtMs = BigInt(nowS + (rng.bool(0.4) ? 1 + rng.int(600) : 86_400 * (1 + rng.int(30)))) * 1000n + BigInt(rng.int(1000));
      try {
        const receipt = await mined(as(patient).grant(refs[pi]!, researchers[ri]!.address, mask, from, to, expiresAtMs, PURPOSE));
        const id = eventsOf(receipt, iface).find((e) => e.name === 'ConsentGranted')!.args[0] as bigint;
        idsByPair.set(pair, [...(idsByPair.get(pair) ?? []), id]);
        if ((idsByPair.get(pair)?.length ?? 0) > 32) pruneGrants++;
        maxId = id;
        granted++;
      } catch (e) {
        const r = decodeRevert<ConsentRegistryErrors>(e, iface);
        expect(r?.name).toBe('ConsentRegistryTooManyOpenGrants');
        // The pair is full of grants in force: revoke the oldest of them and go on.
        for (const id of idsByPair.get(pair) ?? []) {
          const g = await registry.getGrant(id);
          if (g.revokedAtMs === 0n && g.expiresAtMs > BigInt(await chain.latestTimestamp()) * 1000n) {
            await mined(as(patient).revoke(id));
            break;
          }
        }
      }
      if (rng.bool(0.25)) {
        const own = idsByPair.get(pair) ?? [];
        const id = own[rng.int(own.length)];
        if (id !== undefined && (await registry.getGrant(id)).revokedAtMs === 0n) await mined(as(patient).revoke(id));
      }
      if (rng.bool(0.15)) {
        await chain.provider.send('evm_increaseTime', [1 + rng.int(400)]);
        await chain.provider.send('evm_mine', []);
      }
    }
    expect(pruneGrants).toBeGreaterThan(0); // a pair got more than 32 grants: the open-list bound and its pruning were in play

    const decisions = new Map<string, number>();
    const statuses = new Map<string, number>();
    let queries = 0;
    for (let round = 0; round < 3; round++) {
      const head = (await chain.provider.getBlock('latest'))!;
      await v.syncTo(head.number);
      const nowMs = BigInt(head.timestamp) * 1000n;
      const at = { blockTag: head.number };
      // Lists and grants, all of them; whether each has ended, as the contract says (REVOKED and
      // EXPIRED come before the sensor and time checks, so any sensor and time tell).
      const grantsOnChain = new Map<bigint, { g: Awaited<ReturnType<typeof registry.getGrant>>; ended?: 'REVOKED' | 'EXPIRED' }>();
      const allIds = Array.from({ length: Number(maxId) }, (_, i) => BigInt(i + 1));
      const read = await Promise.all(
        allIds.map(async (id) => {
          const g = await registry.getGrant(id, at);
          return { id, g, st: grantStatusName(await registry.checkGrant(id, g.researcher, 0, 0, at)) };
        }),
      );
      for (const { id, g, st } of read) {
        grantsOnChain.set(id, { g, ...(st === 'REVOKED' || st === 'EXPIRED' ? { ended: st } : {}) });
        expect(v.grant(id)).toMatchObject({
          grantId: id,
          patientRef: g.patientRef,
          purposeRef: g.purposeRef,
          researcher: g.researcher,
          sensorMask: Number(g.sensorMask),
          dataFromMs: g.dataFromMs,
          dataToMs: g.dataToMs,
          expiresAtMs: g.expiresAtMs,
          grantedAtMs: g.grantedAtMs,
          revokedAtMs: g.revokedAtMs,
        });
      }
      for (const [i, ref] of refs.entries()) {
        expect(v.grantsOf(ref).map((g) => g.grantId)).toEqual([...(await registry.grantIdsOf(ref, at))]);
        expect(v.patientOf(ref)).toBe(await registry.patientOf(ref, at));
        expect(v.grantsFor(researchers[i]!.address).map((g) => g.grantId)).toEqual([...(await registry.grantIdsFor(researchers[i]!.address, at))]);
      }
      // The queries first (the seeded sequence), then their contract calls at once: ethers
      // batches concurrent calls into few JSON-RPC requests.
      const specs = Array.from({ length: 250 }, () => {
        const who = rng.bool(0.9) ? researchers[rng.bool(0.6) ? 0 : rng.int(3)]!.address : outsider.address;
        const ref = rng.bool(0.95) ? refs[rng.bool(0.6) ? 0 : rng.int(3)]! : patientRefOf('pt-never-bound', KEY);
        const sensor = rng.bool(0.9) ? 1 + rng.int(15) : rng.pick([0, 16, 17, 255]);
        let t = T0 - HOUR + BigInt(rng.int(16)) * (HOUR / 2n) + BigInt(rng.int(3)) - 1n;
        const some = v.grantsOf(ref);
        if (some.length > 0 && rng.bool(0.3)) {
          const g = rng.pick(some);
          t = rng.pick([g.dataFromMs - 1n, g.dataFromMs, g.dataToMs, g.dataToMs + 1n]);
        }
        const id = BigInt(rng.int(Number(maxId) + 3));
        const cw = rng.bool(0.7) && id >= 1n && id <= maxId ? v.grant(id)!.researcher : who;
        return { who, ref, sensor, t, id, cw };
      });
      const idsOf = new Map<string, bigint[]>();
      for (const ref of [...refs, patientRefOf('pt-never-bound', KEY)]) idsOf.set(ref, [...(await registry.grantIdsOf(ref, at))]);
      const answers = await Promise.all(
        specs.map(async (q) => ({
          permitted: (await registry.isPermitted(q.who, q.ref, q.sensor, q.t, at)) as unknown as [boolean, bigint],
          status: grantStatusName(await registry.checkGrant(q.id, q.cw, q.sensor, q.t, at)),
        })),
      );
      for (const [i, q] of specs.entries()) {
        const { who, ref, sensor, t } = q;
        const [permitted, pid] = answers[i]!.permitted;
        const d = v.decide(who, ref, sensor, t, nowMs);
        expect({ ok: d.ok, grantId: d.ok ? d.grantId : 0n }, `isPermitted(${who}, ${ref}, ${sensor}, ${t}) at ${nowMs}`).toEqual({
          ok: permitted,
          grantId: pid,
        });
        const code = d.ok ? 'OK' : d.code;
        decisions.set(code, (decisions.get(code) ?? 0) + 1);
        if (!d.ok) {
          // The reason, from the contract's own grants: the most specific one (docs/consent.md).
          const pairIds = idsOf.get(ref)!.filter((id) => grantsOnChain.get(id)!.g.researcher === who);
          let ended: { revoked: boolean } | undefined;
          let endedCovering: { revoked: boolean } | undefined;
          let live = false;
          let liveSensor = false;
          for (const id of pairIds) {
            const { g, ended: st } = grantsOnChain.get(id)!;
            const hasSensor = sensor <= 15 && ((Number(g.sensorMask) >> sensor) & 1) === 1;
            if (st) {
              ended = { revoked: st === 'REVOKED' };
              if (hasSensor && t >= g.dataFromMs && t <= g.dataToMs) endedCovering = ended;
            } else {
              live = true;
              liveSensor ||= hasSensor;
            }
          }
          const name = (e: { revoked: boolean }): DecisionCode => (e.revoked ? 'REVOKED' : 'EXPIRED');
          const expected: DecisionCode = endedCovering
            ? name(endedCovering)
            : liveSensor
              ? 'OUTSIDE_DATA_WINDOW'
              : live
                ? 'SENSOR_NOT_GRANTED'
                : ended
                  ? name(ended)
                  : 'NO_GRANT';
          expect(d.code).toBe(expected);
        }
        const local = v.checkGrant(q.id, q.cw, sensor, t, nowMs);
        expect(local, `checkGrant(${q.id}, ${q.cw}, ${sensor}, ${t}) at ${nowMs}`).toBe(answers[i]!.status);
        statuses.set(local, (statuses.get(local) ?? 0) + 1);
        queries += 2;
      }
      await chain.provider.send('evm_increaseTime', [300 + rng.int(3600)]);
      await chain.provider.send('evm_mine', []);
    }
    console.log(
      `consent view vs contract: ${granted} grants, ${queries} queries; decide ${JSON.stringify(Object.fromEntries(decisions))}; checkGrant ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    // The cases covered every verdict.
    for (const c of ['OK', 'NO_GRANT', 'REVOKED', 'EXPIRED', 'SENSOR_NOT_GRANTED', 'OUTSIDE_DATA_WINDOW'])
      expect(decisions.get(c) ?? 0, `decide ${c}`).toBeGreaterThan(0);
    for (const c of ['OK', 'UNKNOWN_GRANT', 'NOT_GRANTEE', 'REVOKED', 'EXPIRED', 'SENSOR_NOT_GRANTED', 'OUTSIDE_DATA_WINDOW'])
      expect(statuses.get(c) ?? 0, `checkGrant ${c}`).toBeGreaterThan(0);
  });
});
