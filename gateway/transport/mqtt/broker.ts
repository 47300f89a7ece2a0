/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1) as an ingest transport.
 *
 * - CONNECT: a device proves possession of its key with a fresh signed token
 *   (PROTOCOL.md §6.1); unknown and revoked devices are refused with return code 5,
 *   bad, stale or replayed tokens with 4. The decision is ConnectAuthenticator's
 *   (connect-auth.ts); the broker counts, logs and answers it.
 * - PUBLISH on a frame topic goes through the ingest pipeline inside authorizePublish, so
 *   aedes sends PUBACK only after the pipeline has a verdict: durable, duplicate, or
 *   rejected and quarantined. A bad frame is never an MQTT error: aedes would disconnect
 *   the client and a QoS 1 client would resend the same packet forever.
 * - An internal fault (the spool cannot write) is an MQTT error: no PUBACK, the device
 *   keeps the frame and resends it after reconnecting.
 * - Device frame topics are never forwarded to subscribers.
 * - Researchers (docs/research-api.md) connect to the same broker, told apart from devices by
 *   their CONNECT (an 0x address as username, or none with a signed researcher login as
 *   password): their CONNECT, SUBSCRIBE and every packet forwarded to them are decided by the
 *   ResearcherGate (gateway/research/live.ts). Without a gate, or for any other CONNECT, devices
 *   are handled exactly as before.
 * - Before aedes sees a byte (listeners.ts, guarded-socket.ts): connection caps, a CONNECT
 *   deadline, and a size limit on every packet judged on its fixed header (a CONNECT of a few KB
 *   before CONNACK; after it, the limit of the role the CONNECT was admitted as). A CONNECT
 *   whose keep-alive is 0 or above the limit is closed without CONNACK (MQTT 3.1.1 §3.2.2.3: no
 *   return code applies). Every such refusal is counted under its MQTT_* code (refusals.ts).
 * - TLS (tls.ts): a second listener for MQTT over TLS; with mutual TLS required, a device's
 *   client certificate must name the device it CONNECTs as.
 */
import { Aedes, type AedesOptions, type AedesPublishPacket, type Client, type Subscription } from 'aedes';
import type { TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import { DEFAULTS, isLoopbackHost, type GatewayConfig } from '../../config.js';
import { isDeviceId } from '../../../firmware-proto/frame.js';
import { deviceOfFrameTopic, TOPIC_PREFIX } from '../../../firmware-proto/topics.js';
import type { IngestPipeline } from '../../ingest/pipeline.js';
import type { DeviceRegistry } from '../../registry/registry.js';
import type { Metrics } from '../../status/metrics.js';
import { CONNACK_NOT_AUTHORIZED, CONNACK_REFUSAL_CODE, ConnectAuthenticator } from './connect-auth.js';
import { sourceOf } from './admission.js';
import { GuardedSocket } from './guarded-socket.js';
import { MqttListeners, type ListenerLimits } from './listeners.js';
import { RefusalLog } from './refusal-log.js';
import { LogLimiter, type LogLimiterOptions } from '../../log.js';
import type { MqttRefusal } from './refusals.js';
import { deviceCertRefusal } from './tls.js';

export interface MqttTransportOptions {
  host: string;
  port: number;
  /** The ingest pipeline; absent on a hub (gateway/hub/), which serves researchers only: every device CONNECT is refused (MQTT_NO_DEVICES). */
  pipeline?: IngestPipeline;
  registry: DeviceRegistry;
  metrics: Metrics;
  log: Logger;
  /** Device CONNECT refusals are logged through a LogLimiter (anyone can provoke them): burst per window. */
  refusalLog?: LogLimiterOptions;
  /** CONNECT tokens are accepted within this many ms of the gateway clock. */
  connectWindowMs?: number;
  now?: () => number;
  /** Consent-governed researcher access (gateway/research/live.ts); absent: researchers cannot connect. */
  researchers?: ResearcherGate;
  /** Packet, connection and keep-alive limits (config mqtt.*; docs/operations.md, "Pre-authentication limits"); default: the config defaults. */
  limits?: MqttLimits;
  /** MQTT over TLS beside the plain listener (tls.ts makes `options`). */
  tls?: { host: string; port: number; options: TlsOptions; requireClientCert: boolean };
}

export interface MqttLimits extends ListenerLimits {
  maxDevicePacketBytes: number;
  maxResearcherPacketBytes: number;
  maxKeepaliveS: number;
  refusalLogIntervalMs: number;
}

/** The limits of a configuration's mqtt section. */
export function mqttLimits(m: GatewayConfig['mqtt']): MqttLimits {
  return {
    maxConnectBytes: m.maxConnectBytes,
    maxDevicePacketBytes: m.maxDevicePacketBytes,
    maxResearcherPacketBytes: m.maxResearcherPacketBytes,
    connectDeadlineMs: m.connectDeadlineMs,
    maxConnections: m.maxConnections,
    maxConnectionsPerSource: m.maxConnectionsPerSource,
    maxKeepaliveS: m.maxKeepaliveS,
    refusalLogIntervalMs: m.refusalLogIntervalMs,
  };
}

/** The MQTT section of /status. */
export interface MqttStatus {
  port: number;
  tls?: { port: number; requireClientCert: boolean };
  /** The plain listener faces the network (mqtt.allowPlain): readings and tokens in clear. */
  plainOnNonLoopback: boolean;
  warnings: string[];
  /** Connections open now on both listeners, authenticated or not. */
  connections: number;
  limits: {
    maxConnectBytes: number;
    maxDevicePacketBytes: number;
    maxResearcherPacketBytes: number;
    connectDeadlineMs: number;
    maxConnections: number;
    maxConnectionsPerSource: number;
    maxKeepaliveS: number;
  };
}

/** The researchers' side of the broker: CONNECT, SUBSCRIBE and forwarding for researcher clients. */
export interface ResearcherGate {
  /** Whether a CONNECT is a researcher's rather than a device's. */
  claims(username: string | undefined, password: Uint8Array | undefined): boolean;
  authenticate(
    client: Client,
    username: string | undefined,
    password: Uint8Array | undefined,
  ): { ok: true; researcher: string } | { ok: false; reason: string; returnCode: number };
  ready(client: Client): void;
  gone(client: Client): void;
  /** The granted subscription, or null for SUBACK 0x80. */
  authorizeSubscribe(client: Client, sub: Subscription): Subscription | null;
  /** After a SUBACK was written. */
  subscribed(client: Client, subs: readonly Subscription[]): void;
  unsubscribed(client: Client, topics: readonly string[]): void;
  /** The packet to send to a researcher client (or to anyone on a researcher topic), or null to drop it. */
  forward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null;
}

/** Topics only the researcher gate may deliver on. */
const RESEARCHER_TOPIC = /^vp\/(consented|researcher)\//;

type DeviceClient = Client & { vpDevice?: string; vpResearcher?: string };

export class MqttTransport {
  private broker!: Aedes;
  private listeners: MqttListeners | undefined;
  private readonly auth: ConnectAuthenticator;
  private readonly limited: LogLimiter;
  private readonly refusals: RefusalLog;
  private readonly limits: MqttLimits;
  readonly devices = new Map<string, DeviceClient>();
  port = 0;
  tlsPort: number | undefined;

  constructor(private readonly o: MqttTransportOptions) {
    const now = o.now ?? Date.now;
    // A token made before this process started cannot be replayed after a restart.
    this.limited = new LogLimiter(o.log, o.refusalLog);
    this.auth = new ConnectAuthenticator(o.registry, { windowMs: o.connectWindowMs ?? 30_000, startedAtMs: now(), now });
    this.limits = o.limits ?? mqttLimits(DEFAULTS.mqtt);
    this.refusals = new RefusalLog(o.log, this.limits.refusalLogIntervalMs);
  }

  /** Counts a refused connection and adds it to the next summary line (refusal-log.ts). */
  private refused(reason: MqttRefusal, source: string, conn?: GuardedSocket): void {
    this.o.metrics.mqttRefusedBy[reason]++;
    const device = (conn as (GuardedSocket & { client?: DeviceClient }) | undefined)?.client?.vpDevice;
    this.refusals.note(reason, source, device);
  }

  /** The CONNECT was accepted as `role`: the guard lets the packets after it through, up to that role's size. */
  private admit(client: Client, role: 'device' | 'researcher'): void {
    const conn = client.conn;
    if (conn instanceof GuardedSocket) conn.admit(role === 'device' ? this.limits.maxDevicePacketBytes : this.limits.maxResearcherPacketBytes);
  }

  async start(): Promise<void> {
    const limits = this.limits;
    const opts: AedesOptions = {
      id: 'vitalproof',
      // A backstop only: the guard's deadline (limits.connectDeadlineMs) closes such connections first, counted.
      connectTimeout: limits.connectDeadlineMs * 2,
      // Keep-alive 0 disables the check that finds dead peers; an unbounded one amounts to the same (§3.1.2.10).
      preConnect: (client, packet, done) => {
        const k = packet.keepalive ?? 0;
        if (k === 0 || k > limits.maxKeepaliveS) {
          this.refused(
            'MQTT_KEEPALIVE_REFUSED',
            sourceOf((client.conn as { remoteAddress?: string }).remoteAddress),
            client.conn instanceof GuardedSocket ? client.conn : undefined,
          );
          return done(new Error(`MQTT_KEEPALIVE_REFUSED: keep-alive must be 1-${limits.maxKeepaliveS} s, got ${k}`), false);
        }
        done(null, true);
      },
      authenticate: (client, username, password, done) => {
        const gate = this.o.researchers;
        if (gate?.claims(username, password)) {
          const r = gate.authenticate(client, username, password);
          // Counted and logged (rate-limited) by the gate.
          if (!r.ok) {
            return done(Object.assign(new Error(r.reason), { returnCode: r.returnCode }), false);
          }
          (client as DeviceClient).vpResearcher = r.researcher;
          this.admit(client, 'researcher');
          return done(null, true);
        }
        if (!this.o.pipeline) {
          this.refused('MQTT_NO_DEVICES', sourceOf((client.conn as { remoteAddress?: string }).remoteAddress));
          return done(Object.assign(new Error('MQTT_NO_DEVICES'), { returnCode: CONNACK_NOT_AUTHORIZED }), false);
        }
        // Cheap before expensive: the certificate check before any signature work.
        const certRefusal = deviceCertRefusal(
          this.o.tls?.requireClientCert === true,
          client.conn instanceof GuardedSocket ? client.conn.peer : undefined,
          username ?? '',
        );
        if (certRefusal) {
          this.refused(certRefusal, sourceOf((client.conn as { remoteAddress?: string }).remoteAddress));
          return done(Object.assign(new Error(certRefusal), { returnCode: CONNACK_NOT_AUTHORIZED }), false);
        }
        const verdict = this.auth.check(client.id, username, password);
        if (!verdict.ok) {
          const refusal = verdict.reason;
          this.o.metrics.countConnectRefused(refusal);
          this.limited.warn('connect_refused', { reason: refusal, device: isDeviceId(username ?? '') ? username : undefined }, 'CONNECT refused', refusal);
          const err = Object.assign(new Error(refusal), { returnCode: CONNACK_REFUSAL_CODE[refusal] });
          return done(err, false);
        }
        // The connection is bound to the device: every frame on it is judged against this sender (§5.3 step 2).
        (client as DeviceClient).vpDevice = verdict.deviceId;
        this.admit(client, 'device');
        done(null, true);
      },
      authorizePublish: (client, packet, cb) => {
        const c = client as DeviceClient | null;
        const pipeline = this.o.pipeline;
        if (!c?.vpDevice || !pipeline) return cb(new Error('only devices publish'));
        const sender = c.vpDevice;
        pipeline
          .submit(typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload, {
            transport: 'mqtt',
            sender,
            channelDevice: deviceOfFrameTopic(packet.topic) ?? `topic:${packet.topic.slice(0, 64)}`,
            retransmission: packet.dup === true,
          })
          .then(
            () => cb(null),
            (e: Error) => {
              this.o.log.error({ event: 'ingest_fault', device: sender, err: e.message }, 'frame not acknowledged: internal fault');
              cb(e);
            },
          );
      },
      // Devices subscribe to nothing; researchers to what their consent allows.
      authorizeSubscribe: (client, sub, cb) => {
        const c = client as DeviceClient;
        if (c.vpResearcher && this.o.researchers) return cb(null, this.o.researchers.authorizeSubscribe(client, sub));
        cb(null, null);
      },
      authorizeForward: (client, packet) => {
        if (packet.topic.startsWith(`${TOPIC_PREFIX}/dev/`)) return null;
        const c = client as DeviceClient;
        if (c.vpResearcher || RESEARCHER_TOPIC.test(packet.topic)) return this.o.researchers?.forward(client, packet) ?? null;
        return packet;
      },
    };
    this.broker = await Aedes.createBroker(opts);
    this.broker.on('clientReady', (client) => {
      const c = client as DeviceClient;
      // The gate holds a researcher from its admission until the socket closes; this event may
      // come after clientDisconnect (a client dropped right after CONNACK), and ready() knows.
      if (c.vpResearcher) {
        this.o.researchers?.ready(client);
        return;
      }
      if (!c.vpDevice) return;
      // A revocation that landed between CONNECT and CONNACK found no client to close.
      const rec = this.o.registry.get(c.vpDevice);
      if (rec?.revokedAtMs !== undefined && rec.revokedAtMs <= Date.now()) {
        c.close();
        return;
      }
      this.devices.set(c.vpDevice, c);
    });
    this.broker.on('clientDisconnect', (client) => {
      const c = client as DeviceClient;
      if (c.vpResearcher) this.o.researchers?.gone(client);
      if (c.vpDevice && this.devices.get(c.vpDevice) === c) this.devices.delete(c.vpDevice);
    });
    this.broker.on('subscribe', (subs, client) => {
      if ((client as DeviceClient | null)?.vpResearcher) this.o.researchers?.subscribed(client, subs);
    });
    this.broker.on('unsubscribe', (topics, client) => {
      if ((client as DeviceClient | null)?.vpResearcher) this.o.researchers?.unsubscribed(client, topics);
    });
    this.o.registry.on('revoked', (rec) => {
      const c = this.devices.get(rec.deviceId);
      if (c) {
        this.o.log.info({ event: 'device_disconnected', device: rec.deviceId, why: 'revoked' }, 'revoked device disconnected');
        c.close();
      }
    });
    const listeners = new MqttListeners({
      plain: { host: this.o.host, port: this.o.port },
      ...(this.o.tls ? { tls: { host: this.o.tls.host, port: this.o.tls.port, options: this.o.tls.options } } : {}),
      limits,
      handle: (conn) => this.broker.handle(conn),
      refused: (reason, source, conn) => this.refused(reason, source, conn),
    });
    try {
      await listeners.start();
    } catch (e) {
      await new Promise<void>((res) => this.broker.close(() => res()));
      throw e;
    }
    this.listeners = listeners;
    this.port = listeners.plainPort;
    this.tlsPort = listeners.tlsPort;
    if (!isLoopbackHost(this.o.host)) {
      this.o.log.warn(
        { event: 'mqtt_plain_exposed', host: this.o.host, port: this.port },
        'plain MQTT listens on a non-loopback address (mqtt.allowPlain): readings and tokens cross the network in clear; serve devices over TLS',
      );
    }
  }

  status(): MqttStatus {
    const l = this.limits;
    const exposed = !isLoopbackHost(this.o.host);
    return {
      port: this.port,
      ...(this.tlsPort !== undefined ? { tls: { port: this.tlsPort, requireClientCert: this.o.tls?.requireClientCert === true } } : {}),
      plainOnNonLoopback: exposed,
      warnings: exposed ? [`plain MQTT on ${this.o.host}:${this.port} (mqtt.allowPlain): readings and tokens cross the network in clear`] : [],
      connections: this.listeners?.open ?? 0,
      limits: {
        maxConnectBytes: l.maxConnectBytes,
        maxDevicePacketBytes: l.maxDevicePacketBytes,
        maxResearcherPacketBytes: l.maxResearcherPacketBytes,
        connectDeadlineMs: l.connectDeadlineMs,
        maxConnections: l.maxConnections,
        maxConnectionsPerSource: l.maxConnectionsPerSource,
        maxKeepaliveS: l.maxKeepaliveS,
      },
    };
  }

  get connectedDevices(): number {
    return this.devices.size;
  }

  async stop(): Promise<void> {
    await new Promise<void>((res) => this.broker.close(() => res()));
    await this.listeners?.stop();
    this.refusals.flush();
  }
}
