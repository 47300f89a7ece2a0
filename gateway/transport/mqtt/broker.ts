/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1) as an ingest transport.
 *
 * - CONNECT: a device proves possession of its key with a fresh signed token
 *   (PROTOCOL.md §6.1); unknown and revoked devices are refused with return code 5,
 *   bad, stale or replayed tokens with 4.
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
import { parseConnectPassword, connectSigningMessage } from '../../../firmware-proto/connect.js';
import { isDeviceId } from '../../../firmware-proto/frame.js';
import { deviceClientId, deviceOfFrameTopic, TOPIC_PREFIX } from '../../../firmware-proto/topics.js';
import type { ConnectReason } from '../../../firmware-proto/reasons.js';
import type { IngestPipeline } from '../../ingest/pipeline.js';
import type { DeviceRegistry } from '../../registry/registry.js';
import type { Metrics } from '../../status/metrics.js';
import { KeyCache, verifyEd25519 } from '../../verify/ed25519.js';

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

const BAD_CREDENTIALS = 4;
const NOT_AUTHORIZED = 5;

const REFUSAL_CODE: Record<ConnectReason, number> = {
  CONNECT_MALFORMED: BAD_CREDENTIALS,
  CONNECT_BAD_SIGNATURE: BAD_CREDENTIALS,
  CONNECT_STALE: BAD_CREDENTIALS,
  CONNECT_REPLAYED: BAD_CREDENTIALS,
  CONNECT_UNKNOWN_DEVICE: NOT_AUTHORIZED,
  CONNECT_REVOKED: NOT_AUTHORIZED,
};

type DeviceClient = Client & { vpDevice?: string };

export class MqttTransport {
  private broker!: Aedes;
  private server!: Server;
  private readonly keys = new KeyCache();
  /** nonce hex → token time: each token is accepted once within the window. */
  private readonly usedNonces = new Map<string, number>();
  private readonly startedAtMs: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  readonly devices = new Map<string, DeviceClient>();
  port = 0;

  constructor(private readonly o: MqttTransportOptions) {
    this.now = o.now ?? Date.now;
    this.windowMs = o.connectWindowMs ?? 30_000;
    // A token made before this process started cannot be replayed after a restart.
    this.startedAtMs = this.now();
  }

  async start(): Promise<void> {
    const opts: AedesOptions = {
      id: 'vitalproof',
      authenticate: (client, username, password, done) => {
        const refusal = this.authenticate(client as DeviceClient, username, password);
        if (refusal) {
          this.o.metrics.countConnectRefused(refusal);
          this.o.log.warn({ event: 'connect_refused', reason: refusal, device: isDeviceId(username ?? '') ? username : undefined }, 'CONNECT refused');
          const err = Object.assign(new Error(refusal), { returnCode: REFUSAL_CODE[refusal] });
          return done(err, false);
        }
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
      if (c.vpDevice) this.devices.set(c.vpDevice, c);
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

  /** Returns the refusal reason, or undefined when the device may connect. */
  private authenticate(client: DeviceClient, username: string | undefined, password: Buffer | undefined): ConnectReason | undefined {
    if (!username || !isDeviceId(username) || !password) return 'CONNECT_MALFORMED';
    const token = parseConnectPassword(password);
    if (!token || client.id !== deviceClientId(username)) return 'CONNECT_MALFORMED';
    const rec = this.o.registry.get(username);
    if (!rec) return 'CONNECT_UNKNOWN_DEVICE';
    if (rec.revokedAtMs !== undefined && rec.revokedAtMs <= this.now()) return 'CONNECT_REVOKED';
    const msg = connectSigningMessage(username, client.id, token.timestampMs, token.nonce);
    if (!verifyEd25519(this.keys.get(rec.publicKey), msg, token.signature)) return 'CONNECT_BAD_SIGNATURE';
    const now = this.now();
    const ts = Number(token.timestampMs);
    if (Math.abs(ts - now) > this.windowMs || ts < this.startedAtMs) return 'CONNECT_STALE';
    this.pruneNonces(now);
    const nonce = Buffer.from(token.nonce).toString('hex');
    if (this.usedNonces.has(nonce)) return 'CONNECT_REPLAYED';
    this.usedNonces.set(nonce, ts);
    client.vpDevice = username;
    return undefined;
  }

  private pruneNonces(now: number): void {
    if (this.usedNonces.size < 1024) return;
    for (const [n, ts] of this.usedNonces) if (ts < now - this.windowMs) this.usedNonces.delete(n);
  }

  get connectedDevices(): number {
    return this.devices.size;
  }

  async stop(): Promise<void> {
    await new Promise<void>((res) => this.broker.close(() => res()));
    await new Promise<void>((res) => this.server.close(() => res()));
  }
}
