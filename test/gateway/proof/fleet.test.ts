/**
 * Proofs across the hospital (gateway/proof/fleet.ts, gateway/storage/batch-writer.ts) against a
 * real influxd and a real anvil with the contracts deployed: two gateway identities (two chain
 * accounts with GATEWAY_ROLE, two batch stores, real Anchorers, real batch writers into one
 * InfluxDB) accept one frame both. The hub's FleetProofService, with no batch store, makes a
 * bundle for it through either acceptance, and each verifies with the real verifier and
 * `vitalproof verify` against the chain, equal to the gateway's own bundle; an edited frame or
 * batch point is FRAME_TAMPERED; a batch not written or not anchored is NOT_YET_ANCHORED; the
 * batch writer catches up after influxd was down, losing and doubling nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeFrame } from '../../../firmware-proto/frame.js';
import { Anchorer } from '../../../gateway/anchor/anchorer.js';
import { BatchStore, sealedBatchOf } from '../../../gateway/anchor/batch-store.js';
import { STREAM, anchorRegistryAt } from '../../../gateway/chain/contracts.js';
import { deployContracts, type Deployment } from '../../../gateway/chain/deploy.js';
import { deviceIdToBytes8, patientRefOf, siteIdOf } from '../../../gateway/chain/ids.js';
import { verifyCommand } from '../../../gateway/cli/verify.js';
import { sha256Hex } from '../../../gateway/ingest/spool-record.js';
import type { AcceptedFrame } from '../../../gateway/ingest/types.js';
import { hashLeaf } from '../../../gateway/merkle/rfc6962.js';
import { FleetProofService } from '../../../gateway/proof/fleet.js';
import { runFleetAudit } from '../../../gateway/audit/fleet.js';
import { ProofService, type BundleResult } from '../../../gateway/proof/service.js';
import { verifyBundle } from '../../../gateway/proof/verify.js';
import { BATCHES_MEASUREMENT, batchToLine, readBatchPoints } from '../../../gateway/storage/batch-points.js';
import { BatchPointWriter } from '../../../gateway/storage/batch-writer.js';
import { InfluxSink } from '../../../gateway/storage/influx-sink.js';
import { frameToLines } from '../../../gateway/storage/schema.js';
import { useAnvil } from '../../support/anvil.js';
import { mined } from '../../support/contracts.js';
import { heartRate, testDevice } from '../../support/devices.js';
import { useInfluxd } from '../../support/influxd.js';

const chain = useAnvil();
const influx = useInfluxd();
const DB = 'fleetproofs';
const DEV = testDevice('fleet-proof');
const hex = (b: Uint8Array): string => `0x${Buffer.from(b).toString('hex')}`;

/** One bedside gateway's anchoring side: its batch store, anchorer and batch writer. */
interface Gw {
  id: string;
  account: string;
  sink: InfluxSink;
  store: BatchStore;
  anchorer: Anchorer;
  writer: BatchPointWriter;
  lsn: bigint;
}

let tmp: string;
let deployment: Deployment;
let hub: InfluxSink;
let gwA: Gw;
let gwB: Gw;
let T0: number;
const raws: Uint8Array[] = [];

/** Polls `cond` (no fixed sleeps): resolves once it holds, fails after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function gateway(id: string, wallet: number): Gw {
  const signer = chain.wallet(wallet);
  const dir = join(tmp, id);
  const store = new BatchStore(join(dir, 'batches'));
  const sink = new InfluxSink({ url: influx.handle.url, database: DB, gatewayId: id });
  const anchorer = new Anchorer(store, {
    provider: chain.provider,
    signer,
    anchorRegistry: anchorRegistryAt(deployment.record.anchorRegistry.address, signer),
    chainId: chain.handle.chainId,
    contract: deployment.record.anchorRegistry.address,
    gateway: signer.address,
    confirmations: 1,
  });
  const writer = new BatchPointWriter(store, sink, {
    gatewayId: id,
    stream: STREAM.FRAMES,
    cursorPath: join(dir, 'batch-points', 'frames.json'),
    retryMinMs: 50,
    retryMaxMs: 200,
    pollMs: 100,
  });
  anchorer.start();
  writer.start();
  return { id, account: signer.address, sink, store, anchorer, writer, lsn: 0n };
}

/**
 * Gateway `g` accepts the frames as its next batch: stored in InfluxDB with their placement
 * (unless `store` is false: the caller stores them), sealed and anchored (unless `anchor` is
 * false); resolves when anchored.
 */
async function accept(g: Gw, frames: Uint8Array[], opts: { anchor?: boolean; store?: boolean } = {}): Promise<{ seq: bigint; accepted: AcceptedFrame[] }> {
  const seq = g.store.lastSealed + 1n;
  const accepted: AcceptedFrame[] = frames.map((raw, leaf) => ({
    lsn: ++g.lsn,
    receivedAtMs: Date.now(),
    transport: 'mqtt',
    patient: DEV.patient,
    sha256: sha256Hex(raw),
    frame: decodeFrame(raw),
    placement: { batch: seq, leaf },
  }));
  if (opts.store !== false) await g.sink.write(accepted);
  if (opts.anchor === false) return { seq, accepted };
  const leaves = accepted.map((a) => ({ lsn: a.lsn, device: DEV.id, seq: a.frame.seq, timeMs: Number(a.frame.timestampMs), leafHash: hashLeaf(a.frame.raw) }));
  g.store.seal(sealedBatchOf(seq, leaves, Date.now(), Date.now()));
  g.anchorer.wake();
  await until(() => g.store.lastAnchored >= seq, `batch ${seq} of ${g.id} anchored`);
  return { seq, accepted };
}

function fleet(): FleetProofService {
  return new FleetProofService({
    sink: hub,
    provider: chain.provider,
    keyOf: (id) => (id === DEV.id ? DEV.keys.publicKey : undefined),
    deviceRegistry: { chainId: chain.handle.chainId, address: deployment.record.deviceRegistry.address },
    anchorRegistry: deployment.record.anchorRegistry.address,
  });
}

async function storedFrame(seq: bigint) {
  const [f] = await hub.queryFrames(DEV.id, undefined, undefined, seq);
  if (!f) throw new Error(`frame ${seq} not stored`);
  return f;
}

function ok(r: BundleResult) {
  if (!r.ok) throw new Error(`expected a bundle, got ${r.code}: ${r.message}`);
  return r.bundle;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'vp-fleet-proof-'));
  deployment = await deployContracts(chain.wallet(0), { gateways: [1, 2, 3].map((i) => chain.wallet(i).address) });
  await mined(
    deployment.deviceRegistry.enrol(
      deviceIdToBytes8(DEV.id),
      hex(DEV.keys.publicKey),
      patientRefOf(DEV.patient, createHash('sha256').update('fleet-proof').digest()),
      siteIdOf('ward-1'),
    ),
  );
  T0 = (await chain.latestTimestamp()) * 1000 + 60_000;
  for (let i = 0; i < 6; i++) raws.push(DEV.core.record(heartRate(T0 + i * 5_000, [60 + i, 61])).raw);
  hub = new InfluxSink({ url: influx.handle.url, database: DB, gatewayId: 'hub' });
  gwA = gateway('gw-a', 1);
  gwB = gateway('gw-b', 2);
  // Frame 2 (seq 2) is accepted by both: an honest resend to B after A's acknowledgement was lost.
  await accept(gwA, [raws[0]!, raws[1]!]);
  await accept(gwB, [raws[1]!, raws[2]!]);
  await until(() => gwA.writer.written === 1n && gwB.writer.written === 1n, 'both batches written to InfluxDB');
}, 30_000);

afterAll(async () => {
  for (const g of [gwA, gwB]) {
    await g?.writer.stop();
    await g?.anchorer.stop();
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('FleetProofService: a frame taken by two gateways', () => {
  it('is stored once with two acceptances, and each gives a bundle that verifies against the chain', async () => {
    const f = await storedFrame(2n);
    expect(f.acceptances.map((a) => [a.gateway, a.batch, a.leaf]).sort()).toEqual([
      ['gw-a', 1n, 1],
      ['gw-b', 1n, 0],
    ]);
    const service = fleet();
    for (const [gw, account] of [
      ['gw-a', gwA.account],
      ['gw-b', gwB.account],
    ] as const) {
      const b = ok(await service.bundleOf(f, { gateway: gw }));
      expect(b.anchor.gateway).toBe(account);
      expect(b.gatewayId).toBe(gw);
      const v = await verifyBundle(b, {
        provider: chain.provider,
        trusted: { chainId: chain.handle.chainId, anchorRegistry: deployment.record.anchorRegistry.address },
      });
      expect(v.checks.map((c) => `${c.check}:${c.status}`)).toEqual(['frame:pass', 'signature:pass', 'inclusion:pass', 'anchor:pass', 'device:pass']);
      expect(v.ok).toBe(true);
      const file = join(tmp, `bundle-${gw}.json`);
      writeFileSync(file, JSON.stringify(b));
      const out: string[] = [];
      expect(
        await verifyCommand(
          [file, '--rpc', chain.handle.url],
          (l) => out.push(l),
          (l) => out.push(l),
        ),
      ).toBe(0);
      expect(out.join('\n')).toMatch(/1 bundles?: 1 ok, 0 failed/);
    }
  });

  it('is one reading in the hospital audit, audited once, with both gateways and batches named', async () => {
    const r = await runFleetAudit({
      influx: { url: influx.handle.url, database: DB },
      chain: { provider: chain.provider, anchorRegistry: deployment.record.anchorRegistry.address, deviceRegistry: deployment.record.deviceRegistry.address },
      device: DEV.id,
    });
    expect(r.findings).toEqual([]);
    expect(r.ok).toBe(true);
    // Frames 1, 2, 3 (2 samples each): 9 points, each audited by one gateway.
    expect(r.summary).toMatchObject({ points: 9, devices: 1, readings: 3, acceptances: 4 });
    expect(r.summary.counts).toMatchObject({ intact: 9, seq_gap: 0, missing: 0, unexpected: 0 });
    expect(r.gateways.map((g) => [g.gateway, g.batches, g.trusted, g.counts.intact])).toEqual([
      ['gw-a', 1, [gwA.account.toLowerCase()], 6],
      ['gw-b', 1, [gwB.account.toLowerCase()], 3],
    ]);
    expect(r.shared).toEqual([
      {
        device: DEV.id,
        seq: '2',
        holders: [
          { gateway: 'gw-a', batch: '1', leaf: 1 },
          { gateway: 'gw-b', batch: '1', leaf: 0 },
        ],
      },
    ]);
  });

  it("makes the very bundle the gateway's own ProofService makes from its batch store", async () => {
    const own = new ProofService({
      store: gwA.store,
      sink: gwA.sink,
      keyOf: () => DEV.keys.publicKey,
      deviceRegistry: { chainId: chain.handle.chainId, address: deployment.record.deviceRegistry.address },
      gatewayId: 'gw-a',
    });
    const mine = ok(await own.byFrame(DEV.id, 1n));
    const hubs = ok(await fleet().byFrame(DEV.id, 1n));
    expect({ ...hubs, generatedAtMs: 0 }).toEqual({ ...mine, generatedAtMs: 0 });
  });

  it('gives bundles for a range across both gateways', async () => {
    const r = await fleet().byRange(DEV.id, undefined, undefined);
    expect(r.skipped).toEqual([]);
    const by = r.export.bundles.map((b) => [b.frame.seq, b.gatewayId]);
    expect(by.map(([seq]) => seq)).toEqual(['1', '2', '3']);
    // Seq 2 through either acceptance (both batches are written and anchored); the others through their only one.
    expect([by[0]![1], by[2]![1]]).toEqual(['gw-a', 'gw-b']);
    expect(['gw-a', 'gw-b']).toContain(by[1]![1]);
  });

  it('answers NOT_YET_ANCHORED for a batch not written to InfluxDB, and for a batch point the chain does not hold', async () => {
    // Stored and placed in gw-b's batch 2, which is neither sealed nor anchored.
    const { seq } = await accept(gwB, [raws[3]!], { anchor: false });
    const f = await storedFrame(4n);
    const r = await fleet().bundleOf(f);
    expect(r).toMatchObject({ ok: false, code: 'NOT_YET_ANCHORED' });
    // A point for batch 2 (as a writer would write it), but the chain has no anchor for it.
    const leaf = hashLeaf(raws[3]!);
    const b = sealedBatchOf(seq, [{ lsn: 9n, device: DEV.id, seq: 4n, timeMs: T0 + 15_000, leafHash: leaf }], 0, Date.now());
    const a1 = gwB.store.anchorOf(1n)!;
    await hub.writeLines([batchToLine('gw-b', b, { ...a1, seq })]);
    const r2 = await fleet().bundleOf(f);
    expect(r2).toMatchObject({ ok: false, code: 'NOT_YET_ANCHORED' });
    expect(r2.ok || r2.message).toContain('not on chain');
  });

  it('answers FRAME_TAMPERED for a frame edited in InfluxDB, and for a batch point edited to match it', async () => {
    const f = await storedFrame(3n);
    const forged = Buffer.from(raws[2]!);
    forged[forged.length - 1]! ^= 1; // a bit of the signature: not the frame gw-b anchored
    const forgedFrame: AcceptedFrame = { lsn: 99n, receivedAtMs: 0, transport: 'mqtt', patient: DEV.patient, sha256: f.sha256, frame: decodeFrame(forged) };
    // The `frames` point of seq 3 (same series and time: it overwrites) with other bytes.
    const line = frameToLines(forgedFrame, 'gw-b').find((l) => l.startsWith('frames,'))!;
    await hub.writeLines([line]);
    const edited = await storedFrame(3n);
    expect(Buffer.from(edited.raw).equals(Buffer.from(raws[2]!))).toBe(false);
    expect(await fleet().bundleOf(edited)).toMatchObject({ ok: false, code: 'FRAME_TAMPERED' });
    // The hospital audit names it, under the gateway that accepted it: the signature fails.
    const audit = await runFleetAudit({
      influx: { url: influx.handle.url, database: DB },
      chain: { provider: chain.provider, anchorRegistry: deployment.record.anchorRegistry.address, deviceRegistry: deployment.record.deviceRegistry.address },
      device: DEV.id,
    });
    expect(audit.ok).toBe(false);
    // (Frame 4 is the one the test above left unanchored.)
    expect(audit.findings.filter((x) => x.measurement === 'frames').map((x) => [x.code, x.gateway, x.seq])).toEqual([
      ['frame_tampered', 'gw-b', '3'],
      ['not_anchored', 'gw-b', '4'],
    ]);
    // The batch point edited too, so that its leaf is the forged frame's: the chain's root says no.
    const b1 = gwB.store.get(1n)!;
    const leaves = b1.leaves.map((l, i) => (i === 1 ? { ...l, leafHash: hashLeaf(edited.raw) } : l));
    await hub.writeLines([batchToLine('gw-b', { ...sealedBatchOf(1n, leaves, b1.openedAtMs, b1.sealedAtMs) }, gwB.store.anchorOf(1n)!)]);
    const r = await fleet().bundleOf(edited);
    expect(r).toMatchObject({ ok: false, code: 'FRAME_TAMPERED' });
    expect(r.ok || r.message).toContain('ANCHOR_MISMATCH');
    // Put both back: the frame proves again.
    await hub.writeLines([batchToLine('gw-b', b1, gwB.store.anchorOf(1n)!)]);
    await gwB.sink.write([
      {
        lsn: 2n,
        receivedAtMs: 0,
        transport: 'mqtt',
        patient: DEV.patient,
        sha256: sha256Hex(raws[2]!),
        frame: decodeFrame(raws[2]!),
        placement: { batch: 1n, leaf: 1 },
      },
    ]);
    ok(await fleet().bundleOf(await storedFrame(3n)));
  });
});

describe('BatchPointWriter', () => {
  it('catches up after influxd was down: every anchored batch written, none twice', async () => {
    await influx.handle.stop();
    const late = [...(await accept(gwA, [raws[4]!], { store: false })).accepted, ...(await accept(gwA, [raws[5]!], { store: false })).accepted];
    await until(() => !gwA.writer.status().up, 'the writer to see InfluxDB down');
    expect(gwA.writer.status()).toMatchObject({ written: '1', lag: 2, up: false });
    await influx.handle.restart();
    await gwA.sink.write(late);
    await until(() => gwA.writer.written === 3n, 'the writer to catch up');
    expect(gwA.writer.status()).toMatchObject({ written: '3', lag: 0, up: true });
    // A restarted writer resumes from its cursor: nothing to write again.
    await gwA.writer.stop();
    const again = new BatchPointWriter(gwA.store, gwA.sink, {
      gatewayId: 'gw-a',
      stream: STREAM.FRAMES,
      cursorPath: join(tmp, 'gw-a', 'batch-points', 'frames.json'),
    });
    expect(again.written).toBe(3n);
    const points = await readBatchPoints(hub, 'gw-a', STREAM.FRAMES);
    expect(points.map((p) => p.seq)).toEqual([1n, 2n, 3n]);
    for (const p of points) {
      const b = gwA.store.get(p.seq)!;
      const a = gwA.store.anchorOf(p.seq)!;
      expect(p).toMatchObject({
        root: b.root,
        leafCount: b.leafCount,
        address: a.gateway,
        txHash: a.txHash,
        blockNumber: a.blockNumber,
        blockHash: a.blockHash,
      });
      expect(p.leafHashes).toEqual(b.leaves.map((l) => l.leafHash));
    }
    const rows = await hub.queryRows(BATCHES_MEASUREMENT, []);
    expect(rows.filter((r) => r['gateway'] === 'gw-a')).toHaveLength(3);
    ok(await fleet().byFrame(DEV.id, 6n));
  });

  it("writes the access log's batches under their own stream tag, beside the frames'", async () => {
    const signer = chain.wallet(3);
    const store = new BatchStore(join(tmp, 'gw-a', 'access-batches'));
    const anchorer = new Anchorer(
      store,
      {
        provider: chain.provider,
        signer,
        anchorRegistry: anchorRegistryAt(deployment.record.anchorRegistry.address, signer),
        chainId: chain.handle.chainId,
        contract: deployment.record.anchorRegistry.address,
        gateway: signer.address,
        confirmations: 1,
      },
      { stream: STREAM.ACCESS_LOG },
    );
    const writer = new BatchPointWriter(store, hub, {
      gatewayId: 'gw-a',
      stream: STREAM.ACCESS_LOG,
      cursorPath: join(tmp, 'gw-a', 'batch-points', 'access.json'),
      pollMs: 100,
    });
    anchorer.start();
    writer.start();
    try {
      const leaves = [0, 1, 2].map((i) => ({
        lsn: BigInt(i + 1),
        device: '',
        seq: BigInt(i + 1),
        timeMs: T0 + i,
        leafHash: hashLeaf(Buffer.from(`entry ${i}`)),
      }));
      store.seal(sealedBatchOf(1n, leaves, Date.now(), Date.now()));
      anchorer.wake();
      await until(() => writer.written === 1n, 'the access batch written');
      const [p] = await readBatchPoints(hub, 'gw-a', STREAM.ACCESS_LOG);
      expect(p).toMatchObject({ stream: STREAM.ACCESS_LOG, seq: 1n, root: store.get(1n)!.root, leafCount: 3, address: signer.address });
      expect((await readBatchPoints(hub, 'gw-a', STREAM.FRAMES, 1n))[0]?.root).toBe(gwA.store.get(1n)!.root);
    } finally {
      await writer.stop();
      await anchorer.stop();
    }
  });
});
