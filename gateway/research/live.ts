/**
 * Live, consent-governed researcher access inside the gateway's MQTT broker
 * (docs/research-api.md, "MQTT"; docs/consent.md, "Researcher access").
 *
 *   CONNECT     username = the researcher's address (or empty), password = a signed login
 *               (ResearcherAuthenticator.verifyMqttLogin: EIP-191, self-issued challenge, once).
 *               Refused: CONNACK 4 (bad credentials) or 5 (wrong gateway / purpose). Devices
 *               never come here: the broker hands a CONNECT over only when its username is an
 *               0x address, or empty with a researcher login as password (`claims`).
 *   ADMISSION   decided before the signature is checked, on the account the login names (cheap
 *               checks first; the signature then proves it): at most `maxConnectionsPerResearcher`
 *               connections per key (TOO_MANY_CONNECTIONS, CONNACK 5); a key with no live grant
 *               (none in force whose data window has not ended) only within a pool of
 *               `maxUngrantedConnections` connections shared by all such keys (NO_LIVE_GRANT,
 *               CONNACK 5; 0 refuses them all); a client id held by a connected client of another
 *               key is refused (CLIENT_ID_IN_USE, CONNACK 2): aedes would close the holder
 *               (MQTT-3.1.4-2), so another key could cut a researcher off. The same key may take
 *               its own id over, as MQTT intends. Device client ids (`vp-dev-`) are never a
 *               researcher's (CLIENT_ID_RESERVED, 2).
 *   LIFETIME    a client is held from its admission until its socket closes ('close' on the
 *               connection, whatever aedes emits or in which order: in aedes 1.2.0 `clientReady`
 *               can come after `clientDisconnect` for a client dropped right after CONNACK);
 *               ready() and gone() are idempotent, and ready() for a closed client releases it.
 *   SUBSCRIBE   `vp/consented/<pseudonym>/<metric | +>` is granted (QoS 0) when a grant in force
 *               covers (researcher, patient, metric) and its data window has not ended; else
 *               SUBACK 0x80 and a `subscription_refused` notice with the consent code. The
 *               client's own `vp/researcher/<address>/notices` is granted (QoS ≤ 1). Anything
 *               else is refused (notice code TOPIC_NOT_ALLOWED).
 *   DELIVERY    every frame the pipeline accepted (MQTT and BLE alike) once it is durable: one
 *               message per frame and subscription (per grant, in the rare case two grants cover
 *               different samples of a frame), QoS 0, with only the samples ConsentView.decide
 *               allows now (the grant's data window). Messages are not sent at once: the ones
 *               prepared in one pipeline tick (or `batchMs`) form a batch; right before it is
 *               logged each is checked again (subscription active, client connected,
 *               `checkGrant` OK for its first and last sample now), the batch becomes one access-
 *               log entry per subscription and grant, appended in one group commit (fdatasync),
 *               and only once that is durable do the messages go out (docs/consent.md, "Live
 *               deliveries"). So every reading a researcher receives is in the log even if the
 *               gateway is killed the next instant; a crash can over-state a disclosure (logged,
 *               not sent), never under-state one. The broker's authorizeForward lets through only
 *               a payload made here for that very client (`forward`): device topics, other
 *               clients' publishes and wills reach no researcher.
 *   CUT         on ConsentView `revoked` and `expired` the subscriptions the grant carried (and
 *               no other grant still covers) stop at once: marked inactive (nothing more is
 *               logged or prepared for them), the batch being logged at that instant goes out
 *               (it is in the log already, and the grant allowed it when it was written), then a
 *               `subscription_ended` notice and the broker-side subscription removed.
 *
 * Refused logins and refused subscription filters are counted by code (status) and logged
 * through a LogLimiter (gateway/log.ts): a flood writes a bounded number of lines.
 * Log lines name researchers (addresses), pseudonyms, metrics and grant ids; never readings.
 */
import type { AedesPublishPacket, Client, Subscription } from 'aedes';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import type { Catalogue, Remedies } from '../../firmware-proto/coded-error.js';
import { sampleTimeNs, sampleValue, type Frame } from '../../firmware-proto/frame.js';
import type { AcceptedFrame } from '../ingest/types.js';
import { LogLimiter, type Logger, type LogLimiterOptions } from '../log.js';
import { decodeLogin, parseChallenge, type AuthErrorCode, type ResearcherAuthenticator } from '../consent/auth.js';
import type { ConsentGrant, ConsentView, DecisionCode } from '../consent/consent-view.js';
import type { AccessLog } from '../consent/access-log.js';
import type { AccessRecord } from '../consent/access-entry.js';
import { PSEUDONYM } from '../registry/registry.js';
import { isLoopbackHost } from '../config.js';

export const CONSENTED_PREFIX = 'vp/consented/';
export const RESEARCHER_PREFIX = 'vp/researcher/';

/** Why a researcher's subscription is refused besides the consent DecisionCodes (docs/consent.md, "Subscriptions"). */
export const SUBSCRIBE_REFUSALS = {
  TOPIC_NOT_ALLOWED: "a topic no researcher may subscribe to: `#`, a wildcard for the patient, device topics, another researcher's notices, an unknown metric",
  TOO_MANY_SUBSCRIPTIONS: 'the client holds 64 consented subscriptions already',
} as const satisfies Catalogue;
export type SubscribeRefusal = keyof typeof SUBSCRIBE_REFUSALS;

export const SUBSCRIBE_REFUSAL_REMEDIES: Remedies<SubscribeRefusal> = {
  TOPIC_NOT_ALLOWED:
    'Subscribe to `vp/consented/<pseudonym>/<metric>` (or `+` for every metric of the grant) and to your own notices topic only (docs/research-api.md, "MQTT").',
  TOO_MANY_SUBSCRIPTIONS: 'Unsubscribe from topics you no longer need, or open another connection.',
};

/** Codes of a refused subscription: the consent DecisionCodes and SUBSCRIBE_REFUSALS. */
export type LiveRefusalCode = DecisionCode | SubscribeRefusal;

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

/** Why a researcher CONNECT was refused besides the login's own AuthErrorCodes (docs/research-api.md, "MQTT"). */
export const ADMISSION_REFUSALS = {
  CLIENT_ID_RESERVED: "the client id starts `vp-dev-` (devices' ids); CONNACK 2",
  CLIENT_ID_IN_USE: 'a connected researcher of another key holds this client id; CONNACK 2',
  TOO_MANY_CONNECTIONS: 'the key has research.maxConnectionsPerResearcher connections already; CONNACK 5',
  NO_LIVE_GRANT:
    'the key holds no grant in force whose data window has not ended, and the pool of connections for such keys (research.maxUngrantedConnections) is full; CONNACK 5',
} as const satisfies Catalogue;
export type AdmissionRefusal = keyof typeof ADMISSION_REFUSALS;

export const ADMISSION_REFUSAL_REMEDIES: Remedies<AdmissionRefusal> = {
  CLIENT_ID_RESERVED: 'Use a client id of your own, e.g. `vp-research-<random>`.',
  CLIENT_ID_IN_USE: 'Use a client id of your own per connection, e.g. `vp-research-<random>`.',
  TOO_MANY_CONNECTIONS: 'Close connections you no longer use; one connection carries every subscription.',
  NO_LIVE_GRANT: 'Ask the patient for a grant (a live stream needs one in force); or retry when the pool frees.',
};

/** CONNACK return codes of the admission refusals (MQTT 3.1.1 §3.2.2.3: 2 identifier rejected, 5 not authorised). */
export const ADMISSION_RETURN_CODE: Readonly<Record<AdmissionRefusal, 2 | 5>> = {
  CLIENT_ID_RESERVED: 2,
  CLIENT_ID_IN_USE: 2,
  TOO_MANY_CONNECTIONS: 5,
  NO_LIVE_GRANT: 5,
};

/** The part of an aedes client's connection (a net.Socket) the gate watches. */
interface Conn {
  destroyed?: boolean;
  remoteAddress?: string;
  once(event: 'close', listener: () => void): unknown;
}

type ResearcherClient = Client & { vpResearcher?: string; conn?: Conn };

interface LiveSub {
  /** Unique per subscription instance. */
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
  /** Admitted without a live grant: held against maxUngrantedConnections. */
  ungranted: boolean;
  subs: Map<string, LiveSub>;
  /** QoS of the client's notice subscription; undefined while it has none. */
  noticeQos: 0 | 1 | undefined;
  /** Refusals waiting for their SUBACK to go out, by topic. */
  refused: Map<string, { code: LiveRefusalCode; grantId?: bigint }>;
}

/** A message made for one subscription, waiting for its access-log entry. */
interface Prepared {
  sub: LiveSub;
  grantId: bigint;
  sensor: number;
  metric: string;
  /** Device times of its first and last reading, ms. */
  fromMs: number;
  toMs: number;
  count: number;
  preparedAtMs: number;
  packet: AedesPublishPacket;
}

export interface LiveAccessDeps {
  view: Pick<ConsentView, 'decide' | 'checkGrant' | 'grantsOf' | 'grantsFor' | 'patientRefOf' | 'pseudonymOf' | 'inForce' | 'on' | 'off'>;
  auth: Pick<ResearcherAuthenticator, 'verifyMqttLogin'>;
  /** Where every delivery is logged before it is sent. */
  accessLog: Pick<AccessLog, 'appendAll'>;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  now?: () => number;
  /** Consented subscriptions per client at most. Default 64. */
  maxSubscriptionsPerClient?: number;
  /** MQTT connections per researcher key at most. Default 4. */
  maxConnectionsPerResearcher?: number;
  /** Connections at once of keys without a live grant, all such keys together. Default 4; 0 refuses them. */
  maxUngrantedConnections?: number;
  /** Deliveries wait up to this long to share an access-log entry; 0: those of one pipeline tick. Default 0. */
  batchMs?: number;
  /** The rate limit of refusal lines (gateway/log.ts). */
  refusalLog?: LogLimiterOptions;
}

export interface LiveAccessStatus {
  researchersConnected: number;
  subscriptions: number;
  deliveries: number;
  /** Messages prepared but not logged nor sent: the check right before the log refused them (the grant ended in between, the client left). */
  dropped: number;
  /** Messages logged but not sent: the client's connection closed between the entry and the send. */
  loggedNotSent: number;
  /** Messages prepared and waiting for (or in) their access-log append. */
  awaitingLog: number;
  /** Access-log entries written for live deliveries. */
  entries: number;
  cut: number;
  loginRefusedBy: Record<string, number>;
  subscribeRefusedBy: Record<string, number>;
}

/** What the broker asks about researcher clients (gateway/transport/mqtt/broker.ts, ResearcherGate). */
export class LiveResearchAccess {
  private readonly now: () => number;
  private readonly max: number;
  private readonly maxPerResearcher: number;
  private readonly maxUngranted: number;
  private readonly batchMs: number;
  private readonly clients = new Map<ResearcherClient, ClientState>();
  /** Admitted clients by lowercase researcher address. */
  private readonly byResearcher = new Map<string, Set<ResearcherClient>>();
  /** The admitted client holding each client id. */
  private readonly byClientId = new Map<string, ResearcherClient>();
  private ungrantedHeld = 0;
  private readonly byPseudonym = new Map<string, Set<LiveSub>>();
  /** Payloads made here, by buffer identity: the client each may go to. */
  private readonly outgoing = new WeakMap<Buffer, ResearcherClient>();
  private readonly notices = new WeakMap<Buffer, ResearcherClient>();
  private pending: Prepared[] = [];
  private inflight: Promise<void> | undefined;
  private inflightCount = 0;
  private scheduled: { timer: NodeJS.Timeout } | { immediate: NodeJS.Immediate } | undefined;
  private closed = false;
  private counter = 0;
  private deliveries = 0;
  private dropped = 0;
  private loggedNotSent = 0;
  private entries = 0;
  private cutCount = 0;
  private readonly loginRefusedBy: Record<string, number> = {};
  private readonly subscribeRefusedBy: Record<string, number> = {};
  private readonly limited: LogLimiter;
  /** Set when the access log cannot be written: nothing is delivered that could not be accounted for. */
  private logFailure: string | undefined;
  private readonly onRevoked = (e: { grant: ConsentGrant }): void => this.grantEnded(e.grant, 'REVOKED');
  private readonly onExpired = (g: ConsentGrant): void => this.grantEnded(g, 'EXPIRED');

  /** @throws RangeError for a negative limit. */
  constructor(private readonly d: LiveAccessDeps) {
    this.now = d.now ?? Date.now;
    this.max = d.maxSubscriptionsPerClient ?? 64;
    this.maxPerResearcher = d.maxConnectionsPerResearcher ?? 4;
    this.maxUngranted = d.maxUngrantedConnections ?? 4;
    this.batchMs = d.batchMs ?? 0;
    for (const [k, v] of [
      ['maxSubscriptionsPerClient', this.max],
      ['maxConnectionsPerResearcher', this.maxPerResearcher],
      ['maxUngrantedConnections', this.maxUngranted],
      ['batchMs', this.batchMs],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${k} must be an integer >= 0, got ${v}`);
    }
    this.limited = new LogLimiter(d.log, d.refusalLog);
    d.view.on('revoked', this.onRevoked);
    d.view.on('expired', this.onExpired);
  }

  /** Stops listening to the view, sends or drops what waits for the log, and writes the refusal summaries. */
  async close(): Promise<void> {
    this.d.view.off('revoked', this.onRevoked);
    this.d.view.off('expired', this.onExpired);
    await this.settled();
    this.closed = true;
    this.limited.close();
  }

  /** Resolves once nothing waits for the access log: every prepared message is logged and sent, or dropped. */
  async settled(): Promise<void> {
    while (this.pending.length > 0 || this.inflight) {
      if (!this.inflight) this.drain();
      await this.inflight;
    }
  }

  /** The access log failed: stop delivering (every delivery must be accounted for). */
  accessLogFailed(e: Error): void {
    if (this.logFailure === undefined)
      this.d.log.error(
        { event: 'research_delivery_stopped', err: e.message },
        'the access log cannot be written: live deliveries to researchers stop until the gateway restarts',
      );
    this.logFailure = e.message;
  }

  status(): LiveAccessStatus {
    let subscriptions = 0;
    for (const st of this.clients.values()) subscriptions += st.subs.size;
    return {
      researchersConnected: this.clients.size,
      subscriptions,
      deliveries: this.deliveries,
      dropped: this.dropped,
      loggedNotSent: this.loggedNotSent,
      awaitingLog: this.pending.length + this.inflightCount,
      entries: this.entries,
      cut: this.cutCount,
      loginRefusedBy: { ...this.loginRefusedBy },
      subscribeRefusedBy: { ...this.subscribeRefusedBy },
    };
  }

  // ---- CONNECT ---------------------------------------------------------------------------

  /** Whether a CONNECT is a researcher's: username an 0x address, or empty with a researcher login as password. */
  claims(username: string | undefined, password: Uint8Array | undefined): boolean {
    if (username !== undefined && username !== '') return ADDRESS.test(username);
    return password !== undefined && decodeLogin(password) !== undefined;
  }

  /**
   * The CONNECT decision: admission on the account the login names (cheap), then the login
   * itself (a signature recovery). An admitted client is held until its connection closes.
   */
  authenticate(
    client: Client,
    username: string | undefined,
    password: Uint8Array | undefined,
  ): { ok: true; researcher: string } | { ok: false; reason: string; returnCode: 2 | 3 | 4 | 5 } {
    const c = client as ResearcherClient;
    const claimed = username !== undefined && username !== '' ? username : password !== undefined ? accountOf(password) : undefined;
    const refuse = (reason: string, returnCode: 2 | 3 | 4 | 5): { ok: false; reason: string; returnCode: 2 | 3 | 4 | 5 } => {
      this.loginRefusedBy[reason] = (this.loginRefusedBy[reason] ?? 0) + 1;
      // The account is what the CONNECT claims: proven only for refusals after the signature check.
      this.limited.warn(
        'research_connect_refused',
        { reason, ...(claimed && ADDRESS.test(claimed) ? { researcher: claimed } : {}) },
        'researcher CONNECT refused',
        reason,
      );
      return { ok: false, reason, returnCode };
    };
    // A device's client id would let a researcher take over (disconnect) the device's session.
    if (c.id.startsWith('vp-dev-')) return refuse('CLIENT_ID_RESERVED', 2);
    let ungranted = false;
    if (claimed !== undefined && ADDRESS.test(claimed)) {
      const a = this.admission(c, claimed);
      if (a !== 'GRANTED' && a !== 'UNGRANTED') return refuse(a, ADMISSION_RETURN_CODE[a]);
      ungranted = a === 'UNGRANTED';
    }
    // Self-issued logins are also budgeted per source address (consent/auth.ts); processes on the
    // gateway host itself (the CLI, the demo, an operator's tools) are not a network source.
    const remote = c.conn?.remoteAddress;
    const r = this.d.auth.verifyMqttLogin(username, password, remote !== undefined && !isLoopbackHost(remote) ? remote : undefined);
    // AUTH_BUSY: the gateway's login budget or used-nonce table is full, not the client's fault (3: server unavailable).
    if (!r.ok) return refuse(r.code, r.code === 'AUTH_BUSY' ? 3 : NOT_AUTHORISED.has(r.code) ? 5 : 4);
    c.vpResearcher = r.researcher;
    this.admit(c, r.researcher, ungranted);
    return { ok: true, researcher: r.researcher };
  }

  /** After CONNACK (aedes `clientReady`). Idempotent; a client that closed meanwhile is released. */
  ready(client: Client): void {
    const c = client as ResearcherClient;
    const st = this.clients.get(c);
    if (!st) return; // released already (its connection closed before this event came)
    if (c.closed || c.conn?.destroyed) {
      this.gone(c);
      return;
    }
    this.d.log.info({ event: 'research_connected', researcher: st.researcher, clientId: c.id.slice(0, 64) }, 'researcher connected (MQTT)');
  }

  /** The client's connection ended (its socket's 'close', or aedes `clientDisconnect`). Idempotent. */
  gone(client: Client): void {
    const c = client as ResearcherClient;
    const st = this.clients.get(c);
    if (!st) return;
    this.clients.delete(c);
    const key = st.researcher.toLowerCase();
    const mine = this.byResearcher.get(key);
    mine?.delete(c);
    if (mine?.size === 0) this.byResearcher.delete(key);
    if (this.byClientId.get(c.id) === c) this.byClientId.delete(c.id);
    if (st.ungranted) this.ungrantedHeld--;
    for (const sub of [...st.subs.values()]) this.deactivate(sub);
    this.d.log.info({ event: 'research_disconnected', researcher: st.researcher }, 'researcher disconnected (MQTT)');
  }

  // ---- SUBSCRIBE -------------------------------------------------------------------------

  /** The SUBACK decision for one topic filter: the (possibly downgraded) subscription, or null for 0x80. */
  authorizeSubscribe(client: Client, sub: Subscription): Subscription | null {
    const c = client as ResearcherClient;
    const st = this.clients.get(c);
    if (!st) return null; // not admitted, or gone
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
      if (existing) this.deactivate(existing);
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
    this.d.log.info(
      { event: 'research_subscribed', researcher: st.researcher, pseudonym: live.pseudonym, metric: live.metric, grants: cov.grantIds.map(String) },
      'researcher subscription granted',
    );
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
      this.notify(st.researcher, {
        event: 'subscription_refused',
        topic: s.topic,
        code: why.code,
        ...(why.grantId !== undefined ? { grantId: why.grantId.toString() } : {}),
        atMs: this.now(),
      });
    }
  }

  unsubscribed(client: Client, topics: readonly string[]): void {
    const st = this.clients.get(client as ResearcherClient);
    if (!st) return;
    for (const t of topics) {
      if (t === noticeTopic(st.researcher)) st.noticeQos = undefined;
      const sub = st.subs.get(t);
      if (sub) this.deactivate(sub);
    }
  }

  // ---- DELIVERY --------------------------------------------------------------------------

  /** Whether any researcher holds a subscription for this patient now: a hub verifies and delivers only such frames (gateway/hub/uplink-feed.ts). */
  wants(pseudonym: string): boolean {
    return !this.closed && (this.byPseudonym.get(pseudonym)?.size ?? 0) > 0;
  }

  /** A frame the pipeline accepted and made durable (every transport): its messages wait for their log entry. Never throws. */
  accepted(a: AcceptedFrame): void {
    if (this.byPseudonym.size === 0 || this.closed) return;
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
        for (const [grantId, idx] of byGrant) this.prepare(sub, a, grantId, idx, now);
      }
    } catch (e) {
      this.d.log.error({ event: 'research_delivery_failed', err: (e as Error).message }, 'live delivery failed for a frame');
    }
    this.schedule();
  }

  /**
   * The broker's authorizeForward for researcher clients, and for any packet on a researcher
   * topic: only a payload made here for this very client passes (a delivery once its entry is
   * durable, a notice), each once.
   */
  forward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const payload = packet.payload as unknown;
    if (!Buffer.isBuffer(payload)) return null;
    const to = this.outgoing.get(payload);
    if (to !== undefined) {
      if (to !== client) return null;
      this.outgoing.delete(payload);
      this.deliveries++;
      return packet;
    }
    const noticeTo = this.notices.get(payload);
    if (noticeTo !== undefined && noticeTo === client) {
      this.notices.delete(payload);
      return packet;
    }
    return null;
  }

  // ---- internals -------------------------------------------------------------------------

  /** Whether `claimed` may have one more connection (the cheap part of CONNECT: no signature work). */
  private admission(c: ResearcherClient, claimed: string): AdmissionRefusal | 'GRANTED' | 'UNGRANTED' {
    const key = claimed.toLowerCase();
    const holder = this.byClientId.get(c.id);
    const live = holder !== undefined && !holder.closed && this.clients.has(holder) ? holder : undefined;
    if (live && this.clients.get(live)!.researcher.toLowerCase() !== key) return 'CLIENT_ID_IN_USE';
    // The same key taking its own client id over: aedes closes the holder, so it does not count.
    const replaced = live ? this.clients.get(live) : undefined;
    const held = (this.byResearcher.get(key)?.size ?? 0) - (replaced ? 1 : 0);
    if (held >= this.maxPerResearcher) return 'TOO_MANY_CONNECTIONS';
    if (this.hasLiveGrant(claimed)) return 'GRANTED';
    const ungranted = this.ungrantedHeld - (replaced?.ungranted ? 1 : 0);
    return ungranted >= this.maxUngranted ? 'NO_LIVE_GRANT' : 'UNGRANTED';
  }

  /** A grant in force whose data window has not ended: something live could ever carry. */
  private hasLiveGrant(researcher: string): boolean {
    const now = this.now();
    // Lowercase: a claim with a broken EIP-55 checksum is just another key without grants, never a throw.
    return this.d.view.grantsFor(researcher.toLowerCase()).some((g) => this.d.view.inForce(g, now) && g.dataToMs >= BigInt(now));
  }

  private admit(c: ResearcherClient, researcher: string, ungranted: boolean): void {
    // Closed before the login was decided: aedes registers nothing for it, and neither do we.
    if (c.closed || c.conn?.destroyed) return;
    const st: ClientState = { researcher, ungranted, subs: new Map(), noticeQos: undefined, refused: new Map() };
    this.clients.set(c, st);
    const key = researcher.toLowerCase();
    let mine = this.byResearcher.get(key);
    if (!mine) this.byResearcher.set(key, (mine = new Set()));
    mine.add(c);
    this.byClientId.set(c.id, c);
    if (ungranted) this.ungrantedHeld++;
    // The one event that always comes, once, whatever aedes does: the socket closing.
    c.conn?.once('close', () => this.gone(c));
  }

  private refuse(st: ClientState, topic: string, code: LiveRefusalCode, grantId?: bigint, parsed?: { pseudonym: string; metric: string }): null {
    this.subscribeRefusedBy[code] = (this.subscribeRefusedBy[code] ?? 0) + 1;
    st.refused.set(topic, { code, ...(grantId !== undefined ? { grantId } : {}) });
    this.limited.info(
      'research_subscribe_refused',
      {
        researcher: st.researcher,
        code,
        ...(parsed ? { pseudonym: parsed.pseudonym, metric: parsed.metric } : { topic: topic.slice(0, 128) }),
        ...(grantId !== undefined ? { grantId: grantId.toString() } : {}),
      },
      'researcher subscription refused',
      code,
    );
    return null;
  }

  /**
   * Whether grants in force cover (researcher, patient, sensor or any) with a data window that
   * has not ended; else the most specific reason (ConsentView.decide's, at "now").
   */
  private coverage(
    researcher: string,
    ref: string,
    sensor: number | undefined,
    now: number,
  ): { ok: true; grantIds: bigint[] } | { ok: false; code: DecisionCode; grantId?: bigint } {
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
      const grantId =
        code === 'NO_GRANT' || code === 'SENSOR_NOT_GRANTED'
          ? undefined
          : latest(code === 'OUTSIDE_DATA_WINDOW' ? withSensor.filter((g) => this.d.view.inForce(g, now)) : withSensor.length ? withSensor : pair);
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

  /** Builds one message; it waits in `pending` for the next batch. */
  private prepare(sub: LiveSub, a: AcceptedFrame, grantId: bigint, idx: readonly number[], now: number): void {
    const f = a.frame;
    const channels = f.spec.channels;
    const readings = idx.map((i) => {
      const ns = sampleTimeNs(f, i);
      const values: Record<string, number> = {};
      for (let c = 0; c < channels.length; c++) values[channels[c]!] = sampleValue(f, i, c);
      return { timeMs: Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6, values };
    });
    const msg: LiveMessage = {
      grantId: grantId.toString(),
      patient: sub.topicPseudonym,
      metric: f.spec.name,
      deviceId: f.deviceId,
      seq: f.seq.toString(),
      frameSha256: a.sha256,
      readings,
    };
    const payload = Buffer.from(JSON.stringify(msg), 'utf8');
    this.pending.push({
      sub,
      grantId,
      sensor: f.sensor,
      metric: f.spec.name,
      fromMs: Number(sampleTimeNs(f, idx[0]!) / 1_000_000n),
      toMs: Number(sampleTimeNs(f, idx[idx.length - 1]!) / 1_000_000n),
      count: idx.length,
      preparedAtMs: now,
      packet: { cmd: 'publish', topic: consentedTopic(sub.topicPseudonym, f.spec.name), payload, qos: 0, retain: false, dup: false } as AedesPublishPacket,
    });
  }

  /** The next batch starts after this tick (or batchMs), and never while one is being logged. */
  private schedule(): void {
    if (this.scheduled || this.inflight || this.pending.length === 0) return;
    this.scheduled = this.batchMs > 0 ? { timer: setTimeout(() => this.drain(), this.batchMs) } : { immediate: setImmediate(() => this.drain()) };
  }

  /**
   * One batch: the last check, one entry per subscription and grant appended in one group
   * commit, and once that is durable, the messages out. Never two batches at once, so entries
   * and messages keep the frames' order and one fdatasync covers everything prepared meanwhile.
   */
  private drain(): void {
    if (this.scheduled) {
      if ('timer' in this.scheduled) clearTimeout(this.scheduled.timer);
      else clearImmediate(this.scheduled.immediate);
      this.scheduled = undefined;
    }
    if (this.inflight || this.pending.length === 0) return;
    const now = this.now();
    const go: Prepared[] = [];
    for (const p of this.pending.splice(0)) {
      if (this.deliverable(p, now)) go.push(p);
      else this.dropped++;
    }
    if (go.length === 0) return;
    const records = new Map<string, AccessRecord & { metrics: string[] }>();
    for (const p of go) {
      const key = `${p.sub.id}|${p.grantId}`;
      const r = records.get(key);
      if (!r) {
        records.set(key, {
          kind: 'live',
          researcher: p.sub.researcher,
          pseudonym: p.sub.pseudonym,
          patientRef: p.sub.patientRef,
          grantId: p.grantId,
          metrics: [p.metric],
          fromMs: p.fromMs,
          toMs: p.toMs,
          count: p.count,
          firstAtMs: p.preparedAtMs,
          atMs: now,
        });
        continue;
      }
      if (!r.metrics.includes(p.metric)) r.metrics.push(p.metric);
      r.fromMs = Math.min(r.fromMs, p.fromMs);
      r.toMs = Math.max(r.toMs, p.toMs);
      r.count += p.count;
      r.firstAtMs = Math.min(r.firstAtMs, p.preparedAtMs);
    }
    this.inflightCount = go.length;
    this.inflight = this.d.accessLog
      .appendAll([...records.values()])
      .then(
        (entries) => {
          this.entries += entries.length;
          for (const p of go) this.send(p);
        },
        (e: Error) => {
          this.d.log.error({ event: 'access_log_write_failed', err: e.message, entries: records.size }, 'live disclosures could not be logged: not sent');
          this.accessLogFailed(e);
          this.dropped += go.length;
        },
      )
      .finally(() => {
        this.inflight = undefined;
        this.inflightCount = 0;
        this.schedule();
      });
  }

  /** The last check, right before the entry is written. */
  private deliverable(p: Prepared, now: number): boolean {
    const sub = p.sub;
    if (this.logFailure !== undefined || !sub.active || sub.client.closed) return false;
    const ok = (t: number): boolean => this.d.view.checkGrant(p.grantId, sub.researcher, p.sensor, t, now) === 'OK';
    return ok(p.fromMs) && ok(p.toMs);
  }

  /** A logged message goes out: nothing decides again, what the log covers is sent. */
  private send(p: Prepared): void {
    const c = p.sub.client;
    if (c.closed) {
      this.loggedNotSent++;
      return;
    }
    this.outgoing.set(p.packet.payload as Buffer, c);
    try {
      c.publish(p.packet, noop);
    } catch (e) {
      this.loggedNotSent++;
      this.d.log.error({ event: 'research_delivery_failed', err: (e as Error).message }, 'a logged live delivery could not be handed to the client');
    }
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
    this.d.log.info(
      { event: 'research_subscription_ended', researcher: sub.researcher, pseudonym: sub.pseudonym, metric: sub.metric, code, grantId: grantId.toString() },
      'researcher subscription cut: its grant ended',
    );
    // The batch being logged now is in the log already: it goes out before the notice.
    await this.inflight;
    this.notify(sub.researcher, { event: 'subscription_ended', topic: sub.topic, code, grantId: grantId.toString(), atMs });
    if (!sub.client.closed) sub.client.unsubscribe({ unsubscriptions: [sub.topic] } as unknown as Subscription, noop);
  }

  /** A subscription ended (unsubscribe, disconnect, replaced, cut): nothing more is prepared or logged for it. */
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

/** The account a researcher login names (its challenge's `account`), without checking anything else. */
function accountOf(password: Uint8Array): string | undefined {
  const login = decodeLogin(password);
  return login ? parseChallenge(login.text)?.account : undefined;
}

function noop(): void {}
