/**
 * The gateway's live researcher transport (gateway/research/live.ts) without sockets: which
 * CONNECTs it claims from the devices and which it admits (live grant, per-key cap, the pool of
 * keys without grants, client ids bound to the key that holds them), a client's lifetime in any
 * order of events, what a delivery carries when several grants with different data windows cover
 * a frame (exactly the samples decide() allows, by grant), the log before the send (a real
 * AccessLog on disk), the last check before the log, the order of a cut, and the bounded log of
 * refused filters. The consent view is a small model of ConsentView's rules; the broker is played
 * by the test.
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { getAddress, isAddress } from 'ethers';
import type { AedesPublishPacket, Client, Subscription } from 'aedes';
import { decodeFrame, sampleTimeNs } from '../../../firmware-proto/frame.js';
import { sensorByName } from '../../../firmware-proto/catalogue.js';
import { makeConnectPassword } from '../../../firmware-proto/connect.js';
import type { ConsentGrant, Decision, DecisionCode } from '../../../gateway/consent/consent-view.js';
import { AccessLog } from '../../../gateway/consent/access-log.js';
import type { AccessEntry } from '../../../gateway/consent/access-entry.js';
import { sha256Hex } from '../../../gateway/ingest/spool-record.js';
import { LiveResearchAccess, type LiveMessage, type LiveNotice } from '../../../gateway/research/live.js';
import { Rng } from '../../../device-sim/rng.js';
import { testDevice } from '../../support/devices.js';

const NOW = 1_795_000_100_000;
const T0 = 1_795_000_000_000;
const REF = `0x${'ab'.repeat(32)}`;
const PSEUDONYM = 'pt-live-unit';
const ECG = sensorByName('ecg').code;
const RESEARCHER = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';

/** ConsentView's verdicts for one pair, as the contract defines them (oldest covering grant). */
class ModelView extends EventEmitter {
  grants: ConsentGrant[] = [];
  now = NOW;
  decideCalls = 0;
  add(g: Partial<ConsentGrant> & { dataFromMs: bigint; dataToMs: bigint }): ConsentGrant {
    const full: ConsentGrant = {
      grantId: BigInt(this.grants.length + 1),
      patientRef: REF,
      purposeRef: REF,
      researcher: RESEARCHER,
      sensorMask: 1 << ECG,
      expiresAtMs: BigInt(NOW + 3_600_000),
      grantedAtMs: 0n,
      revokedAtMs: 0n,
      block: 1,
      txHash: REF,
      ...g,
    };
    this.grants.push(full);
    return full;
  }
  private status(g: ConsentGrant, sensor: number, t: number, now: number): DecisionCode | 'OK' {
    if (g.revokedAtMs !== 0n) return 'REVOKED';
    if (BigInt(now) >= g.expiresAtMs) return 'EXPIRED';
    if (((g.sensorMask >> sensor) & 1) === 0) return 'SENSOR_NOT_GRANTED';
    if (BigInt(t) < g.dataFromMs || BigInt(t) > g.dataToMs) return 'OUTSIDE_DATA_WINDOW';
    return 'OK';
  }
  decide(researcher: string, ref: string, sensor: number, t: number | bigint, now: number | bigint = this.now): Decision {
    this.decideCalls++;
    const mine = this.grants.filter((g) => g.researcher.toLowerCase() === researcher.toLowerCase() && g.patientRef === ref);
    for (const g of mine) if (this.status(g, sensor, Number(t), Number(now)) === 'OK') return { ok: true, grantId: g.grantId };
    return { ok: false, code: mine.length ? (this.status(mine[mine.length - 1]!, sensor, Number(t), Number(now)) as DecisionCode) : 'NO_GRANT' };
  }
  checkGrant(id: bigint | number, researcher: string, sensor: number, t: number | bigint, now: number | bigint = this.now): string {
    const g = this.grants.find((x) => x.grantId === BigInt(id));
    if (!g) return 'UNKNOWN_GRANT';
    if (g.researcher.toLowerCase() !== researcher.toLowerCase()) return 'NOT_GRANTEE';
    return this.status(g, sensor, Number(t), Number(now));
  }
  grantsFor(researcher: string): ConsentGrant[] {
    if (!isAddress(researcher)) throw new TypeError(`researcher must be an Ethereum address, got ${researcher}`); // as ConsentView
    return this.grants.filter((g) => g.researcher.toLowerCase() === researcher.toLowerCase()).map((g) => ({ ...g }));
  }
  grantsOf(ref: string): ConsentGrant[] {
    return this.grants.filter((g) => g.patientRef === ref).map((g) => ({ ...g }));
  }
  patientRefOf(p: string): string | undefined {
    return p === PSEUDONYM ? REF : undefined;
  }
  pseudonymOf(): string {
    return PSEUDONYM;
  }
  inForce(g: ConsentGrant, now: number | bigint = this.now): boolean {
    return g.revokedAtMs === 0n && BigInt(now) < g.expiresAtMs;
  }
}

interface FakeClient {
  id: string;
  closed: boolean;
  vpResearcher?: string;
  conn: EventEmitter & { destroyed: boolean };
  sent: AedesPublishPacket[];
  publish(p: AedesPublishPacket): void;
  unsubscribe(): void;
}

const dirs: string[] = [];
const logs: AccessLog[] = [];
afterAll(async () => {
  for (const l of logs) await l.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface World {
  view: ModelView;
  live: LiveResearchAccess;
  log: AccessLog;
  client: FakeClient;
  events: string[];
  lines: Record<string, unknown>[];
  verified: { n: number };
  connect(id: string, researcher?: string): FakeClient;
  entries(): AccessEntry[];
}

/** A gate with a real access log; `client` is connected as RESEARCHER, who holds a grant only if `grant` is set. */
async function world(opts: { grant?: boolean; maxUngranted?: number; maxPerResearcher?: number } = {}): Promise<World> {
  const view = new ModelView();
  if (opts.grant !== false) view.add({ dataFromMs: BigInt(T0 - 3_600_000), dataToMs: BigInt(NOW + 3_600_000), sensorMask: 0 }); // live, but covers no sensor
  const dir = mkdtempSync(join(tmpdir(), 'vp-live-unit-'));
  dirs.push(dir);
  const log = await AccessLog.open(dir);
  logs.push(log);
  const events: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const record = (o: Record<string, unknown>): void => void lines.push(o);
  const verified = { n: 0 };
  const live = new LiveResearchAccess({
    view: view as never,
    // The login's signature is the expensive step: counted, to show admission comes first.
    auth: {
      verifyMqttLogin: (u) => {
        verified.n++;
        return u ? { ok: true, researcher: getAddress(u), challenge: {} as never } : { ok: false, code: 'AUTH_MALFORMED', message: 'no login' };
      },
    },
    accessLog: {
      appendAll: async (records) => {
        events.push(`logged ${records.length}`);
        return log.appendAll(records);
      },
    },
    log: { info: record, warn: record, error: record } as never,
    now: () => view.now,
    ...(opts.maxUngranted !== undefined ? { maxUngrantedConnections: opts.maxUngranted } : {}),
    ...(opts.maxPerResearcher !== undefined ? { maxConnectionsPerResearcher: opts.maxPerResearcher } : {}),
    refusalLog: { burst: 5, windowMs: 60_000 },
  });
  const connect = (id: string, researcher = RESEARCHER): FakeClient => {
    const c: FakeClient = {
      id,
      closed: false,
      conn: Object.assign(new EventEmitter(), { destroyed: false }),
      sent: [],
      publish(p) {
        this.sent.push(p);
        const body = JSON.parse(p.payload.toString()) as { event?: string };
        events.push(body.event ? `notice ${body.event}` : 'delivery');
      },
      unsubscribe() {
        events.push('unsubscribed');
      },
    };
    const r = live.authenticate(c as unknown as Client, researcher, Buffer.from('x'));
    if (r.ok) c.vpResearcher = r.researcher;
    return c;
  };
  const client = connect('researcher-1');
  live.ready(client as unknown as Client);
  return { view, live, log, client, events, lines, verified, connect, entries: () => [...log.entries()] };
}

/** The socket closes: what aedes and the kernel do, in that order, for a dropped connection. */
function drop(c: FakeClient): void {
  c.closed = true;
  c.conn.destroyed = true;
  c.conn.emit('close');
}

const sub = (topic: string): Subscription => ({ topic, qos: 0 }) as Subscription;

/** An ECG frame of 250 samples at 4 ms from `startMs`, accepted (over BLE, as it happens). */
function ecgFrame(startMs: number, seq = 1): Parameters<LiveResearchAccess['accepted']>[0] {
  const d = testDevice(`live-unit-${seq}`, PSEUDONYM);
  const { raw } = d.core.record({
    timestampMs: BigInt(startMs),
    sensor: ECG,
    scale: -3,
    intervalUs: 4000,
    samples: Int32Array.from({ length: 250 }, (_, i) => (i % 40) - 20),
  });
  return { lsn: BigInt(seq), receivedAtMs: NOW, transport: 'ble', patient: PSEUDONYM, sha256: sha256Hex(raw), frame: decodeFrame(raw) };
}

describe('live researcher transport: CONNECT and admission', () => {
  it('tells researchers from devices by their CONNECT, and keeps device client ids for devices', async () => {
    const { live } = await world();
    const d = testDevice('live-unit-device');
    expect(live.claims(d.id, makeConnectPassword(d.id, `vp-dev-${d.id}`, d.keys.secretKey))).toBe(false);
    expect(live.claims(undefined, makeConnectPassword(d.id, `vp-dev-${d.id}`, d.keys.secretKey))).toBe(false);
    expect(live.claims('', undefined)).toBe(false);
    expect(live.claims(RESEARCHER, Buffer.from('anything'))).toBe(true);
    expect(live.claims('', Buffer.from(`${Buffer.from('VitalProof researcher login\nx').toString('base64url')}.0x${'11'.repeat(65)}`))).toBe(true);
    expect(live.authenticate({ id: `vp-dev-${d.id}` } as Client, RESEARCHER, Buffer.from('x'))).toEqual({
      ok: false,
      reason: 'CLIENT_ID_RESERVED',
      returnCode: 2,
    });
  });

  it('admits keys without a live grant only within their pool, refusing the rest with NO_LIVE_GRANT before any signature work', async () => {
    const w = await world({ grant: false, maxUngranted: 2 });
    const others = ['0x' + '11'.repeat(20), '0x' + '22'.repeat(20), '0x' + '33'.repeat(20)];
    const a = w.connect('a', others[0]);
    expect(a.vpResearcher).toBe(getAddress(others[0]!));
    const before = w.verified.n;
    const b = w.connect('b', others[1]);
    expect(b.vpResearcher).toBeUndefined(); // the pool of 2: RESEARCHER (also without a grant) and a
    expect(w.verified.n).toBe(before); // refused on the claim alone
    expect(w.live.authenticate({ id: 'c', closed: false } as unknown as Client, others[2], Buffer.from('x'))).toEqual({
      ok: false,
      reason: 'NO_LIVE_GRANT',
      returnCode: 5,
    });
    // A claim whose EIP-55 checksum is broken is one more key without a grant, not a fault.
    const mixed = getAddress(`0x${'ab'.repeat(20)}`);
    const badChecksum = `0x${mixed[2] === 'a' ? 'A' : 'a'}${mixed.slice(3)}`;
    expect(isAddress(badChecksum)).toBe(false);
    expect(w.live.authenticate({ id: 'd', closed: false } as unknown as Client, badChecksum, Buffer.from('x'))).toEqual({
      ok: false,
      reason: 'NO_LIVE_GRANT',
      returnCode: 5,
    });
    // A grant in force whose data window has not ended makes a key live; one whose window is over does not.
    w.view.add({ researcher: getAddress(others[2]!), dataFromMs: BigInt(T0), dataToMs: BigInt(NOW - 1) });
    expect(w.live.authenticate({ id: 'c', closed: false } as unknown as Client, others[2], Buffer.from('x'))).toMatchObject({
      ok: false,
      reason: 'NO_LIVE_GRANT',
    });
    w.view.add({ researcher: getAddress(others[2]!), dataFromMs: BigInt(NOW + 60_000), dataToMs: BigInt(NOW + 120_000) }); // starts later: live
    expect(w.connect('c', others[2]).vpResearcher).toBe(getAddress(others[2]!));
    // A slot of the pool comes back when its holder's connection closes.
    drop(a);
    expect(w.connect('b2', others[1]).vpResearcher).toBe(getAddress(others[1]!));
    expect(w.live.status().loginRefusedBy).toEqual({ NO_LIVE_GRANT: 4 });
    expect(w.lines.filter((l) => l['event'] === 'research_connect_refused').map((l) => l['reason'])).toEqual([
      'NO_LIVE_GRANT',
      'NO_LIVE_GRANT',
      'NO_LIVE_GRANT',
      'NO_LIVE_GRANT',
    ]);
  });

  it('caps the connections of one key, counting a takeover of its own client id once', async () => {
    const w = await world({ maxPerResearcher: 2 });
    const second = w.connect('researcher-2');
    expect(second.vpResearcher).toBe(RESEARCHER);
    expect(w.connect('researcher-3').vpResearcher).toBeUndefined();
    expect(w.live.status().loginRefusedBy).toEqual({ TOO_MANY_CONNECTIONS: 1 });
    // Its own client id again: aedes closes the older connection, so this is no third one.
    const again = w.connect('researcher-2');
    expect(again.vpResearcher).toBe(RESEARCHER);
    drop(second); // what aedes does to the holder
    expect(w.live.status().researchersConnected).toBe(2);
    drop(again);
    expect(w.connect('researcher-3').vpResearcher).toBe(RESEARCHER);
  });

  it('refuses a client id held by another key (CLIENT_ID_IN_USE), leaving the holder connected and served', async () => {
    const w = await world();
    const thief = '0x' + '44'.repeat(20);
    w.view.add({ researcher: getAddress(thief), dataFromMs: BigInt(T0), dataToMs: BigInt(NOW + 3_600_000) });
    const before = w.verified.n;
    expect(w.live.authenticate({ id: 'researcher-1', closed: false } as unknown as Client, thief, Buffer.from('x'))).toEqual({
      ok: false,
      reason: 'CLIENT_ID_IN_USE',
      returnCode: 2,
    });
    expect(w.verified.n).toBe(before);
    expect(w.live.status().researchersConnected).toBe(1);
    // The same id is free again once its holder has gone.
    drop(w.client);
    expect(w.connect('researcher-1', thief).vpResearcher).toBe(getAddress(thief));
  });

  it('holds a client from admission until its socket closes, whatever order aedes reports it in', async () => {
    const w = await world();
    // Dropped right after CONNACK: the socket closes, aedes' clientDisconnect, then a late clientReady.
    for (let i = 0; i < 50; i++) {
      const c = w.connect(`flash-${i}`);
      const order = i % 3;
      if (order === 0) {
        drop(c);
        w.live.gone(c as unknown as Client);
        w.live.ready(c as unknown as Client);
      } else if (order === 1) {
        c.closed = true; // aedes closed it; the socket's close comes later
        w.live.ready(c as unknown as Client);
        c.conn.emit('close');
      } else {
        w.live.ready(c as unknown as Client);
        drop(c);
        w.live.gone(c as unknown as Client);
      }
      if (w.live.status().researchersConnected > 3) throw new Error(`client ${i} leaked`);
    }
    expect(w.live.status().researchersConnected).toBe(1); // the world's own client
    // Closed while its login was decided: never held.
    const late = { id: 'late', closed: false, conn: Object.assign(new EventEmitter(), { destroyed: true }) };
    expect(w.live.authenticate(late as unknown as Client, RESEARCHER, Buffer.from('x'))).toMatchObject({ ok: true });
    w.live.ready(late as unknown as Client);
    expect(w.live.status().researchersConnected).toBe(1);
  });

  it('logs a bounded number of lines for a SUBSCRIBE with 5,000 refused filters, and counts every one', async () => {
    const w = await world();
    const c = w.client as unknown as Client;
    for (let i = 0; i < 5000; i++) expect(w.live.authorizeSubscribe(c, sub(`vp/consented/pt-nobody-${i}/ecg`))).toBeNull();
    expect(w.live.status().subscribeRefusedBy).toEqual({ NO_GRANT: 5000 });
    const refusedLines = (): number => w.lines.filter((l) => l['event'] === 'research_subscribe_refused').length;
    expect(refusedLines()).toBe(5);
    await w.live.close(); // the window's summary is written at the latest at close
    const summary = w.lines.filter((l) => l['event'] === 'log_suppressed');
    expect(summary).toEqual([expect.objectContaining({ of: 'research_subscribe_refused', suppressed: 4995, byReason: { NO_GRANT: 4995 } })]);
  });
});

describe('live researcher transport: delivery, logged before it is sent', () => {
  it('delivers exactly the samples decide() allows, grouped by the grant that allows them, each covered by an entry written first, for random windows', async () => {
    const rng = Rng.for('live-unit', 'windows', 0);
    for (let round = 0; round < 40; round++) {
      const { view, live, client, events, entries } = await world();
      const start = T0 + Math.floor(rng.float() * 1000);
      for (let k = 0; k < 1 + Math.floor(rng.float() * 4); k++) {
        const a = start - 200 + Math.floor(rng.float() * 1400);
        view.add({
          dataFromMs: BigInt(a),
          dataToMs: BigInt(a + Math.floor(rng.float() * 600)),
          ...(rng.float() < 0.2 ? { revokedAtMs: 1n } : {}),
          ...(rng.float() < 0.2 ? { sensorMask: 1 << 1 } : {}),
        });
      }
      view.add({ dataFromMs: BigInt(T0 + 3_600_000), dataToMs: BigInt(T0 + 7_200_000) }); // keeps the subscription acceptable
      expect(live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/ecg`))).not.toBeNull();
      const a = ecgFrame(start, round + 1);
      view.decideCalls = 0;
      live.accepted(a);
      expect(view.decideCalls).toBeLessThanOrEqual(2 * view.grants.length + 1); // once per stretch between window edges
      expect(client.sent).toEqual([]); // nothing goes out before its entry
      await live.settled();
      const want = new Map<string, number[]>();
      for (let i = 0; i < 250; i++) {
        const t = Number(sampleTimeNs(a.frame, i) / 1_000_000n);
        const dd = view.decide(RESEARCHER, REF, ECG, t);
        if (dd.ok) want.set(dd.grantId.toString(), [...(want.get(dd.grantId.toString()) ?? []), t]);
      }
      const got = new Map<string, number[]>();
      for (const p of client.sent) {
        expect(live.forward(client as unknown as Client, p)).toBe(p);
        const m = JSON.parse(p.payload.toString()) as LiveMessage;
        expect(p.topic).toBe(`vp/consented/${PSEUDONYM}/ecg`);
        expect(m).toMatchObject({ patient: PSEUDONYM, metric: 'ecg', deviceId: a.frame.deviceId, frameSha256: a.sha256, seq: a.frame.seq.toString() });
        got.set(
          m.grantId,
          m.readings.map((r) => r.timeMs),
        );
      }
      expect(got).toEqual(want);
      // One entry per grant, each covering exactly what went out under it, written before the first delivery.
      const logged = entries();
      expect(new Map(logged.map((e) => [e.grantId.toString(), [e.count, e.fromMs, e.toMs]]))).toEqual(
        new Map([...want].map(([g, ts]) => [g, [ts.length, Math.floor(ts[0]!), Math.floor(ts[ts.length - 1]!)]])),
      );
      if (want.size > 0) expect(events.slice(0, 2)).toEqual([`logged ${want.size}`, 'delivery']);
      expect(live.status()).toMatchObject({ deliveries: client.sent.length, entries: want.size, awaitingLog: 0 });
    }
  });

  it('writes one entry per subscription and grant for everything prepared in one tick, in one group commit', async () => {
    const { view, live, client, entries, events } = await world();
    view.add({ dataFromMs: BigInt(T0), dataToMs: BigInt(T0 + 3_600_000) });
    live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/ecg`));
    live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/+`));
    for (let i = 0; i < 10; i++) live.accepted(ecgFrame(T0 + 1000 * (i + 1), i + 1));
    await live.settled();
    expect(events.filter((e) => e.startsWith('logged'))).toEqual(['logged 2']);
    expect(entries().map((e) => [e.count, e.fromMs, e.toMs, e.metrics])).toEqual([
      [2500, T0 + 1000, T0 + 10_996, ['ecg']],
      [2500, T0 + 1000, T0 + 10_996, ['ecg']],
    ]);
    expect(client.sent).toHaveLength(20);
  });

  it('drops before the log what the grant no longer allows, and lets through nothing not made for that client', async () => {
    const { view, live, client, entries } = await world();
    const g = view.add({ dataFromMs: BigInt(T0), dataToMs: BigInt(T0 + 3_600_000) });
    live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/+`));
    live.accepted(ecgFrame(T0 + 1000));
    live.accepted(ecgFrame(T0 + 2000, 2));
    g.revokedAtMs = 1n; // revoked between building and logging: the event has not come yet
    await live.settled();
    expect(client.sent).toEqual([]);
    expect(entries()).toEqual([]);
    expect(live.status()).toMatchObject({ deliveries: 0, dropped: 2, entries: 0 });

    g.revokedAtMs = 0n;
    live.accepted(ecgFrame(T0 + 3000, 3));
    await live.settled();
    expect(client.sent).toHaveLength(1);
    const made = client.sent[0]!;
    const other = { ...client, id: 'someone-else' };
    expect(live.forward(other as unknown as Client, made)).toBeNull(); // made for another client
    const forged = {
      cmd: 'publish',
      topic: `vp/consented/${PSEUDONYM}/ecg`,
      payload: Buffer.from(made.payload),
      qos: 0,
      retain: false,
      dup: false,
    } as unknown as AedesPublishPacket;
    expect(live.forward(client as unknown as Client, forged)).toBeNull(); // same bytes, not made here
    expect(live.forward(client as unknown as Client, made)).toBe(made);
    expect(live.forward(client as unknown as Client, made)).toBeNull(); // once
  });

  it('counts a logged message whose client left before the send as logged, not sent: the log over-states, never under-states', async () => {
    const { view, live, client, entries } = await world();
    view.add({ dataFromMs: BigInt(T0), dataToMs: BigInt(T0 + 3_600_000) });
    live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/ecg`));
    live.accepted(ecgFrame(T0 + 1000));
    await new Promise((r) => setImmediate(r)); // the batch is being appended
    expect(live.status().awaitingLog).toBe(1);
    client.closed = true;
    await live.settled();
    expect(entries()).toHaveLength(1);
    expect(client.sent).toEqual([]);
    expect(live.status()).toMatchObject({ loggedNotSent: 1, deliveries: 0 });
  });

  it('cuts on revocation: nothing more logged or sent, the batch already being logged goes out, then the notice, then the broker subscription removed', async () => {
    const { view, live, client, events, entries } = await world();
    const g = view.add({ dataFromMs: BigInt(T0), dataToMs: BigInt(T0 + 3_600_000) });
    expect(live.authorizeSubscribe(client as unknown as Client, sub(`vp/researcher/${RESEARCHER.toLowerCase()}/notices`))).not.toBeNull();
    live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/ecg`));
    live.accepted(ecgFrame(T0 + 1000));
    await new Promise((r) => setImmediate(r)); // its entry is being written
    expect(events).toEqual(['logged 1']);
    g.revokedAtMs = BigInt(NOW);
    view.emit('revoked', { grant: { ...g }, revokedAtMs: NOW, blockNumber: 9, cause: 'revoked' });
    live.accepted(ecgFrame(T0 + 2000, 2));
    await live.settled();
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual(['logged 1', 'delivery', 'notice subscription_ended', 'unsubscribed']);
    expect(entries()).toHaveLength(1);
    const notice = JSON.parse(client.sent[client.sent.length - 1]!.payload.toString()) as LiveNotice;
    expect(notice).toEqual({ event: 'subscription_ended', topic: `vp/consented/${PSEUDONYM}/ecg`, code: 'REVOKED', grantId: g.grantId.toString(), atMs: NOW });
    expect(live.forward(client as unknown as Client, client.sent[client.sent.length - 1]!)).not.toBeNull(); // notices pass, once
    expect(live.status()).toMatchObject({ subscriptions: 0, cut: 1 });
  });
});
