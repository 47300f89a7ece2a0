/**
 * What /status shows (and /metrics and /healthz derive from): one snapshot assembled from every
 * part, with the alarms evaluated as of the moment it is taken.
 */
import type { ChainRuntime } from '../chain/runtime.js';
import type { HealthMonitor } from '../status/health-monitor.js';
import type { AccessLogStatus, ConsentStatus, StatusSnapshot } from '../status/http.js';
import type { AnchoringPart } from './anchoring.js';
import { batchPointsStatus, type BatchPointsPart } from './batch-points.js';
import type { ConsentPart } from './consent.js';
import type { PartContext } from './lifecycle.js';
import type { SpoolWatch } from './health.js';
import type { ResearchPart } from './research.js';
import type { SpoolPart } from './spool.js';
import type { Database, StoragePart } from './storage.js';
import type { TransportsPart } from './transports.js';
import type { Uplink } from '../uplink/publisher.js';

export interface StatusParts {
  monitor: HealthMonitor;
  transports: TransportsPart;
  spool: SpoolPart;
  watch: SpoolWatch;
  db: Database;
  storage: StoragePart;
  anchoring: AnchoringPart;
  chain: ChainRuntime | undefined;
  consent: ConsentPart;
  research: ResearchPart;
  /** The anchored batches' writers to InfluxDB (docs/proof-format.md, "Proofs across the hospital"); undefined with the chain off. */
  batchPoints?: BatchPointsPart | undefined;
  /** The uplink to the hospital broker, when uplink.url is set. */
  uplink?: Uplink | undefined;
}

export function statusSnapshot(ctx: PartContext, p: StatusParts): () => StatusSnapshot {
  const { config, metrics, health } = ctx;
  const { monitor, spool, watch, storage, anchoring, chain, consent } = p;
  const { mqtt, ble } = p.transports;
  const { wal } = spool;
  const { batcher, batches, anchorer } = anchoring;
  const writer = storage.writer;
  return (): StatusSnapshot => {
    monitor.evaluate(); // the alarms as of now, consistent with the figures beside them
    const nonzero = <T extends Record<string, number>>(o: T): Record<string, number> => Object.fromEntries(Object.entries(o).filter(([, n]) => n > 0));
    return {
      gatewayId: config.gatewayId,
      uptimeS: Math.round((Date.now() - metrics.startedAtMs) / 1000),
      alarms: health.list(),
      dependencies: health.dependencies(),
      frames: {
        receivedPerS: metrics.receivedRate.rate(),
        acceptedPerS: metrics.acceptedRate.rate(),
        received: metrics.received,
        accepted: metrics.accepted,
        duplicates: metrics.duplicates,
        rejected: metrics.rejected,
        rejectedBy: nonzero(metrics.rejectedBy),
        seqGaps: metrics.seqGaps,
        byTransport: { mqtt: { ...metrics.byTransport.mqtt }, ble: { ...metrics.byTransport.ble } },
        handoff: { mode: config.ingest.handoff === 'store' ? 'store' : 'off', ...metrics.handoff },
      },
      mqtt: {
        ...mqtt.status(),
        devicesConnected: mqtt.connectedDevices,
        connectRefusedBy: nonzero(metrics.connectRefusedBy),
        refusedBy: nonzero(metrics.mqttRefusedBy),
      },
      ble: ble
        ? {
            mode: 'on' as const,
            ...ble.status(),
            connectRefusedBy: nonzero(metrics.bleConnectRefusedBy),
            fragmentRejectedBy: nonzero(metrics.fragmentRejectedBy),
            endedBy: nonzero(metrics.bleEndedBy),
          }
        : { mode: 'off' as const },
      spool: {
        backlogFrames: Number(wal.backlog),
        bytes: wal.bytes,
        quotaBytes: wal.quotaBytes,
        usedRatio: wal.bytes / wal.quotaBytes,
        alarm: watch.spoolAlarm,
        diskFreeBytes: Number.isFinite(wal.freeBytes()) ? wal.freeBytes() : -1,
        diskLow: watch.diskLow,
        ...(wal.lastWriteError ? { lastError: `${wal.lastWriteError.code}: ${wal.lastWriteError.message}` } : {}),
        ...(wal.recovered.lost.length ? { lostOnRecovery: wal.recovered.lost.map((r) => ({ from: r.from.toString(), to: r.to.toString(), why: r.why })) } : {}),
      },
      storage: {
        // Down as soon as a write fails, or the probe finds InfluxDB silent (even with nothing to write).
        up: writer.storageUp && (health.dependency('influx')?.up ?? true),
        lagMs: writer.lagMs(),
        ...(writer.lastError
          ? { lastError: writer.lastError }
          : health.dependency('influx')?.lastError
            ? { lastError: health.dependency('influx')!.lastError }
            : {}),
        framesWritten: metrics.framesWritten,
        pointsWritten: metrics.pointsWritten,
        errors: metrics.storageErrors,
        url: p.db.url,
        quarantined: metrics.storageQuarantined,
        quarantineHeld: storage.quarantine.stats().held,
      },
      batches: {
        open: { batch: batcher.openSeq.toString(), frames: batcher.openLeaves, ageMs: batcher.openAgeMs() },
        lastSealed: batches.lastSealed.toString(),
        lastAnchored: batches.lastAnchored.toString(),
        pendingAnchors: batches.pendingAnchors,
        intervalMs: config.batch.intervalMs,
      },
      ...(p.batchPoints ? { batchPoints: batchPointsStatus(p.batchPoints) } : {}),
      chain: chain
        ? (() => {
            const st = anchorer!.status();
            // Down when the probe finds the endpoint silent or failing (within seconds), or anchoring fails.
            const dep = health.dependency('chain');
            const probeDown = dep !== undefined && !dep.up;
            const up = !probeDown && st.up;
            const lastError = probeDown ? dep.lastError : st.lastError;
            const sinceMs = probeDown ? (st.up ? dep.sinceMs : Math.min(dep.sinceMs, st.sinceMs)) : up ? Math.max(dep?.sinceMs ?? 0, st.sinceMs) : st.sinceMs;
            return {
              mode: chain.mode,
              url: chain.url,
              chainId: chain.chainId,
              gateway: chain.address,
              anchorRegistry: chain.record.anchorRegistry.address,
              deviceRegistry: chain.record.deviceRegistry.address,
              up,
              sinceMs,
              ...(lastError ? { lastError } : {}),
              ...(st.halted ? { halted: st.halted } : {}),
              ...(st.lastAnchor
                ? {
                    lastAnchor: {
                      batch: st.lastAnchor.seq.toString(),
                      root: st.lastAnchor.root,
                      txHash: st.lastAnchor.txHash,
                      block: st.lastAnchor.blockNumber,
                      gasUsed: Number(st.lastAnchor.gasUsed),
                      confirmedAtMs: st.lastAnchor.confirmedAtMs,
                    },
                  }
                : {}),
            };
          })()
        : { mode: 'off' as const, up: false },
      consent: consentStatus(consent, p.research),
      uplink: p.uplink ? p.uplink.status() : { enabled: false },
      accessLog: accessLogStatus(consent, p.research),
    };
  };
}

/** The consent section of /status (a gateway's and a hub's): the view of ConsentRegistry and the live researcher transport. */
export function consentStatus(consent: ConsentPart, researchPart: ResearchPart): ConsentStatus {
  const l = researchPart.live?.status();
  const live = {
    researchersConnected: l?.researchersConnected ?? 0,
    subscriptions: l?.subscriptions ?? 0,
    deliveries: l?.deliveries ?? 0,
    cut: l?.cut ?? 0,
    loginRefusedBy: l?.loginRefusedBy ?? {},
    subscribeRefusedBy: l?.subscribeRefusedBy ?? {},
  };
  if (!consent.view)
    return { enabled: false, following: false, ...(consent.off ? { lastError: consent.off } : {}), grants: 0, inForce: 0, patients: 0, ...live };
  const st = consent.view.status();
  return {
    enabled: true,
    following: st.following,
    ...(st.lastError ? { lastError: st.lastError } : {}),
    lastBlock: st.lastBlock,
    grants: st.grants,
    inForce: st.inForce,
    patients: st.patients,
    ...live,
  };
}

/** The access-log section of /status (a gateway's and a hub's). */
export function accessLogStatus(consent: ConsentPart, researchPart: ResearchPart): AccessLogStatus {
  const err = consent.accessAnchorer?.status();
  return {
    entries: Number(consent.accessLog.lastSeq),
    openEntries: Number(consent.accessLog.lastSeq - consent.accessBatches.lastSealedLsn),
    liveAggregates: researchPart.live?.status().awaitingLog ?? 0,
    sealed: consent.accessBatches.lastSealed.toString(),
    anchored: consent.accessBatches.lastAnchored.toString(),
    pending: consent.accessBatches.pendingAnchors,
    ...(err?.halted ? { lastError: err.halted } : err?.lastError ? { lastError: err.lastError } : {}),
  };
}
