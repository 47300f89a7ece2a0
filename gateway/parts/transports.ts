/**
 * The transports devices (and researchers) connect over: the embedded MQTT broker, plain and
 * TLS (PROTOCOL.md §6), and the BLE central when ble.mode is on (PROTOCOL.md §7). Started
 * only after the spool is recovered: no device connects before the state it is checked
 * against is rebuilt.
 */
import type { DeviceStates } from '../ingest/device-state.js';
import type { IngestPipeline } from '../ingest/pipeline.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { LiveResearchAccess } from '../research/live.js';
import type { HttpTransport } from '../http/server.js';
import { BleCentral } from '../transport/ble/central.js';
import { MqttTransport, mqttLimits } from '../transport/mqtt/broker.js';
import { tlsServerOptions } from '../transport/mqtt/tls.js';
import type { PartContext } from './lifecycle.js';

export interface TransportsPart {
  mqtt: MqttTransport;
  /** The BLE central, when ble.mode is on. */
  ble: BleCentral | undefined;
}

export interface TransportDeps {
  /** Absent on a hub: the broker serves researchers only, and BLE is not started. */
  pipeline?: IngestPipeline;
  registry: DeviceRegistry;
  states?: DeviceStates;
  research: LiveResearchAccess | undefined;
  /** The HTTP listener's transport: its plain-on-a-network warning joins the broker's in one alarm. */
  http: HttpTransport;
}

export async function startTransports(ctx: PartContext, d: TransportDeps): Promise<TransportsPart> {
  const { config, log, metrics, health, life } = ctx;
  const m = config.mqtt;
  const mqtt = new MqttTransport({
    host: m.host,
    port: m.port,
    ...(d.pipeline ? { pipeline: d.pipeline } : {}),
    registry: d.registry,
    metrics,
    log,
    refusalLog: { burst: config.log.limitBurst, windowMs: config.log.limitWindowMs },
    connectWindowMs: m.connectWindowMs,
    ...(d.research ? { researchers: d.research } : {}),
    limits: mqttLimits(m),
    ...(m.tls.cert
      ? {
          tls: {
            host: m.tls.host || m.host,
            port: m.tls.port,
            options: tlsServerOptions(m.tls, m.connectDeadlineMs),
            requireClientCert: m.tls.requireClientCert === 'true',
          },
        }
      : {}),
  });
  await mqtt.start();
  life.onStop(() => mqtt.stop());
  // mqtt.allowPlain on a non-loopback host: readings in clear, so an alarm for as long as it runs.
  for (const w of mqtt.status().warnings) health.raise('PLAIN_LISTENER', `mqtt: ${w}`);
  if (d.http.plainAllowed) {
    const mq = health.list().find((x) => x.code === 'PLAIN_LISTENER');
    health.raise(
      'PLAIN_LISTENER',
      `${mq ? `${mq.detail}; ` : ''}http: plain HTTP on ${config.http.host} (http.allowPlain=true): bearer tokens and readings in clear`,
    );
  }

  let ble: BleCentral | undefined;
  if (config.ble.mode === 'on' && d.pipeline && d.states) {
    const { mode: _mode, ...opts } = config.ble;
    const b = new BleCentral(opts, { pipeline: d.pipeline, registry: d.registry, states: d.states, metrics, log });
    ble = b;
    b.start();
    life.onStop(() => b.stop());
  }
  return { mqtt, ble };
}
