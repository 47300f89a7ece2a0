/**
 * A patient's disclosure report across the hospital (docs/consent.md, "Disclosure report";
 * docs/fleet.md): what this hub instance logged itself (./disclosure.ts, pending entries
 * included), and every access any other gateway or hub instance logged, from the anchored
 * access-log batches they write to the hospital InfluxDB with their entries
 * (gateway/storage/batch-points.ts, gateway/parts/batch-points.ts publishAccessBatches).
 *
 * InfluxDB is untrusted: an entry from the store goes into the report with a proof only when its
 * leaf hash is the batch's leaf at its place, the leaves give the batch's root, and the chain's
 * AnchorRegistry holds that root for that account, stream and batch (ENTRY_TAMPERED otherwise);
 * the patient's client verifies each proof again against the chain (gateway/proof/access-verify.ts).
 * Another logger's entries appear once their batch is anchored and written (seconds).
 */
import type { Provider } from 'ethers';
import { STREAM, anchorRegistryAt } from '../chain/contracts.js';
import { Rfc6962Tree } from '../merkle/tree.js';
import { buildAccessBundle } from '../proof/access-bundle.js';
import { BATCHES_MEASUREMENT, STREAM_TAGS, readStoredBatches, type StoredBatch } from '../storage/batch-points.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import { accessEntryToJson, accessLeafHash } from '../consent/access-entry.js';
import { reportSummary, type DisclosureItem, type DisclosureReport, type DisclosureService } from '../consent/disclosure.js';

export interface FleetDisclosuresDeps {
  /** This instance's own log and batches. */
  local: DisclosureService;
  /** The `batches` points of this instance's own access log carry this `gateway` tag: they are in `local` already. */
  ownLogger: string;
  sink: Pick<InfluxSink, 'queryRows'>;
  provider: Provider;
  anchorRegistry: string;
  consentRegistry: { chainId: number; address: string };
  now?: () => number;
}

/** Batches whose root the chain confirmed, kept (a report reads the same few again). */
const CONFIRMED_KEEP = 256;

export class FleetDisclosures {
  private readonly confirmed = new Map<string, boolean>();
  private readonly now: () => number;

  constructor(private readonly d: FleetDisclosuresDeps) {
    this.now = d.now ?? Date.now;
  }

  /**
   * Every access to `pseudonym`'s data logged anywhere in the hospital with fromMs ≤ atMs < toMs,
   * ordered by access time, each with its proof (or pending, for this instance's own entries).
   * @throws StorageError when InfluxDB cannot be read; an ethers error when the chain cannot.
   */
  async disclosureReport(pseudonym: string, range: { fromMs?: number; toMs?: number } = {}): Promise<DisclosureReport> {
    const report = this.d.local.disclosureReport(pseudonym, range);
    const { fromMs, toMs } = report;
    const where = [`"stream" = '${STREAM_TAGS[STREAM.ACCESS_LOG]}'`, `"last_frame_ms" >= ${fromMs}`, `"first_frame_ms" < ${toMs}`];
    const batches = readStoredBatches(await this.d.sink.queryRows(BATCHES_MEASUREMENT, where)).filter((b) => b.gateway !== this.d.ownLogger);
    const items: DisclosureItem[] = [...report.items];
    const researchers = new Set(report.summary.researchers);
    let readings = report.summary.readings;
    for (const b of batches) {
      const mine = (b.entries ?? []).map((e, i) => ({ e, i })).filter(({ e }) => e.pseudonym === pseudonym && e.atMs >= fromMs && e.atMs < toMs);
      if (mine.length === 0) continue;
      const tree = Rfc6962Tree.fromLeafHashes(b.leafHashes);
      const sound = `0x${tree.root().toString('hex')}` === b.root.toLowerCase() && (await this.onChain(b));
      for (const { e, i } of mine) {
        researchers.add(e.researcher);
        readings += e.count;
        const leaf = b.leafHashes[i];
        if (!sound || !leaf || !leaf.equals(accessLeafHash(e))) {
          items.push({ status: 'error', entry: accessEntryToJson(e), reason: 'ENTRY_TAMPERED', batchSeq: b.seq.toString() });
          continue;
        }
        items.push({
          status: 'anchored',
          proof: buildAccessBundle({
            entry: e,
            leafIndex: i,
            treeSize: tree.size,
            auditPath: tree.inclusionProof(i),
            root: tree.root(),
            anchor: {
              chainId: b.chainId,
              contract: b.contract,
              gateway: b.address,
              batchSeq: b.seq,
              firstFrameTimeMs: b.firstFrameTimeMs,
              lastFrameTimeMs: b.lastFrameTimeMs,
              txHash: b.txHash,
              blockNumber: b.blockNumber,
              blockHash: b.blockHash,
            },
            consentRegistry: this.d.consentRegistry,
            gatewayId: b.gateway,
            generatedAtMs: this.now(),
          }),
        });
      }
    }
    const atOf = (x: DisclosureItem): number => (x.status === 'anchored' ? x.proof.entry.atMs : x.entry.atMs);
    items.sort((a, b) => atOf(a) - atOf(b));
    return {
      ...report,
      summary: reportSummary(items, readings, researchers),
      items,
    };
  }

  /** The chain's AnchorRegistry holds this root for this account, stream and batch (cached once true). */
  private async onChain(b: StoredBatch): Promise<boolean> {
    const k = `${b.address.toLowerCase()}|${b.seq}|${b.root.toLowerCase()}`;
    if (this.confirmed.get(k)) return true;
    let ok: boolean;
    try {
      ok = await anchorRegistryAt(this.d.anchorRegistry, this.d.provider).isAnchored(b.address, STREAM.ACCESS_LOG, b.seq, b.root);
    } catch (e) {
      // A batch the contract does not know reverts in some nodes' eth_call; anything else is the chain being unreachable.
      if ((e as { code?: string }).code === 'CALL_EXCEPTION') ok = false;
      else throw e;
    }
    if (ok) {
      this.confirmed.set(k, true);
      if (this.confirmed.size > CONFIRMED_KEEP) this.confirmed.delete(this.confirmed.keys().next().value as string);
    }
    return ok;
  }
}
