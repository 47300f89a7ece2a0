/**
 * Publishing the anchored batches (docs/proof-format.md, "Proofs across the hospital"): every
 * anchored batch of both streams, frames (./anchoring.ts) and the access log (./consent.ts), goes
 * into the shared InfluxDB's `batches` measurement, so that the hub can make proofs for frames
 * any gateway took. Started once storage's sink exists; stopped before it.
 *
 * The writers poll their batch store's lastAnchored every second: the anchorers' onAnchored hook
 * fires before storage's sink exists (the anchorers start first), and a property read a second
 * costs nothing against a batch interval of seconds. wake() is there for a caller holding the hook.
 */
import { join } from 'node:path';
import { STREAM, type StreamId } from '../chain/contracts.js';
import type { BatchStore } from '../anchor/batch-store.js';
import { STREAM_TAGS } from '../storage/batch-points.js';
import { BatchPointWriter, type BatchWriterOptions, type BatchWriterStatus } from '../storage/batch-writer.js';
import type { InfluxSink } from '../storage/influx-sink.js';
import type { AnchoringPart } from './anchoring.js';
import type { ConsentPart } from './consent.js';
import type { PartContext } from './lifecycle.js';

/** Where each stream's cursor (the last batch InfluxDB confirmed) lives in the data dir. */
export const BATCH_POINTS_DIR = 'batch-points';

export interface BatchPointsPart {
  frames: BatchPointWriter;
  access: BatchPointWriter;
}

/** /status `batchPoints`: each stream's last batch written to InfluxDB and how many anchored ones wait. */
export function batchPointsStatus(p: BatchPointsPart): { frames: BatchWriterStatus; access: BatchWriterStatus } {
  return { frames: p.frames.status(), access: p.access.status() };
}

/**
 * The `batches` writers of both streams; undefined when the chain is off (nothing is anchored).
 * @param sink storage's sink (its writeLines creates the database when it is missing).
 */
export function publishBatches(
  ctx: PartContext,
  sink: Pick<InfluxSink, 'writeLines'>,
  anchoring: Pick<AnchoringPart, 'batches' | 'target'>,
  consent: Pick<ConsentPart, 'accessBatches' | 'accessLog'>,
): BatchPointsPart | undefined {
  if (!anchoring.target) return undefined;
  return {
    frames: publishBatchStream(ctx, sink, STREAM.FRAMES, anchoring.batches),
    access: publishAccessBatches(ctx, sink, consent, ctx.config.gatewayId),
  };
}

/**
 * The access log's anchored batches, with their entries, under `logger` (a gateway's id; a hub
 * instance's `<gatewayId>.<instance>`, since hub instances share one gatewayId but each keeps
 * its own log): what a hub answers hospital-wide disclosure reports from.
 */
export function publishAccessBatches(
  ctx: PartContext,
  sink: Pick<InfluxSink, 'writeLines'>,
  consent: Pick<ConsentPart, 'accessBatches' | 'accessLog'>,
  logger: string,
): BatchPointWriter {
  return publishBatchStream(ctx, sink, STREAM.ACCESS_LOG, consent.accessBatches, {
    gatewayId: logger,
    entriesOf: (b) => consent.accessLog.read(b.firstLsn, b.leafCount).filter((e) => e.seq <= b.lastLsn),
  });
}

/** The `batches` writer of one stream's batch store (a hub, which anchors only its access log, starts just that one). */
export function publishBatchStream(
  ctx: PartContext,
  sink: Pick<InfluxSink, 'writeLines'>,
  stream: StreamId,
  store: BatchStore,
  extra: Partial<Pick<BatchWriterOptions, 'gatewayId' | 'entriesOf'>> = {},
): BatchPointWriter {
  const { config, log, life } = ctx;
  const name = STREAM_TAGS[stream];
  const w = new BatchPointWriter(store, sink, {
    ...extra,
    gatewayId: extra.gatewayId ?? config.gatewayId,
    stream,
    cursorPath: join(config.dataDir, BATCH_POINTS_DIR, `${name}.json`),
    retryMinMs: config.storage.retryMinMs,
    retryMaxMs: config.storage.retryMaxMs,
    pollMs: 1000,
    onError: (e, attempt) => {
      if (attempt === 1 || attempt % 10 === 0)
        log.warn({ event: 'batch_points_down', stream: name, attempt, err: e.message }, 'writing anchored batches to InfluxDB failed; retrying');
    },
    onRecovered: (attempts) => log.info({ event: 'batch_points_recovered', stream: name, attempts }, 'anchored batches reach InfluxDB again'),
  });
  w.start();
  life.onStop(() => w.stop());
  return w;
}
