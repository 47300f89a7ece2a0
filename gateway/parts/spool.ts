/**
 * The spool at start-up (docs/architecture.md, "Recovery"): the torn tail is cut, numbering
 * resumes above every position a consumer recorded, lost records are reported, and device
 * state is rebuilt from the storage checkpoint plus the spool's tail. All of this happens
 * before any transport listens.
 */
import { join } from 'node:path';
import { DeviceStates } from '../ingest/device-state.js';
import { decodeSpoolRecord } from '../ingest/spool-record.js';
import { SpoolPositions } from '../spool/positions.js';
import { Wal, WalReader } from '../spool/wal.js';
import { readCheckpoint } from '../storage/writer.js';
import type { PartContext } from './lifecycle.js';

export interface SpoolPart {
  wal: Wal;
  /** The storage writer's checkpoint: device state and the last spool position in storage. */
  checkpointPath: string;
  /** Device state as of the last durable record (checkpoint plus the spool's tail). */
  states: DeviceStates;
  /** The consumers' read positions (the storage writer, the frame batcher, the uplink): they decide what the spool releases. */
  positions: SpoolPositions<SpoolConsumer>;
}

/** The spool's consumers, each with its position in gateway/spool/positions.ts ('uplink' only with uplink.url). */
export type SpoolConsumer = 'storage' | 'batches' | 'uplink';

/**
 * Opens and recovers the spool.
 * @param batchesLsn the last spool position in a sealed Merkle batch (the batch store's record).
 * @param uplink with an uplink: its cursor (docs/uplink.md), or null on its first start, where
 *   it begins at what the other consumers have released.
 */
export async function recoverSpool(ctx: PartContext, batchesLsn: bigint, uplink?: bigint | null): Promise<SpoolPart> {
  const { config, log, life } = ctx;
  const checkpointPath = join(config.dataDir, 'spool', 'checkpoint.json');
  const checkpoint = readCheckpoint(checkpointPath);
  const ckLsn = BigInt(checkpoint?.lsn ?? '0');
  // The spool is released only up to what storage, the sealed batches and the uplink (when on) have consumed.
  const uplinkLsn = uplink === undefined ? {} : { uplink: uplink ?? (ckLsn < batchesLsn ? ckLsn : batchesLsn) };
  const positions = new SpoolPositions<SpoolConsumer>({ storage: ckLsn, batches: batchesLsn, ...uplinkLsn } as Record<SpoolConsumer, bigint>);
  // No spool position is ever handed out twice: numbering resumes above whatever storage
  // (the checkpoint) or the sealed batches have recorded, even when the spool lost its tail.
  const wal = await Wal.open(join(config.dataDir, 'spool'), {
    quotaBytes: config.spool.quotaBytes,
    segmentBytes: config.spool.segmentBytes,
    minFreeBytes: config.spool.minFreeBytes,
    minNextLsn: positions.nextLsnFloor,
  });
  positions.attach(wal);
  life.onStop(() => wal.close());
  for (const lost of wal.recovered.lost) {
    log.error(
      { event: 'spool_loss', from: lost.from.toString(), to: lost.to.toString(), records: Number(lost.to - lost.from + 1n), why: lost.why },
      'spool records that were durable are missing: they are reported, and their positions are never reused',
    );
  }
  const states = DeviceStates.fromCheckpoint(checkpoint);
  // Rebuild the live view: everything durable after the checkpoint.
  const tail = new WalReader(wal, ckLsn + 1n);
  let replayed = 0;
  for (let recs = tail.read(5000); recs.length > 0; recs = tail.read(5000)) {
    for (const r of recs) {
      const f = decodeSpoolRecord(r.lsn, r.payload);
      states.apply(f.frame, f.sha256);
      replayed++;
    }
  }
  tail.close();
  log.info({ event: 'spool_recovered', backlog: Number(wal.backlog), replayed, truncatedBytes: wal.recovered.truncatedBytes }, 'spool recovered');
  return { wal, checkpointPath, states, positions };
}
