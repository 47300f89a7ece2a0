/**
 * The composition root: starts the gateway's parts (gateway/parts/) in order and owns
 * start-up and shutdown order. Start-up recovers before it listens: the spool's torn tail is
 * cut, device state is rebuilt from the checkpoint plus the spool tail, and only then do
 * devices get to connect. Shutdown runs every part's steps in reverse (parts/lifecycle.ts).
 *
 *   database → chain → devices → spool (recover) → anchoring → consent → research
 *     → verification → spool watch → storage writer → uplink → pipeline → transports → health → HTTP
 */
import { mkdirSync } from 'node:fs';
import { clearRunningGateway, writeRunningGateway, type RunningGateway } from './running.js';
import type { GatewayConfig } from './config.js';
import type { Logger } from './log.js';
import type { IngestPipeline } from './ingest/pipeline.js';
import type { DeviceRegistry } from './registry/registry.js';
import { Metrics } from './status/metrics.js';
import type { StatusSnapshot } from './status/http.js';
import { httpTransport } from './http/server.js';
import { Health } from './status/health.js';
import type { BleCentral } from './transport/ble/central.js';
import type { BatchStore } from './anchor/batch-store.js';
import type { ChainRuntime } from './chain/runtime.js';
import type { ProofService } from './proof/service.js';
import type { ConsentView } from './consent/consent-view.js';
import type { ResearcherAuthenticator } from './consent/auth.js';
import type { AccessLog } from './consent/access-log.js';
import type { DisclosureService } from './consent/disclosure.js';
import type { LiveResearchAccess } from './research/live.js';
import { Lifecycle, type PartContext } from './parts/lifecycle.js';
import { startDatabase, startStorageWriter } from './parts/storage.js';
import { connectChain, openDevices } from './parts/chain.js';
import { recoverSpool } from './parts/spool.js';
import { anchorNow, frameProofs, openFrameBatches, startAnchoring } from './parts/anchoring.js';
import { startConsent } from './parts/consent.js';
import { startResearch } from './parts/research.js';
import { ingestPipeline, startVerification } from './parts/ingest.js';
import { startHealthMonitor, watchSpool } from './parts/health.js';
import { startTransports } from './parts/transports.js';
import { statusSnapshot } from './parts/status.js';
import { gatewayStatusRoutes, startHttp } from './parts/http.js';
import { startUplink, uplinkSpoolPosition } from './parts/uplink.js';
import { publishBatches } from './parts/batch-points.js';

export interface Gateway {
  config: GatewayConfig;
  metrics: Metrics;
  /** Dependency health and alarms (docs/operations.md, "Alarms"): raise and clear here; /status, /healthz and /metrics read it. */
  health: Health;
  registry: DeviceRegistry;
  pipeline: IngestPipeline;
  mqttPort: number;
  httpPort: number;
  /** The BLE central, when ble.mode is on. */
  ble: BleCentral | undefined;
  influxUrl: string;
  /** The chain anchors go to, unless chain.mode is off. */
  chain: ChainRuntime | undefined;
  batches: BatchStore;
  proofs: ProofService;
  /** The local view of ConsentRegistry (docs/consent.md); undefined without one (chain off, or a deployment that predates it). */
  consent: ConsentView | undefined;
  /** Researcher (and patient) logins: EIP-191 challenges, HTTP sessions, MQTT passwords. */
  researcherAuth: ResearcherAuthenticator;
  /** Every disclosure to a researcher, durable, append-only. */
  accessLog: AccessLog;
  /** The access log's Merkle batches (anchored as AnchorRegistry stream 1). */
  accessBatches: BatchStore;
  /** Consent-governed researcher access in the MQTT broker; undefined without a consent view. */
  research: LiveResearchAccess | undefined;
  /** Patients' disclosure reports and access proofs; undefined without a consent view. */
  disclosures: DisclosureService | undefined;
  /**
   * Lets the live deliveries waiting for their access-log entry be logged, seals the open frame batch and the
   * open access-log batch now, and waits (up to timeoutMs) until every sealed batch of both
   * streams is anchored; true when it is.
   */
  anchorNow(timeoutMs: number): Promise<boolean>;
  snapshot(): StatusSnapshot;
  /** Resolves when a fatal fault stops the gateway (e.g. a corrupt spool). */
  fatal: Promise<Error>;
  stop(): Promise<void>;
}

export async function startGateway(config: GatewayConfig, log: Logger): Promise<Gateway> {
  // Before anything starts: plain HTTP off loopback without http.allowPlain is a ConfigError.
  const httpT = httpTransport(config.http);
  if (httpT.plainAllowed)
    log.warn(
      { event: 'http_plain', host: config.http.host },
      'plain HTTP on a non-loopback address (http.allowPlain=true): bearer tokens and readings cross the network in clear',
    );
  mkdirSync(config.dataDir, { recursive: true });
  const life = new Lifecycle(log);
  const ctx: PartContext = { config, log, metrics: new Metrics(), health: new Health({ log }), life };
  try {
    const db = await startDatabase(ctx);
    const chain = await connectChain(ctx);
    const registry = openDevices(ctx, chain);
    const batches = openFrameBatches(config);
    const spool = await recoverSpool(ctx, batches.lastSealedLsn, uplinkSpoolPosition(config));
    const anchoring = startAnchoring(ctx, chain, spool, batches);
    const consent = await startConsent(ctx, chain, anchoring);
    const research = startResearch(ctx, chain, consent);
    const verification = startVerification(ctx);
    const watch = watchSpool(ctx, spool.wal, registry);
    const storage = startStorageWriter(ctx, {
      db,
      spool,
      placementOf: (lsn) => anchoring.batcher.placementOf(lsn),
      onReleased: () => watch.check(),
    });
    const uplink = startUplink(ctx, { spool, anchoring, onReleased: () => watch.check() });
    // Anchored batches of both streams into the shared InfluxDB: a hub proves any gateway's frame from there (docs/proof-format.md).
    const batchPoints = publishBatches(ctx, storage.sink, anchoring, consent);
    const pipeline = ingestPipeline(ctx, { registry, verification, spool, research: research.live, checkSpool: watch.check, db });
    const transports = await startTransports(ctx, { pipeline, registry, states: spool.states, research: research.live, http: httpT });
    const monitor = startHealthMonitor(ctx, { chain, db, storage, wal: spool.wal, anchoring, consent });
    const snapshot = statusSnapshot(ctx, { monitor, transports, spool, watch, db, storage, anchoring, chain, consent, research, uplink, batchPoints });
    const proofs = frameProofs(config, chain, batches, storage.sink, registry);
    const http = await startHttp(ctx, {
      transport: httpT,
      statusRoutes: gatewayStatusRoutes(snapshot),
      consent,
      research,
      registry,
      sink: storage.sink,
      proofs,
    });

    const { mqtt } = transports;
    const runtime: RunningGateway = {
      pid: process.pid,
      gatewayId: config.gatewayId,
      influxUrl: db.url,
      httpUrl: `${httpT.tls ? 'https' : 'http'}://${config.http.host}:${http.port}`,
      mqttPort: mqtt.port,
      ...(mqtt.tlsPort !== undefined ? { mqttTlsPort: mqtt.tlsPort } : {}),
      ...(chain ? { chainUrl: chain.url } : {}),
    };
    writeRunningGateway(config.dataDir, runtime);
    life.onStop(() => clearRunningGateway(config.dataDir));
    log.info(
      {
        event: 'ready',
        mqttPort: mqtt.port,
        ...(mqtt.tlsPort !== undefined ? { mqttTlsPort: mqtt.tlsPort } : {}),
        httpPort: http.port,
        influxUrl: db.url,
        gatewayId: config.gatewayId,
        devices: registry.list().length,
      },
      'gateway ready',
    );
    return {
      config,
      metrics: ctx.metrics,
      health: ctx.health,
      registry,
      pipeline,
      mqttPort: mqtt.port,
      httpPort: http.port,
      ble: transports.ble,
      influxUrl: db.url,
      chain,
      batches,
      proofs,
      consent: consent.view,
      researcherAuth: consent.auth,
      accessLog: consent.accessLog,
      accessBatches: consent.accessBatches,
      research: research.live,
      disclosures: research.disclosures,
      anchorNow: (timeoutMs) =>
        anchorNow(
          {
            frames: anchoring,
            access: { batches: consent.accessBatches, batcher: consent.accessBatcher, anchorer: consent.accessAnchorer },
            settled: async () => {
              await research.live?.settled();
            },
          },
          timeoutMs,
        ),
      snapshot,
      fatal: life.fatal,
      stop: () => life.stop(),
    };
  } catch (e) {
    await life.stop();
    throw e;
  }
}
