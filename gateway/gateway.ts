/**
 * The composition root: wires transports, pipeline, spool, storage and status together,
 * and owns start-up and shutdown order. Start-up recovers before it listens: the spool's
 * torn tail is cut, device state is rebuilt from the checkpoint plus the spool tail, and
 * only then do devices get to connect.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { clearRunningGateway, writeRunningGateway, type RunningGateway } from './running.js';
import { openRegistry } from './registry/open.js';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { GatewayConfig } from './config.js';
import type { Logger } from './log.js';
import { Wal, WalReader } from './spool/wal.js';
import { DeviceStates } from './ingest/device-state.js';
import { Drainer, readCheckpoint } from './ingest/drainer.js';
import { IngestPipeline } from './ingest/pipeline.js';
import { Quarantine } from './ingest/quarantine.js';
import { decodeSpoolRecord } from './ingest/spool-record.js';
import type { AcceptedFrame } from './ingest/types.js';
import type { DeviceRegistry } from './registry/registry.js';
import { Metrics } from './status/metrics.js';
import { startStatusServer, type StatusSnapshot } from './status/http.js';
import { HttpGuard, httpTransport } from './status/http-server.js';
import { Health } from './status/health.js';
import { HealthMonitor, chainProbe, chainRule, influxProbe, spoolRule, storageRule } from './status/health-monitor.js';
import { startInfluxd, type InfluxdHandle } from './storage/influxd.js';
import { InfluxSink } from './storage/influx-sink.js';
import { logSafeMessage, STORAGE_QUARANTINE_DIR, StorageQuarantine } from './storage/quarantine.js';
import { MqttTransport, mqttLimits } from './transport/mqtt/broker.js';
import { tlsServerOptions } from './transport/mqtt/tls.js';
import { BleCentral } from './transport/ble/central.js';
import { VerifyPool } from './verify/pool.js';
import { BatchStore } from './anchor/batch-store.js';
import { Batcher } from './anchor/batcher.js';
import { Anchorer } from './anchor/anchorer.js';
import { openChain, type ChainRuntime } from './chain/runtime.js';
import { ProofService } from './proof/service.js';
import { proofRoutes } from './proof/http.js';
import { STREAM, sensorCodesOf } from './chain/contracts.js';
import { txLaneOf } from './anchor/tx-lane.js';
import { ConsentView } from './consent/consent-view.js';
import { ResearcherAuthenticator } from './consent/auth.js';
import { AccessLog } from './consent/access-log.js';
import { AccessLogBatcher } from './consent/access-batcher.js';
import { DisclosureService } from './consent/disclosure.js';
import { DIRECTORY_FILE, PATIENT_REF_KEY_FILE, PseudonymDirectory } from './registry/directory.js';
import { sensorByCode } from '../firmware-proto/catalogue.js';
import { LiveResearchAccess } from './research/live.js';
import { researchRoutes } from './research/http.js';

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
  if (httpT.plainAllowed) log.warn({ event: 'http_plain', host: config.http.host }, 'plain HTTP on a non-loopback address (http.allowPlain=true): bearer tokens and readings cross the network in clear');
  mkdirSync(config.dataDir, { recursive: true });
  const metrics = new Metrics();
  const health = new Health({ log });
  const cleanups: (() => Promise<void>)[] = [];
  // Every step runs even when an earlier one throws (synchronously or not): a fault on the way
  // down (a full disk failing the last batch seal) must not leave servers or children behind.
  const stopAll = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (e) {
        log.warn({ event: 'shutdown_step_failed', err: (e as Error).message }, 'shutdown step failed');
      }
    }
  };
  try {
    let influxd: InfluxdHandle | undefined;
    let influxUrl = config.influx.url;
    if (!influxUrl) {
      influxd = await startInfluxd({ dataDir: join(config.dataDir, 'influxdb') });
      influxUrl = influxd.url;
      cleanups.push(() => influxd!.stop());
      log.info({ event: 'influxd_started', url: influxUrl }, 'embedded influxd started');
    }

    let chain: ChainRuntime | undefined;
    if (config.chain.mode !== 'off') {
      chain = await openChain(config, log);
      const c = chain;
      cleanups.push(() => c.stop());
      log.info({ event: 'chain_ready', mode: c.mode, url: c.url, chainId: c.chainId, gateway: c.address, anchorRegistry: c.record.anchorRegistry.address, deviceRegistry: c.record.deviceRegistry.address }, 'chain connected');
    }

    // Embedded chain: the in-process registry can enrol (the demo does) with the dev hospital admin.
    const registry = openRegistry(config, chain, log, chain?.adminSigner ? { signer: chain.adminSigner } : {});
    cleanups.push(() => registry.close());
    registry.on('changed', () => {
      const all = registry.list();
      log.info({ event: 'registry_changed', devices: all.length, revoked: all.filter((d) => d.revokedAtMs !== undefined).length }, 'device registry reloaded');
    });

    const checkpointPath = join(config.dataDir, 'spool', 'checkpoint.json');
    const checkpoint = readCheckpoint(checkpointPath);
    const ckLsn = BigInt(checkpoint?.lsn ?? '0');
    const batches = new BatchStore(join(config.dataDir, 'batches'));
    // No spool position is ever handed out twice: numbering resumes above whatever storage
    // (the checkpoint) or the sealed batches have recorded, even when the spool lost its tail.
    const wal = await Wal.open(join(config.dataDir, 'spool'), {
      quotaBytes: config.spool.quotaBytes,
      segmentBytes: config.spool.segmentBytes,
      minFreeBytes: config.spool.minFreeBytes,
      minNextLsn: (ckLsn > batches.lastSealedLsn ? ckLsn : batches.lastSealedLsn) + 1n,
    });
    cleanups.push(() => wal.close());
    for (const lost of wal.recovered.lost) {
      log.error({ event: 'spool_loss', from: lost.from.toString(), to: lost.to.toString(), records: Number(lost.to - lost.from + 1n), why: lost.why }, 'spool records that were durable are missing: they are reported, and their positions are never reused');
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

    let fatalResolve!: (e: Error) => void;
    const fatal = new Promise<Error>((res) => (fatalResolve = res));

    // Merkle batches: the batcher reads the spool on its own; the spool is released only up
    // to what both storage and the sealed batches have consumed.
    const consumed = { storage: ckLsn, batches: batches.lastSealedLsn };
    const releaseSpool = (): void => {
      const upTo = consumed.storage < consumed.batches ? consumed.storage : consumed.batches;
      if (upTo > wal.releasedLsn) wal.release(upTo);
    };
    let anchorer: Anchorer | undefined;
    const batcher = new Batcher(wal, batches, ckLsn, {
      intervalMs: config.batch.intervalMs,
      maxLeaves: config.batch.maxFrames,
      onSealed: (b) => {
        consumed.batches = b.lastLsn;
        releaseSpool();
        log.info({ event: 'batch_sealed', batch: b.seq.toString(), leaves: b.leafCount, root: b.root, firstFrameTimeMs: b.firstFrameTimeMs, lastFrameTimeMs: b.lastFrameTimeMs }, 'batch sealed');
        anchorer?.wake();
      },
      onError: (e) => {
        log.fatal({ event: 'batcher_failed', err: e.message }, 'sealing a batch failed; stopping so that a restart rebuilds the open batch from the spool');
        fatalResolve(e);
      },
    });
    batcher.start();
    cleanups.push(() => Promise.resolve(batcher.stop()));
    // Frames of the open batch were lost with the spool's tail: InfluxDB may already name their
    // leaves. Seal what survived now, so that no new frame takes a lost frame's place.
    if (wal.recovered.lost.some((r) => r.to > consumed.batches)) {
      const b = batcher.seal();
      log.warn({ event: 'batch_sealed_after_loss', batch: b?.seq.toString(), leaves: b?.leafCount ?? 0 }, 'the open batch was sealed with the frames that survived the spool loss');
    }
    // One target, one account, one transaction lane for both streams (docs/anchoring.md, "Two streams, one account").
    const anchorTarget = chain
      ? (() => {
          const c = chain;
          return {
            provider: c.provider,
            signer: c.signer,
            anchorRegistry: c.anchorRegistry,
            chainId: c.chainId,
            contract: c.record.anchorRegistry.address,
            gateway: c.address,
            confirmations: config.chain.confirmations,
            makeDurable: () => c.makeDurable(),
            ready: () => c.ready(),
            lane: txLaneOf(c.signer),
          };
        })()
      : undefined;
    const anchorOpts = { retryMinMs: config.chain.retryMinMs, retryMaxMs: config.chain.retryMaxMs, txTimeoutMs: config.chain.txTimeoutMs, log };
    if (anchorTarget) {
      anchorer = new Anchorer(batches, anchorTarget, anchorOpts);
      anchorer.start();
      const a = anchorer;
      cleanups.push(() => a.stop());
    }

    // The accounting of disclosures (docs/consent.md): the access log, its Merkle batches, and
    // their anchors as stream 1 from the frames' account, taking turns on its lane.
    const accessLog = await AccessLog.open(join(config.dataDir, 'access-log'));
    cleanups.push(() => accessLog.close());
    const accessBatches = new BatchStore(join(config.dataDir, 'access-batches'));
    let accessAnchorer: Anchorer | undefined;
    const accessBatcher = new AccessLogBatcher(accessLog, accessBatches, {
      intervalMs: config.accessLog.intervalMs,
      maxLeaves: config.accessLog.maxEntries,
      onSealed: (b) => {
        log.info({ event: 'access_batch_sealed', batch: b.seq.toString(), entries: b.leafCount, root: b.root }, 'access-log batch sealed');
        accessAnchorer?.wake();
      },
      onError: (e) => {
        log.fatal({ event: 'access_batcher_failed', err: e.message }, 'sealing an access-log batch failed; stopping so that a restart rebuilds the open batch from the log');
        fatalResolve(e);
      },
    });
    accessBatcher.start();
    cleanups.push(() => Promise.resolve(accessBatcher.stop()));
    if (anchorTarget) {
      accessAnchorer = new Anchorer(accessBatches, anchorTarget, { ...anchorOpts, stream: STREAM.ACCESS_LOG });
      accessAnchorer.start();
      const a = accessAnchorer;
      cleanups.push(() => a.stop());
    }

    // The local view of ConsentRegistry: delivery asks it, in memory, and never waits on the chain.
    const consentAddress = chain?.record.consentRegistry?.address;
    const consentOff = !chain ? 'chain.mode is off' : !consentAddress ? 'the deployment record has no ConsentRegistry' : undefined;
    let consent: ConsentView | undefined;
    if (chain && consentAddress) {
      const view = new ConsentView({
        provider: chain.provider,
        consentRegistryAddress: consentAddress,
        deployBlock: chain.record.deployBlock,
        dataDir: join(config.dataDir, 'consent'),
        directory: new PseudonymDirectory(join(config.dataDir, 'registry', DIRECTORY_FILE)),
        ...patientRefKeyIn(join(config.dataDir, 'registry')),
        confirmations: config.chain.confirmations,
        pollIntervalMs: config.consent.pollIntervalMs,
        rpcTimeoutMs: config.chain.rpcTimeoutMs,
        chainId: chain.chainId,
        log,
      });
      consent = view;
      cleanups.push(() => view.close());
      const metricsOf = (mask: number): string[] => sensorCodesOf(mask).map((c) => sensorByCode(c)?.name ?? `sensor-${c}`);
      view.on('granted', (g) => log.info({ event: 'consent_granted', grantId: g.grantId.toString(), researcher: g.researcher, pseudonym: view.pseudonymOf(g.patientRef), metrics: metricsOf(g.sensorMask), block: g.block }, 'consent granted'));
      view.on('revoked', (e) => log.info({ event: 'consent_revoked', grantId: e.grant.grantId.toString(), researcher: e.grant.researcher, pseudonym: view.pseudonymOf(e.grant.patientRef), revokedAtMs: e.revokedAtMs, block: e.blockNumber, cause: e.cause, seenAfterMs: Date.now() - e.revokedAtMs }, 'consent revoked'));
      view.on('expired', (g) => log.info({ event: 'consent_expired', grantId: g.grantId.toString(), researcher: g.researcher, pseudonym: view.pseudonymOf(g.patientRef), expiresAtMs: Number(g.expiresAtMs) }, 'consent expired'));
    }
    const researcherAuth = new ResearcherAuthenticator({
      gatewayId: config.gatewayId,
      recoveriesPerS: config.login.recoveriesPerS,
      selfIssuedPerS: config.login.selfIssuedPerS,
      maxUnadmittedSessions: config.login.maxUnadmittedSessions,
      // Known to the chain: a grantee (any grant, any state) or a bound patient.
      ...(consent ? { admitted: (a: string) => consent!.grantsFor(a).length > 0 || consent!.patientRefOfAddress(a) !== undefined } : {}),
    });
    const httpGuard = new HttpGuard(config.http, httpT, { log, auth: researcherAuth });
    let research: LiveResearchAccess | undefined;
    if (consent) {
      // Every live delivery is logged (fdatasync) before it is sent (docs/consent.md, "Live deliveries").
      const r = new LiveResearchAccess({
        view: consent,
        auth: researcherAuth,
        accessLog,
        log,
        batchMs: config.accessLog.liveBatchMs,
        maxConnectionsPerResearcher: config.research.maxConnectionsPerResearcher,
        maxUngrantedConnections: config.research.maxUngrantedConnections,
        refusalLog: { burst: config.log.limitBurst, windowMs: config.log.limitWindowMs },
      });
      research = r;
      cleanups.push(() => r.close());
    }
    const disclosures = chain && consent && consentAddress ? new DisclosureService({ log: accessLog, store: accessBatches, consentRegistry: { chainId: chain.chainId, address: consentAddress }, gatewayId: config.gatewayId }) : undefined;

    // Frames InfluxDB refuses for good are set aside here instead of blocking the writer (docs/storage.md).
    const storageQuarantine = new StorageQuarantine(join(config.dataDir, STORAGE_QUARANTINE_DIR), { maxBytes: config.storage.quarantineMaxBytes });
    const sink = new InfluxSink({
      url: influxUrl, database: config.influx.database, gatewayId: config.gatewayId, username: config.influx.username, password: config.influx.password, timeoutMs: config.influx.timeoutMs,
      quarantine: storageQuarantine,
      onQuarantined: (q) => {
        metrics.storageQuarantined++;
        // One line per frame, device and seq only: the message is cut of quoted line protocol (readings).
        log.error({ event: 'storage_quarantined', device: q.device, seq: q.seq, lsn: q.lsn, status: q.status, err: logSafeMessage(q.error) }, 'InfluxDB refuses a frame for good: set aside in the storage quarantine; fix the database, then run `vitalproof storage replay`');
      },
    });
    const verifier = new VerifyPool(config.ingest.verifyWorkers);
    cleanups.push(() => verifier.close());
    const quarantine = new Quarantine(join(config.dataDir, 'quarantine'), undefined, undefined, (e) =>
      log.error({ event: 'quarantine_write_failed', err: e.message }, 'refused frames could not be kept as evidence'),
    );
    cleanups.push(() => quarantine.flush());

    let spoolAlarm = false;
    let diskLow = false;
    const checkSpool = (): void => {
      const ratio = wal.bytes / wal.quotaBytes;
      const alarm = ratio >= config.spool.alarmRatio;
      if (alarm !== spoolAlarm) {
        spoolAlarm = alarm;
        if (alarm) log.error({ event: 'spool_alarm', bytes: wal.bytes, quotaBytes: wal.quotaBytes }, 'spool is near its disk quota: storage is not keeping up');
        else log.info({ event: 'spool_alarm_cleared', bytes: wal.bytes }, 'spool back under its alarm level');
      }
      const low = wal.diskLow;
      if (low !== diskLow) {
        diskLow = low;
        if (low) log.error({ event: 'disk_low', freeBytes: wal.freeBytes(), minFreeBytes: config.spool.minFreeBytes }, 'the data dir\'s disk is nearly full: acknowledgements are held until space returns');
        else log.info({ event: 'disk_low_cleared', freeBytes: wal.freeBytes() }, 'disk space is back: acknowledging again');
        health.set('DISK_FULL', low, `${wal.freeBytes()} bytes free on the data dir's filesystem, below spool.minFreeBytes ${config.spool.minFreeBytes}`);
      }
      const refused = registry.refusedKeys();
      health.set('REGISTRY_BAD_KEY', refused.length > 0, `${refused.length} device key(s) enrolled on chain break the key rule and are refused: ${refused.slice(0, 5).map((r) => `${r.deviceId} ${r.reason}`).join(', ')}`);
    };
    // The disk fills for reasons of its own (other files, other processes), and keys arrive from
    // the chain at any time: look every second.
    const diskTimer = setInterval(checkSpool, 1000);
    cleanups.push(() => Promise.resolve(clearInterval(diskTimer)));
    const drainer = new Drainer(wal, sink, checkpointPath, metrics, {
      batchFrames: config.storage.batchFrames,
      retryMinMs: config.storage.retryMinMs,
      retryMaxMs: config.storage.retryMaxMs,
      onError: (e, attempt) => {
        if (attempt === 1 || attempt % 10 === 0) log.warn({ event: 'storage_down', attempt, err: e.message }, 'InfluxDB write failed; frames stay in the spool');
      },
      onRecovered: (attempts) => log.info({ event: 'storage_recovered', attempts }, 'InfluxDB writes resumed'),
      onReleased: () => checkSpool(),
      placementOf: (lsn) => batcher.placementOf(lsn),
      release: (lsn) => {
        consumed.storage = lsn;
        batcher.stored(lsn);
        releaseSpool();
      },
    });
    drainer.start().catch((e: Error) => {
      log.fatal({ event: 'drainer_failed', err: e.message }, 'spool drain failed');
      fatalResolve(e);
    });
    cleanups.push(() => drainer.stop());

    const pipeline = new IngestPipeline({
      registry,
      verifier,
      wal,
      states,
      quarantine,
      metrics,
      rules: { maxFutureSkewMs: config.ingest.maxFutureSkewMs, maxBacklogMs: config.ingest.maxBacklogMs },
      onDurable: checkSpool,
      ...(research ? { onAccepted: (a: AcceptedFrame) => research!.accepted(a) } : {}),
      onSpoolFull: checkSpool,
      onFatal: (e) => {
        log.fatal({ event: 'spool_failed', err: e.message }, 'spool write failed; stopping so that a restart rebuilds state from disk');
        fatalResolve(e);
      },
    });

    const m = config.mqtt;
    const mqtt = new MqttTransport({
      host: m.host,
      port: m.port,
      pipeline,
      registry,
      metrics,
      log,
      refusalLog: { burst: config.log.limitBurst, windowMs: config.log.limitWindowMs },
      connectWindowMs: m.connectWindowMs,
      ...(research ? { researchers: research } : {}),
      limits: mqttLimits(m),
      ...(m.tls.cert
        ? { tls: { host: m.tls.host || m.host, port: m.tls.port, options: tlsServerOptions(m.tls, m.connectDeadlineMs), requireClientCert: m.tls.requireClientCert === 'true' } }
        : {}),
    });
    await mqtt.start();
    cleanups.push(() => mqtt.stop());
    // mqtt.allowPlain on a non-loopback host: readings in clear, so an alarm for as long as it runs.
    for (const w of mqtt.status().warnings) health.raise('PLAIN_LISTENER', `mqtt: ${w}`);
    if (httpT.plainAllowed) {
      const mq = health.list().find((x) => x.code === 'PLAIN_LISTENER');
      health.raise('PLAIN_LISTENER', `${mq ? `${mq.detail}; ` : ''}http: plain HTTP on ${config.http.host} (http.allowPlain=true): bearer tokens and readings in clear`);
    }

    let ble: BleCentral | undefined;
    if (config.ble.mode === 'on') {
      const { mode: _mode, ...opts } = config.ble;
      ble = new BleCentral(opts, { pipeline, registry, states, metrics, log });
      ble.start();
      const b = ble;
      cleanups.push(() => b.stop());
    }

    // Alarms within seconds (gateway/status/health-monitor.ts): the chain's endpoint and InfluxDB
    // probed with deadlines of their own, anchors, storage and the spool checked every interval.
    const monitor = new HealthMonitor(health, {
      intervalMs: config.health.intervalMs,
      probeTimeoutMs: config.health.probeTimeoutMs,
      probes: [...(chain ? [chainProbe(chain.url)] : []), influxProbe(influxUrl, () => ({ up: drainer.storageUp, lastError: drainer.lastError }))],
      rules: [
        ...(chain
          ? [
              chainRule({
                embedded: chain.mode === 'embedded',
                txTimeoutMs: config.chain.txTimeoutMs,
                streams: [
                  ...(anchorer ? [{ name: 'frames', status: () => anchorer!.status(), behindAfterMs: Math.max(config.health.anchorsBehindMinMs, config.health.anchorsBehindIntervals * config.batch.intervalMs) }] : []),
                  ...(accessAnchorer ? [{ name: 'access-log', status: () => accessAnchorer!.status(), behindAfterMs: Math.max(config.health.anchorsBehindMinMs, config.health.anchorsBehindIntervals * config.accessLog.intervalMs) }] : []),
                ],
              }),
            ]
          : []),
        storageRule({ embedded: influxd !== undefined }),
        spoolRule(() => ({ bytes: wal.bytes, quotaBytes: wal.quotaBytes, alarmRatio: config.spool.alarmRatio })),
      ],
    });
    monitor.start();
    cleanups.push(() => monitor.stop());

    const snapshot = (): StatusSnapshot => {
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
        },
        mqtt: { ...mqtt.status(), devicesConnected: mqtt.connectedDevices, connectRefusedBy: nonzero(metrics.connectRefusedBy), refusedBy: nonzero(metrics.mqttRefusedBy) },
        ble: ble
          ? { mode: 'on' as const, ...ble.status(), connectRefusedBy: nonzero(metrics.bleConnectRefusedBy), fragmentRejectedBy: nonzero(metrics.fragmentRejectedBy), endedBy: nonzero(metrics.bleEndedBy) }
          : { mode: 'off' as const },
        spool: {
          backlogFrames: Number(wal.backlog),
          bytes: wal.bytes,
          quotaBytes: wal.quotaBytes,
          usedRatio: wal.bytes / wal.quotaBytes,
          alarm: spoolAlarm,
          diskFreeBytes: Number.isFinite(wal.freeBytes()) ? wal.freeBytes() : -1,
          diskLow,
          ...(wal.lastWriteError ? { lastError: `${wal.lastWriteError.code}: ${wal.lastWriteError.message}` } : {}),
          ...(wal.recovered.lost.length ? { lostOnRecovery: wal.recovered.lost.map((r) => ({ from: r.from.toString(), to: r.to.toString(), why: r.why })) } : {}),
        },
        storage: {
          // Down as soon as a write fails, or the probe finds InfluxDB silent (even with nothing to write).
          up: drainer.storageUp && (health.dependency('influx')?.up ?? true),
          lagMs: drainer.lagMs(),
          ...(drainer.lastError ? { lastError: drainer.lastError } : health.dependency('influx')?.lastError ? { lastError: health.dependency('influx')!.lastError } : {}),
          framesWritten: metrics.framesWritten,
          pointsWritten: metrics.pointsWritten,
          errors: metrics.storageErrors,
          url: influxUrl,
          quarantined: metrics.storageQuarantined,
          quarantineHeld: storageQuarantine.stats().held,
        },
        batches: {
          open: { batch: batcher.openSeq.toString(), frames: batcher.openLeaves, ageMs: batcher.openAgeMs() },
          lastSealed: batches.lastSealed.toString(),
          lastAnchored: batches.lastAnchored.toString(),
          pendingAnchors: batches.pendingAnchors,
          intervalMs: config.batch.intervalMs,
        },
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
                  ? { lastAnchor: { batch: st.lastAnchor.seq.toString(), root: st.lastAnchor.root, txHash: st.lastAnchor.txHash, block: st.lastAnchor.blockNumber, gasUsed: Number(st.lastAnchor.gasUsed), confirmedAtMs: st.lastAnchor.confirmedAtMs } }
                  : {}),
              };
            })()
          : { mode: 'off' as const, up: false },
        consent: (() => {
          const l = research?.status();
          const live = {
            researchersConnected: l?.researchersConnected ?? 0,
            subscriptions: l?.subscriptions ?? 0,
            deliveries: l?.deliveries ?? 0,
            cut: l?.cut ?? 0,
            loginRefusedBy: l?.loginRefusedBy ?? {},
            subscribeRefusedBy: l?.subscribeRefusedBy ?? {},
          };
          if (!consent) return { enabled: false, following: false, ...(consentOff ? { lastError: consentOff } : {}), grants: 0, inForce: 0, patients: 0, ...live };
          const st = consent.status();
          return { enabled: true, following: st.following, ...(st.lastError ? { lastError: st.lastError } : {}), lastBlock: st.lastBlock, grants: st.grants, inForce: st.inForce, patients: st.patients, ...live };
        })(),
        accessLog: (() => {
          const err = accessAnchorer?.status();
          return {
            entries: Number(accessLog.lastSeq),
            openEntries: Number(accessLog.lastSeq - accessBatches.lastSealedLsn),
            liveAggregates: research?.status().awaitingLog ?? 0,
            sealed: accessBatches.lastSealed.toString(),
            anchored: accessBatches.lastAnchored.toString(),
            pending: accessBatches.pendingAnchors,
            ...(err?.halted ? { lastError: err.halted } : err?.lastError ? { lastError: err.lastError } : {}),
          };
        })(),
      };
    };

    const proofs = new ProofService({
      store: batches,
      sink,
      keyOf: (id) => registry.get(id)?.publicKey,
      deviceRegistry: chain ? { chainId: chain.chainId, address: chain.record.deviceRegistry.address } : undefined,
      gatewayId: config.gatewayId,
    });
    const handle = researchRoutes({
      guard: httpGuard,
      auth: researcherAuth,
      view: consent,
      disclosures,
      accessLog,
      readings: {
        sink,
        deviceOf: (id) => {
          const r = registry.get(id);
          return r ? { publicKey: r.publicKey, patient: r.patient } : undefined;
        },
        log,
      },
      proofs,
      log,
    });
    const http = await startStatusServer(config.http.host, config.http.port, { snapshot, route: proofRoutes(proofs), handle }, { guard: httpGuard, limits: config.http });
    cleanups.push(() => closeServer(http.server));

    const runtime: RunningGateway = { pid: process.pid, gatewayId: config.gatewayId, influxUrl, httpUrl: `${httpT.tls ? 'https' : 'http'}://${config.http.host}:${http.port}`, mqttPort: mqtt.port, ...(mqtt.tlsPort !== undefined ? { mqttTlsPort: mqtt.tlsPort } : {}), ...(chain ? { chainUrl: chain.url } : {}) };
    writeRunningGateway(config.dataDir, runtime);
    cleanups.push(() => Promise.resolve(clearRunningGateway(config.dataDir)));
    log.info({ event: 'ready', mqttPort: mqtt.port, ...(mqtt.tlsPort !== undefined ? { mqttTlsPort: mqtt.tlsPort } : {}), httpPort: http.port, influxUrl, gatewayId: config.gatewayId, devices: registry.list().length }, 'gateway ready');
    return {
      config,
      metrics,
      health,
      registry,
      pipeline,
      mqttPort: mqtt.port,
      httpPort: http.port,
      ble,
      influxUrl,
      chain,
      batches,
      proofs,
      consent,
      researcherAuth,
      accessLog,
      accessBatches,
      research,
      disclosures,
      anchorNow: async (timeoutMs) => {
        await research?.settled();
        batcher.seal();
        accessBatcher.seal();
        anchorer?.wake();
        accessAnchorer?.wake();
        const pending = (): number => batches.pendingAnchors + accessBatches.pendingAnchors;
        const deadline = Date.now() + timeoutMs;
        while (pending() > 0 && anchorer && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        return pending() === 0 && anchorer !== undefined;
      },
      snapshot,
      fatal,
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/** The hospital's patient-ref key when the registry dir holds one (never created here): maps pseudonyms the directory lacks. */
function patientRefKeyIn(dir: string): { patientRefKey?: Uint8Array } {
  const p = join(dir, PATIENT_REF_KEY_FILE);
  if (!existsSync(p)) return {};
  const text = readFileSync(p, 'utf8').trim();
  return /^[0-9a-fA-F]{64}$/.test(text) ? { patientRefKey: Buffer.from(text, 'hex') } : {};
}

function closeServer(s: Server): Promise<void> {
  return new Promise((res) => {
    s.close(() => res());
    s.closeAllConnections();
  });
}
