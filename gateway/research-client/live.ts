/**
 * A researcher's live access over MQTT (docs/research-api.md, "MQTT"; docs/consent.md): the
 * account's address as username, a signed login as password (a fresh self-issued one at every
 * reconnect: a login is single use), its own notice topic and vp/consented/P/M per metric.
 * Topics and message types are the gateway's own (gateway/research/live.ts).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import type { BaseWallet } from 'ethers';
import { encodeLogin, selfIssuedChallenge } from '../consent/auth.js';
import { consentedTopic, noticeTopic, type LiveMessage, type LiveNotice } from '../research/live.js';

export { consentedTopic, noticeTopic } from '../research/live.js';

/** A delivery on vp/consented/P/M (docs/research-api.md, "Deliveries"). */
export type Delivery = LiveMessage;

/**
 * A notice on vp/researcher/<address>/notices. The gateway's LiveNotice, with event and code
 * open: a client takes the codes of a newer gateway as they come.
 */
export type Notice = Omit<LiveNotice, 'event' | 'code'> & { event: LiveNotice['event'] | (string & {}); code: LiveNotice['code'] | (string & {}) };

/** The MQTT password of docs/consent.md: a fresh self-issued mqtt challenge, signed. */
export function mqttPassword(gatewayId: string, key: BaseWallet, nowMs = Date.now()): string {
  const text = selfIssuedChallenge(gatewayId, key.address, nowMs);
  return encodeLogin({ text, signature: key.signMessageSync(text) });
}

/** True when an MQTT topic filter (with + and #) matches a topic. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** How long a refused subscription waits for the gateway's notice saying why. */
const REFUSAL_NOTICE_WAIT_MS = 2000;

export interface LiveOptions {
  /** mqtt://host:port of the gateway's broker, or mqtts://host:port (MQTT over TLS). */
  brokerUrl: string;
  /**
   * mqtts: the CA certificates (PEM) the broker's certificate must chain to. They replace Node's
   * default list (the system's roots and NODE_EXTRA_CA_CERTS), which applies when this is left out.
   */
  ca?: readonly string[];
  key: BaseWallet;
  /** The gateway's id: self-issued logins name it (docs/consent.md). */
  gatewayId: string;
  /** The first CONNECT's password, when it is not a self-issued login (a gateway-issued mqtt challenge, signed). */
  firstPassword?: string;
  pseudonym: string;
  /** Metric names, or '+' (every granted metric). */
  metrics: readonly string[];
  /** How long a refused subscription waits for the notice that says why. Default 2 s. */
  refusalNoticeWaitMs?: number;
}

export interface LiveEvents {
  /** A subscription the broker accepted (SUBACK granted). */
  subscribed: [topic: string];
  /** A subscription the broker refused (SUBACK 0x80), with the gateway's notice saying why if it came. */
  refused: [topic: string, notice: Notice | undefined, returnCode: number | undefined];
  /** Every subscription was answered; `accepted` of them are active. */
  ready: [accepted: number];
  delivery: [delivery: Delivery, topic: string];
  /** A notice on the researcher's notice topic (refusals come with `refused` instead). */
  notice: [notice: Notice];
  /** A `subscription_ended` notice ended these active subscriptions. */
  ended: [notice: Notice, topics: string[]];
  /** No subscription is active any more (each ended, or none was accepted). */
  idle: [];
  /** CONNACK 4 (bad credentials) or 5 (not authorised): the client stops. */
  loginRefused: [returnCode: number, message: string];
  /** The first connection failed: the client stops. */
  connectFailed: [error: Error];
  /** Lost after it was up; the client reconnects with a fresh login and resubscribes. */
  connectionLost: [reason: string];
}

/**
 * A researcher's live access over MQTT (docs/research-api.md, "MQTT"): connects with the
 * account's address and a login as password (a fresh self-issued one at every reconnect: a
 * login is single use), subscribes to its notice topic and to vp/consented/P/M for each metric,
 * and reports what comes as events. close() ends it.
 * @example
 *   const live = new LiveSubscription({ brokerUrl, key, gatewayId: 'gw-local', pseudonym: 'pt-0042', metrics: ['heart_rate'] });
 *   live.on('delivery', (d) => console.log(d.readings.length));
 *   live.on('ended', (n) => console.log('ended:', n.code));
 */
export class LiveSubscription extends EventEmitter<LiveEvents> {
  readonly noticeTopic: string;
  readonly topics: string[];
  /** Subscriptions the broker accepted and that have not ended. */
  readonly active = new Set<string>();
  private readonly client: MqttClient;
  private everConnected = false;
  private closed = false;
  private readonly refusalNotices = new Map<string, Notice>();
  private readonly refusalWaiters = new Map<string, (n: Notice | undefined) => void>();

  constructor(private readonly o: LiveOptions) {
    super();
    this.noticeTopic = noticeTopic(o.key.address);
    this.topics = o.metrics.map((m) => consentedTopic(o.pseudonym, m));
    this.client = mqtt.connect(o.brokerUrl, {
      username: o.key.address,
      password: o.firstPassword ?? mqttPassword(o.gatewayId, o.key),
      clientId: `vp-research-${randomBytes(6).toString('hex')}`,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(o.ca ? { ca: [...o.ca] } : {}),
    });
    this.client.on('reconnect', () => {
      this.client.options.password = mqttPassword(o.gatewayId, o.key);
    });
    this.client.on('error', (e: Error & { code?: number | string }) => {
      if (this.closed) return;
      if (e.code === 4 || e.code === 5) {
        this.emit('loginRefused', e.code, e.message);
        void this.close();
      } else if (!this.everConnected) {
        this.emit('connectFailed', e);
        void this.close();
      } else this.emit('connectionLost', e.message);
    });
    this.client.on('offline', () => {
      if (this.everConnected && !this.closed) this.emit('connectionLost', 'offline');
    });
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.once('connect', () => {
      this.everConnected = true;
      void this.subscribeAll();
    });
  }

  /** Ends the connection (idempotent). */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => this.client.end(true, () => resolve()));
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (this.closed) return;
    if (topic === this.noticeTopic) {
      let n: Notice;
      try {
        n = JSON.parse(payload.toString('utf8')) as Notice;
      } catch {
        return;
      }
      if (n.event === 'subscription_refused') {
        this.refusalNotices.set(n.topic, n);
        const waiter = this.refusalWaiters.get(n.topic);
        if (waiter) return waiter(n);
        // Not a subscription being made: a resubscription after a reconnect was refused (the
        // grant ended while the connection was down), which ends it like a cut.
        if (!this.active.has(n.topic)) return;
      }
      this.emit('notice', n);
      if (n.event === 'subscription_ended' || n.event === 'subscription_refused') {
        const ended = [...this.active].filter((t) => t === n.topic || topicMatches(t, n.topic));
        for (const t of ended) {
          this.active.delete(t);
          this.client.unsubscribe(t);
        }
        if (ended.length) {
          this.emit('ended', n, ended);
          if (this.active.size === 0) this.emit('idle');
        }
      }
      return;
    }
    let d: Delivery;
    try {
      d = JSON.parse(payload.toString('utf8')) as Delivery;
    } catch {
      return;
    }
    this.emit('delivery', d, topic);
  }

  private sub(topic: string): Promise<{ ok: boolean; code?: number }> {
    return new Promise((res) => {
      this.client.subscribe(topic, { qos: 0 }, (err, granted) => {
        const rc = granted?.[0]?.qos;
        const code = rc ?? (err as (Error & { code?: number }) | null)?.code;
        if (err || rc === undefined || (rc & 0x80) !== 0) res({ ok: false, ...(code !== undefined ? { code } : {}) });
        else res({ ok: true });
      });
    });
  }

  private async subscribeAll(): Promise<void> {
    const notices = await this.sub(this.noticeTopic);
    for (const t of this.topics) {
      if (this.closed) return;
      const waitNotice = new Promise<Notice | undefined>((res) => {
        const timer = setTimeout(() => res(undefined), this.o.refusalNoticeWaitMs ?? REFUSAL_NOTICE_WAIT_MS);
        this.refusalWaiters.set(t, (x) => {
          clearTimeout(timer);
          res(x);
        });
      });
      const r = await this.sub(t);
      if (r.ok) {
        this.refusalWaiters.get(t)?.(undefined);
        this.refusalWaiters.delete(t);
        this.active.add(t);
        this.emit('subscribed', t);
        continue;
      }
      const notice = this.refusalNotices.get(t) ?? (notices.ok ? await waitNotice : undefined);
      this.refusalWaiters.delete(t);
      if (!this.closed) this.emit('refused', t, notice, r.code);
    }
    if (this.closed) return;
    this.emit('ready', this.active.size);
    if (this.active.size === 0) this.emit('idle');
  }
}
