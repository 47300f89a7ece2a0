/**
 * Storage (docs/storage.md): the InfluxDB the gateway writes to (embedded, or the one
 * influx.url names) and the writer that moves accepted frames from the spool into it.
 */
import { join } from 'node:path';
import { startInfluxd } from '../storage/influxd.js';
import { InfluxSink } from '../storage/influx-sink.js';
import { logSafeMessage, STORAGE_QUARANTINE_DIR, StorageQuarantine } from '../storage/quarantine.js';
import { StorageWriter } from '../storage/writer.js';
import type { PartContext } from './lifecycle.js';
import type { SpoolPart } from './spool.js';

export interface Database {
  url: string;
  /** Started by the gateway (influx.url empty), stopped with it. */
  embedded: boolean;
}

/** The embedded influxd when influx.url is empty (started first: storage must answer before frames flow). */
export async function startDatabase(ctx: PartContext): Promise<Database> {
  const { config, log, life } = ctx;
  if (config.influx.url) return { url: config.influx.url, embedded: false };
  const influxd = await startInfluxd({ dataDir: join(config.dataDir, 'influxdb') });
  life.onStop(() => influxd.stop());
  log.info({ event: 'influxd_started', url: influxd.url }, 'embedded influxd started');
  return { url: influxd.url, embedded: true };
}

export interface StoragePart {
  sink: InfluxSink;
  writer: StorageWriter;
  /** Frames InfluxDB refused for good, set aside (docs/storage.md, "Storage quarantine"). */
  quarantine: StorageQuarantine;
}

export interface StorageWriterDeps {
  db: Database;
  spool: SpoolPart;
  /** Where each frame sits in its Merkle batch, stored with it (gateway/anchor/batcher.ts). */
  placementOf: (lsn: bigint) => { batch: bigint; leaf: number };
  /** After the writer advanced its spool position (records may have been released). */
  onReleased: () => void;
}

/** The storage writer, draining the spool from after the storage checkpoint; a drain fault is fatal. */
export function startStorageWriter(ctx: PartContext, d: StorageWriterDeps): StoragePart {
  const { config, log, metrics, life } = ctx;
  // Frames InfluxDB refuses for good are set aside here instead of blocking the writer (docs/storage.md).
  const quarantine = new StorageQuarantine(join(config.dataDir, STORAGE_QUARANTINE_DIR), { maxBytes: config.storage.quarantineMaxBytes });
  const sink = new InfluxSink({
    url: d.db.url,
    database: config.influx.database,
    gatewayId: config.gatewayId,
    username: config.influx.username,
    password: config.influx.password,
    timeoutMs: config.influx.timeoutMs,
    quarantine,
    onQuarantined: (q) => {
      metrics.storageQuarantined++;
      // One line per frame, device and seq only: the message is cut of quoted line protocol (readings).
      log.error(
        { event: 'storage_quarantined', device: q.device, seq: q.seq, lsn: q.lsn, status: q.status, err: logSafeMessage(q.error) },
        'InfluxDB refuses a frame for good: set aside in the storage quarantine; fix the database, then run `vitalproof storage replay`',
      );
    },
  });
  const writer = new StorageWriter(d.spool.wal, sink, d.spool.checkpointPath, metrics, d.spool.positions.position('storage'), {
    batchFrames: config.storage.batchFrames,
    retryMinMs: config.storage.retryMinMs,
    retryMaxMs: config.storage.retryMaxMs,
    onError: (e, attempt) => {
      if (attempt === 1 || attempt % 10 === 0) log.warn({ event: 'storage_down', attempt, err: e.message }, 'InfluxDB write failed; frames stay in the spool');
    },
    onRecovered: (attempts) => log.info({ event: 'storage_recovered', attempts }, 'InfluxDB writes resumed'),
    onReleased: d.onReleased,
    placementOf: d.placementOf,
  });
  writer.start().catch((e: Error) => {
    log.fatal({ event: 'drainer_failed', err: e.message }, 'spool drain failed');
    life.fail(e);
  });
  life.onStop(() => writer.stop());
  return { sink, writer, quarantine };
}
