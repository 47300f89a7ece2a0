/**
 * The hub's side of the uplink (docs/uplink.md, docs/fleet.md): every gateway's accepted frames,
 * anchors and status, from the hospital broker, turned into what the hub's research transport
 * delivers (gateway/research/live.ts, the same code a bedside gateway delivers with).
 *
 *   vitalproof/uplink/+/frames/+   decoded strictly (gateway/uplink/envelope.ts), the device
 *                                  and its patient taken from the registry, the device's place
 *                                  noted (./fleet-view.ts); then, only when a researcher here
 *                                  follows that patient: the device signature verified against
 *                                  the registry with the gateway's rule (a gateway is
 *                                  semi-trusted: it cannot put a reading into a researcher's
 *                                  stream that its device did not sign), ordered and
 *                                  de-duplicated per device (./sequencer.ts) and handed on.
 *                                  Every hub instance hears the whole hospital; most of it is
 *                                  followed by nobody there, and costs only the decoding.
 *   vitalproof/uplink/+/status     retained: each gateway's health (./fleet-view.ts)
 *   vitalproof/uplink/+/anchors    each gateway's last anchored batch
 *
 * Why every hub instance takes the whole uplink, not a share of it: a researcher is connected
 * to one hub instance, which must see every frame of the patient to deliver them all, in order.
 * Mosquitto's `$share` dispatch is round-robin per message, so a shared subscription would give
 * each instance every other frame of a device; that is the same reason the gateways are not
 * shared-subscription workers (docs/fleet.md, "Why hubs do not share the uplink"). Hub instances
 * split the researchers instead. The session is persistent (MQTT 5, clean start off, a session
 * expiry), so frames published while this instance restarts wait in the broker for it.
 *
 * Refused messages are counted by code and logged through a LogLimiter; never the readings.
 */
import { brokerClientOptions } from '../uplink/broker-client.js';
import { connect, type MqttClient } from 'mqtt';
import type { Remedies } from '../../firmware-proto/coded-error.js';
import type { Frame } from '../../firmware-proto/frame.js';
import { FRAME_TAG, concat } from '../../firmware-proto/signing.js';
import type { AcceptedFrame } from '../ingest/types.js';
import { LogLimiter, type Logger } from '../log.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { revokedAt } from '../registry/registry.js';
import { decodeUplinkAnchor, decodeUplinkFrameAndBytes, decodeUplinkStatus, UplinkFormatError, type UplinkFrame } from '../uplink/envelope.js';
import { parseUplinkTopic, UPLINK_ROOT } from '../uplink/topics.js';
import { safeUrl } from '../uplink/publisher.js';
import { KeyCache, verifyEd25519 } from '../verify/ed25519.js';
import { DeviceSequencer, type SequencerStats } from './sequencer.js';
import type { FleetView } from './fleet-view.js';

/** Why the hub drops an uplink message besides its format (UplinkFormatError codes). */
export const FEED_REFUSALS = {
  FEED_UNKNOWN_DEVICE: 'a frame of a device the registry does not hold',
  FEED_BAD_SIGNATURE: "a frame whose signature does not verify under its device's enrolled key",
  FEED_DEVICE_REVOKED: "a frame timestamped at or after its device's revocation",
} as const;
export type FeedRefusal = keyof typeof FEED_REFUSALS;

export const FEED_REFUSAL_REMEDIES: Remedies<FeedRefusal> = {
  FEED_UNKNOWN_DEVICE: 'Check that the hub follows the same DeviceRegistry as the gateways (registry.source chain, same deployment).',
  FEED_BAD_SIGNATURE: 'Investigate the gateway that published it (its id is in the topic): gateways publish only frames they verified.',
  FEED_DEVICE_REVOKED: 'Investigate the gateway that published it: a revoked device is refused at the gateway too.',
};

export interface UplinkFeedOptions {
  url: string;
  username: string;
  password: string;
  clientId: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  registry: DeviceRegistry;
  /** Each frame of a wanted patient, once per (device, seq), in seq order per device. Must not throw. */
  onFrame: (a: AcceptedFrame, from: UplinkFrame) => void;
  /** Whether a researcher follows this patient (pseudonym) here now: the others' frames are only counted (gateway/research/live.ts wants). */
  wants: (patient: string) => boolean;
  fleet: FleetView;
  log: Logger;
  /** How long a frame waits for an earlier one of its device (./sequencer.ts). */
  holdMs: number;
  /** How long the broker keeps this instance's session (and the frames for it) while it is away, s. */
  sessionExpiryS?: number;
  refusalLog?: { burst: number; windowMs: number };
}

export interface UplinkFeedStatus {
  url: string;
  clientId: string;
  connected: boolean;
  received: { frames: number; anchors: number; status: number };
  /** Frames of patients no researcher followed here: counted, not verified, not ordered, not delivered. */
  unwanted: number;
  refusedBy: Record<string, number>;
  sequencer: SequencerStats;
}

export class UplinkFeed {
  private client: MqttClient | undefined;
  private readonly keys = new KeyCache();
  private readonly sequencer: DeviceSequencer<{ device: string; seq: bigint; accepted: AcceptedFrame; from: UplinkFrame }>;
  private readonly refusedBy: Record<string, number> = {};
  private readonly received = { frames: 0, anchors: 0, status: 0 };
  private readonly refusals: LogLimiter;
  private timer: NodeJS.Timeout | undefined;
  private connected = false;
  private unwanted = 0;

  constructor(private readonly o: UplinkFeedOptions) {
    this.sequencer = new DeviceSequencer({ holdMs: o.holdMs, release: (x) => this.release(x.accepted, x.from) });
    this.refusals = new LogLimiter(o.log, o.refusalLog ?? {});
  }

  /** Connects (and keeps reconnecting) and subscribes; resolves once the first CONNACK came or the first attempt failed. */
  async start(): Promise<void> {
    const opts = brokerClientOptions(this.o, {
      clean: false,
      properties: { sessionExpiryInterval: this.o.sessionExpiryS ?? 3600 },
      reconnectPeriod: 1000,
      resubscribe: true,
    });
    const client = connect(this.o.url, opts);
    this.client = client;
    client.on('message', (topic, payload) => this.message(topic, payload));
    client.on('connect', (ack) => {
      this.connected = true;
      this.o.log.info(
        { event: 'hub_uplink_connected', url: safeUrl(this.o.url), clientId: this.o.clientId, sessionPresent: ack.sessionPresent },
        'hub connected to the hospital broker',
      );
      // With a session present the broker kept the subscriptions; subscribing again is harmless.
      client.subscribe([`${UPLINK_ROOT}/+/frames/+`, `${UPLINK_ROOT}/+/anchors`, `${UPLINK_ROOT}/+/status`], { qos: 1 }, (err, granted) => {
        const refused = (granted ?? []).filter((g) => g.qos > 2);
        if (err || refused.length > 0)
          this.o.log.error(
            { event: 'hub_uplink_subscribe_refused', err: err?.message, topics: refused.map((g) => g.topic) },
            'the hospital broker refused the hub its uplink subscriptions: check the hub account (`vitalproof broker add-hub`)',
          );
      });
    });
    client.on('close', () => {
      if (this.connected) this.o.log.warn({ event: 'hub_uplink_down', url: safeUrl(this.o.url) }, 'hub lost the hospital broker; reconnecting');
      this.connected = false;
    });
    client.on('error', (e) => this.o.log.warn({ event: 'hub_uplink_error', err: e.message }, 'hospital broker connection error'));
    this.timer = setInterval(() => this.sequencer.tick(), Math.max(20, Math.min(250, Math.floor(this.o.holdMs / 4))));
    this.timer.unref();
    await new Promise<void>((res) => {
      client.once('connect', () => res());
      client.once('error', () => res());
      client.once('close', () => res());
    });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.sequencer.flush();
    const c = this.client;
    this.client = undefined;
    if (c) await c.endAsync(false).catch(() => undefined);
    this.refusals.close();
  }

  status(): UplinkFeedStatus {
    return {
      url: safeUrl(this.o.url),
      clientId: this.o.clientId,
      connected: this.connected,
      received: { ...this.received },
      unwanted: this.unwanted,
      refusedBy: { ...this.refusedBy },
      sequencer: this.sequencer.stats(),
    };
  }

  private message(topic: string, payload: Buffer): void {
    const t = parseUplinkTopic(topic);
    try {
      if (!t) throw new UplinkFormatError('UPLINK_BAD_FIELD', { field: 'topic', found: topic });
      if (t.kind === 'status') {
        this.received.status++;
        // An empty retained message clears the topic (a gateway taken out of service).
        if (payload.length === 0) this.o.fleet.removeGateway(t.gatewayId);
        else this.o.fleet.gatewayStatus(decodeUplinkStatus(payload, topic));
        return;
      }
      if (t.kind === 'anchors') {
        this.received.anchors++;
        this.o.fleet.gatewayAnchor(decodeUplinkAnchor(payload, topic));
        return;
      }
      this.received.frames++;
      // The topic names the device: a frame of a patient nobody here follows is not even parsed
      // (most of the uplink, most of the time; docs/fleet-scale.md). Its device is placed on the
      // gateway the topic names, as heard now.
      const rec = t.deviceId !== undefined ? this.o.registry.get(t.deviceId) : undefined;
      if (rec && !this.o.wants(rec.patient)) {
        this.unwanted++;
        this.o.fleet.deviceHeard(t.deviceId!, t.gatewayId, Date.now());
        return;
      }
      const { message, frame } = decodeUplinkFrameAndBytes(payload, topic);
      this.frame(message, frame);
    } catch (e) {
      if (!(e instanceof UplinkFormatError)) throw e;
      this.refuse(e.code, { topic, ...e.detail });
    }
  }

  private frame(u: UplinkFrame, frame: Frame): void {
    const rec = this.o.registry.get(u.device);
    if (!rec) return this.refuse('FEED_UNKNOWN_DEVICE', { gateway: u.gateway, device: u.device, seq: u.seq.toString() });
    this.o.fleet.deviceSeen(u.device, u.gateway, u.seq, u.receivedAtMs);
    // The signature is checked against the registry before the frame can move its device's order.
    if (!verifyEd25519(this.keys.get(rec.publicKey), concat(FRAME_TAG, frame.body), frame.signature))
      return this.refuse('FEED_BAD_SIGNATURE', { gateway: u.gateway, device: u.device, seq: u.seq.toString() });
    if (revokedAt(rec, Number(frame.timestampMs))) return this.refuse('FEED_DEVICE_REVOKED', { gateway: u.gateway, device: u.device, seq: u.seq.toString() });
    const accepted: AcceptedFrame = {
      lsn: u.lsn,
      receivedAtMs: u.receivedAtMs,
      transport: u.transport,
      patient: rec.patient,
      sha256: u.sha256,
      frame,
      placement: { batch: u.batch, leaf: u.leaf },
    };
    this.sequencer.offer({ device: u.device, seq: u.seq, accepted, from: u });
  }

  private release(a: AcceptedFrame, from: UplinkFrame): void {
    try {
      this.o.onFrame(a, from);
    } catch (e) {
      this.o.log.error({ event: 'hub_delivery_failed', err: (e as Error).message }, 'a frame from the uplink could not be handed on');
    }
  }

  private refuse(code: string, detail: Record<string, unknown>): void {
    this.refusedBy[code] = (this.refusedBy[code] ?? 0) + 1;
    this.refusals.warn('hub_uplink_refused', { code, ...detail }, 'uplink message dropped', code);
  }
}
