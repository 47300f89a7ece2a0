/**
 * Ingest (docs/architecture.md, "Ingest"): the signature-checking workers, the quarantine of
 * refused frames, and the one pipeline both transports feed, which makes a frame durable in the
 * spool before it is acknowledged.
 */
import { join } from 'node:path';
import { Handoff } from '../ingest/handoff.js';
import { IngestPipeline } from '../ingest/pipeline.js';
import { Quarantine } from '../ingest/quarantine.js';
import type { AcceptedFrame } from '../ingest/types.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { LiveResearchAccess } from '../research/live.js';
import { FrameHistory } from '../storage/history.js';
import { VerifyPool } from '../verify/pool.js';
import type { PartContext } from './lifecycle.js';
import type { SpoolPart } from './spool.js';
import type { Database } from './storage.js';

export interface Verification {
  verifier: VerifyPool;
  /** Refused frames kept as evidence. */
  quarantine: Quarantine;
}

/** The verify workers and the quarantine: started before the storage writer, stopped after it. */
export function startVerification(ctx: PartContext): Verification {
  const { config, log, life } = ctx;
  const verifier = new VerifyPool(config.ingest.verifyWorkers);
  life.onStop(() => verifier.close());
  const quarantine = new Quarantine(join(config.dataDir, 'quarantine'), undefined, undefined, (e) =>
    log.error({ event: 'quarantine_write_failed', err: e.message }, 'refused frames could not be kept as evidence'),
  );
  life.onStop(() => quarantine.flush());
  return { verifier, quarantine };
}

export interface PipelineDeps {
  registry: DeviceRegistry;
  verification: Verification;
  spool: SpoolPart;
  /** Researchers' live deliveries see every accepted frame. */
  research: LiveResearchAccess | undefined;
  /** Looks at the spool's size and the disk after each durable write and when the spool is full. */
  checkSpool: () => void;
  /** The InfluxDB every gateway of the hospital writes to: where a device that moved here is looked up. */
  db: Database;
}

/** The pipeline; a spool write fault is fatal (a restart rebuilds state from disk). */
export function ingestPipeline(ctx: PartContext, d: PipelineDeps): IngestPipeline {
  const { config, log, metrics, life } = ctx;
  const research = d.research;
  const handoff = config.ingest.handoff === 'store' ? startHandoff(ctx, d) : undefined;
  return new IngestPipeline({
    registry: d.registry,
    verifier: d.verification.verifier,
    wal: d.spool.wal,
    states: d.spool.states,
    quarantine: d.verification.quarantine,
    metrics,
    ...(handoff ? { handoff } : {}),
    rules: { maxFutureSkewMs: config.ingest.maxFutureSkewMs, maxBacklogMs: config.ingest.maxBacklogMs },
    onDurable: d.checkSpool,
    ...(research ? { onAccepted: (a: AcceptedFrame) => research.accepted(a) } : {}),
    onSpoolFull: d.checkSpool,
    onFatal: (e) => {
      log.fatal({ event: 'spool_failed', err: e.message }, 'spool write failed; stopping so that a restart rebuilds state from disk');
      life.fail(e);
    },
  });
}

/** Lookups of devices that moved here from another gateway (docs/fleet.md), skipped while InfluxDB is known down. */
function startHandoff(ctx: PartContext, d: PipelineDeps): Handoff {
  const { config, log, metrics, health } = ctx;
  const { influx } = config;
  const history = new FrameHistory({
    url: d.db.url,
    database: influx.database,
    username: influx.username,
    password: influx.password,
    timeoutMs: config.ingest.handoffTimeoutMs,
  });
  return new Handoff({
    history,
    states: d.spool.states,
    metrics,
    storeDown: () => health.dependency('influx')?.up === false || health.isRaised('STORAGE_DOWN'),
    onFailure: (e, device) => {
      // The first failure, then one line per 100: a slow store must not flood the log.
      const n = metrics.handoff.failures;
      if (n === 1 || n % 100 === 0)
        log.warn({ event: 'handoff_lookup_failed', device, failures: n, err: e.message }, 'device state lookup in InfluxDB failed; decided locally');
    },
  });
}
