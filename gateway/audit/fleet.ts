/**
 * The hospital audit (docs/audit.md, "The hospital audit"): what the hospital InfluxDB holds,
 * across every gateway that wrote to it, against what the wearables signed and what each
 * gateway anchored. It needs no gateway's data dir: each gateway's anchored batches are in the
 * store (`batches` points, docs/storage.md), each frame's place in them in its `acceptances`.
 *
 *   for each gateway G with acceptances (of the device or patient audited):
 *     G's batches   ← its `batches` points (leaf hashes, anchor) + its acceptances (which frame
 *                     is which leaf), as an AuditBatches source
 *     audit G       ← runAudit(gatewayId G, those batches, accounts: G's anchoring accounts that
 *                     hold GATEWAY_ROLE on chain, the chain decides, not the store)
 *   merge           each frame (and each of its samples) is audited once, by the first of the
 *                   gateways that accepted it (auditedBy), so the counts add up; a sequence gap
 *                   is one finding however many gateways' audits see it; `shared` lists frames
 *                   several gateways hold, with their batches and leaves
 *
 * The per-gateway audits are the one audit (./audit.ts); nothing of its checks is repeated here.
 */
import type { Provider } from 'ethers';
import { STREAM, anchorRegistryAt } from '../chain/contracts.js';
import type { AnchorRecord, BatchLeaf, SealedBatch } from '../anchor/batch-store.js';
import { InfluxSink } from '../storage/influx-sink.js';
import { readBatchPoints, type StoredBatch } from '../storage/batch-points.js';
import { ACCEPTANCES_MEASUREMENT, FRAMES_MEASUREMENT, fromStoredUint64, storedTag } from '../storage/schema.js';
import { textOf } from '../util/text.js';
import {
  auditRange,
  emptyCounts,
  runAudit,
  type AuditBatches,
  type AuditOptions,
  type AuditReport,
  type Counts,
  type Finding,
  type FindingCode,
} from './audit.js';

export interface FleetAuditOptions extends Omit<AuditOptions, 'batchStore' | 'gatewayId' | 'chain' | 'auditedBy'> {
  chain: { provider: Provider; anchorRegistry: string; deviceRegistry: string };
  /** One patient's devices (the pseudonym: the `patient` tag); default every device (or `device`). */
  patient?: string;
}

export interface FleetGatewayAudit {
  gateway: string;
  /** The accounts its batches were anchored by, and which of them hold GATEWAY_ROLE on chain. */
  accounts: string[];
  trusted: string[];
  /** Its anchored batches in the store. */
  batches: number;
  /** What its audit counted (frames it audited for the hospital only). */
  counts: Counts;
  ok: boolean;
}

export interface FleetAuditReport {
  version: 1;
  kind: 'hospital';
  ok: boolean;
  generatedAt: string;
  range: AuditReport['range'] & { patient?: string };
  influx: { url: string; database: string };
  gateways: FleetGatewayAudit[];
  summary: {
    points: number;
    devices: number;
    counts: Counts;
    /** Stored frames (each once, whichever gateways accepted it) and their acceptances. */
    readings: number;
    acceptances: number;
  };
  /** Frames more than one gateway accepted (at most 1,000 listed), with where each holds it. */
  shared: { device: string; seq: string; holders: { gateway: string; batch?: string; leaf?: number }[] }[];
  sharedOmitted: number;
  findings: (Finding & { gateway: string })[];
  findingsOmitted: number;
}

const MAX_SHARED = 1000;

/**
 * Audits the hospital store across gateways.
 * @throws StorageError when InfluxDB cannot be read; an ethers error when the chain cannot; TypeError for bad options.
 */
export async function runFleetAudit(o: FleetAuditOptions): Promise<FleetAuditReport> {
  const sink = new InfluxSink({ url: o.influx.url, database: o.influx.database, gatewayId: '-', username: o.influx.username, password: o.influx.password });
  const devices = o.device !== undefined ? [o.device] : o.patient !== undefined ? await devicesOf(sink, o.patient) : undefined;
  const acceptances = await acceptanceRows(sink, devices);
  const byGateway = new Map<string, Record<string, unknown>[]>();
  for (const a of acceptances) {
    const g = storedTag(a['gateway']);
    byGateway.set(g, [...(byGateway.get(g) ?? []), a]);
  }
  const gatewayIds = [...byGateway.keys()].sort();
  // The first of a frame's gateways (in this order) audits it; the others leave it.
  const auditedBy = (gateways: readonly string[]): string => [...gateways].sort()[0]!;
  const gateways: FleetGatewayAudit[] = [];
  const counts = emptyCounts();
  const findings: (Finding & { gateway: string })[] = [];
  const gapsSeen = new Set<string>();
  let omitted = 0;
  let points = 0;
  const auditedDevices = new Set<string>();
  const max = o.maxFindings ?? 100_000;
  for (const g of gatewayIds) {
    const stored = await readBatchPoints(sink, g, STREAM.FRAMES);
    const batches = batchesOf(g, stored, byGateway.get(g)!);
    const accounts = [...new Set(stored.map((b) => b.address.toLowerCase()))];
    const trusted = await holdersOfGatewayRole(o.chain, accounts);
    const deviceRuns = devices ?? [undefined];
    const gw: FleetGatewayAudit = { gateway: g, accounts, trusted, batches: stored.length, counts: emptyCounts(), ok: true };
    for (const device of deviceRuns) {
      const r = await runAudit({
        ...o,
        ...(device !== undefined ? { device } : {}),
        batchStore: batches,
        gatewayId: g,
        auditedBy,
        chain: { provider: o.chain.provider, anchorRegistry: o.chain.anchorRegistry, deviceRegistry: o.chain.deviceRegistry, gateways: trusted },
      });
      for (const d of r.devices) auditedDevices.add(d.device);
      for (const c of Object.keys(r.summary.counts) as FindingCode[]) {
        if (c === 'seq_gap') continue; // counted below, once per gap
        gw.counts[c] += r.summary.counts[c];
        counts[c] += r.summary.counts[c];
      }
      points += r.summary.points;
      for (const f of r.findings) {
        if (f.code === 'seq_gap') {
          const k = `${f.device}|${f.missingSeqs?.[0]}|${f.missingCount}`;
          if (gapsSeen.has(k)) continue;
          gapsSeen.add(k);
          gw.counts.seq_gap++;
          counts.seq_gap++;
        }
        if (findings.length < max) findings.push({ ...f, gateway: g });
        else omitted++;
      }
      omitted += r.findingsOmitted;
    }
    gw.ok = (Object.keys(gw.counts) as FindingCode[]).every((c) => c === 'intact' || gw.counts[c] === 0);
    gateways.push(gw);
  }
  const { readings, shared, sharedTotal } = await readingsOf(sink, devices, acceptances, o.fromMs, o.toMs);
  const bad = (Object.keys(counts) as FindingCode[]).filter((c) => c !== 'intact').reduce((n, c) => n + counts[c], 0);
  return {
    version: 1,
    kind: 'hospital',
    ok: bad === 0,
    generatedAt: new Date().toISOString(),
    range: { ...auditRange(o), ...(o.patient !== undefined ? { patient: o.patient } : {}) },
    influx: { url: o.influx.url, database: o.influx.database },
    gateways,
    summary: { points, devices: auditedDevices.size, counts, readings, acceptances: acceptances.filter((a) => inRange(a, o.fromMs, o.toMs)).length },
    shared,
    sharedOmitted: Math.max(0, sharedTotal - shared.length),
    findings,
    findingsOmitted: omitted,
  };
}

/** The devices whose frames carry the patient's pseudonym. */
async function devicesOf(sink: InfluxSink, patient: string): Promise<string[]> {
  const rows = await sink.queryRows(FRAMES_MEASUREMENT, ['"patient" = $patient'], { patient });
  return [...new Set(rows.map((r) => storedTag(r['device'])))].sort();
}

async function acceptanceRows(sink: InfluxSink, devices: string[] | undefined): Promise<Record<string, unknown>[]> {
  if (devices?.length === 0) return [];
  const params: Record<string, string> = {};
  const where = devices ? [`(${devices.map((d, i) => ((params[`d${i}`] = d), `"device" = $d${i}`)).join(' OR ')})`] : [];
  return sink.queryRows(ACCEPTANCES_MEASUREMENT, where, params);
}

/**
 * One gateway's anchored batches as the audit reads a batch store: leaf hashes from its `batches`
 * points (checked against the chain by the audit), each leaf's frame from its acceptances. A leaf
 * no acceptance names keeps its hash (the root still checks) but no device.
 */
function batchesOf(gateway: string, stored: StoredBatch[], acceptances: Record<string, unknown>[]): AuditBatches {
  const leafOf = new Map<string, Omit<BatchLeaf, 'leafHash'>>();
  let maxLsn = 0n;
  for (const a of acceptances) {
    if (a['batch'] === null || a['batch'] === undefined) continue;
    const lsn = fromStoredUint64(BigInt(a['lsn'] as string | number));
    leafOf.set(`${textOf(a['batch'])}|${textOf(a['leaf'])}`, {
      lsn,
      device: storedTag(a['device']),
      seq: fromStoredUint64(BigInt(a['seq'] as string | number)),
      timeMs: Number(BigInt(a['time'] as string | number) / 1_000_000n),
    });
  }
  const byseq = new Map<bigint, StoredBatch>();
  for (const b of stored) byseq.set(b.seq, b);
  let last = 0n;
  for (const s of byseq.keys()) if (s > last) last = s;
  const batch = (seq: bigint): SealedBatch | undefined => {
    const b = byseq.get(seq);
    if (!b) return undefined;
    const leaves: BatchLeaf[] = b.leafHashes.map((leafHash, i) => {
      const m = leafOf.get(`${seq}|${i}`);
      if (m && m.lsn > maxLsn) maxLsn = m.lsn;
      return { ...(m ?? { lsn: 0n, device: '', seq: 0n, timeMs: b.firstFrameTimeMs }), leafHash };
    });
    const lsns = leaves.filter((l) => l.device !== '').map((l) => l.lsn);
    return {
      seq,
      leafCount: b.leafCount,
      root: b.root,
      firstFrameTimeMs: b.firstFrameTimeMs,
      lastFrameTimeMs: b.lastFrameTimeMs,
      firstLsn: lsns.length ? lsns.reduce((x, y) => (x < y ? x : y)) : 0n,
      lastLsn: lsns.length ? lsns.reduce((x, y) => (x > y ? x : y)) : 0n,
      openedAtMs: 0,
      sealedAtMs: Number(b.timeNs / 1_000_000n),
      leaves,
    };
  };
  // Every batch once: the audit's scan reads each; lastSealedLsn is the highest spool position a batch names.
  for (const s of byseq.keys()) batch(s);
  return {
    dir: `influx:${BATCHES_LABEL}/${gateway}`,
    lastSealed: last,
    lastAnchored: last,
    lastSealedLsn: maxLsn,
    get: batch,
    anchorOf: (seq: bigint): AnchorRecord | undefined => {
      const b = byseq.get(seq);
      if (!b) return undefined;
      return {
        seq,
        chainId: b.chainId,
        contract: b.contract,
        gateway: b.address,
        stream: STREAM.FRAMES,
        txHash: b.txHash,
        blockNumber: b.blockNumber,
        blockHash: b.blockHash,
        gasUsed: '0',
        confirmedAtMs: 0,
      };
    },
  };
}

const BATCHES_LABEL = 'batches';

/** The accounts among `accounts` that hold GATEWAY_ROLE on the AnchorRegistry now: the chain says who may anchor, not the store. */
async function holdersOfGatewayRole(chain: FleetAuditOptions['chain'], accounts: string[]): Promise<string[]> {
  const reg = anchorRegistryAt(chain.anchorRegistry, chain.provider) as unknown as { getFunction(name: string): (...args: unknown[]) => Promise<unknown> };
  const role = (await reg.getFunction('GATEWAY_ROLE')()) as string;
  const out: string[] = [];
  for (const a of accounts) if ((await reg.getFunction('hasRole')(role, a)) as boolean) out.push(a);
  return out;
}

function inRange(r: Record<string, unknown>, fromMs?: number, toMs?: number): boolean {
  const t = BigInt(r['time'] as string | number);
  return (fromMs === undefined || t >= BigInt(fromMs) * 1_000_000n) && (toMs === undefined || t < BigInt(toMs) * 1_000_000n);
}

/** Readings (stored frames, each once) in the range, and the frames several gateways hold. */
async function readingsOf(
  sink: InfluxSink,
  devices: string[] | undefined,
  acceptances: Record<string, unknown>[],
  fromMs?: number,
  toMs?: number,
): Promise<{ readings: number; shared: FleetAuditReport['shared']; sharedTotal: number }> {
  const params: Record<string, string> = {};
  const where: string[] = [];
  if (devices) where.push(`(${devices.map((d, i) => ((params[`d${i}`] = d), `"device" = $d${i}`)).join(' OR ')})`);
  if (fromMs !== undefined) where.push(`time >= ${BigInt(fromMs) * 1_000_000n}`);
  if (toMs !== undefined) where.push(`time < ${BigInt(toMs) * 1_000_000n}`);
  const frames = devices?.length === 0 ? [] : await sink.queryRows(FRAMES_MEASUREMENT, where, params);
  const keys = new Set(frames.map((r) => `${storedTag(r['device'])}|${textOf(r['seq'])}`));
  const holders = new Map<string, FleetAuditReport['shared'][number]['holders']>();
  for (const a of acceptances) {
    if (!inRange(a, fromMs, toMs)) continue;
    const k = `${storedTag(a['device'])}|${textOf(a['seq'])}`;
    const h = {
      gateway: storedTag(a['gateway']),
      ...(a['batch'] !== null && a['batch'] !== undefined ? { batch: textOf(a['batch']), leaf: Number(a['leaf']) } : {}),
    };
    holders.set(k, [...(holders.get(k) ?? []), h]);
  }
  const sharedAll = [...holders].filter(([, h]) => new Set(h.map((x) => x.gateway)).size > 1);
  return {
    readings: keys.size,
    shared: sharedAll.slice(0, MAX_SHARED).map(([k, h]) => {
      const [device, seq] = k.split('|') as [string, string];
      return { device, seq: fromStoredUint64(BigInt(seq)).toString(), holders: h.sort((x, y) => x.gateway.localeCompare(y.gateway)) };
    }),
    sharedTotal: sharedAll.length,
  };
}
