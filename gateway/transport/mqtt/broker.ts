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
 */
import { Aedes, type AedesOptions, type Client } from 'aedes';
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
}

type DeviceClient = Client & { vpDevice?: string };

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
      // Devices subscribe to nothing; researchers' topics come with consent (a later stage).
      authorizeSubscribe: (_client, _sub, cb) => cb(null, null),
      authorizeForward: (_client, packet) => (packet.topic.startsWith(`${TOPIC_PREFIX}/dev/`) ? null : packet),
    };
    this.broker = await Aedes.createBroker(opts);
    this.broker.on('clientReady', (client) => {
      const c = client as DeviceClient;
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
      if (c.vpDevice && this.devices.get(c.vpDevice) === c) this.devices.delete(c.vpDevice);
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
