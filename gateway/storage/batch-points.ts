/**
 * The `batches` measurement: every anchored Merkle batch of every gateway, both streams, in the
 * shared InfluxDB (docs/storage.md, "`batches`"; docs/proof-format.md, "Proofs across the
 * hospital"). A gateway's batch store is on its own disk; the hub is stateless and has none, so
 * to make a proof bundle for a frame any gateway took it reads the batch's leaf hashes and
 * anchor here, rebuilds the RFC 9162 tree and holds the root to the chain.
 *
 * One point per (gateway, stream, batch): tags `gateway` (gatewayId) and `stream` (`frames` or
 * `access`); fields `seq`, `root`, `leaf_count`, `leaves` (the leaf hashes concatenated, base64),
 * `first_frame_ms`, `last_frame_ms`, `address` (the chain account that anchored), `chain_id`,
 * `contract`, `tx_hash`, `block`, `block_hash`. Every value is a function of the sealed batch and
 * its confirmed anchor record, so writing a batch again overwrites the point with itself.
 *
 * InfluxDB is untrusted: what is read here is a claim. The proof service checks each frame's leaf
 * against these leaves and these against the chain's anchor (gateway/proof/fleet.ts).
 */
import { accessEntryFromJson, accessEntryToJson, type AccessEntry, type AccessEntryJson } from '../consent/access-entry.js';
import { STREAM, type StreamId } from '../chain/contracts.js';
import type { AnchorRecord, SealedBatch } from '../anchor/batch-store.js';
import type { InfluxSink } from './influx-sink.js';
import { int, str, toLine } from './line-protocol.js';
import { storedTag } from './schema.js';
import { textOf } from '../util/text.js';

export const BATCHES_MEASUREMENT = 'batches';

/** The `stream` tag of each AnchorRegistry stream. */
export const STREAM_TAGS: Record<StreamId, string> = { [STREAM.FRAMES]: 'frames', [STREAM.ACCESS_LOG]: 'access' };

/**
 * Up to a million batches of one (gateway, stream) could be sealed in one millisecond without two
 * points sharing a time: see batchPointTimeNs.
 */
const SUB_MS = 1_000_000n;

/**
 * The point's time: the batch's sealedAtMs in ns plus `seq mod 10⁶`. A function of the batch alone
 * (a rewrite overwrites); never shared by two batches of a series, which a bare sealedAtMs could
 * be (two batches sealed in one ms under load: the second would overwrite the first).
 */
export function batchPointTimeNs(b: Pick<SealedBatch, 'seq' | 'sealedAtMs'>): bigint {
  return BigInt(b.sealedAtMs) * SUB_MS + (b.seq % SUB_MS);
}

/**
 * The line of one anchored batch of `gatewayId`. An access-log batch carries its entries too
 * (`entries`: their JSON, docs/consent.md "Leaf encoding", salts included), so that any hub can
 * answer a patient's disclosure report for accesses logged anywhere in the hospital
 * (gateway/consent/fleet-disclosures.ts).
 * @throws RangeError when the anchor is of another batch or stream; TypeError as toLine.
 */
export function batchToLine(gatewayId: string, b: SealedBatch, a: AnchorRecord, entries?: readonly AccessEntry[]): string {
  if (a.seq !== b.seq) throw new RangeError(`anchor of batch ${a.seq} given with batch ${b.seq}`);
  const stream = STREAM_TAGS[a.stream as StreamId];
  if (stream === undefined) throw new RangeError(`batch ${b.seq} is anchored in stream ${a.stream}, which has no tag`);
  return toLine({
    measurement: BATCHES_MEASUREMENT,
    tags: { gateway: gatewayId, stream },
    fields: {
      seq: int(b.seq),
      root: str(b.root),
      leaf_count: int(b.leafCount),
      leaves: str(Buffer.concat(b.leaves.map((l) => l.leafHash)).toString('base64')),
      first_frame_ms: int(b.firstFrameTimeMs),
      last_frame_ms: int(b.lastFrameTimeMs),
      address: str(a.gateway),
      chain_id: int(a.chainId),
      contract: str(a.contract),
      tx_hash: str(a.txHash),
      block: int(a.blockNumber),
      block_hash: str(a.blockHash),
      ...(entries ? { entries: str(JSON.stringify(entries.map(accessEntryToJson))) } : {}),
    },
    timeNs: batchPointTimeNs(b),
  });
}

/** A `batches` point as read back: what a gateway claims it anchored (check it against the chain). */
export interface StoredBatch {
  timeNs: bigint;
  gateway: string;
  stream: StreamId;
  seq: bigint;
  /** RFC 9162 root as the point says it, 0x-hex. */
  root: string;
  leafCount: number;
  /** The leaf hashes, in leaf order; their number may differ from leafCount in an edited point. */
  leafHashes: Buffer[];
  firstFrameTimeMs: number;
  lastFrameTimeMs: number;
  /** The gateway's chain account that anchored the batch. */
  address: string;
  chainId: number;
  /** AnchorRegistry address. */
  contract: string;
  txHash: string;
  blockNumber: number;
  blockHash: string;
  /** An access-log batch's entries, when its point carries them (leaf order); undefined when absent or unreadable. */
  entries?: AccessEntry[];
}

/** A `batches` row as a StoredBatch; leaves that do not split into 32-byte hashes are cut at the last whole one. */
function storedBatchOf(r: Record<string, unknown>): StoredBatch {
  const leaves = Buffer.from(textOf(r['leaves'] ?? ''), 'base64');
  const leafHashes: Buffer[] = [];
  for (let i = 0; i + 32 <= leaves.length; i += 32) leafHashes.push(leaves.subarray(i, i + 32));
  const streamTag = storedTag(r['stream']);
  return {
    timeNs: BigInt(r['time'] as string | number),
    gateway: storedTag(r['gateway']),
    stream: streamTag === STREAM_TAGS[STREAM.ACCESS_LOG] ? STREAM.ACCESS_LOG : STREAM.FRAMES,
    seq: BigInt(r['seq'] as string | number),
    root: textOf(r['root'] ?? ''),
    leafCount: Number(r['leaf_count']),
    leafHashes,
    firstFrameTimeMs: Number(r['first_frame_ms']),
    lastFrameTimeMs: Number(r['last_frame_ms']),
    address: textOf(r['address'] ?? ''),
    chainId: Number(r['chain_id']),
    contract: textOf(r['contract'] ?? ''),
    txHash: textOf(r['tx_hash'] ?? ''),
    blockNumber: Number(r['block']),
    blockHash: textOf(r['block_hash'] ?? ''),
    ...entriesOf(r['entries']),
  };
}

/** The entries field as AccessEntries; nothing when absent or not readable (the point was edited: the leaf check refuses it anyway). */
function entriesOf(v: unknown): { entries?: AccessEntry[] } {
  if (typeof v !== 'string') return {};
  try {
    return { entries: (JSON.parse(v) as AccessEntryJson[]).map(accessEntryFromJson) };
  } catch {
    return {};
  }
}

/**
 * The `batches` points of one gateway and stream, oldest first; with `seq`, only that batch's
 * (one point, or none when it is not written yet: its anchor is not confirmed, or the gateway's
 * batch writer is behind).
 * @throws StorageError
 */
export async function readBatchPoints(sink: Pick<InfluxSink, 'queryRows'>, gateway: string, stream: StreamId, seq?: bigint): Promise<StoredBatch[]> {
  const where = ['"gateway" = $gateway', '"stream" = $stream', ...(seq !== undefined ? [`"seq" = ${BigInt.asIntN(64, seq)}`] : [])];
  const rows = await sink.queryRows(BATCHES_MEASUREMENT, where, { gateway, stream: STREAM_TAGS[stream] });
  return readStoredBatches(rows);
}

/** `batches` rows (from a query of one's own) as StoredBatches. */
export function readStoredBatches(rows: Record<string, unknown>[]): StoredBatch[] {
  return rows.map(storedBatchOf);
}

/** One batch of (gateway, stream), or undefined when no point holds it. @throws StorageError */
export async function readBatchPoint(sink: Pick<InfluxSink, 'queryRows'>, gateway: string, stream: StreamId, seq: bigint): Promise<StoredBatch | undefined> {
  return (await readBatchPoints(sink, gateway, stream, seq))[0];
}
