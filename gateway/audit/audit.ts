/**
 * The audit: what InfluxDB holds, point by point, against the frames the wearables signed,
 * the Merkle batches the gateway cut, and the roots anchored on chain (docs/audit.md).
 *
 * InfluxDB is untrusted storage (docs/trust-model.md). A stored reading is `intact` only
 * when all of this holds:
 *
 *   point ──(device, time; seq)──► `frames` point ──raw──► decodeFrame ─► sample i equals the point
 *                                                      ├──► Ed25519 signature under the device key
 *                                                      └──► hashLeaf(raw) = leaf `leaf` of batch `batch`
 *   batch (batch store) ──► RFC 9162 root of its leaf hashes = root anchored on chain, same leaf count
 *
 * Every stored point gets exactly one code (FINDING_CODES); `missing` and `seq_gap` name what
 * is absent. What the audit reads: one query per measurement per device over the range (plus,
 * per device, one for frames that start before the range but carry samples inside it); each
 * batch file once; each frame decoded and verified once; each batch's tree built once; one
 * chain call per batch and two per device.
 */
import { createHash } from 'node:crypto';
import type { Provider } from 'ethers';
import { SENSORS, sensorByName } from '../../firmware-proto/catalogue.js';
import { decodeFrame, sampleTimeNs, sampleValue, type Frame } from '../../firmware-proto/frame.js';
import { FRAME_TAG } from '../../firmware-proto/signing.js';
import type { BatchStore, SealedBatch } from '../anchor/batch-store.js';
import { STREAM, anchorRegistryAt, decodeRevert, deviceRegistryAt } from '../chain/contracts.js';
import { deviceIdToBytes8 } from '../chain/ids.js';
import { hashLeaf } from '../merkle/rfc6962.js';
import { Rfc6962Tree } from '../merkle/tree.js';
import { InfluxHttp, seriesRows } from '../storage/influx-http.js';
import { ACCEPTANCES_MEASUREMENT, FRAMES_MEASUREMENT, fromStoredUint64, storedTag, toStoredUint64 } from '../storage/schema.js';
import { KeyCache, verifyEd25519 } from '../verify/ed25519.js';
import { textOf } from '../util/text.js';

/** The closed set of finding codes, with what each means (docs/audit.md says what to do). */
export const FINDING_CODES = {
  intact: 'the point equals its signed frame; the frame verifies under the device key, is its batch leaf, and the batch root is anchored on chain',
  edited: 'a value, the seq field or another field of the point differs from its signed frame (or from its batch leaf)',
  frame_tampered:
    "the point's frame is not what the device signed and the gateway anchored: bad signature, undecodable, not its batch leaf, or its batch disagrees with the chain",
  missing: 'a sample the signed frame carries has no point, or a batch leaf has no `frames` point at all',
  not_anchored: "the point's frame is in a batch that is open, or sealed but not anchored (confirmed) yet",
  unverifiable: 'the point equals its frame, but the frame could not be checked to the end: no device key, or no chain to check the anchor against',
  unexpected: 'a point that no stored frame carries (inserted), or a second copy of a frame',
  seq_gap: 'sequence numbers of a device missing between consecutive frames (frames the device signed that no batch and no stored frame holds)',
} as const;
export type FindingCode = keyof typeof FINDING_CODES;
/** The codes a stored point can get; each stored point gets exactly one. */
export const POINT_CODES = ['intact', 'edited', 'frame_tampered', 'not_anchored', 'unverifiable', 'unexpected'] as const satisfies readonly FindingCode[];

export interface AuditChain {
  provider: Provider;
  /** AnchorRegistry address. */
  anchorRegistry: string;
  /** DeviceRegistry address. */
  deviceRegistry: string;
  /** The gateway accounts whose anchors the audit accepts (the batch store's anchor records name one). */
  gateways: readonly string[];
}

/** What the audit reads of a gateway's batches: its batch store (dataDir/batches), or the hospital InfluxDB's `batches` points (./fleet.ts). */
export type AuditBatches = Pick<BatchStore, 'dir' | 'lastSealed' | 'lastAnchored' | 'lastSealedLsn' | 'get' | 'anchorOf'>;

export interface AuditOptions {
  influx: { url: string; database: string; username?: string; password?: string; retentionPolicy?: string; timeoutMs?: number };
  /** The batches of the gateway that wrote the points. */
  batchStore: AuditBatches;
  /** Undefined: anchors cannot be checked; anchored frames are then `unverifiable`, never intact. */
  chain?: AuditChain;
  /** Public keys of devices the chain's DeviceRegistry does not hold (e.g. dataDir/registry.json). */
  keys?: (deviceId: string) => Uint8Array | undefined;
  /** How `keys` is named in the report. Default 'fallback'. */
  keysSource?: string;
  /** One device (16 hex digits); default every device. */
  device?: string;
  /**
   * The gateway whose batch store this is: only its acceptances are audited against the store
   * (schema v2), and only v1 points tagged with it; frames that only other gateways of a shared
   * InfluxDB accepted are left to their audits (named in otherGateways). Default: any acceptance.
   */
  gatewayId?: string;
  /**
   * A hospital audit (./fleet.ts) runs one audit per gateway over the shared store: a frame two
   * gateways accepted is audited by the one this names (the others leave it, as they leave frames
   * they did not accept), so that each stored point is counted once.
   */
  auditedBy?: (gateways: readonly string[]) => string;
  /** [fromMs, toMs): point time (frame time for `frames` points, sample time for samples). */
  fromMs?: number;
  toMs?: number;
  /** Findings listed in the report (counts are always complete). Default 100,000. */
  maxFindings?: number;
}

export interface Diff {
  field: string;
  stored: string | number | null;
  expected: string | number | null;
}

export interface Finding {
  code: Exclude<FindingCode, 'intact'>;
  measurement: string;
  device: string;
  /** ns since the epoch, decimal (absent for seq_gap). */
  timeNs?: string;
  /** ISO 8601 with ns. */
  time?: string;
  seq?: string;
  batch?: string;
  leaf?: number;
  /** The first differing field (edited), or the sample's channel(s) (missing). */
  field?: string;
  stored?: string | number | null;
  expected?: string | number | null;
  /** Every differing field, when more than one. */
  diffs?: Diff[];
  /** seq_gap: the sequence numbers missing (at most 1,000 listed), and how many. */
  missingSeqs?: string[];
  missingCount?: number;
  reason: string;
}

export type Counts = Record<FindingCode, number>;

export interface DeviceAudit {
  device: string;
  /** Where the device key came from: 'chain', the keysSource label, or 'none'. */
  keySource: string;
  /** The chain and the fallback both hold a key for the device, and they differ (the chain's is used). */
  keyMismatch?: boolean;
  revokedAtMs?: number;
  /** Stored points audited (sample points and `frames` points). */
  points: number;
  frames: number;
  counts: Counts;
  firstSeq?: string;
  lastSeq?: string;
  firstTimeNs?: string;
  lastTimeNs?: string;
}

export type BatchStatus = 'anchored' | 'open' | 'sealed' | 'absent' | 'inconsistent' | 'unchecked' | 'untrusted_gateway' | 'not_on_chain' | 'root_mismatch';

export interface BatchAudit {
  batch: string;
  status: BatchStatus;
  reason: string;
  leafCount?: number;
  /** Recomputed from the batch store's leaf hashes. */
  root?: string;
  chainRoot?: string;
  chainLeafCount?: number;
  gateway?: string;
  txHash?: string;
  block?: number;
}

export interface AuditReport {
  version: 1;
  /** True only when every point is intact and nothing is missing and no seq is skipped. */
  ok: boolean;
  generatedAt: string;
  range: { fromMs?: number; toMs?: number; from?: string; to?: string; device?: string; gatewayId?: string };
  influx: { url: string; database: string };
  chain: { anchorRegistry: string; deviceRegistry: string; gateways: string[] } | null;
  batchStore: { dir: string; lastSealed: string; lastAnchored: string };
  /** How many devices took their key from each source. */
  keySources: Record<string, number>;
  summary: { points: number; devices: number; counts: Counts };
  devices: DeviceAudit[];
  batches: BatchAudit[];
  /** Gateways seen in InfluxDB (v1 gateway tags, v2 acceptances) whose frames were not audited (gatewayId given). */
  otherGateways: string[];
  queries: number;
  findings: Finding[];
  /** Findings counted but not listed (maxFindings). */
  findingsOmitted: number;
}

/** Sequence numbers listed per seq_gap finding. */
const MAX_GAP_LIST = 1000;
/** How far outside the range batch leaves are looked at for seqs that close an apparent gap. */
const GAP_SLACK_MS = 10 * 60_000;
/** Seqs looked up in InfluxDB, per device, before gaps are reported (range-limited audits). */
const MAX_GAP_LOOKUP = 10_000;
/** Batch files held in memory at once (each read once per audit in the usual, time-ordered case). */
const MAX_CACHED_BATCHES = 256;
/** Seqs per InfluxQL statement when fetching frames by seq. */
const SEQS_PER_QUERY = 100;
const TAGS = new Set(['time', 'device', 'patient', 'gateway', 'sensor']);
/** The fields of an `acceptances` point the audit checks against the batch store (v1 `frames` points carried them). */
const ACCEPTANCE_FIELDS = ['lsn', 'received_at', 'transport', 'batch', 'leaf'] as const;

/** The `range` of a report: the time range asked for (ms and ISO) and the device. */
export function auditRange(o: Pick<AuditOptions, 'fromMs' | 'toMs' | 'device'>): AuditReport['range'] {
  return {
    ...(o.fromMs !== undefined ? { fromMs: o.fromMs, from: new Date(o.fromMs).toISOString() } : {}),
    ...(o.toMs !== undefined ? { toMs: o.toMs, to: new Date(o.toMs).toISOString() } : {}),
    ...(o.device !== undefined ? { device: o.device } : {}),
  };
}

export function emptyCounts(): Counts {
  return Object.fromEntries(Object.keys(FINDING_CODES).map((c) => [c, 0])) as Counts;
}

/**
 * A `frames` point as stored, read leniently: anything in it may have been edited. A v2 point's
 * acceptance by the audited gateway (lsn, batch, leaf, ...) is merged into `fields`, where a v1
 * point kept them.
 */
interface FrameRow {
  timeNs: bigint;
  device: string;
  patient: string;
  /** The point's own gateway tag: '' for v2 points. */
  gateway: string;
  sensor: string;
  fields: Record<string, unknown>;
  /** v2: only these other gateways accepted the frame, not the audited one; or (delegated) another of its gateways audits it. */
  foreign?: string[];
  /** The audited gateway accepted it too, but auditedBy gave it to another (a hospital audit). */
  delegated?: boolean;
}

/** What the audit concluded about one stored frame. */
interface FrameCtx {
  row: FrameRow;
  /** Its time lies in the audited range (its `frames` point is one of the audited points). */
  inRange: boolean;
  frame?: Frame;
  /** Decoded sensor name, else the tag. */
  sensor: string;
  /** Decoded seq, else the stored field. */
  seq: bigint | undefined;
  /** The batch and leaf whose leaf hash is this frame's. */
  place?: { batch: bigint; leaf: number };
  status: 'intact' | 'frame_tampered' | 'not_anchored' | 'unverifiable';
  reasons: string[];
  /** Fields of the `frames` point that differ from the signed frame or its leaf. */
  edits: Diff[];
  /** Another stored frames point carries the same frame. */
  duplicateOf?: FrameCtx;
  /** Accepted only by other gateways (FrameRow.foreign) and in no batch of this store: not audited here, but its seq is no gap. */
  foreign?: boolean;
}

interface BatchVerdict {
  audit: BatchAudit;
  /** What the verdict means for the frames in it. */
  effect: 'intact' | 'frame_tampered' | 'not_anchored' | 'unverifiable';
}

/** Counts a point's code (or a missing sample, a gap) and lists it unless intact. */
type AddFinding = (f: Finding | { code: 'intact' }) => void;

interface DeviceKey {
  key?: Uint8Array;
  source: string;
  mismatch?: boolean;
  revokedAtMs?: number;
}

/**
 * Audits what InfluxDB holds for one device or all, over [fromMs, toMs).
 * @throws StorageError when InfluxDB cannot be queried; an ethers error when the chain
 *   cannot be read; TypeError for bad options. Whatever the data holds is a finding, never a throw.
 * @example
 *   const report = await runAudit({ influx: { url, database: 'vitalproof' }, batchStore: new BatchStore(join(dataDir, 'batches')),
 *     chain: { provider, anchorRegistry, deviceRegistry, gateways: [gatewayAddress] }, device: '3f2a9c0d4e5b6a71' });
 *   report.ok; report.summary.counts.edited; report.findings[0];
 */
export async function runAudit(opts: AuditOptions): Promise<AuditReport> {
  for (const [k, v] of [
    ['fromMs', opts.fromMs],
    ['toMs', opts.toMs],
  ] as const) {
    if (v !== undefined && !Number.isSafeInteger(v)) throw new TypeError(`${k} must be an integer number of ms, got ${v}`);
  }
  if (opts.fromMs !== undefined && opts.toMs !== undefined && opts.toMs <= opts.fromMs)
    throw new TypeError(`toMs (${opts.toMs}) must be after fromMs (${opts.fromMs})`);
  if (opts.device !== undefined && !/^[0-9a-f]{16}$/.test(opts.device)) throw new TypeError(`device must be 16 lowercase hex digits, got "${opts.device}"`);
  return new Audit(opts).run();
}

class Audit {
  private readonly http: InfluxHttp;
  private readonly store: AuditBatches;
  private readonly fromNs: bigint | undefined;
  private readonly toNs: bigint | undefined;
  private readonly keyCache = new KeyCache();
  private readonly verdicts = new Map<bigint, Promise<BatchVerdict>>();
  private readonly batchCache = new Map<bigint, SealedBatch | undefined>();
  private readonly unreadable = new Map<bigint, string>();
  /** In-range batch leaves per device, and every leaf of the scanned batches by device|seq. */
  private readonly leavesByDevice = new Map<string, { batch: bigint; leaf: number; seq: bigint; timeMs: number }[]>();
  private readonly leafByDeviceSeq = new Map<string, { batch: bigint; leaf: number }>();
  /** Seqs of batch leaves just outside the range (GAP_SLACK_MS), per device: they fill no gap inside it. */
  private readonly nearSeqs = new Map<string, Set<bigint>>();
  private readonly findings: Finding[] = [];
  private omitted = 0;
  private readonly counts = emptyCounts();
  private queries = 0;
  private readonly trusted: Set<string>;
  /** Gateways whose acceptances were seen but not audited. */
  private readonly others = new Set<string>();

  constructor(private readonly o: AuditOptions) {
    this.http = new InfluxHttp({ url: o.influx.url, username: o.influx.username, password: o.influx.password, timeoutMs: o.influx.timeoutMs ?? 60_000 });
    this.store = o.batchStore;
    this.fromNs = o.fromMs !== undefined ? BigInt(o.fromMs) * 1_000_000n : undefined;
    this.toNs = o.toMs !== undefined ? BigInt(o.toMs) * 1_000_000n : undefined;
    this.trusted = new Set((o.chain?.gateways ?? []).map((g) => g.toLowerCase()));
  }

  async run(): Promise<AuditReport> {
    const { o } = this;
    this.scanBatches();
    const { byDevice, otherGateways: tagged } = await this.series();
    const devices = new Set<string>([...byDevice.keys(), ...this.leavesByDevice.keys()]);
    if (o.device !== undefined) for (const d of [...devices]) if (d !== o.device) devices.delete(d);
    const perDevice: DeviceAudit[] = [];
    for (const device of [...devices].sort()) {
      const d = await this.auditDevice(device, byDevice.get(device) ?? new Set());
      if (d.points > 0 || d.counts.missing > 0 || d.counts.seq_gap > 0) perDevice.push(d);
    }
    const batches = await Promise.all([...this.verdicts.values()]);
    const keySources: Record<string, number> = {};
    for (const d of perDevice) keySources[d.keySource] = (keySources[d.keySource] ?? 0) + 1;
    const points = POINT_CODES.reduce((n, c) => n + this.counts[c], 0);
    const bad = (Object.keys(this.counts) as FindingCode[]).filter((c) => c !== 'intact').reduce((n, c) => n + this.counts[c], 0);
    return {
      version: 1,
      ok: bad === 0,
      generatedAt: new Date().toISOString(),
      range: { ...auditRange(o), ...(o.gatewayId !== undefined ? { gatewayId: o.gatewayId } : {}) },
      influx: { url: o.influx.url, database: o.influx.database },
      chain: o.chain ? { anchorRegistry: o.chain.anchorRegistry, deviceRegistry: o.chain.deviceRegistry, gateways: [...o.chain.gateways] } : null,
      batchStore: { dir: this.store.dir, lastSealed: this.store.lastSealed.toString(), lastAnchored: this.store.lastAnchored.toString() },
      keySources,
      summary: { points, devices: perDevice.length, counts: { ...this.counts } },
      devices: perDevice,
      batches: batches.map((b) => b.audit).sort((a, b) => (BigInt(a.batch) < BigInt(b.batch) ? -1 : 1)),
      otherGateways: [...new Set([...tagged, ...this.others])].sort(),
      queries: this.queries,
      findings: this.findings,
      findingsOmitted: this.omitted,
    };
  }

  // ---- batches ----

  /** A sealed batch, from a bounded cache; undefined when absent or unreadable (the reason is kept for its verdict). */
  private getBatch(seq: bigint): SealedBatch | undefined {
    if (this.batchCache.has(seq)) {
      const hit = this.batchCache.get(seq);
      this.batchCache.delete(seq);
      this.batchCache.set(seq, hit);
      return hit;
    }
    let b: SealedBatch | undefined;
    try {
      b = this.store.get(seq);
    } catch (e) {
      this.unreadable.set(seq, (e as Error).message);
    }
    this.batchCache.set(seq, b);
    if (this.batchCache.size > MAX_CACHED_BATCHES) this.batchCache.delete(this.batchCache.keys().next().value as bigint);
    return b;
  }

  /** Reads every sealed batch once and indexes its leaves of the audited device(s) in (and near) the range. */
  private scanBatches(): void {
    const fromMs = this.o.fromMs ?? Number.NEGATIVE_INFINITY;
    const toMs = this.o.toMs ?? Number.POSITIVE_INFINITY;
    // A device numbers frames as it records them, and a frame's time is its first sample, so a
    // frame just outside the range may carry a seq between two frames inside it.
    const nearFrom = fromMs - GAP_SLACK_MS;
    const nearTo = toMs + GAP_SLACK_MS;
    for (let s = 1n; s <= this.store.lastSealed; s++) {
      const b = this.getBatch(s);
      if (!b) continue;
      if (b.lastFrameTimeMs < nearFrom || b.firstFrameTimeMs >= nearTo) continue;
      b.leaves.forEach((l, i) => {
        // A leaf the source cannot name (a hospital audit's leaf whose acceptance is gone): nothing to index it by.
        if (l.device === '') return;
        if (l.timeMs < nearFrom || l.timeMs >= nearTo) return;
        if (this.o.device !== undefined && l.device !== this.o.device) return;
        if (l.timeMs < fromMs || l.timeMs >= toMs) {
          const near = this.nearSeqs.get(l.device) ?? new Set<bigint>();
          near.add(l.seq);
          this.nearSeqs.set(l.device, near);
          return;
        }
        const list = this.leavesByDevice.get(l.device) ?? [];
        list.push({ batch: s, leaf: i, seq: l.seq, timeMs: l.timeMs });
        this.leavesByDevice.set(l.device, list);
        this.leafByDeviceSeq.set(`${l.device}|${l.seq}`, { batch: s, leaf: i });
      });
    }
  }

  /** The batch's standing, computed once: its root from its leaves, its anchor record, the chain. */
  private verdict(seq: bigint): Promise<BatchVerdict> {
    let v = this.verdicts.get(seq);
    if (!v) {
      v = this.computeVerdict(seq);
      this.verdicts.set(seq, v);
    }
    return v;
  }

  private async computeVerdict(seq: bigint): Promise<BatchVerdict> {
    const s = seq.toString();
    if (seq > this.store.lastSealed)
      return {
        effect: 'not_anchored',
        audit: { batch: s, status: 'open', reason: `batch ${s} is still open: not sealed yet (last sealed ${this.store.lastSealed})` },
      };
    const b = this.getBatch(seq);
    if (!b) {
      const why = this.unreadable.get(seq);
      return {
        effect: 'unverifiable',
        audit: {
          batch: s,
          status: 'absent',
          reason: why
            ? `batch ${s} cannot be read from the batch store: ${why}`
            : `batch ${s} is sealed but its file is not in the batch store ${this.store.dir}`,
        },
      };
    }
    const root = `0x${Rfc6962Tree.fromLeafHashes(b.leaves.map((l) => l.leafHash))
      .root()
      .toString('hex')}`;
    const base = { batch: s, leafCount: b.leafCount, root };
    if (root !== b.root.toLowerCase()) {
      return {
        effect: 'frame_tampered',
        audit: {
          ...base,
          status: 'inconsistent',
          reason: `batch ${s}: its leaf hashes give root ${root}, its file says ${b.root}: the batch store was altered`,
        },
      };
    }
    let anchor: ReturnType<BatchStore['anchorOf']>;
    try {
      anchor = this.store.anchorOf(seq);
    } catch (e) {
      return { effect: 'not_anchored', audit: { ...base, status: 'sealed', reason: `batch ${s}: its anchor record cannot be read (${(e as Error).message})` } };
    }
    if (!anchor) return { effect: 'not_anchored', audit: { ...base, status: 'sealed', reason: `batch ${s} is sealed but not anchored (confirmed) yet` } };
    const rec = { gateway: anchor.gateway, txHash: anchor.txHash, block: anchor.blockNumber };
    const chain = this.o.chain;
    if (!chain)
      return {
        effect: 'unverifiable',
        audit: {
          ...base,
          ...rec,
          status: 'unchecked',
          reason: `batch ${s} is recorded as anchored (tx ${anchor.txHash}) but the audit has no chain to check it against`,
        },
      };
    if (!this.trusted.has(anchor.gateway.toLowerCase())) {
      return {
        effect: 'unverifiable',
        audit: {
          ...base,
          ...rec,
          status: 'untrusted_gateway',
          reason: `batch ${s} was anchored by ${anchor.gateway}, not by a gateway the audit trusts (${[...this.trusted].join(', ')})`,
        },
      };
    }
    const reg = anchorRegistryAt(chain.anchorRegistry, chain.provider);
    let onChain: { root: string; leafCount: bigint; firstFrameTimeMs: bigint; lastFrameTimeMs: bigint; blockNumber: bigint };
    try {
      onChain = await reg.anchorOf(anchor.gateway, STREAM.FRAMES, seq);
    } catch (e) {
      if (decodeRevert(e, reg.interface)?.name !== 'AnchorRegistryUnknownAnchor') throw e;
      return {
        effect: 'not_anchored',
        audit: {
          ...base,
          ...rec,
          status: 'not_on_chain',
          reason: `batch ${s} is recorded as anchored (tx ${anchor.txHash}) but the chain holds no anchor for it: another chain, or the chain was reset`,
        },
      };
    }
    const chainRoot = onChain.root.toLowerCase();
    const chainLeafCount = Number(onChain.leafCount);
    const withChain = { ...base, ...rec, chainRoot, chainLeafCount };
    if (chainRoot !== root || chainLeafCount !== b.leafCount) {
      return {
        effect: 'frame_tampered',
        audit: {
          ...withChain,
          status: 'root_mismatch',
          reason: `batch ${s}: root ${root} of ${b.leafCount} leaves from the batch store, but the chain anchored ${chainRoot} of ${chainLeafCount} leaves`,
        },
      };
    }
    // The time window anchored with the root is what proofs check frame times against.
    const first = Number(onChain.firstFrameTimeMs);
    const last = Number(onChain.lastFrameTimeMs);
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const l of b.leaves) {
      if (l.timeMs < lo) lo = l.timeMs;
      if (l.timeMs > hi) hi = l.timeMs;
    }
    if (first !== lo || last !== hi) {
      return {
        effect: 'frame_tampered',
        audit: {
          ...withChain,
          status: 'root_mismatch',
          reason: `batch ${s}: the chain anchored the frame-time window [${first}, ${last}] ms, the batch store's leaves span [${lo}, ${hi}] ms`,
        },
      };
    }
    return {
      effect: 'intact',
      audit: {
        ...withChain,
        block: Number(onChain.blockNumber),
        status: 'anchored',
        reason: `root and leaf count anchored on chain in block ${onChain.blockNumber}`,
      },
    };
  }

  // ---- InfluxDB ----

  private from(measurement: string): string {
    const rp = this.o.influx.retentionPolicy;
    return rp ? `${ident(rp)}.${ident(measurement)}` : ident(measurement);
  }

  private async select(measurement: string, where: string[], params: Record<string, string>): Promise<Record<string, unknown>[]> {
    this.queries++;
    const q = `SELECT * FROM ${this.from(measurement)} WHERE ${where.join(' AND ')}`;
    return seriesRows(await this.http.query(q, { database: this.o.influx.database, params }));
  }

  /**
   * `frames` rows of one device, each v2 row with its acceptance by the audited gateway merged
   * in (one more query over the rows' time span). A v2 frame that only other gateways accepted
   * is marked foreign.
   */
  private async frameRows(device: string, where: string[], params: Record<string, string>): Promise<FrameRow[]> {
    const rows = (await this.select(FRAMES_MEASUREMENT, where, params)).map(toFrameRow);
    const v2 = rows.filter((r) => r.fields['lsn'] === null || r.fields['lsn'] === undefined);
    if (v2.length === 0) return rows;
    let lo = v2[0]!.timeNs;
    let hi = lo;
    for (const r of v2) {
      if (r.timeNs < lo) lo = r.timeNs;
      if (r.timeNs > hi) hi = r.timeNs;
    }
    const byFrame = new Map<string, Record<string, unknown>[]>();
    for (const a of await this.select(ACCEPTANCES_MEASUREMENT, ['"device" = $device', `time >= ${lo}`, `time <= ${hi}`], { device })) {
      const k = `${storedTag(a['sensor'])}|${textOf(a['time'])}|${textOf(a['sha256'])}`;
      byFrame.set(k, [...(byFrame.get(k) ?? []), a]);
    }
    for (const r of v2) {
      const list = byFrame.get(`${r.sensor}|${r.timeNs}|${textOf(r.fields['sha256'])}`) ?? [];
      const own = this.o.gatewayId === undefined ? list[0] : list.find((a) => storedTag(a['gateway']) === this.o.gatewayId);
      const gateways = list.map((a) => storedTag(a['gateway']));
      if (own && this.o.auditedBy && this.o.auditedBy(gateways) !== this.o.gatewayId) {
        r.foreign = gateways.filter((g) => g !== this.o.gatewayId);
        r.delegated = true;
      } else if (own) {
        for (const f of ACCEPTANCE_FIELDS) if (own[f] !== null && own[f] !== undefined) r.fields[f] = own[f];
      } else if (list.length > 0) r.foreign = list.map((a) => storedTag(a['gateway']));
    }
    return rows;
  }

  private deviceWhere(device: string, timed: boolean): { where: string[]; params: Record<string, string> } {
    const where = ['"device" = $device'];
    const params: Record<string, string> = { device };
    if (this.o.gatewayId !== undefined) {
      // v1 points of this gateway, and every v2 point (no gateway tag reads as '').
      where.push(`("gateway" = $gateway OR "gateway" = '')`);
      params['gateway'] = this.o.gatewayId;
    }
    if (timed && this.fromNs !== undefined) where.push(`time >= ${this.fromNs}`);
    if (timed && this.toNs !== undefined) where.push(`time < ${this.toNs}`);
    return { where, params };
  }

  /** Which measurements hold points of which device (SHOW SERIES: series exist whatever the time). */
  private async series(): Promise<{ byDevice: Map<string, Set<string>>; otherGateways: string[] }> {
    const params: Record<string, string> = {};
    const where: string[] = [];
    if (this.o.device !== undefined) {
      where.push('"device" = $device');
      params['device'] = this.o.device;
    }
    this.queries++;
    const rows = seriesRows(
      await this.http.query(`SHOW SERIES${where.length ? ` WHERE ${where.join(' AND ')}` : ''}`, { database: this.o.influx.database, params }),
    );
    const known = new Set([FRAMES_MEASUREMENT, ...SENSORS.map((s) => s.name)]);
    const byDevice = new Map<string, Set<string>>();
    const other = new Set<string>();
    for (const r of rows) {
      const { measurement, tags } = parseSeriesKey(String(r['key']));
      const device = tags['device'];
      if (!known.has(measurement) || device === undefined) continue;
      if (this.o.gatewayId !== undefined && tags['gateway'] !== undefined && tags['gateway'] !== this.o.gatewayId) {
        other.add(tags['gateway'] ?? '');
        continue;
      }
      const set = byDevice.get(device) ?? new Set<string>();
      set.add(measurement);
      byDevice.set(device, set);
    }
    return { byDevice, otherGateways: [...other].sort() };
  }

  // ---- keys ----

  private async deviceKey(device: string): Promise<DeviceKey> {
    const fallback = safe(() => this.o.keys?.(device));
    const label = this.o.keysSource ?? 'fallback';
    const chain = this.o.chain;
    if (chain && /^[0-9a-f]{16}$/.test(device)) {
      const reg = deviceRegistryAt(chain.deviceRegistry, chain.provider);
      const id = deviceIdToBytes8(device);
      if (await reg.isEnrolled(id)) {
        const d = await reg.device(id);
        const key = new Uint8Array(Buffer.from(d.publicKey.slice(2), 'hex'));
        const revokedAtMs = Number(d.revokedAtMs);
        return {
          key,
          source: 'chain',
          ...(fallback && Buffer.compare(Buffer.from(fallback), Buffer.from(key)) !== 0 ? { mismatch: true } : {}),
          ...(revokedAtMs > 0 ? { revokedAtMs } : {}),
        };
      }
    }
    return fallback ? { key: fallback, source: label } : { source: 'none' };
  }

  // ---- one device ----

  private async auditDevice(device: string, measurements: Set<string>): Promise<DeviceAudit> {
    const counts = emptyCounts();
    const key = await this.deviceKey(device);
    const da: DeviceAudit = {
      device,
      keySource: key.source,
      ...(key.mismatch ? { keyMismatch: true } : {}),
      ...(key.revokedAtMs ? { revokedAtMs: key.revokedAtMs } : {}),
      points: 0,
      frames: 0,
      counts,
    };
    const add: AddFinding = (f) => {
      counts[f.code]++;
      this.counts[f.code]++;
      if (f.code === 'intact') return;
      // `code` first, whatever order the finding was built in: the JSON reads better.
      if (this.findings.length < (this.o.maxFindings ?? 100_000)) this.findings.push({ ...{ code: f.code }, ...f });
      else this.omitted++;
    };

    // Frames in the range: each decoded, verified and placed once.
    const frames: FrameCtx[] = [];
    if (measurements.has(FRAMES_MEASUREMENT)) {
      const { where, params } = this.deviceWhere(device, true);
      for (const row of await this.frameRows(device, where, params)) frames.push(this.frameCtx(row, true, key));
    }
    markCopies(frames);
    // Every frame of the device in the range was accepted only by other gateways of a shared
    // InfluxDB, and this batch store holds none: the device is theirs to audit, points and all.
    if (frames.length > 0 && frames.every((f) => f.foreign) && !this.leavesByDevice.has(device)) return da;
    await this.settle(frames);

    this.auditFramePoints(device, frames, add);
    da.frames = frames.filter((f) => f.inRange && !f.foreign).length;
    da.points += da.frames;
    // Sample points against the samples their signed frames carry, matched by time; one
    // measurement at a time, so that only one measurement's points are held.
    for (const m of SENSORS.map((x) => x.name).filter((x) => measurements.has(x))) da.points += await this.auditSamples(device, m, frames, key, add);
    const leaves = this.leavesByDevice.get(device) ?? [];
    this.missingLeaves(device, leaves, frames, add);

    // Sequence numbers: from the batches and from the stored frames that verify.
    const all = new Set<bigint>(leaves.map((l) => l.seq));
    for (const fc of frames) if (fc.inRange && fc.frame && fc.status !== 'frame_tampered' && fc.frame.deviceId === device) all.add(fc.frame.seq);
    const sorted = [...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const g of await this.gaps(device, sorted, key)) {
      const missingSeqs: string[] = [];
      for (let s = g.from; s <= g.to && missingSeqs.length < MAX_GAP_LIST; s++) missingSeqs.push(s.toString());
      add({
        code: 'seq_gap',
        measurement: FRAMES_MEASUREMENT,
        device,
        missingSeqs,
        missingCount: Number(g.to - g.from + 1n),
        reason: `seq ${g.from}${g.to > g.from ? ` … ${g.to}` : ''} missing between frames ${g.after} and ${g.before}: in no batch and in no stored frame`,
      });
    }
    const firstSeq = sorted[0];
    const lastSeq = sorted[sorted.length - 1];
    const times = frames.filter((f) => f.inRange).map((f) => f.row.timeNs);
    if (firstSeq !== undefined) da.firstSeq = firstSeq.toString();
    if (lastSeq !== undefined) da.lastSeq = lastSeq.toString();
    if (times.length) {
      da.firstTimeNs = times.reduce((a, b) => (a < b ? a : b)).toString();
      da.lastTimeNs = times.reduce((a, b) => (a > b ? a : b)).toString();
    }
    return da;
  }

  /** Each `frames` point in the range gets one code. */
  private auditFramePoints(device: string, frames: FrameCtx[], add: AddFinding): void {
    for (const fc of frames) {
      if (!fc.inRange || fc.foreign) continue;
      const loc = this.locate(fc);
      if (fc.duplicateOf) {
        add({
          code: 'unexpected',
          measurement: FRAMES_MEASUREMENT,
          device,
          ...loc,
          reason: `a second frames point carrying frame ${device}/${fc.seq} (tags patient=${fc.row.patient}, gateway=${fc.row.gateway}); the first is at ${isoNs(fc.duplicateOf.row.timeNs)}`,
        });
      } else if (fc.status === 'frame_tampered') {
        add({ code: 'frame_tampered', measurement: FRAMES_MEASUREMENT, device, ...loc, reason: fc.reasons.join('; ') });
      } else if (fc.edits.length > 0) {
        add({
          code: 'edited',
          measurement: FRAMES_MEASUREMENT,
          device,
          ...loc,
          ...diffFields(fc.edits),
          reason: `the frames point differs from its signed frame or batch leaf in ${fc.edits.map((d) => d.field).join(', ')}`,
        });
      } else if (fc.status !== 'intact') {
        add({ code: fc.status, measurement: FRAMES_MEASUREMENT, device, ...loc, reason: fc.reasons.join('; ') });
      } else add({ code: 'intact' });
    }
  }

  /** The sample points of one measurement of one device; returns how many there were. */
  private async auditSamples(device: string, m: string, frames: FrameCtx[], key: DeviceKey, add: AddFinding): Promise<number> {
    let points = 0;
    const spec = sensorByName(m);
    const { where, params } = this.deviceWhere(device, true);
    const found = await this.select(m, where, params);
    const pool = [...frames, ...(await this.framesBefore(device, m, found, frames, key))];
    const expected = new Map<bigint, { fc: FrameCtx; i: number; claimed: boolean }>();
    const bySeq = new Map<bigint, FrameCtx>();
    for (const fc of pool) {
      if (fc.sensor !== m || fc.duplicateOf) continue;
      if (fc.seq !== undefined && (!bySeq.has(fc.seq) || bySeq.get(fc.seq)!.status === 'frame_tampered')) bySeq.set(fc.seq, fc);
      const f = fc.frame;
      if (!f) continue;
      for (let i = 0; i < f.count; i++) {
        const t = sampleTimeNs(f, i);
        if (!this.inRange(t)) continue;
        const prev = expected.get(t);
        if (!prev || (prev.fc.status === 'frame_tampered' && fc.status !== 'frame_tampered')) expected.set(t, { fc, i, claimed: false });
      }
    }
    // Within one time, the point in its frame's own series goes first (it is the sample; others are extra).
    const rows = found.map((r, n) => {
      const t = intOf(r['time']) ?? 0n;
      const e = expected.get(t);
      return { r, n, t, own: e !== undefined && sameSeries(r, e.fc.row) };
    });
    rows.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : a.own !== b.own ? (a.own ? -1 : 1) : a.n - b.n));
    for (const { r } of rows) {
      const t = intOf(r['time']) ?? 0n;
      const mine = expected.get(t);
      // A sample of a frame only other gateways accepted: their audits count it.
      if (mine?.fc.foreign && !mine.claimed && sameSeries(r, mine.fc.row)) {
        mine.claimed = true;
        continue;
      }
      points++;
      const storedSeq = intOf(r['seq']);
      const seqU = storedSeq === undefined ? undefined : fromStoredUint64(storedSeq);
      const e = expected.get(t);
      const fc = e?.fc;
      if (!e || !fc || e.claimed || !sameSeries(r, fc.row)) {
        // No sample of a stored frame at this time, or it is taken by the point of the frame's own series.
        const owner = seqU !== undefined ? bySeq.get(seqU) : undefined;
        const base = { measurement: m, device, timeNs: t.toString(), time: isoNs(t), ...(seqU !== undefined ? { seq: seqU.toString() } : {}) };
        if (e && !e.claimed && fc) {
          // The frame's sample at this time, but in another series: its tags were edited.
          e.claimed = true;
          const diffs = tagDiffs(r, fc.row);
          if (fc.status === 'frame_tampered') add({ ...base, ...this.locate(fc, false), code: 'frame_tampered', reason: fc.reasons.join('; ') });
          else
            add({
              ...base,
              ...this.locate(fc, false),
              code: 'edited',
              ...diffFields([...diffs, ...valueDiffs(r, fc, e.i, spec.channels)]),
              reason: `the point is in another series than its frame (${diffs.map((d) => d.field).join(', ')})`,
            });
        } else if (owner && owner.status === 'frame_tampered') {
          add({ ...base, ...this.locate(owner, false), code: 'frame_tampered', reason: `${owner.reasons.join('; ')} (the point names this frame by seq)` });
        } else {
          const why = e
            ? `a second point at this time (patient=${storedTag(r['patient'])}, gateway=${storedTag(r['gateway'])}) besides the one of frame ${device}/${e.fc.seq}`
            : owner
              ? `frame ${device}/${owner.seq} (seq ${seqU}) has no sample at this time`
              : `no stored frame of ${device} carries a ${m} sample at this time${seqU !== undefined ? ` or has seq ${seqU}` : ''}`;
          add({ ...base, code: 'unexpected', reason: why });
        }
        continue;
      }
      e.claimed = true;
      const loc = { measurement: m, device, timeNs: t.toString(), time: isoNs(t), ...this.locate(fc, false) };
      if (fc.status === 'frame_tampered') {
        add({ ...loc, code: 'frame_tampered', reason: fc.reasons.join('; ') });
        continue;
      }
      const diffs = valueDiffs(r, fc, e.i, spec.channels);
      if (diffs.length > 0)
        add({
          ...loc,
          code: 'edited',
          ...diffFields(diffs),
          reason: `stored ${diffs.map((d) => `${d.field}=${d.stored}`).join(', ')}; the signed frame says ${diffs.map((d) => `${d.field}=${d.expected}`).join(', ')}`,
        });
      else if (fc.status !== 'intact') add({ ...loc, code: fc.status, reason: fc.reasons.join('; ') });
      else add({ code: 'intact' });
    }
    // Samples of sound frames that have no point.
    for (const [t, e] of expected) {
      if (e.claimed || e.fc.foreign || e.fc.status === 'frame_tampered') continue;
      const f = e.fc.frame!;
      const exp = spec.channels.map((_, c) => sampleValue(f, e.i, c));
      add({
        code: 'missing',
        measurement: m,
        device,
        timeNs: t.toString(),
        time: isoNs(t),
        ...this.locate(e.fc, false),
        field: spec.channels.join(','),
        stored: null,
        expected: exp.length === 1 ? exp[0]! : exp.join(','),
        reason: `sample ${e.i} of frame ${device}/${f.seq} has no point`,
      });
    }
    return points;
  }

  /** Batch leaves in the range without any frames point (`missing`). */
  private missingLeaves(device: string, leaves: { batch: bigint; leaf: number; seq: bigint; timeMs: number }[], frames: FrameCtx[], add: AddFinding): void {
    // A frames point covers a leaf when it is that leaf, names it, or carries the same seq (a tampered frame is still there).
    const placed = new Set<string>();
    const seqs = new Set<bigint>();
    for (const f of frames) {
      for (const p of [f.place, namedPlace(f.row)]) if (p) placed.add(`${p.batch}|${p.leaf}`);
      if (f.seq !== undefined) seqs.add(f.seq);
    }
    for (const l of leaves) {
      if (placed.has(`${l.batch}|${l.leaf}`) || seqs.has(l.seq)) continue;
      const t = BigInt(l.timeMs) * 1_000_000n;
      add({
        code: 'missing',
        measurement: FRAMES_MEASUREMENT,
        device,
        timeNs: t.toString(),
        time: isoNs(t),
        seq: l.seq.toString(),
        batch: l.batch.toString(),
        leaf: l.leaf,
        reason: `leaf ${l.leaf} of batch ${l.batch} (frame ${device}/${l.seq}) has no frames point: the frame and its samples are gone from InfluxDB`,
      });
    }
  }

  private inRange(t: bigint): boolean {
    return (this.fromNs === undefined || t >= this.fromNs) && (this.toNs === undefined || t < this.toNs);
  }

  /** seq, batch and leaf of a finding about a frame or one of its samples. */
  private locate(fc: FrameCtx, withTime = true): Pick<Finding, 'timeNs' | 'time' | 'seq' | 'batch' | 'leaf'> {
    const named = namedPlace(fc.row);
    const place = fc.place ?? named;
    return {
      ...(withTime ? { timeNs: fc.row.timeNs.toString(), time: isoNs(fc.row.timeNs) } : {}),
      ...(fc.seq !== undefined ? { seq: fc.seq.toString() } : {}),
      ...(place ? { batch: place.batch.toString(), leaf: place.leaf } : {}),
    };
  }

  /** Decodes, verifies and places one stored frame (the synchronous part). */
  private frameCtx(row: FrameRow, inRange: boolean, key: DeviceKey): FrameCtx {
    const storedSeq = intOf(row.fields['seq']);
    const fc: FrameCtx = {
      row,
      inRange,
      sensor: row.sensor,
      seq: storedSeq === undefined ? undefined : fromStoredUint64(storedSeq),
      status: 'intact',
      reasons: [],
      edits: [],
    };
    const tamper = (why: string): FrameCtx => {
      fc.status = 'frame_tampered';
      fc.reasons.push(why);
      return fc;
    };
    // Accepted only by other gateways and in no batch of this store: their audits check it
    // (by the point's seq and device: a frame edited past decoding is still theirs).
    if (row.foreign && (row.delegated || !(fc.seq !== undefined && this.leafByDeviceSeq.has(`${row.device}|${fc.seq}`)))) {
      fc.foreign = true;
      for (const g of row.foreign) this.others.add(g);
      // Decoded when it can be, so that its samples are recognised as theirs too.
      const f = typeof row.fields['raw'] === 'string' ? safe(() => decodeFrame(new Uint8Array(Buffer.from(row.fields['raw'] as string, 'base64')))) : undefined;
      if (f) Object.assign(fc, { frame: f, sensor: f.spec.name, seq: f.seq });
      return fc;
    }
    const rawText = row.fields['raw'];
    if (typeof rawText !== 'string') return tamper('the frames point has no raw frame bytes');
    const raw = new Uint8Array(Buffer.from(rawText, 'base64'));
    let f: Frame;
    try {
      f = decodeFrame(raw);
    } catch (e) {
      return tamper(`the stored raw frame does not decode (${(e as { code?: string }).code ?? (e as Error).message})`);
    }
    fc.frame = f;
    fc.sensor = f.spec.name;
    fc.seq = f.seq;
    // The frames point's own fields, against what the signed bytes say.
    const edit = (field: string, stored: string | number | null, expected: string | number | null): void => {
      if (stored !== expected) fc.edits.push({ field, stored, expected });
    };
    edit('device', row.device, f.deviceId);
    edit('sensor', row.sensor, f.spec.name);
    edit('time', row.timeNs.toString(), (f.timestampMs * 1_000_000n).toString());
    edit('seq', storedSeq === undefined ? null : fromStoredUint64(storedSeq).toString(), f.seq.toString());
    edit('count', numOf(row.fields['count']), f.count);
    edit('interval_us', numOf(row.fields['interval_us']), f.intervalUs);
    edit('sha256', typeof row.fields['sha256'] === 'string' ? row.fields['sha256'] : null, createHash('sha256').update(raw).digest('hex'));
    // The signature (PROTOCOL.md §5.2, the gateway's rule).
    if (key.key) {
      let good: boolean;
      try {
        good = verifyEd25519(this.keyCache.get(key.key), Buffer.concat([FRAME_TAG, f.body]), f.signature);
      } catch {
        good = false; // a key that is not a valid Ed25519 key verifies nothing
      }
      if (!good) tamper(`the signature does not verify under the device key (from ${key.source})`);
      else if (key.revokedAtMs !== undefined && f.timestampMs >= BigInt(key.revokedAtMs))
        tamper(
          `the frame is timestamped ${new Date(Number(f.timestampMs)).toISOString()}, at or after the device's revocation on chain (${new Date(key.revokedAtMs).toISOString()})`,
        );
    }
    // Its place in a batch: the named leaf, else the leaf of the same device and seq.
    const leafHash = hashLeaf(raw);
    const named = namedPlace(row);
    const leafAt = (p: { batch: bigint; leaf: number }): Buffer | undefined => this.getBatch(p.batch)?.leaves[p.leaf]?.leafHash;
    if (named && leafAt(named)?.equals(leafHash)) fc.place = named;
    else {
      const other = this.leafByDeviceSeq.get(`${f.deviceId}|${f.seq}`) ?? this.findLeaf(f, named);
      if (other && leafAt(other)?.equals(leafHash)) {
        fc.place = other;
        if (named) {
          edit('batch', named.batch.toString(), other.batch.toString());
          edit('leaf', named.leaf, other.leaf);
        }
      } else if (named && named.batch > this.store.lastSealed) {
        fc.status = fc.status === 'frame_tampered' ? fc.status : 'not_anchored';
        fc.reasons.push(`batch ${named.batch} is still open: not sealed yet (last sealed ${this.store.lastSealed})`);
      } else if (named) {
        const l = leafAt(named);
        tamper(
          l
            ? `it is not leaf ${named.leaf} of batch ${named.batch} (leaf hash ${leafHash.toString('hex')}, the batch has ${l.toString('hex')})`
            : `batch ${named.batch} has no leaf ${named.leaf}${this.getBatch(named.batch) ? '' : ' (batch not in the batch store)'}`,
        );
      } else {
        const lsn = intOf(row.fields['lsn']);
        if (lsn !== undefined && fromStoredUint64(lsn) > this.store.lastSealedLsn) {
          fc.status = fc.status === 'frame_tampered' ? fc.status : 'not_anchored';
          fc.reasons.push('the frame names no batch and its spool position is after the last sealed batch');
        } else tamper('the frame names no batch, and no sealed batch holds it');
      }
    }
    if (fc.place) {
      const l = this.getBatch(fc.place.batch)!.leaves[fc.place.leaf]!;
      const lsn = intOf(row.fields['lsn']);
      edit('lsn', lsn === undefined ? null : fromStoredUint64(lsn).toString(), l.lsn.toString());
    }
    if (!key.key) {
      fc.reasons.push(
        `no public key for ${f.deviceId} on chain${this.o.keys ? ` or in ${this.o.keysSource ?? 'fallback'}` : ''}: the signature is not checked`,
      );
      if (fc.status === 'intact') fc.status = 'unverifiable';
    }
    return fc;
  }

  /** The leaf of (device, seq) in the named batch, for frames whose leaf index was edited. */
  private findLeaf(f: Frame, named: { batch: bigint; leaf: number } | undefined): { batch: bigint; leaf: number } | undefined {
    const b = named ? this.getBatch(named.batch) : undefined;
    const i = b ? b.leaves.findIndex((l) => l.device === f.deviceId && l.seq === f.seq) : -1;
    return b && i >= 0 ? { batch: b.seq, leaf: i } : undefined;
  }

  /**
   * Runs of seqs missing between consecutive seqs of the range. In a range-limited audit, a
   * seq that a batch leaf just outside the range or a stored frame at any time carries is no gap.
   */
  private async gaps(device: string, sorted: bigint[], key: DeviceKey): Promise<{ from: bigint; to: bigint; after: bigint; before: bigint }[]> {
    const holes: { after: bigint; before: bigint }[] = [];
    for (let i = 1; i < sorted.length; i++) if (sorted[i]! - sorted[i - 1]! > 1n) holes.push({ after: sorted[i - 1]!, before: sorted[i]! });
    const ranged = this.o.fromMs !== undefined || this.o.toMs !== undefined;
    const seen = new Set<bigint>(ranged ? (this.nearSeqs.get(device) ?? []) : []);
    if (ranged) {
      const lookup: bigint[] = [];
      for (const h of holes) for (let s = h.after + 1n; s < h.before && lookup.length < MAX_GAP_LOOKUP; s++) if (!seen.has(s)) lookup.push(s);
      for (let i = 0; i < lookup.length; i += SEQS_PER_QUERY) {
        const { where, params } = this.deviceWhere(device, false);
        where.push(
          `(${lookup
            .slice(i, i + SEQS_PER_QUERY)
            .map((s) => `"seq" = ${toStoredUint64(s)}`)
            .join(' OR ')})`,
        );
        for (const row of await this.frameRows(device, where, params)) {
          const fc = this.frameCtx(row, false, key);
          if (fc.frame && fc.status !== 'frame_tampered' && fc.frame.deviceId === device) seen.add(fc.frame.seq);
        }
      }
    }
    // Holes and the seqs found inside them, both ascending: one merge walk.
    const found = [...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: { from: bigint; to: bigint; after: bigint; before: bigint }[] = [];
    let k = 0;
    for (const h of holes) {
      while (k < found.length && found[k]! <= h.after) k++;
      let prev = h.after;
      for (; k < found.length && found[k]! < h.before; k++) {
        if (found[k]! - prev > 1n) out.push({ from: prev + 1n, to: found[k]! - 1n, after: prev, before: found[k]! });
        prev = found[k]!;
      }
      if (h.before - prev > 1n) out.push({ from: prev + 1n, to: h.before - 1n, after: prev, before: h.before });
    }
    return out;
  }

  /**
   * Frames that start before the range but carry samples of `m` inside it, fetched by the seqs
   * the points name (none without a start of the range: then every such frame is in range).
   */
  private async framesBefore(device: string, m: string, rows: Record<string, unknown>[], frames: FrameCtx[], key: DeviceKey): Promise<FrameCtx[]> {
    if (this.fromNs === undefined) return [];
    const have = new Set(frames.filter((f) => f.sensor === m).map((f) => f.seq));
    const wanted = new Set<bigint>();
    for (const r of rows) {
      const seq = intOf(r['seq']);
      if (seq !== undefined && !have.has(fromStoredUint64(seq))) wanted.add(fromStoredUint64(seq));
    }
    const list = [...wanted];
    const out: FrameCtx[] = [];
    for (let i = 0; i < list.length; i += SEQS_PER_QUERY) {
      const { where, params } = this.deviceWhere(device, false);
      where.push('"sensor" = $sensor', `time < ${this.fromNs}`);
      where.push(
        `(${list
          .slice(i, i + SEQS_PER_QUERY)
          .map((s) => `"seq" = ${toStoredUint64(s)}`)
          .join(' OR ')})`,
      );
      for (const row of await this.frameRows(device, where, { ...params, sensor: m })) out.push(this.frameCtx(row, false, key));
    }
    await this.settle(out);
    return out;
  }

  /** The asynchronous part: the verdict of each frame's batch (chain), folded into the frame's status. */
  private async settle(frames: FrameCtx[]): Promise<void> {
    // A frame that is not the leaf it names still gets that batch's verdict in its reasons.
    const batchOf = (fc: FrameCtx): bigint | undefined => {
      if (fc.place) return fc.place.batch;
      const named = namedPlace(fc.row);
      return named && this.getBatch(named.batch) ? named.batch : undefined;
    };
    const places = [...new Set(frames.map(batchOf).filter((b) => b !== undefined))];
    const verdicts = new Map<bigint, BatchVerdict>();
    for (const [s, v] of await Promise.all(places.map(async (s) => [s, await this.verdict(s)] as const))) verdicts.set(s, v);
    const rank = { intact: 0, unverifiable: 1, not_anchored: 2, frame_tampered: 3 } as const;
    for (const fc of frames) {
      const b = batchOf(fc);
      if (b === undefined) continue;
      const v = verdicts.get(b)!;
      if (v.effect === 'intact') continue;
      fc.reasons.push(v.audit.reason);
      if (rank[v.effect] > rank[fc.status]) fc.status = v.effect;
    }
  }
}

/**
 * Two stored frames points carrying the same frame (device, seq): the one whose time and tags
 * fit the signed bytes is the frame, the other a copy (`unexpected`).
 */
function markCopies(frames: FrameCtx[]): void {
  const seen = new Map<string, FrameCtx>();
  for (const fc of frames) {
    if (!fc.frame) continue;
    const k = `${fc.frame.deviceId}|${fc.frame.seq}`;
    const first = seen.get(k);
    if (first && fc.status !== 'frame_tampered' && first.status !== 'frame_tampered') {
      if (fc.edits.length === 0 && first.edits.length > 0) {
        first.duplicateOf = fc;
        seen.set(k, fc);
      } else fc.duplicateOf = first;
    } else if (!first || first.status === 'frame_tampered') seen.set(k, fc);
  }
}

// ---- helpers ----

/** InfluxQL double-quoted identifier. */
function ident(name: string): string {
  return `"${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** An integer field as read back (a number, or a decimal string for 16+ digits); undefined when absent or not an integer. */
function intOf(v: unknown): bigint | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  return undefined;
}

function numOf(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return null;
}

function toFrameRow(r: Record<string, unknown>): FrameRow {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (!TAGS.has(k)) fields[k] = v;
  return {
    timeNs: intOf(r['time']) ?? 0n,
    device: storedTag(r['device']),
    patient: storedTag(r['patient']),
    gateway: storedTag(r['gateway']),
    sensor: storedTag(r['sensor']),
    fields,
  };
}

function namedPlace(row: FrameRow): { batch: bigint; leaf: number } | undefined {
  const batch = intOf(row.fields['batch']);
  const leaf = intOf(row.fields['leaf']);
  return batch !== undefined && leaf !== undefined && leaf >= 0n && leaf <= 0xffffffffn ? { batch, leaf: Number(leaf) } : undefined;
}

function sameSeries(r: Record<string, unknown>, row: FrameRow): boolean {
  return storedTag(r['patient']) === row.patient && storedTag(r['gateway']) === row.gateway;
}

function tagDiffs(r: Record<string, unknown>, row: FrameRow): Diff[] {
  const out: Diff[] = [];
  for (const t of ['patient', 'gateway'] as const) if (storedTag(r[t]) !== row[t]) out.push({ field: t, stored: storedTag(r[t]), expected: row[t] });
  return out;
}

/** The point's fields against sample i of its frame: seq, every channel, and no field the schema does not write. */
function valueDiffs(r: Record<string, unknown>, fc: FrameCtx, i: number, channels: readonly string[]): Diff[] {
  const f = fc.frame!;
  const out: Diff[] = [];
  const seq = intOf(r['seq']);
  const storedSeq = seq === undefined ? null : fromStoredUint64(seq).toString();
  if (storedSeq !== f.seq.toString()) out.push({ field: 'seq', stored: storedSeq ?? tagOrNull(r['seq']), expected: f.seq.toString() });
  channels.forEach((ch, c) => {
    const v = r[ch];
    const stored = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : null;
    const expected = sampleValue(f, i, c);
    if (stored !== expected) out.push({ field: ch, stored: stored ?? tagOrNull(v), expected });
  });
  for (const [k, v] of Object.entries(r)) {
    if (TAGS.has(k) || k === 'seq' || channels.includes(k) || v === null || v === undefined) continue;
    out.push({ field: k, stored: typeof v === 'number' ? v : textOf(v), expected: null });
  }
  return out;
}

function tagOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : textOf(v);
}

function diffFields(diffs: Diff[]): Pick<Finding, 'field' | 'stored' | 'expected' | 'diffs'> {
  const d = diffs[0]!;
  return { field: d.field, stored: d.stored, expected: d.expected, ...(diffs.length > 1 ? { diffs } : {}) };
}

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/** 'heart_rate,device=00112233aabbccdd,gateway=gw\ 1,patient=p' → measurement and tags (line-protocol escapes undone). */
export function parseSeriesKey(key: string): { measurement: string; tags: Record<string, string> } {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < key.length; i++) {
    const ch = key[i]!;
    if (ch === '\\' && i + 1 < key.length) {
      cur += key[++i];
      continue;
    }
    if (ch === ',') {
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += ch;
  }
  parts.push(cur);
  const tags: Record<string, string> = {};
  // Re-split each tag on its first unescaped '='; escapes were already removed, and tag keys here have no '='.
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    if (eq > 0) tags[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return { measurement: parts[0] ?? '', tags };
}

/** ns since the epoch → ISO 8601 with nanoseconds, e.g. 2023-11-14T22:13:20.040000000Z. */
export function isoNs(ns: bigint): string {
  const ms = ns / 1_000_000n - (ns < 0n && ns % 1_000_000n !== 0n ? 1n : 0n);
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return ns.toString();
  const sub = ((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  return `${d.toISOString().slice(0, 19)}.${sub.toString().padStart(9, '0')}Z`;
}
