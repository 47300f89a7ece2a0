/**
 * The accounting of disclosures: the access log (durable, append-only), its canonical leaf
 * encoding (a fixed vector), entries appended in one group commit, its Merkle batches anchored as
 * AnchorRegistry stream 1 from the same account as the frames, the access proof bundle and its
 * verification (offline and against the chain, with the corruptions a verifier must catch), and
 * a patient's disclosure report. Against a real anvil with the real contracts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { HDNodeWallet } from 'ethers';
import { Anchorer, type AnchorTarget } from '../../../gateway/anchor/anchorer.js';
import { BatchStore, type SealedBatch } from '../../../gateway/anchor/batch-store.js';
import { anchorRegistryAt, consentRegistryAt, sensorMaskOf, STREAM, type ConsentRegistryContract } from '../../../gateway/chain/contracts.js';
import { deployContracts, type DeploymentRecord } from '../../../gateway/chain/deploy.js';
import { patientRefOf } from '../../../gateway/chain/ids.js';
import { Batcher } from '../../../gateway/anchor/batcher.js';
import { accessLeafHash, encodeAccessEntry, type AccessEntry, type AccessRecord } from '../../../gateway/consent/access-entry.js';
import { AccessLog, accessLogLeaves } from '../../../gateway/consent/access-log.js';
import { DisclosureService, type DisclosureItem } from '../../../gateway/consent/disclosure.js';
import { hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { inclusionProofLength } from '../../../gateway/merkle/verify.js';
import { parseAccessBundle, type AccessProofBundle } from '../../../gateway/proof/access-bundle.js';
import { verifyAccessBundle } from '../../../gateway/proof/access-verify.js';
import { isBundleFormatError } from '../../../gateway/proof/bundle.js';
import { useAnvil } from '../../support/anvil.js';
import { eventsOf, mined } from '../../support/contracts.js';

const chain = useAnvil();

const KEY = createHash('sha256').update('test patient-ref key (access log)').digest();
const PSEUDONYM = 'pt-access-0042';
const OTHER = 'pt-access-0043';
const P = patientRefOf(PSEUDONYM, KEY);
const P2 = patientRefOf(OTHER, KEY);
const PURPOSE = `0x${createHash('sha256').update('purpose: access log tests').digest('hex')}`;
const T0 = 1_795_000_000_000;
const HOUR = 3_600_000;

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-access-log-'));
  dirs.push(d);
  return d;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const u64 = (n: number): string => n.toString(16).padStart(16, '0');

/** A fixed entry: the leaf-encoding vector of docs/consent.md. */
const VECTOR: AccessEntry = {
  seq: 7n,
  kind: 'live',
  researcher: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
  pseudonym: 'pt-0042',
  patientRef: `0x${'11'.repeat(32)}`,
  grantId: 3n,
  metrics: ['heart_rate', 'spo2'],
  fromMs: 1_795_000_000_000,
  toMs: 1_795_000_004_000,
  count: 10,
  firstAtMs: 1_795_000_001_000,
  atMs: 1_795_000_005_000,
  salt: '00112233445566778899aabbccddeeff',
};

describe('access-log entry encoding', () => {
  it('encodes the documented vector byte for byte, and its leaf hash is SHA-256(0x00 ‖ encoding)', () => {
    const bytes = encodeAccessEntry(VECTOR);
    expect(bytes.toString('hex')).toBe(
      [
        Buffer.from('VitalProof/access-log/v1').toString('hex'),
        '0000000000000007', // seq
        '01', // kind: live
        '70997970c51812dc3a010c7d01b50e0d17dc79c8', // researcher
        '07',
        Buffer.from('pt-0042').toString('hex'),
        '11'.repeat(32), // patientRef
        '0000000000000003', // grantId
        '02',
        '0a',
        Buffer.from('heart_rate').toString('hex'),
        '04',
        Buffer.from('spo2').toString('hex'),
        u64(1_795_000_000_000), // fromMs
        u64(1_795_000_004_000), // toMs
        '000000000000000a', // count
        u64(1_795_000_001_000), // firstAtMs
        u64(1_795_000_005_000), // atMs
        '00112233445566778899aabbccddeeff', // salt
      ].join(''),
    );
    expect(bytes.length).toBe(24 + 8 + 1 + 20 + 8 + 32 + 8 + 1 + 11 + 5 + 8 * 5 + 16);
    expect(accessLeafHash(VECTOR).toString('hex')).toBe(hashLeaf(bytes).toString('hex'));
    expect(accessLeafHash(VECTOR).toString('hex')).toBe('c00530a2f0ddf75af97000c86821b0544b18d7e29b6dfdd58c80dd5e1292a1cd');
  });

  it('refuses entries that are not canonical or not valid', () => {
    const bad: [string, Partial<AccessEntry>][] = [
      ['unsorted metrics', { metrics: ['spo2', 'heart_rate'] }],
      ['lowercase researcher', { researcher: VECTOR.researcher.toLowerCase() }],
      ['uppercase patientRef', { patientRef: `0x${'AB'.repeat(32)}` }],
      ['inverted data range', { fromMs: VECTOR.toMs + 1 }],
      ['inverted delivery times', { firstAtMs: VECTOR.atMs + 1 }],
      ['no readings', { count: 0 }],
      ['seq 0', { seq: 0n }],
      ['short salt', { salt: '0011' }],
      ['free-text pseudonym', { pseudonym: 'John Smith' }],
      ['grant 0', { grantId: 0n }],
    ];
    for (const [what, o] of bad) expect(() => encodeAccessEntry({ ...VECTOR, ...o }), what).toThrow(TypeError);
  });
});

describe('AccessLog', () => {
  it('appends durably, numbers entries from 1, and reads them back after a reopen; an invalid record writes nothing', async () => {
    const dir = tempDir();
    const log = await AccessLog.open(dir);
    const rec: AccessRecord = {
      kind: 'export',
      researcher: VECTOR.researcher.toLowerCase(),
      pseudonym: PSEUDONYM,
      patientRef: P.toUpperCase().replace('0X', '0x'),
      grantId: 1n,
      metrics: ['spo2', 'heart_rate', 'spo2'],
      fromMs: T0,
      toMs: T0 + HOUR,
      count: 3600,
      firstAtMs: 1000,
      atMs: 2000,
    };
    const e1 = await log.append(rec);
    const e2 = await log.append({ ...rec, kind: 'live', count: 5 });
    expect(e1).toMatchObject({ seq: 1n, researcher: VECTOR.researcher, patientRef: P, metrics: ['heart_rate', 'spo2'] });
    expect(e1.salt).toMatch(/^[0-9a-f]{32}$/);
    expect(e2.seq).toBe(2n);
    expect(e2.salt).not.toBe(e1.salt);
    await expect(log.append({ ...rec, count: 0 })).rejects.toThrow(TypeError);
    expect(log.lastSeq).toBe(2n);
    await log.close();
    const again = await AccessLog.open(dir);
    expect(again.lastSeq).toBe(2n);
    expect([...again.entries()]).toEqual([e1, e2]);
    expect(again.get(2n)).toEqual(e2);
    expect(again.get(3n)).toBeUndefined();
    expect((await again.append(rec)).seq).toBe(3n);
    await again.close();
  });
});

describe('AccessLog.appendAll', () => {
  it('appends the entries of one batch together, numbered in the order given, each with its own salt, all durable when it resolves', async () => {
    const dir = tempDir();
    const log = await AccessLog.open(dir);
    const base: AccessRecord = {
      kind: 'live',
      researcher: VECTOR.researcher,
      pseudonym: PSEUDONYM,
      patientRef: P,
      grantId: 1n,
      metrics: ['heart_rate'],
      fromMs: T0,
      toMs: T0 + 4000,
      count: 5,
      firstAtMs: 1000,
      atMs: 1002,
    };
    await log.append({ ...base, kind: 'export' });
    const batch = await log.appendAll([
      base,
      { ...base, grantId: 2n, metrics: ['spo2', 'heart_rate'], count: 10 },
      { ...base, pseudonym: OTHER, patientRef: P2, count: 1 },
    ]);
    expect(batch.map((e) => e.seq)).toEqual([2n, 3n, 4n]);
    expect(batch[1]).toMatchObject({ grantId: 2n, metrics: ['heart_rate', 'spo2'], count: 10 });
    expect(new Set(batch.map((e) => e.salt)).size).toBe(3);
    // An invalid record refuses the whole batch before anything is written.
    await expect(log.appendAll([base, { ...base, metrics: ['Heart Rate'] }])).rejects.toThrow(TypeError);
    expect(log.lastSeq).toBe(4n);
    await log.close();
    const again = await AccessLog.open(dir);
    expect([...again.entries(2n)]).toEqual(batch);
    await again.close();
  });
});

describe('access-log batches', () => {
  it('rebuilds the open batch after a restart with the same leaves, and seals the root of the entries as logged', async () => {
    const dir = tempDir();
    const log = await AccessLog.open(join(dir, 'log'));
    const store = new BatchStore(join(dir, 'batches'));
    const rec: AccessRecord = {
      kind: 'export',
      researcher: VECTOR.researcher,
      pseudonym: PSEUDONYM,
      patientRef: P,
      grantId: 1n,
      metrics: ['heart_rate'],
      fromMs: T0,
      toMs: T0 + 10,
      count: 2,
      firstAtMs: 5000,
      atMs: 6000,
    };
    for (let i = 0; i < 3; i++) await log.append({ ...rec, atMs: 6000 + i });
    const first = new Batcher(accessLogLeaves(log), store, { intervalMs: 60_000 });
    expect(first.seal()?.leafCount).toBe(3);
    for (let i = 0; i < 4; i++) await log.append({ ...rec, atMs: 7000 - i });
    const crashed = new Batcher(accessLogLeaves(log), store, { intervalMs: 60_000 });
    expect(crashed.openLeaves).toBe(4); // "crashes" here: nothing sealed
    const restarted = new Batcher(accessLogLeaves(log), store, { intervalMs: 60_000 });
    const b = restarted.seal()!;
    const entries = [...log.entries(4n)];
    expect(b).toMatchObject({ seq: 2n, leafCount: 4, firstLsn: 4n, lastLsn: 7n, firstFrameTimeMs: 6997, lastFrameTimeMs: 7000 });
    expect(b.root).toBe(`0x${Rfc6962Tree.fromLeafHashes(entries.map(accessLeafHash)).root().toString('hex')}`);
    restarted.stop();
    await log.close();
  });
});

describe('access log anchored as stream 1, proofs and the disclosure report', () => {
  let record: DeploymentRecord;
  let gateway: HDNodeWallet;
  let researcher: HDNodeWallet;
  let researcher2: HDNodeWallet;
  let consent: ConsentRegistryContract;
  let g1: bigint;
  let g2: bigint;
  let g3: bigint;
  let g3RevokedAtMs: number;

  async function grantOf(patient: HDNodeWallet, ref: string, to: string, sensors: number[]): Promise<bigint> {
    const now = (await chain.latestTimestamp()) * 1000;
    const r = await mined(
      consentRegistryAt(consent.target as string, patient).grant(ref, to, sensorMaskOf(sensors), T0, T0 + HOUR, now + 30 * 24 * HOUR, PURPOSE),
    );
    return eventsOf(r, consent.interface).find((e) => e.name === 'ConsentGranted')!.args[0] as bigint;
  }

  beforeAll(async () => {
    gateway = chain.wallet(1);
    researcher = chain.wallet(3);
    researcher2 = chain.wallet(4);
    const d = await deployContracts(chain.wallet(0), { gateways: [gateway.address] });
    record = d.record;
    consent = d.consentRegistry;
    await mined(consent.bindPatient(P, chain.wallet(2).address));
    await mined(consent.bindPatient(P2, chain.wallet(5).address));
    g1 = await grantOf(chain.wallet(2), P, researcher.address, [1, 2]);
    g2 = await grantOf(chain.wallet(5), P2, researcher2.address, [1]);
    g3 = await grantOf(chain.wallet(2), P, researcher2.address, [1]);
    const r = await mined(consentRegistryAt(consent.target as string, chain.wallet(2)).revoke(g3));
    g3RevokedAtMs = (await chain.provider.getBlock(r.blockNumber))!.timestamp * 1000;
  });

  it('anchors the access log beside the frames from one account; the report lists every access of the patient with a proof that verifies, and the pending ones as pending', async () => {
    const dir = tempDir();
    const log = await AccessLog.open(join(dir, 'log'));
    const store = new BatchStore(join(dir, 'batches'));
    const frames = new BatchStore(join(dir, 'frames'));
    const now = Date.now();
    const exp = await log.append({
      kind: 'export',
      researcher: researcher.address,
      pseudonym: PSEUDONYM,
      patientRef: P,
      grantId: g1,
      metrics: ['heart_rate'],
      fromMs: T0,
      toMs: T0 + HOUR / 2,
      count: 1800,
      firstAtMs: now - 3000,
      atMs: now - 1000,
    });
    const [live] = await log.appendAll([
      {
        kind: 'live',
        researcher: researcher.address,
        pseudonym: PSEUDONYM,
        patientRef: P,
        grantId: g1,
        metrics: ['spo2', 'heart_rate'],
        fromMs: T0 + 1000,
        toMs: T0 + 6000,
        count: 10,
        firstAtMs: now - 900,
        atMs: now - 800,
      },
    ]);
    const other = await log.append({
      kind: 'export',
      researcher: researcher2.address,
      pseudonym: OTHER,
      patientRef: P2,
      grantId: g2,
      metrics: ['heart_rate'],
      fromMs: T0,
      toMs: T0 + 10,
      count: 11,
      firstAtMs: now - 500,
      atMs: now,
    });
    // What a misbehaving gateway might log: a metric the grant does not cover, and a delivery after the revocation.
    const uncovered = await log.append({
      kind: 'live',
      researcher: researcher.address,
      pseudonym: PSEUDONYM,
      patientRef: P,
      grantId: g1,
      metrics: ['ecg'],
      fromMs: T0,
      toMs: T0,
      count: 1,
      firstAtMs: now,
      atMs: now,
    });
    const late = await log.append({
      kind: 'live',
      researcher: researcher2.address,
      pseudonym: PSEUDONYM,
      patientRef: P,
      grantId: g3,
      metrics: ['heart_rate'],
      fromMs: T0,
      toMs: T0,
      count: 1,
      firstAtMs: g3RevokedAtMs + 10_000,
      atMs: g3RevokedAtMs + 10_000,
    });
    const batcher = new Batcher(accessLogLeaves(log), store, { intervalMs: 60_000 });
    expect(batcher.seal()?.leafCount).toBe(5);
    const pending = await log.append({
      kind: 'export',
      researcher: researcher.address,
      pseudonym: PSEUDONYM,
      patientRef: P,
      grantId: g1,
      metrics: ['spo2'],
      fromMs: T0,
      toMs: T0 + 1,
      count: 2,
      firstAtMs: now,
      atMs: now + 1,
    });

    // A frames batch too: both anchorers send from the gateway's account, on its lane.
    const leaves = [0, 1, 2].map((i) => ({
      lsn: BigInt(i + 1),
      device: '0011223344556677',
      seq: BigInt(i + 1),
      timeMs: T0 + i,
      leafHash: hashLeaf(Buffer.from(`frame ${i}`)),
    }));
    const fb: SealedBatch = {
      seq: 1n,
      leafCount: 3,
      root: `0x${Rfc6962Tree.fromLeafHashes(leaves.map((l) => l.leafHash))
        .root()
        .toString('hex')}`,
      firstFrameTimeMs: T0,
      lastFrameTimeMs: T0 + 2,
      firstLsn: 1n,
      lastLsn: 3n,
      openedAtMs: 0,
      sealedAtMs: 0,
      leaves,
    };
    frames.seal(fb);
    const target: AnchorTarget = {
      provider: chain.provider,
      signer: gateway,
      anchorRegistry: anchorRegistryAt(record.anchorRegistry.address, gateway),
      chainId: chain.handle.chainId,
      contract: record.anchorRegistry.address,
      gateway: gateway.address,
      confirmations: 1,
    };
    let framesAnchored!: () => void;
    let accessAnchored!: () => void;
    const both = Promise.all([new Promise<void>((res) => (framesAnchored = res)), new Promise<void>((res) => (accessAnchored = res))]);
    const af = new Anchorer(frames, target, { retryMinMs: 10, retryMaxMs: 50, onAnchored: () => framesAnchored() });
    const aa = new Anchorer(store, target, { stream: STREAM.ACCESS_LOG, retryMinMs: 10, retryMaxMs: 50, onAnchored: () => accessAnchored() });
    af.start();
    aa.start();
    await both;
    await Promise.all([af.stop(), aa.stop()]);
    expect(store.anchorOf(1n)).toMatchObject({ stream: STREAM.ACCESS_LOG, gateway: gateway.address });
    expect(frames.anchorOf(1n)).toMatchObject({ stream: STREAM.FRAMES });
    const onChain = await target.anchorRegistry.anchorOf(gateway.address, STREAM.ACCESS_LOG, 1n);
    expect(onChain.root).toBe(store.get(1n)!.root);
    expect(Number(onChain.leafCount)).toBe(5);

    const disclosures = new DisclosureService({
      log,
      store,
      consentRegistry: { chainId: chain.handle.chainId, address: record.consentRegistry.address },
      gatewayId: 'gw-test',
    });
    const report = disclosures.disclosureReport(PSEUDONYM);
    expect(report).toMatchObject({ format: 'vitalproof.disclosure-report', version: 1, pseudonym: PSEUDONYM, gatewayId: 'gw-test' });
    expect(report.items.map((i) => i.status)).toEqual(['anchored', 'anchored', 'anchored', 'anchored', 'pending']);
    const seqs = (i: DisclosureItem): string => (i.status === 'anchored' ? i.proof.entry.seq : i.entry.seq);
    expect(report.items.map(seqs)).toEqual([exp.seq, live!.seq, uncovered.seq, late.seq, pending.seq].map(String));
    expect(report.items[4]).toMatchObject({ status: 'pending', reason: 'NOT_YET_BATCHED' });
    expect(report.summary).toEqual({
      entries: 5,
      anchored: 4,
      pending: 1,
      errors: 0,
      readings: 1800 + 10 + 1 + 1 + 2,
      researchers: [researcher.address, researcher2.address].sort(),
    });
    expect(report.items.some((i) => i.status === 'anchored' && i.proof.entry.pseudonym !== PSEUDONYM)).toBe(false);
    expect(disclosures.disclosureReport(OTHER).items.map(seqs)).toEqual([String(other.seq)]);
    // The range is on the access time: [fromMs, toMs).
    expect(disclosures.disclosureReport(PSEUDONYM, { fromMs: now - 1000, toMs: now - 999 }).items.map(seqs)).toEqual([String(exp.seq)]);
    expect(disclosures.disclosureReport(PSEUDONYM, { fromMs: Math.max(now, g3RevokedAtMs + 10_000) + 2 }).items).toEqual([]);

    const proofs = report.items.flatMap((i) => (i.status === 'anchored' ? [i.proof] : []));
    const trusted = { chainId: chain.handle.chainId, anchorRegistry: record.anchorRegistry.address, consentRegistry: record.consentRegistry.address };
    const [pExport, pLive, pUncovered, pLate] = proofs as [AccessProofBundle, AccessProofBundle, AccessProofBundle, AccessProofBundle];
    for (const p of [pExport, pLive]) {
      const v = await verifyAccessBundle(JSON.parse(JSON.stringify(p)) as AccessProofBundle, { provider: chain.provider, trusted });
      expect(v.checks.map((c) => [c.check, c.status])).toEqual([
        ['inclusion', 'pass'],
        ['anchor', 'pass'],
        ['grant', 'pass'],
      ]);
      expect(v.ok).toBe(true);
      const off = await verifyAccessBundle(p, { offline: true });
      expect(off).toMatchObject({ ok: true, offline: true });
    }
    expect(pLive.entry).toMatchObject({ kind: 'live', metrics: ['heart_rate', 'spo2'], fromMs: T0 + 1000, toMs: T0 + 6000, count: 10 });
    // The verifier catches what a misbehaving gateway logged.
    const uncov = await verifyAccessBundle(pUncovered, { provider: chain.provider, trusted });
    expect(uncov.ok).toBe(false);
    expect(uncov.checks[2]).toMatchObject({ status: 'fail', code: 'GRANT_MISMATCH', detail: { mismatches: [{ field: 'metrics.ecg' }] } });
    const lateV = await verifyAccessBundle(pLate, { provider: chain.provider, trusted });
    expect(lateV.checks[2]).toMatchObject({ status: 'fail', code: 'GRANT_NOT_IN_FORCE' });
    expect(lateV.checks.slice(0, 2).map((c) => c.status)).toEqual(['pass', 'pass']);

    // Corruptions, each caught by the check it concerns.
    const edited = structuredClone(pExport);
    edited.entry.count += 1;
    expect((await verifyAccessBundle(edited, { offline: true })).checks[0]).toMatchObject({ status: 'fail', code: 'ROOT_MISMATCH' });
    const lie = structuredClone(pExport);
    const real = lie.inclusion.treeSize;
    lie.inclusion.treeSize = [real - 1, real + 1, real + 2].find(
      (n) => n > lie.inclusion.leafIndex && inclusionProofLength(lie.inclusion.leafIndex, n) === lie.inclusion.auditPath.length,
    )!;
    const lieV = await verifyAccessBundle(lie, { provider: chain.provider, trusted });
    expect(lieV.checks.map((c) => c.status)).toEqual(['pass', 'fail', 'pass']);
    expect(lieV.checks[1]).toMatchObject({ code: 'ANCHOR_MISMATCH' });
    const untrusted = await verifyAccessBundle(pExport, { provider: chain.provider, trusted: { ...trusted, consentRegistry: record.deviceRegistry.address } });
    expect(untrusted.checks[2]).toMatchObject({ status: 'fail', code: 'UNTRUSTED_CONTRACT' });
    const wrongStream = structuredClone(pExport);
    wrongStream.anchor.stream = 0;
    let parseError: unknown;
    try {
      parseAccessBundle(wrongStream);
    } catch (e) {
      parseError = e;
    }
    expect(isBundleFormatError(parseError, 'BAD_VALUE') && (parseError as { field: string }).field).toBe('anchor.stream');
    const outside = structuredClone(pExport);
    outside.anchor.firstFrameTimeMs = outside.entry.atMs + 1;
    outside.anchor.lastFrameTimeMs = Math.max(outside.anchor.lastFrameTimeMs, outside.anchor.firstFrameTimeMs);
    expect((await verifyAccessBundle(outside, { offline: true })).checks[0]).toMatchObject({ status: 'fail', code: 'TIME_OUTSIDE_BATCH' });

    // Single proofs: not found, not yet anchored (sealed, no anchorer), and a store edited under the log.
    expect(disclosures.proofOf(99n)).toMatchObject({ ok: false, code: 'ENTRY_NOT_FOUND' });
    expect(disclosures.proofOf(pending.seq)).toMatchObject({ ok: false, code: 'NOT_YET_BATCHED' });
    batcher.seal();
    expect(disclosures.proofOf(pending.seq)).toMatchObject({ ok: false, code: 'NOT_YET_ANCHORED', batchSeq: '2' });
    expect(disclosures.disclosureReport(PSEUDONYM).items[4]).toMatchObject({ status: 'pending', reason: 'NOT_YET_ANCHORED', batchSeq: '2' });
    const path = store.batchPath(2n);
    const file = JSON.parse(readFileSync(path, 'utf8')) as { leafHashes: string };
    file.leafHashes = Buffer.alloc(32, 7).toString('base64');
    writeFileSync(path, JSON.stringify(file));
    const reread = new DisclosureService({
      log,
      store: new BatchStore(join(dir, 'batches')),
      consentRegistry: { chainId: chain.handle.chainId, address: record.consentRegistry.address },
      gatewayId: 'gw-test',
    });
    expect(reread.proofOf(pending.seq)).toMatchObject({ ok: false, code: 'ENTRY_TAMPERED', batchSeq: '2' });
    expect(reread.disclosureReport(PSEUDONYM).summary).toMatchObject({ anchored: 4, errors: 1 });

    // Privacy: no transaction input or log of the chain holds a pseudonym (only roots went there).
    const head = await chain.provider.getBlockNumber();
    const needles = [PSEUDONYM, OTHER].map((s) => Buffer.from(s, 'utf8').toString('hex'));
    for (let n = record.deployBlock; n <= head; n++) {
      const block = await chain.provider.getBlock(n, true);
      for (const tx of block?.prefetchedTransactions ?? []) {
        const receipt = await chain.provider.getTransactionReceipt(tx.hash);
        const blobs = [tx.data, ...(receipt?.logs ?? []).flatMap((l) => [l.data, ...l.topics])].map((b) => b.toLowerCase());
        for (const needle of needles) expect(blobs.some((b) => b.includes(needle))).toBe(false);
      }
    }
    await log.close();
  });
});
