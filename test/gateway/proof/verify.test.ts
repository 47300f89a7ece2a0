/**
 * Proof bundles against a real anvil (gateway/proof/verify.ts, gateway/cli/verify.ts):
 * real contracts deployed with deployContracts, real devices enrolled, a real batch of signed
 * frames anchored, bundles built from the real transaction and block. Each way a bundle can
 * disagree with the chain fails the anchor or device check with its code; an unreachable
 * chain is a verdict, not an exception; and the `verify` command's exit codes and output.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getAddress, type TransactionReceipt } from 'ethers';
import { STREAM } from '../../../gateway/chain/contracts.js';
import { deployContracts, writeDeploymentRecord, type Deployment } from '../../../gateway/chain/deploy.js';
import { deviceIdToBytes8, patientRefOf, siteIdOf } from '../../../gateway/chain/ids.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { buildBundle, bundleCollection, type ProofBundle } from '../../../gateway/proof/bundle.js';
import { verifyBundle, VerifyCache, type BundleVerdict, type CheckName, type CheckResult } from '../../../gateway/proof/verify.js';
import { verifyCommand } from '../../../gateway/cli/verify.js';
import { findFreePort } from '../../../gateway/util/net.js';
import { localProvider, useAnvil } from '../../support/anvil.js';
import { heartRate, testDevice, type TestDevice } from '../../support/devices.js';
import { mined } from '../../support/contracts.js';

const chain = useAnvil({ snapshotEach: true });

const PATIENT_KEY = createHash('sha256').update('proof-verify patient-ref key').digest();
const A = testDevice('proof-a');
const B = testDevice('proof-b');
/** Never enrolled. */
const C = testDevice('proof-c');
/** Enrolled only after its frame was signed (a store-and-forward backlog). */
const D = testDevice('proof-d');
/** The batch: [A, B, A, B, A, C, D], 5 s apart from T0. */
const ORDER = [A, B, A, B, A, C, D];

let deployment: Deployment;
let T0: number;
let frames: Uint8Array[];
let tree: Rfc6962Tree;
let anchorReceipt: TransactionReceipt;
let enrolReceipt: TransactionReceipt;
let dEnrolledAtMs: number;
let bundles: ProofBundle[];
let tmp: string;

const hex = (b: Uint8Array): string => `0x${Buffer.from(b).toString('hex')}`;

async function enrol(d: TestDevice): Promise<TransactionReceipt> {
  return mined(deployment.deviceRegistry.enrol(deviceIdToBytes8(d.id), hex(d.keys.publicKey), patientRefOf(d.patient, PATIENT_KEY), siteIdOf('ward-1')));
}

/** The bundle of leaf `i` of `t` (default: the anchored batch), anchored as `batchSeq`. */
function bundleOf(i: number, t: Rfc6962Tree = tree, batchSeq = 1n): ProofBundle {
  return buildBundle({
    raw: frames[i]!,
    publicKey: ORDER[i]!.keys.publicKey,
    deviceRegistry: { chainId: chain.handle.chainId, address: deployment.record.deviceRegistry.address },
    leafIndex: i,
    treeSize: t.size,
    auditPath: t.inclusionProof(i),
    root: t.root(),
    anchor: {
      chainId: chain.handle.chainId,
      contract: deployment.record.anchorRegistry.address,
      gateway: chain.wallet(0).address,
      stream: STREAM.FRAMES,
      batchSeq,
      firstFrameTimeMs: T0,
      lastFrameTimeMs: T0 + (ORDER.length - 1) * 5_000,
      txHash: anchorReceipt.hash,
      blockNumber: anchorReceipt.blockNumber,
      blockHash: anchorReceipt.blockHash,
    },
    gatewayId: 'ward-1',
  });
}

function edited(i: number, edit: (b: ProofBundle) => void): ProofBundle {
  const b = JSON.parse(JSON.stringify(bundles[i])) as ProofBundle;
  edit(b);
  return b;
}

function check(v: BundleVerdict, name: CheckName): CheckResult {
  const c = v.checks.find((x) => x.check === name);
  if (!c) throw new Error(`no ${name} check`);
  return c;
}

function statuses(v: BundleVerdict): Record<string, string> {
  return Object.fromEntries(v.checks.map((c) => [c.check, c.code ? `${c.status}:${c.code}` : c.status]));
}

const ALL_PASS = { frame: 'pass', signature: 'pass', inclusion: 'pass', anchor: 'pass', device: 'pass' };

beforeAll(async () => {
  deployment = await deployContracts(chain.wallet(0));
  // Frames are timestamped after the enrolment blocks (block times only move forward), except
  // D's, which its enrolment follows.
  const now = await chain.latestTimestamp();
  T0 = (now + 100) * 1000;
  await chain.setNextBlockTimestamp(now + 10);
  enrolReceipt = await enrol(A);
  await enrol(B);
  frames = ORDER.map((d, i) => d.core.record(heartRate(T0 + i * 5_000, [60 + i, 61, 62])).raw);
  tree = Rfc6962Tree.fromLeafData(frames);
  anchorReceipt = await mined(deployment.anchorRegistry.anchor(STREAM.FRAMES, 1n, hex(tree.root()), tree.size, T0, T0 + (ORDER.length - 1) * 5_000));
  // D is enrolled a minute after its frame (leaf 6, at T0 + 30 s).
  const dEnrolSeconds = T0 / 1000 + 90;
  await chain.setNextBlockTimestamp(dEnrolSeconds);
  await enrol(D);
  dEnrolledAtMs = dEnrolSeconds * 1000;
  bundles = ORDER.map((_, i) => bundleOf(i));
  tmp = mkdtempSync(join(tmpdir(), 'vp-proof-verify-'));
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('verifyBundle online: a good bundle', () => {
  it('passes all five checks for every frame of an enrolled device, and reports the confirmations', async () => {
    const latest = await chain.provider.getBlockNumber();
    for (const i of [0, 1, 2, 3, 4]) {
      const v = await verifyBundle(bundles[i]!, { provider: chain.provider });
      expect(statuses(v), `leaf ${i}`).toEqual(ALL_PASS);
      expect(v.ok).toBe(true);
      expect(v.offline).toBe(false);
      const confirmations = latest - anchorReceipt.blockNumber + 1;
      expect(check(v, 'anchor').detail).toEqual({ confirmations, latestBlock: latest });
      expect(check(v, 'anchor').message).toContain(`${confirmations} confirmations`);
      expect(check(v, 'device').message).toMatch(/enrolled at .*, not revoked$/);
    }
  });

  it('counts confirmations from the chain head', async () => {
    await chain.provider.send('anvil_mine', ['0x3']);
    const latest = await chain.provider.getBlockNumber();
    const v = await verifyBundle(bundles[0]!, { provider: chain.provider });
    expect(check(v, 'anchor').detail?.['confirmations']).toBe(latest - anchorReceipt.blockNumber + 1);
  });

  it('passes a frame that predates its device’s on-chain enrolment, and says so', async () => {
    const v = await verifyBundle(bundles[6]!, { provider: chain.provider });
    expect(statuses(v)).toEqual(ALL_PASS);
    const device = check(v, 'device');
    expect(device.message).toContain('the frame predates the on-chain enrolment');
    expect(device.message).toContain(new Date(dEnrolledAtMs).toISOString());
    expect(device.detail).toMatchObject({ enrolledAtMs: String(dEnrolledAtMs), revokedAtMs: '0', predatesEnrolment: true });
  });

  it('shares chain reads between bundles through a VerifyCache, with the same verdicts', async () => {
    const cache = new VerifyCache();
    const verdicts = await Promise.all(bundles.slice(0, 5).map((b) => verifyBundle(b, { provider: chain.provider, cache })));
    expect(verdicts.map((v) => v.ok)).toEqual([true, true, true, true, true]);
  });

  it('holds the bundle to a trusted deployment: same addresses pass, another one is UNTRUSTED_CONTRACT', async () => {
    const trusted = {
      chainId: chain.handle.chainId,
      anchorRegistry: deployment.record.anchorRegistry.address,
      deviceRegistry: deployment.record.deviceRegistry.address.toLowerCase(),
    };
    expect((await verifyBundle(bundles[0]!, { provider: chain.provider, trusted })).ok).toBe(true);
    const other = await deployContracts(chain.wallet(0));
    const v = await verifyBundle(bundles[0]!, {
      provider: chain.provider,
      trusted: { anchorRegistry: other.record.anchorRegistry.address, deviceRegistry: other.record.deviceRegistry.address },
    });
    expect(statuses(v)).toMatchObject({ anchor: 'fail:UNTRUSTED_CONTRACT', device: 'fail:UNTRUSTED_CONTRACT' });
    expect(check(v, 'anchor').detail).toEqual({ expected: other.record.anchorRegistry.address, found: deployment.record.anchorRegistry.address });
    const w = await verifyBundle(bundles[0]!, { provider: chain.provider, trusted: { chainId: 1 } });
    expect(statuses(w)).toMatchObject({ anchor: 'fail:WRONG_CHAIN', device: 'fail:WRONG_CHAIN' });
  });
});

describe('verifyBundle online: the anchor check', () => {
  it('the anchored root with a lying tree size: the proof passes offline, the anchor check refuses the size (ANCHOR_MISMATCH)', async () => {
    // Leaf 0 of 7 and leaf 0 of 8 have proofs of the same length and the same left/right
    // sequence, so they reach the same root: only the chain's leafCount tells the sizes apart.
    const lie = edited(0, (b) => void (b.inclusion.treeSize = 8));
    const v = await verifyBundle(lie, { provider: chain.provider });
    expect(statuses(v)).toEqual({ ...ALL_PASS, anchor: 'fail:ANCHOR_MISMATCH' });
    expect(check(v, 'anchor').detail).toEqual({ mismatches: [{ field: 'treeSize', bundle: 8, chain: 7 }] });
    expect(check(v, 'anchor').message).toContain('tree size (leafCount) 7 on chain, 8 in the bundle');
  });

  it('a proof re-made for a smaller tree (its own root, never anchored): ANCHOR_MISMATCH on root and size', async () => {
    const smaller = Rfc6962Tree.fromLeafData(frames.slice(0, 4));
    const v = await verifyBundle(bundleOf(2, smaller), { provider: chain.provider });
    expect(statuses(v)).toEqual({ ...ALL_PASS, anchor: 'fail:ANCHOR_MISMATCH' });
    expect(check(v, 'anchor').detail).toEqual({
      mismatches: [
        { field: 'root', bundle: hex(smaller.root()), chain: hex(tree.root()) },
        { field: 'treeSize', bundle: 4, chain: 7 },
      ],
    });
  });

  it('a time window other than the anchored one: ANCHOR_MISMATCH', async () => {
    const v = await verifyBundle(
      edited(1, (b) => void (b.anchor.firstFrameTimeMs = T0 - 1)),
      { provider: chain.provider },
    );
    expect(statuses(v)).toMatchObject({ inclusion: 'pass', anchor: 'fail:ANCHOR_MISMATCH' });
    expect(check(v, 'anchor').detail).toEqual({ mismatches: [{ field: 'firstFrameTimeMs', bundle: T0 - 1, chain: String(T0) }] });
  });

  it('a batch sequence that is not anchored: NOT_ANCHORED', async () => {
    const v = await verifyBundle(bundleOf(0, tree, 2n), { provider: chain.provider });
    expect(statuses(v)).toEqual({ ...ALL_PASS, anchor: 'fail:NOT_ANCHORED' });
    expect(check(v, 'anchor').message).toContain('has no anchor for batch 2 of gateway');
  });

  it('another gateway account: NOT_ANCHORED (each gateway has its own sequence)', async () => {
    const v = await verifyBundle(
      edited(0, (b) => void (b.anchor.gateway = chain.wallet(1).address)),
      { provider: chain.provider },
    );
    expect(check(v, 'anchor').code).toBe('NOT_ANCHORED');
  });

  it('the hash of another transaction (the enrolment): TX_NOT_ANCHORING', async () => {
    const v = await verifyBundle(
      edited(0, (b) => void (b.anchor.txHash = enrolReceipt.hash)),
      { provider: chain.provider },
    );
    expect(statuses(v)).toEqual({ ...ALL_PASS, anchor: 'fail:TX_NOT_ANCHORING' });
    expect(check(v, 'anchor').message).toContain(enrolReceipt.hash);
  });

  it('a transaction hash the chain never saw: TX_NOT_FOUND', async () => {
    const v = await verifyBundle(
      edited(0, (b) => void (b.anchor.txHash = `0x${'77'.repeat(32)}`)),
      { provider: chain.provider },
    );
    expect(check(v, 'anchor').code).toBe('TX_NOT_FOUND');
  });

  it('a reverted transaction: TX_FAILED', async () => {
    // Anchoring batch 1 again reverts (AnchorRegistryBatchAlreadyAnchored); send it with a
    // fixed gas limit so that it is mined rather than refused at estimation.
    const tx = await deployment.anchorRegistry.anchor(STREAM.FRAMES, 1n, hex(tree.root()), tree.size, T0, T0, { gasLimit: 200_000 });
    const receipt = await chain.provider.waitForTransaction(tx.hash);
    expect(receipt?.status).toBe(0);
    const v = await verifyBundle(
      edited(0, (b) => void (b.anchor.txHash = tx.hash)),
      { provider: chain.provider },
    );
    expect(check(v, 'anchor').code).toBe('TX_FAILED');
  });

  it('another block number or block hash: BLOCK_MISMATCH', async () => {
    const hash = await verifyBundle(
      edited(0, (b) => void (b.anchor.blockHash = `0x${'42'.repeat(32)}`)),
      { provider: chain.provider },
    );
    expect(statuses(hash)).toEqual({ ...ALL_PASS, anchor: 'fail:BLOCK_MISMATCH' });
    expect(check(hash, 'anchor').message).toContain(anchorReceipt.blockHash);
    const number = await verifyBundle(
      edited(0, (b) => void (b.anchor.blockNumber = anchorReceipt.blockNumber + 1)),
      { provider: chain.provider },
    );
    expect(check(number, 'anchor').code).toBe('BLOCK_MISMATCH');
    expect(check(number, 'anchor').detail).toMatchObject({
      anchorBlockNumber: String(anchorReceipt.blockNumber),
      receiptBlockNumber: anchorReceipt.blockNumber,
    });
  });

  it('a bundle for another chain id: WRONG_CHAIN for the anchor and the device', async () => {
    const v = await verifyBundle(
      edited(0, (b) => {
        b.anchor.chainId = 1;
        b.device.registry.chainId = 1;
      }),
      { provider: chain.provider },
    );
    expect(statuses(v)).toEqual({ ...ALL_PASS, anchor: 'fail:WRONG_CHAIN', device: 'fail:WRONG_CHAIN' });
    expect(check(v, 'anchor').detail).toEqual({ expected: 1, found: chain.handle.chainId });
  });

  it('an address without an AnchorRegistry: NO_CONTRACT (an account, or another contract)', async () => {
    const account = await verifyBundle(
      edited(0, (b) => void (b.anchor.contract = chain.wallet(7).address)),
      { provider: chain.provider },
    );
    expect(check(account, 'anchor').code).toBe('NO_CONTRACT');
    const other = await verifyBundle(
      edited(0, (b) => void (b.anchor.contract = deployment.record.deviceRegistry.address)),
      { provider: chain.provider },
    );
    expect(check(other, 'anchor').code).toBe('NO_CONTRACT');
    const device = await verifyBundle(
      edited(0, (b) => void (b.device.registry.address = chain.wallet(7).address)),
      { provider: chain.provider },
    );
    expect(check(device, 'device').code).toBe('NO_CONTRACT');
  });
});

describe('verifyBundle online: the device check', () => {
  it('a frame timestamped at or after the revocation: REVOKED with both times; earlier frames still pass', async () => {
    const revokedAt = T0 + 10_000; // leaf 2 is A's frame at exactly T0 + 10 s
    await mined(deployment.deviceRegistry.revoke(deviceIdToBytes8(A.id), revokedAt));
    for (const i of [2, 4]) {
      const v = await verifyBundle(bundles[i]!, { provider: chain.provider });
      expect(statuses(v), `leaf ${i}`).toEqual({ ...ALL_PASS, device: 'fail:REVOKED' });
      expect(check(v, 'device').detail).toEqual({ revokedAtMs: String(revokedAt), timestampMs: String(T0 + i * 5_000) });
      expect(check(v, 'device').message).toContain(new Date(revokedAt).toISOString());
    }
    const before = await verifyBundle(bundles[0]!, { provider: chain.provider });
    expect(statuses(before)).toEqual(ALL_PASS);
    expect(check(before, 'device').message).toContain(`revoked only from ${new Date(revokedAt).toISOString()}, after the frame`);
  });

  it('a device never enrolled: NOT_ENROLLED, while its frame is genuinely signed and anchored', async () => {
    const v = await verifyBundle(bundles[5]!, { provider: chain.provider });
    expect(statuses(v)).toEqual({ ...ALL_PASS, device: 'fail:NOT_ENROLLED' });
    expect(check(v, 'device').message).toContain(C.id);
  });
});

describe('verifyBundle online: an unreachable chain is a verdict', () => {
  it('nothing listening at the RPC URL: anchor and device fail CHAIN_UNREACHABLE, the offline checks still run', async () => {
    const port = await findFreePort();
    const provider = localProvider(`http://127.0.0.1:${port}`, chain.handle.chainId);
    try {
      const v = await verifyBundle(bundles[0]!, { provider });
      expect(statuses(v)).toEqual({ frame: 'pass', signature: 'pass', inclusion: 'pass', anchor: 'fail:CHAIN_UNREACHABLE', device: 'fail:CHAIN_UNREACHABLE' });
      expect(v.ok).toBe(false);
      expect(check(v, 'anchor').message).toContain('ECONNREFUSED');
    } finally {
      provider.destroy();
    }
  });

  it('a server that never answers: CHAIN_UNREACHABLE at the deadline', async () => {
    const held: ServerResponse[] = [];
    const server: Server = createServer((_req, res) => void held.push(res));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const port = (server.address() as { port: number }).port;
    const provider = localProvider(`http://127.0.0.1:${port}`, chain.handle.chainId);
    try {
      const v = await verifyBundle(bundles[0]!, { provider, timeoutMs: 300 });
      expect(statuses(v)).toMatchObject({ anchor: 'fail:CHAIN_UNREACHABLE', device: 'fail:CHAIN_UNREACHABLE' });
      expect(check(v, 'anchor').message).toContain('no answer within 300 ms');
    } finally {
      provider.destroy();
      server.closeAllConnections();
      await new Promise<void>((res) => server.close(() => res()));
    }
  });
});

describe('vitalproof verify (verifyCommand)', () => {
  /** Runs the command; returns its exit code and what it wrote to stdout and stderr. */
  async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await verifyCommand(
      argv,
      (l) => out.push(l),
      (l) => err.push(l),
    );
    return { code, out: out.join('\n'), err: err.join('\n') };
  }
  const file = (name: string, content: unknown): string => {
    const path = join(tmp, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
    return path;
  };

  it('exit 0 when every bundle verifies, with a block per bundle and a summary', async () => {
    const good = file('good.json', bundleCollection(bundles.slice(0, 5)));
    const single = file('single.json', bundles[6]);
    const r = await run(good, single, '--rpc', chain.handle.url);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      `[1/6] ${good} #0: device ${A.id} seq 1 (heart_rate) · batch 1 leaf 0 of 7 · gateway ${chain.wallet(0).address} on chain ${chain.handle.chainId}`,
    );
    expect(r.out).toContain(`[6/6] ${single}: device ${D.id}`);
    for (const name of ['frame', 'signature', 'inclusion', 'anchor', 'device']) expect(r.out.match(new RegExp(`^  ✓ ${name}`, 'gm'))).toHaveLength(6);
    expect(r.out).toContain('predates the on-chain enrolment');
    expect(r.out).toMatch(/6 bundles: 6 ok, 0 failed \(registry addresses taken from the bundles; pass --deployment FILE to pin them\)$/);
  });

  it('exit 1 when a check fails, naming the check and its code', async () => {
    const good = file('good1.json', bundles[0]);
    const unanchored = file('unanchored.json', bundleOf(1, tree, 2n));
    const r = await run(good, unanchored, `--rpc=${chain.handle.url}`);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^ {2}✗ anchor {4}NOT_ANCHORED: AnchorRegistry .* has no anchor for batch 2/m);
    expect(r.out).toContain('  => FAILED: anchor');
    expect(r.out).toMatch(/2 bundles: 1 ok, 1 failed/);
  });

  it('--offline never touches the network and lists the checks it skipped', async () => {
    const good = file('offline.json', bundleCollection(bundles.slice(0, 2)));
    const r = await run(good, '--offline');
    expect(r.code).toBe(0);
    expect(r.out.match(/^ {2}– anchor {4}not checked \(offline verification asked for\)/gm)).toHaveLength(2);
    expect(r.out.match(/^ {2}– device {4}not checked \(offline verification asked for\)/gm)).toHaveLength(2);
    expect(r.out).toContain('  => OK offline: anchor, device not checked');
    expect(r.out).toContain('2 bundles: 2 ok, 0 failed (offline: anchor and device checks skipped; run with --rpc URL to check them)');
    const bad = file(
      'offline-bad.json',
      edited(0, (b) => void (b.inclusion.root = `0x${'11'.repeat(32)}`)),
    );
    expect((await run(bad, '--offline')).code).toBe(1);
  });

  it('--json prints one JSON document with every verdict', async () => {
    const good = file('json.json', bundleCollection(bundles.slice(0, 2)));
    const r = await run(good, '--rpc', chain.handle.url, '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { format: string; ok: boolean; bundles: (BundleVerdict & { file: string; index: number })[] };
    expect(doc).toMatchObject({ format: 'vitalproof.verify-report', version: 1, ok: true, offline: false, rpc: chain.handle.url, trusted: null });
    expect(doc.bundles.map((b) => [b.file, b.index, b.ok])).toEqual([
      [good, 0, true],
      [good, 1, true],
    ]);
    expect(doc.bundles[0]!.checks.map((c) => c.status)).toEqual(['pass', 'pass', 'pass', 'pass', 'pass']);
  });

  it('--deployment pins the registries: the right record passes, another one fails UNTRUSTED_CONTRACT', async () => {
    const good = file('pinned.json', bundles[0]);
    const record = join(tmp, 'deployment.json');
    writeDeploymentRecord(record, deployment.record);
    const r = await run(good, '--rpc', chain.handle.url, '--deployment', record);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/1 bundle: 1 ok, 0 failed$/);
    const otherRecord = join(tmp, 'other-deployment.json');
    writeDeploymentRecord(otherRecord, {
      ...deployment.record,
      anchorRegistry: { ...deployment.record.anchorRegistry, address: getAddress(chain.wallet(8).address) },
    });
    const o = await run(good, '--rpc', chain.handle.url, '--deployment', otherRecord);
    expect(o.code).toBe(1);
    expect(o.out).toContain('✗ anchor    UNTRUSTED_CONTRACT');
  });

  it('exit 1 with CHAIN_UNREACHABLE when nothing listens at --rpc', async () => {
    const good = file('unreachable.json', bundles[0]);
    const port = await findFreePort();
    const r = await run(good, '--rpc', `http://127.0.0.1:${port}`);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/✗ anchor {4}CHAIN_UNREACHABLE/);
    expect(r.out).toMatch(/✗ device {4}CHAIN_UNREACHABLE/);
    expect(r.out).toMatch(/✓ signature/);
  });

  it('exit 2 for usage errors, naming the problem', async () => {
    const good = file('usage.json', bundles[0]);
    const neither = await run(good);
    expect(neither.code).toBe(2);
    expect(neither.err).toContain('choose --rpc URL');
    expect(neither.err).toContain('--offline');
    expect(neither.out).toBe('');
    expect((await run('--offline')).err).toContain('no bundle file given');
    expect((await run(good, '--offline', '--rpc', chain.handle.url)).err).toContain('--offline and --rpc exclude each other');
    expect((await run(good, '--rpc')).err).toContain('--rpc needs a value');
    expect((await run(good, '--rpc', 'ws://127.0.0.1:1')).err).toContain('http(s)');
    expect((await run(good, '--offline', '--frobnicate')).err).toContain('unknown option --frobnicate');
    expect((await run('--help')).code).toBe(0);
  });

  it('exit 2 for a file that is missing, not JSON, or not a valid bundle, naming the file and the field; nothing is verified', async () => {
    const good = file('good2.json', bundles[0]);
    const missing = join(tmp, 'missing.json');
    const notJson = file('not-json.json', '{ "format": ');
    const invalid = file('invalid.json', bundleCollection([bundles[0]!, edited(1, (b) => void (b.anchor.txHash = 'nope'))]));
    const empty = file('empty.json', bundleCollection([]));
    const r = await run(good, missing, notJson, invalid, empty, '--offline');
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(`error: ${missing}: cannot read it`);
    expect(r.err).toContain(`error: ${notJson}: not JSON`);
    expect(r.err).toContain(`error: ${invalid}: not a valid proof bundle: field bundles[1].anchor.txHash: BAD_VALUE`);
    expect(r.err).toContain(`error: ${empty}: the collection holds no bundles`);
    expect(r.err).not.toContain(good);
  });
});
