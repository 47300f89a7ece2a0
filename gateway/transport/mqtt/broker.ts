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
 */
import { Aedes, type AedesOptions, type AedesPublishPacket, type Client, type Subscription } from 'aedes';
import { createServer, type Server } from 'node:net';
import type { Logger } from 'pino';
import { isDeviceId } from '../../../firmware-proto/frame.js';
import { deviceOfFrameTopic, TOPIC_PREFIX } from '../../../firmware-proto/topics.js';
import type { IngestPipeline } from '../../ingest/pipeline.js';
import type { DeviceRegistry } from '../../registry/registry.js';
import type { Metrics } from '../../status/metrics.js';
import { CONNACK_REFUSAL_CODE, ConnectAuthenticator } from './connect-auth.js';

export interface MqttTransportOptions {
  host: string;
  port: number;
  pipeline: IngestPipeline;
  registry: DeviceRegistry;
  metrics: Metrics;
  log: Logger;
  /** CONNECT tokens are accepted within this many ms of the gateway clock. */
  connectWindowMs?: number;
  now?: () => number;
  /** Consent-governed researcher access (gateway/research/live.ts); absent: researchers cannot connect. */
  researchers?: ResearcherGate;
}

/** The researchers' side of the broker: CONNECT, SUBSCRIBE and forwarding for researcher clients. */
export interface ResearcherGate {
  /** Whether a CONNECT is a researcher's rather than a device's. */
  claims(username: string | undefined, password: Uint8Array | undefined): boolean;
  authenticate(client: Client, username: string | undefined, password: Uint8Array | undefined): { ok: true; researcher: string } | { ok: false; reason: string; returnCode: number };
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
  private server!: Server;
  private readonly auth: ConnectAuthenticator;
  readonly devices = new Map<string, DeviceClient>();
  port = 0;

  constructor(private readonly o: MqttTransportOptions) {
    const now = o.now ?? Date.now;
    // A token made before this process started cannot be replayed after a restart.
    this.auth = new ConnectAuthenticator(o.registry, { windowMs: o.connectWindowMs ?? 30_000, startedAtMs: now(), now });
  }

  async start(): Promise<void> {
    const opts: AedesOptions = {
      id: 'vitalproof',
      authenticate: (client, username, password, done) => {
        const gate = this.o.researchers;
        if (gate?.claims(username, password)) {
          const r = gate.authenticate(client, username, password);
          if (!r.ok) {
            this.o.log.warn({ event: 'research_connect_refused', reason: r.reason, ...(username && /^0x[0-9a-fA-F]{40}$/.test(username) ? { researcher: username } : {}) }, 'researcher CONNECT refused');
            return done(Object.assign(new Error(r.reason), { returnCode: r.returnCode }), false);
          }
          (client as DeviceClient).vpResearcher = r.researcher;
          return done(null, true);
        }
        const verdict = this.auth.check(client.id, username, password);
        if (!verdict.ok) {
          const refusal = verdict.reason;
          this.o.metrics.countConnectRefused(refusal);
          this.o.log.warn({ event: 'connect_refused', reason: refusal, device: isDeviceId(username ?? '') ? username : undefined }, 'CONNECT refused');
          const err = Object.assign(new Error(refusal), { returnCode: CONNACK_REFUSAL_CODE[refusal] });
          return done(err, false);
        }
        // The connection is bound to the device: every frame on it is judged against this sender (§5.3 step 2).
        (client as DeviceClient).vpDevice = verdict.deviceId;
        done(null, true);
      },
      authorizePublish: (client, packet, cb) => {
        const c = client as DeviceClient | null;
        if (!c?.vpDevice) return cb(new Error('only devices publish'));
        const sender = c.vpDevice;
        this.o.pipeline
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
    this.server = createServer(this.broker.handle);
    await new Promise<void>((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(this.o.port, this.o.host, () => res());
    });
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : this.o.port;
  }

  get connectedDevices(): number {
    return this.devices.size;
  }

  async stop(): Promise<void> {
    await new Promise<void>((res) => this.broker.close(() => res()));
    await new Promise<void>((res) => this.server.close(() => res()));
  }
}
