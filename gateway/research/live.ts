/**
 * Live, consent-governed researcher access inside the gateway's MQTT broker
 * (docs/research-api.md, "MQTT"; docs/consent.md, "Researcher access").
 *
 *   CONNECT     username = the researcher's address (or empty), password = a signed login
 *               (ResearcherAuthenticator.verifyMqttLogin: EIP-191, self-issued challenge, once).
 *               Refused: CONNACK 4 (bad credentials) or 5 (wrong gateway / purpose). Devices
 *               never come here: the broker hands a CONNECT over only when its username is an
 *               0x address, or empty with a researcher login as password (`claims`).
 *   SUBSCRIBE   `vp/consented/<pseudonym>/<metric | +>` is granted (QoS 0) when a grant in force
 *               covers (researcher, patient, metric) and its data window has not ended; else
 *               SUBACK 0x80 and a `subscription_refused` notice with the consent code. The
 *               client's own `vp/researcher/<address>/notices` is granted (QoS ≤ 1). Anything
 *               else is refused (notice code TOPIC_NOT_ALLOWED).
 *   DELIVERY    every frame the pipeline accepted (MQTT and BLE alike) once it is durable: one
 *               message per frame and subscription (per grant, in the rare case two grants
 *               cover different samples of a frame), QoS 0, with only the samples ConsentView.
 *               decide allows now (the grant's data window); the broker's authorizeForward asks
 *               again, at the instant of sending, whether the grant still allows what goes out
 *               (`forward`), and only then counts it in the access log (LiveAccessAggregator).
 *               Nothing reaches a researcher any other way: every packet not made here for that
 *               very client is dropped (device topics, other clients' publishes, wills).
 *   CUT         on ConsentView `revoked` and `expired` the subscriptions the grant carried (and
 *               no other grant still covers) stop at once: marked inactive (forward drops what
 *               is in flight), their live aggregate written to the access log, then a
 *               `subscription_ended` notice and the broker-side subscription removed.
 *
 * Log lines name researchers (addresses), pseudonyms, metrics and grant ids; never readings.
 */
import type { AedesPublishPacket, Client, Subscription } from 'aedes';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { sampleTimeNs, sampleValue, type Frame } from '../../firmware-proto/frame.js';
import type { AcceptedFrame } from '../ingest/types.js';
import type { Logger } from '../log.js';
import { decodeLogin, type AuthErrorCode, type ResearcherAuthenticator } from '../consent/auth.js';
import type { ConsentGrant, ConsentView, DecisionCode } from '../consent/consent-view.js';
import type { LiveAccessAggregator } from '../consent/access-log.js';
import { PSEUDONYM } from '../registry/registry.js';

export const CONSENTED_PREFIX = 'vp/consented/';
export const RESEARCHER_PREFIX = 'vp/researcher/';

/** Codes of a refused subscription besides the consent DecisionCodes. */
export type LiveRefusalCode = DecisionCode | 'TOPIC_NOT_ALLOWED' | 'TOO_MANY_SUBSCRIPTIONS';

/** A notice on `vp/researcher/<address>/notices` (docs/research-api.md). */
export interface LiveNotice {
  event: 'subscription_refused' | 'subscription_ended';
  topic: string;
  code: LiveRefusalCode;
  grantId?: string;
  atMs: number;
}

/** One delivery (docs/research-api.md, "Deliveries"). */
export interface LiveMessage {
  grantId: string;
  patient: string;
  metric: string;
  deviceId: string;
  seq: string;
  frameSha256: string;
  readings: { timeMs: number; values: Record<string, number> }[];
}

/** `vp/researcher/<address lowercase>/notices` */
export function noticeTopic(address: string): string {
  return `${RESEARCHER_PREFIX}${address.toLowerCase()}/notices`;
}

/** `vp/consented/<pseudonym>/<metric>` */
export function consentedTopic(pseudonym: string, metric: string): string {
  return `${CONSENTED_PREFIX}${pseudonym}/${metric}`;
}

/** The pseudonym and metric (a catalogue name, or `+`) of a consented topic filter; undefined for anything else. */
export function parseConsentedTopic(topic: string): { pseudonym: string; metric: string } | undefined {
  if (!topic.startsWith(CONSENTED_PREFIX)) return undefined;
  const parts = topic.slice(CONSENTED_PREFIX.length).split('/');
  if (parts.length !== 2) return undefined;
  const [pseudonym, metric] = parts as [string, string];
  if (!PSEUDONYM.test(pseudonym)) return undefined;
  if (metric === '+') return { pseudonym, metric };
  try {
    return { pseudonym, metric: sensorByName(metric).name };
  } catch {
    return undefined;
  }
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** A login refused over MQTT: CONNACK 5 when it is valid but not for this gateway or transport, else 4. */
const NOT_AUTHORISED: ReadonlySet<string> = new Set<AuthErrorCode>(['AUTH_WRONG_GATEWAY', 'AUTH_WRONG_PURPOSE']);

type ResearcherClient = Client & { vpResearcher?: string };

interface LiveSub {
  /** Unique per subscription instance: the access log's aggregation key. */
  id: string;
  client: ResearcherClient;
  researcher: string;
  topic: string;
  /** As the topic spells it (the deliveries' topic and `patient`). */
  topicPseudonym: string;
  /** The registry's pseudonym of the patientRef (frames are matched and logged under it). */
  pseudonym: string;
  patientRef: string;
  /** A catalogue name, or '+' for every granted metric. */
  metric: string;
  /** The sensor code, unless '+'. */
  sensor: number | undefined;
  active: boolean;
}

interface ClientState {
  researcher: string;
  subs: Map<string, LiveSub>;
  /** QoS of the client's notice subscription; undefined while it has none. */
  noticeQos: 0 | 1 | undefined;
  /** Refusals waiting for their SUBACK to go out, by topic. */
  refused: Map<string, { code: LiveRefusalCode; grantId?: bigint }>;
}

interface Outgoing {
  sub: LiveSub;
  grantId: bigint;
  sensor: number;
  metric: string;
  fromMs: number;
  toMs: number;
  count: number;
}

export interface LiveAccessDeps {
  view: Pick<ConsentView, 'decide' | 'checkGrant' | 'grantsOf' | 'patientRefOf' | 'pseudonymOf' | 'inForce' | 'on' | 'off'>;
  auth: Pick<ResearcherAuthenticator, 'verifyMqttLogin'>;
  aggregator: Pick<LiveAccessAggregator, 'delivered' | 'endSubscription'>;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  now?: () => number;
  /** Consented subscriptions per client at most. Default 64. */
  maxSubscriptionsPerClient?: number;
}

export interface LiveAccessStatus {
  researchersConnected: number;
  subscriptions: number;
  deliveries: number;
  /** Messages built but dropped at the last check (the grant ended in between). */
  dropped: number;
  cut: number;
  loginRefusedBy: Record<string, number>;
  subscribeRefusedBy: Record<string, number>;
}

/** What the broker asks about researcher clients (gateway/transport/mqtt/broker.ts, ResearcherGate). */
export class LiveResearchAccess {
  private readonly now: () => number;
  private readonly max: number;
  private readonly clients = new Map<ResearcherClient, ClientState>();
  private readonly byPseudonym = new Map<string, Set<LiveSub>>();
  /** Payloads made here, by buffer identity: what forward() lets through, to whom. */
  private readonly outgoing = new WeakMap<Buffer, Outgoing>();
  private readonly notices = new WeakMap<Buffer, ResearcherClient>();
  private counter = 0;
  private deliveries = 0;
  private dropped = 0;
  private cutCount = 0;
  private readonly loginRefusedBy: Record<string, number> = {};
  private readonly subscribeRefusedBy: Record<string, number> = {};
  /** Set when the access log cannot be written: nothing is delivered that could not be accounted for. */
  private logFailure: string | undefined;
  private readonly onRevoked = (e: { grant: ConsentGrant }): void => this.grantEnded(e.grant, 'REVOKED');
  private readonly onExpired = (g: ConsentGrant): void => this.grantEnded(g, 'EXPIRED');

  constructor(private readonly d: LiveAccessDeps) {
    this.now = d.now ?? Date.now;
    this.max = d.maxSubscriptionsPerClient ?? 64;
    d.view.on('revoked', this.onRevoked);
    d.view.on('expired', this.onExpired);
  }

  /** Stops listening to the view (the broker is closed separately). */
  close(): void {
    this.d.view.off('revoked', this.onRevoked);
    this.d.view.off('expired', this.onExpired);
  }

  /** The access log failed: stop delivering (every delivery must be accounted for). */
  accessLogFailed(e: Error): void {
    if (this.logFailure === undefined) this.d.log.error({ event: 'research_delivery_stopped', err: e.message }, 'the access log cannot be written: live deliveries to researchers stop until the gateway restarts');
    this.logFailure = e.message;
  }

  status(): LiveAccessStatus {
    let subscriptions = 0;
    for (const st of this.clients.values()) subscriptions += st.subs.size;
    return { researchersConnected: this.clients.size, subscriptions, deliveries: this.deliveries, dropped: this.dropped, cut: this.cutCount, loginRefusedBy: { ...this.loginRefusedBy }, subscribeRefusedBy: { ...this.subscribeRefusedBy } };
  }

  // ---- CONNECT ---------------------------------------------------------------------------

  /** Whether a CONNECT is a researcher's: username an 0x address, or empty with a researcher login as password. */
  claims(username: string | undefined, password: Uint8Array | undefined): boolean {
    if (username !== undefined && username !== '') return ADDRESS.test(username);
    return password !== undefined && decodeLogin(password) !== undefined;
  }

  authenticate(client: Client, username: string | undefined, password: Uint8Array | undefined): { ok: true; researcher: string } | { ok: false; reason: string; returnCode: 2 | 4 | 5 } {
    const refuse = (reason: string, returnCode: 2 | 4 | 5): { ok: false; reason: string; returnCode: 2 | 4 | 5 } => {
      this.loginRefusedBy[reason] = (this.loginRefusedBy[reason] ?? 0) + 1;
      return { ok: false, reason, returnCode };
    };
    // A device's client id would let a researcher take over (disconnect) the device's session.
    if (client.id.startsWith('vp-dev-')) return refuse('CLIENT_ID_RESERVED', 2);
    const r = this.d.auth.verifyMqttLogin(username, password);
    if (!r.ok) return refuse(r.code, NOT_AUTHORISED.has(r.code) ? 5 : 4);
    (client as ResearcherClient).vpResearcher = r.researcher;
    return { ok: true, researcher: r.researcher };
  }

  ready(client: Client): void {
    const c = client as ResearcherClient;
    this.state(c);
    this.d.log.info({ event: 'research_connected', researcher: c.vpResearcher, clientId: c.id.slice(0, 64) }, 'researcher connected (MQTT)');
  }

  gone(client: Client): void {
    const c = client as ResearcherClient;
    const st = this.clients.get(c);
    if (!st) return;
    this.clients.delete(c);
    for (const sub of [...st.subs.values()]) this.end(sub);
    this.d.log.info({ event: 'research_disconnected', researcher: st.researcher }, 'researcher disconnected (MQTT)');
  }

  // ---- SUBSCRIBE -------------------------------------------------------------------------

  /** The SUBACK decision for one topic filter: the (possibly downgraded) subscription, or null for 0x80. */
  authorizeSubscribe(client: Client, sub: Subscription): Subscription | null {
    const c = client as ResearcherClient;
    const st = this.state(c);
    const topic = sub.topic;
    if (topic === noticeTopic(st.researcher)) {
      st.noticeQos = sub.qos >= 1 ? 1 : 0;
      sub.qos = st.noticeQos;
      return sub;
    }
    const existing = st.subs.get(topic);
    const parsed = parseConsentedTopic(topic);
    if (!parsed) return this.refuse(st, topic, 'TOPIC_NOT_ALLOWED');
    const now = this.now();
    const ref = this.d.view.patientRefOf(parsed.pseudonym);
    // An unknown pseudonym is told apart from a known one without a grant by nobody: both NO_GRANT.
    if (!ref) return this.refuse(st, topic, 'NO_GRANT', undefined, parsed);
    const sensor = parsed.metric === '+' ? undefined : sensorByName(parsed.metric).code;
    const cov = this.coverage(st.researcher, ref, sensor, now);
    if (!cov.ok) {
      if (existing) this.end(existing);
      return this.refuse(st, topic, cov.code, cov.grantId, parsed);
    }
    sub.qos = 0;
    if (existing?.active) return sub;
    if (st.subs.size >= this.max) return this.refuse(st, topic, 'TOO_MANY_SUBSCRIPTIONS', undefined, parsed);
    const live: LiveSub = {
      id: `${c.id}#${++this.counter}`,
      client: c,
      researcher: st.researcher,
      topic,
      topicPseudonym: parsed.pseudonym,
      pseudonym: this.d.view.pseudonymOf(ref),
      patientRef: ref,
      metric: parsed.metric,
      sensor,
      active: true,
    };
    st.subs.set(topic, live);
    let set = this.byPseudonym.get(live.pseudonym);
    if (!set) this.byPseudonym.set(live.pseudonym, (set = new Set()));
    set.add(live);
    this.d.log.info({ event: 'research_subscribed', researcher: st.researcher, pseudonym: live.pseudonym, metric: live.metric, grants: cov.grantIds.map(String) }, 'researcher subscription granted');
    return sub;
  }

  /** After the SUBACK went out: the notices of the refusals it carried. */
  subscribed(client: Client, subs: readonly Subscription[]): void {
    const st = this.clients.get(client as ResearcherClient);
    if (!st) return;
    for (const s of subs) {
      const why = st.refused.get(s.topic);
      if (!why) continue;
      st.refused.delete(s.topic);
      this.notify(st.researcher, { event: 'subscription_refused', topic: s.topic, code: why.code, ...(why.grantId !== undefined ? { grantId: why.grantId.toString() } : {}), atMs: this.now() });
    }
  }

  unsubscribed(client: Client, topics: readonly string[]): void {
    const st = this.clients.get(client as ResearcherClient);
    if (!st) return;
    for (const t of topics) {
      if (t === noticeTopic(st.researcher)) st.noticeQos = undefined;
      const sub = st.subs.get(t);
      if (sub) this.end(sub);
    }
  }

  // ---- DELIVERY --------------------------------------------------------------------------

  /** A frame the pipeline accepted and made durable (every transport). Never throws. */
  accepted(a: AcceptedFrame): void {
    if (this.byPseudonym.size === 0) return;
    const subs = this.byPseudonym.get(a.patient);
    if (!subs || subs.size === 0) return;
    try {
      const now = this.now();
      const f = a.frame;
      const metric = f.spec.name;
      const groups = new Map<string, Map<bigint, number[]>>();
      for (const sub of subs) {
        if (!sub.active || sub.client.closed || (sub.metric !== '+' && sub.metric !== metric)) continue;
        const key = `${sub.researcher}|${sub.patientRef}`;
        let byGrant = groups.get(key);
        if (!byGrant) groups.set(key, (byGrant = this.allowedSamples(sub, f, now)));
        for (const [grantId, idx] of byGrant) this.send(sub, a, grantId, idx);
      }
    } catch (e) {
      this.d.log.error({ event: 'research_delivery_failed', err: (e as Error).message }, 'live delivery failed for a frame');
    }
  }

  /**
   * The broker's authorizeForward for researcher clients, and for any packet on a researcher
   * topic: only a payload made here for this very client passes, and a delivery only while its
   * grant still allows it now. A delivery that passes is counted in the access log.
   */
  forward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const payload = packet.payload as unknown;
    if (!Buffer.isBuffer(payload)) return null;
    const out = this.outgoing.get(payload);
    if (out) {
      this.outgoing.delete(payload);
      const sub = out.sub;
      if (sub.client !== client || !sub.active || this.logFailure !== undefined) return this.drop();
      const now = this.now();
      const ok = (t: number): boolean => this.d.view.checkGrant(out.grantId, sub.researcher, out.sensor, t, now) === 'OK';
      if (!ok(out.fromMs) || !ok(out.toMs)) return this.drop();
      try {
        this.d.aggregator.delivered({ subscription: sub.id, researcher: sub.researcher, pseudonym: sub.pseudonym, patientRef: sub.patientRef, grantId: out.grantId, metric: out.metric, fromMs: out.fromMs, toMs: out.toMs, count: out.count, atMs: now });
      } catch (e) {
        this.accessLogFailed(e as Error);
        return this.drop();
      }
      this.deliveries++;
      return packet;
    }
    const to = this.notices.get(payload);
    if (to !== undefined && to === client) {
      this.notices.delete(payload);
      return packet;
    }
    return null;
  }

  // ---- internals -------------------------------------------------------------------------

  private state(c: ResearcherClient): ClientState {
    let st = this.clients.get(c);
    if (!st) {
      st = { researcher: c.vpResearcher ?? '', subs: new Map(), noticeQos: undefined, refused: new Map() };
      this.clients.set(c, st);
    }
    return st;
  }

  private refuse(st: ClientState, topic: string, code: LiveRefusalCode, grantId?: bigint, parsed?: { pseudonym: string; metric: string }): null {
    this.subscribeRefusedBy[code] = (this.subscribeRefusedBy[code] ?? 0) + 1;
    st.refused.set(topic, { code, ...(grantId !== undefined ? { grantId } : {}) });
    this.d.log.info(
      { event: 'research_subscribe_refused', researcher: st.researcher, code, ...(parsed ? { pseudonym: parsed.pseudonym, metric: parsed.metric } : { topic: topic.slice(0, 128) }), ...(grantId !== undefined ? { grantId: grantId.toString() } : {}) },
      'researcher subscription refused',
    );
    return null;
  }

  /**
   * Whether grants in force cover (researcher, patient, sensor or any) with a data window that
   * has not ended; else the most specific reason (ConsentView.decide's, at "now").
   */
  private coverage(researcher: string, ref: string, sensor: number | undefined, now: number): { ok: true; grantIds: bigint[] } | { ok: false; code: DecisionCode; grantId?: bigint } {
    const r = researcher.toLowerCase();
    const pair = this.d.view.grantsOf(ref).filter((g) => g.researcher.toLowerCase() === r);
    const has = (g: ConsentGrant, s: number): boolean => ((g.sensorMask >> s) & 1) === 1;
    const live = pair.filter((g) => this.d.view.inForce(g, now) && g.dataToMs >= BigInt(now));
    const covering = sensor === undefined ? live : live.filter((g) => has(g, sensor));
    if (covering.length > 0) return { ok: true, grantIds: covering.map((g) => g.grantId) };
    const latest = (gs: ConsentGrant[]): bigint | undefined => (gs.length ? gs[gs.length - 1]!.grantId : undefined);
    if (sensor !== undefined) {
      const d = this.d.view.decide(researcher, ref, sensor, now, now);
      const code: DecisionCode = d.ok ? 'OUTSIDE_DATA_WINDOW' : d.code;
      const withSensor = pair.filter((g) => has(g, sensor));
      const grantId = code === 'NO_GRANT' || code === 'SENSOR_NOT_GRANTED' ? undefined : latest(code === 'OUTSIDE_DATA_WINDOW' ? withSensor.filter((g) => this.d.view.inForce(g, now)) : withSensor.length ? withSensor : pair);
      return { ok: false, code, ...(grantId !== undefined ? { grantId } : {}) };
    }
    if (pair.length === 0) return { ok: false, code: 'NO_GRANT' };
    const inForce = pair.filter((g) => this.d.view.inForce(g, now));
    if (inForce.length > 0) return { ok: false, code: 'OUTSIDE_DATA_WINDOW', grantId: latest(inForce)! };
    const last = pair[pair.length - 1]!;
    return { ok: false, code: last.revokedAtMs !== 0n ? 'REVOKED' : 'EXPIRED', grantId: last.grantId };
  }

  /**
   * Sample indices of a frame that the pair may receive now, by the grant that allows them.
   * decide() depends on a sample's time only through the pair's data windows, so it is asked
   * once per stretch of samples between two window edges, not once per sample (an ECG frame
   * holds 250).
   */
  private allowedSamples(sub: LiveSub, f: Frame, now: number): Map<bigint, number[]> {
    const r = sub.researcher.toLowerCase();
    const edges: number[] = [];
    for (const g of this.d.view.grantsOf(sub.patientRef)) if (g.researcher.toLowerCase() === r) edges.push(Number(g.dataFromMs), Number(g.dataToMs) + 1);
    edges.sort((a, b) => a - b);
    const out = new Map<bigint, number[]>();
    let from = Number.POSITIVE_INFINITY;
    let until = Number.NEGATIVE_INFINITY;
    let d: ReturnType<LiveAccessDeps['view']['decide']> | undefined;
    for (let i = 0; i < f.count; i++) {
      const t = Number(sampleTimeNs(f, i) / 1_000_000n);
      if (d === undefined || t < from || t >= until) {
        d = this.d.view.decide(sub.researcher, sub.patientRef, f.sensor, t, now);
        from = Number.NEGATIVE_INFINITY;
        until = Number.POSITIVE_INFINITY;
        for (const e of edges) {
          if (e <= t) from = e;
          else {
            until = e;
            break;
          }
        }
      }
      if (!d.ok) continue;
      const l = out.get(d.grantId);
      if (l) l.push(i);
      else out.set(d.grantId, [i]);
    }
    return out;
  }

  private send(sub: LiveSub, a: AcceptedFrame, grantId: bigint, idx: readonly number[]): void {
    const f = a.frame;
    const channels = f.spec.channels;
    const readings = idx.map((i) => {
      const ns = sampleTimeNs(f, i);
      const values: Record<string, number> = {};
      for (let c = 0; c < channels.length; c++) values[channels[c]!] = sampleValue(f, i, c);
      return { timeMs: Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6, values };
    });
    const msg: LiveMessage = { grantId: grantId.toString(), patient: sub.topicPseudonym, metric: f.spec.name, deviceId: f.deviceId, seq: f.seq.toString(), frameSha256: a.sha256, readings };
    const payload = Buffer.from(JSON.stringify(msg), 'utf8');
    this.outgoing.set(payload, {
      sub,
      grantId,
      sensor: f.sensor,
      metric: f.spec.name,
      fromMs: Number(sampleTimeNs(f, idx[0]!) / 1_000_000n),
      toMs: Number(sampleTimeNs(f, idx[idx.length - 1]!) / 1_000_000n),
      count: idx.length,
    });
    sub.client.publish({ cmd: 'publish', topic: consentedTopic(sub.topicPseudonym, f.spec.name), payload, qos: 0, retain: false, dup: false }, noop);
  }

  private drop(): null {
    this.dropped++;
    return null;
  }

  /** A grant ended: cut the subscriptions it carried that no other grant covers now. */
  private grantEnded(g: ConsentGrant, code: 'REVOKED' | 'EXPIRED'): void {
    const now = this.now();
    const r = g.researcher.toLowerCase();
    for (const st of this.clients.values()) {
      if (st.researcher.toLowerCase() !== r) continue;
      for (const sub of [...st.subs.values()]) {
        if (!sub.active || sub.patientRef !== g.patientRef) continue;
        if (sub.sensor !== undefined && ((g.sensorMask >> sub.sensor) & 1) === 0) continue;
        if (this.coverage(sub.researcher, sub.patientRef, sub.sensor, now).ok) continue;
        void this.cut(sub, code, g.grantId, now);
      }
    }
  }

  private async cut(sub: LiveSub, code: 'REVOKED' | 'EXPIRED', grantId: bigint, atMs: number): Promise<void> {
    this.deactivate(sub);
    this.cutCount++;
    this.d.log.info({ event: 'research_subscription_ended', researcher: sub.researcher, pseudonym: sub.pseudonym, metric: sub.metric, code, grantId: grantId.toString() }, 'researcher subscription cut: its grant ended');
    try {
      await this.d.aggregator.endSubscription(sub.id);
    } catch (e) {
      this.accessLogFailed(e as Error);
    }
    this.notify(sub.researcher, { event: 'subscription_ended', topic: sub.topic, code, grantId: grantId.toString(), atMs });
    if (!sub.client.closed) sub.client.unsubscribe({ unsubscriptions: [sub.topic] } as unknown as Subscription, noop);
  }

  /** A subscription ended by the researcher (unsubscribe, disconnect) or replaced: its aggregate is logged. */
  private end(sub: LiveSub): void {
    this.deactivate(sub);
    this.d.aggregator.endSubscription(sub.id).catch((e: Error) => this.accessLogFailed(e));
  }

  private deactivate(sub: LiveSub): void {
    sub.active = false;
    const st = this.clients.get(sub.client);
    if (st?.subs.get(sub.topic) === sub) st.subs.delete(sub.topic);
    const set = this.byPseudonym.get(sub.pseudonym);
    set?.delete(sub);
    if (set && set.size === 0) this.byPseudonym.delete(sub.pseudonym);
  }

  private notify(researcher: string, notice: LiveNotice): void {
    const topic = noticeTopic(researcher);
    for (const [client, st] of this.clients) {
      if (st.researcher !== researcher || st.noticeQos === undefined || client.closed) continue;
      const payload = Buffer.from(JSON.stringify(notice), 'utf8');
      this.notices.set(payload, client);
      client.publish({ cmd: 'publish', topic, payload, qos: st.noticeQos, retain: false, dup: false }, noop);
    }
  }
}

function noop(): void {}
