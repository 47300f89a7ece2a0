/**
 * A patient's disclosure report, and the proof of each access-log entry (docs/consent.md,
 * "Disclosure report"). The entries come from the access log, their batches and anchors from
 * the access log's BatchStore (stream 1); before a proof goes out, the entry's leaf hash must
 * equal the batch's leaf (ENTRY_TAMPERED otherwise).
 *
 * A report is a scan of the log (entries are not indexed by patient): about a second per
 * million entries.
 */
import type { Remedies } from '../../firmware-proto/coded-error.js';
import { Rfc6962Tree } from '../merkle/tree.js';
import type { BatchStore, SealedBatch } from '../anchor/batch-store.js';
import { buildAccessBundle, type AccessProofBundle } from '../proof/access-bundle.js';
import { BUNDLE_VERSION } from '../proof/bundle.js';
import { accessEntryToJson, accessLeafHash, type AccessEntry, type AccessEntryJson } from './access-entry.js';
import type { AccessLog } from './access-log.js';

export const DISCLOSURE_REPORT_FORMAT = 'vitalproof.disclosure-report';

export const ACCESS_PROOF_ERRORS = {
  ENTRY_NOT_FOUND: 'the access log has no entry with this seq',
  NOT_YET_BATCHED: 'the entry is in the open batch: it is sealed within the batch interval, then anchored',
  NOT_YET_ANCHORED: 'the entry is in a sealed batch whose anchor is not confirmed yet',
  ENTRY_TAMPERED: 'the entry in the log is not the leaf its batch holds: the log or the batch store was edited',
} as const;
export type AccessProofErrorCode = keyof typeof ACCESS_PROOF_ERRORS;

/** What to do about each code: docs/consent.md, "Disclosure reports". */
export const ACCESS_PROOF_ERROR_REMEDIES: Remedies<AccessProofErrorCode> = {
  ENTRY_NOT_FOUND: 'Check the seq against the report (`vitalproof consent disclosures`).',
  NOT_YET_BATCHED: 'Ask again after the batch interval (`accessLog.intervalMs`), then after the next anchor.',
  NOT_YET_ANCHORED: 'Ask again after the next anchor (`accessLog.anchored` in /status).',
  ENTRY_TAMPERED: 'The access log or its batch store was edited: restore them from a backup, and find out who edited them.',
};

export type AccessProofResult =
  { ok: true; bundle: AccessProofBundle } | { ok: false; code: AccessProofErrorCode; message: string; seq: string; batchSeq?: string };

/** One line of a report: an anchored entry with its proof, or an entry still waiting for its anchor. */
export type DisclosureItem =
  | { status: 'anchored'; proof: AccessProofBundle }
  | { status: 'pending'; entry: AccessEntryJson; reason: 'NOT_YET_BATCHED' | 'NOT_YET_ANCHORED'; batchSeq?: string }
  | { status: 'error'; entry: AccessEntryJson; reason: 'ENTRY_TAMPERED'; batchSeq: string };

export interface DisclosureReport {
  format: typeof DISCLOSURE_REPORT_FORMAT;
  version: typeof BUNDLE_VERSION;
  gatewayId: string;
  pseudonym: string;
  /** Access time range asked for: entries with fromMs ≤ atMs < toMs. */
  fromMs: number;
  toMs: number;
  generatedAtMs: number;
  summary: { entries: number; anchored: number; pending: number; errors: number; readings: number; researchers: string[] };
  /** In log order. */
  items: DisclosureItem[];
}

/** A report's summary of its items (a hub's report across the hospital sums the same way: gateway/hub/disclosures.ts). */
export function reportSummary(items: readonly DisclosureItem[], readings: number, researchers: Iterable<string>): DisclosureReport['summary'] {
  return {
    entries: items.length,
    anchored: items.filter((i) => i.status === 'anchored').length,
    pending: items.filter((i) => i.status === 'pending').length,
    errors: items.filter((i) => i.status === 'error').length,
    readings,
    researchers: [...new Set(researchers)].sort(),
  };
}

export interface DisclosureServiceDeps {
  log: AccessLog;
  /** The access log's batch store (stream 1). */
  store: BatchStore;
  /** The ConsentRegistry the entries' grants are in. */
  consentRegistry: { chainId: number; address: string };
  gatewayId: string;
  now?: () => number;
}

export class DisclosureService {
  private readonly trees = new Map<bigint, Rfc6962Tree>();
  private readonly now: () => number;

  constructor(private readonly d: DisclosureServiceDeps) {
    this.now = d.now ?? Date.now;
  }

  /** The proof bundle of entry `seq`. */
  proofOf(seq: bigint): AccessProofResult {
    const e = this.d.log.get(seq);
    if (!e) return { ok: false, code: 'ENTRY_NOT_FOUND', message: ACCESS_PROOF_ERRORS.ENTRY_NOT_FOUND, seq: seq.toString() };
    return this.bundleOf(e, this.batchOf(seq));
  }

  /**
   * Every access to `pseudonym`'s data logged with fromMs ≤ atMs < toMs, in log order, each with
   * its proof, or marked pending while its batch is not anchored yet.
   * @throws TypeError for a bad range; Error for a damaged log.
   * @example
   *   const report = disclosures.disclosureReport('pt-0042', { fromMs: 0, toMs: Date.now() + 1 });
   *   res.end(JSON.stringify(report));
   */
  disclosureReport(pseudonym: string, range: { fromMs?: number; toMs?: number } = {}): DisclosureReport {
    const fromMs = range.fromMs ?? 0;
    const toMs = range.toMs ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(fromMs) || !Number.isSafeInteger(toMs) || fromMs > toMs)
      throw new TypeError(`range must be integers with fromMs ≤ toMs, got [${fromMs}, ${toMs})`);
    const items: DisclosureItem[] = [];
    const researchers = new Set<string>();
    let readings = 0;
    let batch: SealedBatch | undefined;
    for (const e of this.d.log.entries()) {
      if (e.pseudonym !== pseudonym || e.atMs < fromMs || e.atMs >= toMs) continue;
      if (!batch || e.seq > batch.lastLsn || e.seq < batch.firstLsn) batch = this.batchOf(e.seq, batch);
      const r = this.bundleOf(e, batch);
      researchers.add(e.researcher);
      readings += e.count;
      if (r.ok) items.push({ status: 'anchored', proof: r.bundle });
      else if (r.code === 'ENTRY_TAMPERED') items.push({ status: 'error', entry: accessEntryToJson(e), reason: 'ENTRY_TAMPERED', batchSeq: r.batchSeq! });
      else
        items.push({
          status: 'pending',
          entry: accessEntryToJson(e),
          reason: r.code === 'NOT_YET_ANCHORED' ? 'NOT_YET_ANCHORED' : 'NOT_YET_BATCHED',
          ...(r.batchSeq ? { batchSeq: r.batchSeq } : {}),
        });
    }
    return {
      format: DISCLOSURE_REPORT_FORMAT,
      version: BUNDLE_VERSION,
      gatewayId: this.d.gatewayId,
      pseudonym,
      fromMs,
      toMs,
      generatedAtMs: this.now(),
      summary: reportSummary(items, readings, researchers),
      items,
    };
  }

  private bundleOf(e: AccessEntry, batch: SealedBatch | undefined): AccessProofResult {
    const seq = e.seq.toString();
    if (!batch) return { ok: false, code: 'NOT_YET_BATCHED', message: ACCESS_PROOF_ERRORS.NOT_YET_BATCHED, seq };
    const batchSeq = batch.seq.toString();
    const leafIndex = Number(e.seq - batch.firstLsn);
    const leaf = batch.leaves[leafIndex];
    if (!leaf || leaf.lsn !== e.seq || !leaf.leafHash.equals(accessLeafHash(e)))
      return { ok: false, code: 'ENTRY_TAMPERED', message: ACCESS_PROOF_ERRORS.ENTRY_TAMPERED, seq, batchSeq };
    const anchor = this.d.store.anchorOf(batch.seq);
    if (!anchor) return { ok: false, code: 'NOT_YET_ANCHORED', message: ACCESS_PROOF_ERRORS.NOT_YET_ANCHORED, seq, batchSeq };
    const tree = this.tree(batch);
    return {
      ok: true,
      bundle: buildAccessBundle({
        entry: e,
        leafIndex,
        treeSize: tree.size,
        auditPath: tree.inclusionProof(leafIndex),
        root: tree.root(),
        anchor: {
          chainId: anchor.chainId,
          contract: anchor.contract,
          gateway: anchor.gateway,
          batchSeq: batch.seq,
          firstFrameTimeMs: batch.firstFrameTimeMs,
          lastFrameTimeMs: batch.lastFrameTimeMs,
          txHash: anchor.txHash,
          blockNumber: anchor.blockNumber,
          blockHash: anchor.blockHash,
        },
        consentRegistry: this.d.consentRegistry,
        gatewayId: this.d.gatewayId,
        generatedAtMs: this.now(),
      }),
    };
  }

  /**
   * The sealed batch holding entry `seq`, undefined when it is not sealed yet. Batches hold
   * consecutive seqs, so a binary search over batch numbers finds it; `hint` (the batch of an
   * earlier entry) starts the search after it.
   */
  private batchOf(seq: bigint, hint?: SealedBatch): SealedBatch | undefined {
    const store = this.d.store;
    if (seq > store.lastSealedLsn) return undefined;
    let lo = hint && hint.lastLsn < seq ? hint.seq + 1n : 1n;
    let hi = store.lastSealed;
    while (lo <= hi) {
      const mid = (lo + hi) / 2n;
      const b = store.get(mid);
      if (!b) throw new Error(`access-log batch ${mid} is missing from the batch store`);
      if (seq < b.firstLsn) hi = mid - 1n;
      else if (seq > b.lastLsn) lo = mid + 1n;
      else return b;
    }
    throw new Error(`access-log entry ${seq} is in no sealed batch, yet batches are sealed up to entry ${store.lastSealedLsn}`);
  }

  private tree(b: SealedBatch): Rfc6962Tree {
    let t = this.trees.get(b.seq);
    if (!t) {
      t = Rfc6962Tree.fromLeafHashes(b.leaves.map((l) => l.leafHash));
      this.trees.set(b.seq, t);
      if (this.trees.size > 8) this.trees.delete(this.trees.keys().next().value as bigint);
    }
    return t;
  }
}
