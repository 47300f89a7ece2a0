/**
 * The hub role (`vitalproof hub`; docs/fleet.md): the hospital's service for researchers and
 * patients across every bedside gateway. It is composed from the same parts as a gateway
 * (gateway/parts/), without the ones that take in devices, and with the uplink in their place:
 *
 *   gateway                                   hub
 *   database (embedded or influx.url)         the hospital's InfluxDB (influx.url): read only
 *   chain (embedded or external)              an external chain (chain.mode external): its own
 *                                             account anchors its access log (stream 1)
 *   devices, consent, research                the same
 *   spool, anchoring, storage, pipeline       — (gateways do that)
 *   transports: devices and researchers       researchers only (a device CONNECT is refused)
 *   proofs from its batch store               proofs from the shared store (gateway/proof/fleet.ts)
 *   —                                         the uplink feed: every gateway's frames, in order
 *                                             per device, into the same live delivery
 *
 * Nothing here is a copy: the research API, live delivery, consent, disclosures and proofs are
 * the gateway's modules. A hub keeps only its access log and its batches in its data dir; it
 * can be restarted or run as several instances (same gatewayId, distinct hub.instance).
 */
import { mkdirSync } from 'node:fs';
import type { GatewayConfig } from '../config.js';
import { ConfigError } from '../config.js';
import type { Logger } from '../log.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { httpTransport } from '../http/server.js';
import { Health } from '../status/health.js';
import { Metrics } from '../status/metrics.js';
import { Lifecycle, type PartContext } from '../parts/lifecycle.js';
import { connectChain, openDevices } from '../parts/chain.js';
import { anchorTarget } from '../parts/anchoring.js';
import { startConsent, type ConsentPart } from '../parts/consent.js';
import { startResearch, type ResearchPart } from '../parts/research.js';
import { startTransports } from '../parts/transports.js';
import { startHttp } from '../parts/http.js';
import { secretLine, settingFile } from '../util/secret-file.js';
import { hubUsername } from '../fleet/broker.js';
import { InfluxSink } from '../storage/influx-sink.js';
import { clearRunningGateway, writeRunningGateway } from '../running.js';
import type { ChainRuntime } from '../chain/runtime.js';
import { FleetProofService } from '../proof/fleet.js';
import { UplinkFeed } from './uplink-feed.js';
import { FleetDisclosures } from './disclosures.js';
import { publishAccessBatches } from '../parts/batch-points.js';
import { AuthShare, hubAuthSecret } from './auth-share.js';
import { SharedAuthState } from '../consent/shared-auth.js';
import { FleetView } from './fleet-view.js';
import { hubStatusRoutes, type HubSnapshot } from './status.js';
import { consentStatus, accessLogStatus } from '../parts/status.js';

export interface Hub {
  config: GatewayConfig;
  health: Health;
  registry: DeviceRegistry;
  consent: ConsentPart;
  research: ResearchPart;
  feed: UplinkFeed;
  fleet: FleetView;
  chain: ChainRuntime;
  mqttPort: number;
  httpPort: number;
  snapshot(): HubSnapshot;
  fatal: Promise<Error>;
  stop(): Promise<void>;
}

/**
 * Starts a hub.
 * @throws ConfigError when what a hub needs is missing (influx.url, an external chain, uplink.url).
 */
export async function startHub(config: GatewayConfig, log: Logger): Promise<Hub> {
  if (!config.influx.url) throw new ConfigError('a hub reads the hospital InfluxDB the gateways write to: set influx.url', 'CONFIG_CONFLICT');
  if (config.chain.mode !== 'external')
    throw new ConfigError(
      `a hub follows the hospital chain the gateways anchor on: chain.mode must be external, got "${config.chain.mode}"`,
      'CONFIG_CONFLICT',
    );
  if (!config.uplink.url)
    throw new ConfigError("a hub hears the gateways on the hospital broker: set uplink.url (and the hub account's uplink.passwordFile)", 'CONFIG_CONFLICT');
  const httpT = httpTransport(config.http);
  mkdirSync(config.dataDir, { recursive: true });
  const life = new Lifecycle(log);
  const ctx: PartContext = { config, log, metrics: new Metrics(), health: new Health({ log }), life };
  try {
    const chain = (await connectChain(ctx))!;
    const registry = openDevices(ctx, chain);
    // With a secret shared by the instances, sessions work on any of them and across restarts (./auth-share.ts).
    const sharedAuth = config.hub.authSecretFile ? { secret: hubAuthSecret(config.hub.authSecretFile), state: new SharedAuthState() } : undefined;
    const consent = await startConsent(ctx, chain, anchorTarget(ctx, chain), sharedAuth);
    const research = startResearch(ctx, chain, consent);
    const sink = new InfluxSink({
      url: config.influx.url,
      database: config.influx.database,
      gatewayId: config.gatewayId,
      username: config.influx.username,
      password: config.influx.password,
      timeoutMs: config.influx.timeoutMs,
    });
    const fleet = new FleetView();
    const u = config.uplink;
    const brokerAccount = {
      url: u.url,
      username: u.username || hubUsername(config.hub.instance),
      password: secretLine(u.passwordFile, 'uplink.passwordFile'),
      tls: {
        ...(u.tls.ca ? { ca: settingFile(u.tls.ca, 'uplink.tls.ca') } : {}),
        ...(u.tls.cert ? { cert: settingFile(u.tls.cert, 'uplink.tls.cert'), key: settingFile(u.tls.key, 'uplink.tls.key') } : {}),
      },
    };
    const feedClientId = u.clientId || hubUsername(config.hub.instance);
    if (sharedAuth) {
      const share = new AuthShare({ ...brokerAccount, clientId: `${feedClientId}-auth`, gatewayId: config.gatewayId, state: sharedAuth.state, log });
      await share.start();
      life.onStop(() => share.stop());
    }
    const feed = new UplinkFeed({
      ...brokerAccount,
      clientId: feedClientId,
      registry,
      fleet,
      log,
      holdMs: config.hub.holdMs,
      sessionExpiryS: config.hub.sessionExpiryS,
      refusalLog: { burst: config.log.limitBurst, windowMs: config.log.limitWindowMs },
      onFrame: (a) => research.live?.accepted(a),
      wants: (patient) => research.live?.wants(patient) ?? false,
    });
    await feed.start();
    life.onStop(() => feed.stop());
    // Researchers only: no pipeline, so every device CONNECT is refused (MQTT_NO_DEVICES).
    const transports = await startTransports(ctx, { registry, research: research.live, http: httpT });
    const proofs = new FleetProofService({
      sink,
      provider: chain.provider,
      keyOf: (id) => registry.get(id)?.publicKey,
      deviceRegistry: { chainId: chain.chainId, address: chain.record.deviceRegistry.address },
      anchorRegistry: chain.record.anchorRegistry.address,
      confirmations: config.chain.confirmations,
      timeoutMs: config.chain.rpcTimeoutMs,
    });
    const snapshot = (): HubSnapshot => ({
      role: 'hub',
      gatewayId: config.gatewayId,
      instance: config.hub.instance,
      uptimeS: Math.round((Date.now() - ctx.metrics.startedAtMs) / 1000),
      chain: { url: chain.url, chainId: chain.chainId, account: chain.address },
      uplink: feed.status(),
      fleet: fleet.snapshot(0),
      consent: consentStatus(consent, research),
      accessLog: accessLogStatus(consent, research),
      mqtt: transports.mqtt.status(),
    });
    // Its access log's anchored batches, with their entries, into the store (its own logger name:
    // hub instances share gatewayId), and the disclosure reports across the hospital from there.
    const logger = `${config.gatewayId}.${config.hub.instance}`;
    publishAccessBatches(ctx, sink, consent, logger);
    const disclosures = research.disclosures
      ? new FleetDisclosures({
          local: research.disclosures,
          ownLogger: logger,
          sink,
          provider: chain.provider,
          anchorRegistry: chain.record.anchorRegistry.address,
          consentRegistry: { chainId: chain.chainId, address: chain.record.consentRegistry!.address },
        })
      : undefined;
    const http = await startHttp(ctx, {
      transport: httpT,
      statusRoutes: hubStatusRoutes(snapshot, (limit) => fleet.snapshot(limit)),
      consent,
      research,
      registry,
      sink,
      proofs,
      ...(disclosures ? { disclosures } : {}),
    });
    const { mqtt } = transports;
    writeRunningGateway(config.dataDir, {
      pid: process.pid,
      gatewayId: config.gatewayId,
      influxUrl: config.influx.url,
      httpUrl: `${httpT.tls ? 'https' : 'http'}://${config.http.host}:${http.port}`,
      mqttPort: mqtt.port,
      ...(mqtt.tlsPort !== undefined ? { mqttTlsPort: mqtt.tlsPort } : {}),
      chainUrl: chain.url,
      role: 'hub',
    });
    life.onStop(() => clearRunningGateway(config.dataDir));
    log.info(
      { event: 'ready', role: 'hub', instance: config.hub.instance, mqttPort: mqtt.port, httpPort: http.port, gatewayId: config.gatewayId },
      'hub ready',
    );
    return {
      config,
      health: ctx.health,
      registry,
      consent,
      research,
      feed,
      fleet,
      chain,
      mqttPort: mqtt.port,
      httpPort: http.port,
      snapshot,
      fatal: life.fatal,
      stop: () => life.stop(),
    };
  } catch (e) {
    await life.stop();
    throw e;
  }
}
