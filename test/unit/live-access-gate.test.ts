/**
 * The gateway's live researcher transport (gateway/research/live.ts) without sockets: which
 * CONNECTs it claims from the devices, what a delivery carries when several grants with
 * different data windows cover a frame (exactly the samples decide() allows, by grant), the last
 * check at the instant of sending, and the order of a cut (access log first, then the notice).
 * The consent view is a small model of ConsentView's rules; the broker is played by the test.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { AedesPublishPacket, Client, Subscription } from 'aedes';
import { decodeFrame, sampleTimeNs } from '../../firmware-proto/frame.js';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import type { ConsentGrant, Decision, DecisionCode } from '../../gateway/consent/consent-view.js';
import type { LiveDelivery } from '../../gateway/consent/access-log.js';
import { sha256Hex } from '../../gateway/ingest/spool-record.js';
import { LiveResearchAccess, type LiveMessage, type LiveNotice } from '../../gateway/research/live.js';
import { Rng } from '../../device-sim/rng.js';
import { testDevice } from '../support/devices.js';

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
    const full: ConsentGrant = { grantId: BigInt(this.grants.length + 1), patientRef: REF, purposeRef: REF, researcher: RESEARCHER, sensorMask: 1 << ECG, expiresAtMs: BigInt(NOW + 3_600_000), grantedAtMs: 0n, revokedAtMs: 0n, block: 1, txHash: REF, ...g };
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
  sent: AedesPublishPacket[];
  publish(p: AedesPublishPacket): void;
  unsubscribe(): void;
}

function world(): { view: ModelView; live: LiveResearchAccess; client: FakeClient; delivered: LiveDelivery[]; events: string[] } {
  const view = new ModelView();
  const delivered: LiveDelivery[] = [];
  const events: string[] = [];
  const live = new LiveResearchAccess({
    view: view as never,
    auth: { verifyMqttLogin: () => ({ ok: true, researcher: RESEARCHER, challenge: {} as never }) },
    aggregator: {
      delivered: (d) => void delivered.push(d),
      endSubscription: (id) => {
        events.push(`endSubscription ${id}`);
        return Promise.resolve([]);
      },
    },
    log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    now: () => view.now,
  });
  const client: FakeClient = {
    id: 'researcher-1',
    closed: false,
    sent: [],
    publish(p) {
      this.sent.push(p);
      const body = JSON.parse(p.payload.toString()) as { event?: string };
      if (body.event) events.push(`notice ${body.event}`);
    },
    unsubscribe() {
      events.push('unsubscribed');
    },
  };
  expect(live.authenticate(client as unknown as Client, RESEARCHER, Buffer.from('x'))).toEqual({ ok: true, researcher: RESEARCHER });
  client.vpResearcher = RESEARCHER;
  live.ready(client as unknown as Client);
  return { view, live, client, delivered, events };
}

const sub = (topic: string): Subscription => ({ topic, qos: 0 }) as Subscription;

/** An ECG frame of 250 samples at 4 ms from `startMs`, accepted (over BLE, as it happens). */
function ecgFrame(startMs: number, seq = 1): Parameters<LiveResearchAccess['accepted']>[0] {
  const d = testDevice(`live-unit-${seq}`, PSEUDONYM);
  const { raw } = d.core.record({ timestampMs: BigInt(startMs), sensor: ECG, scale: -3, intervalUs: 4000, samples: Int32Array.from({ length: 250 }, (_, i) => (i % 40) - 20) });
  return { lsn: BigInt(seq), receivedAtMs: NOW, transport: 'ble', patient: PSEUDONYM, sha256: sha256Hex(raw), frame: decodeFrame(raw) };
}

describe('live researcher transport (the gateway side)', () => {
  it('tells researchers from devices by their CONNECT, and keeps device client ids for devices', () => {
    const { live } = world();
    const d = testDevice('live-unit-device');
    expect(live.claims(d.id, makeConnectPassword(d.id, `vp-dev-${d.id}`, d.keys.secretKey))).toBe(false);
    expect(live.claims(undefined, makeConnectPassword(d.id, `vp-dev-${d.id}`, d.keys.secretKey))).toBe(false);
    expect(live.claims('', undefined)).toBe(false);
    expect(live.claims(RESEARCHER, Buffer.from('anything'))).toBe(true);
    expect(live.claims('', Buffer.from(`${Buffer.from('VitalProof researcher login\nx').toString('base64url')}.0x${'11'.repeat(65)}`))).toBe(true);
    expect(live.authenticate({ id: `vp-dev-${d.id}` } as Client, RESEARCHER, Buffer.from('x'))).toEqual({ ok: false, reason: 'CLIENT_ID_RESERVED', returnCode: 2 });
  });

  it('delivers exactly the samples decide() allows, grouped by the grant that allows them, for random windows', () => {
    const rng = Rng.for('live-unit', 'windows', 0);
    for (let round = 0; round < 40; round++) {
      const { view, live, client, delivered } = world();
      const start = T0 + Math.floor(rng.float() * 1000);
      for (let k = 0; k < 1 + Math.floor(rng.float() * 4); k++) {
        const a = start - 200 + Math.floor(rng.float() * 1400);
        view.add({ dataFromMs: BigInt(a), dataToMs: BigInt(a + Math.floor(rng.float() * 600)), ...(rng.float() < 0.2 ? { revokedAtMs: 1n } : {}), ...(rng.float() < 0.2 ? { sensorMask: 1 << 1 } : {}) });
      }
      view.add({ dataFromMs: BigInt(T0 + 3_600_000), dataToMs: BigInt(T0 + 7_200_000) }); // keeps the subscription acceptable
      expect(live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/ecg`))).not.toBeNull();
      const a = ecgFrame(start, round + 1);
      view.decideCalls = 0;
      live.accepted(a);
      expect(view.decideCalls).toBeLessThanOrEqual(2 * view.grants.length + 1); // once per stretch between window edges
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
        got.set(m.grantId, m.readings.map((r) => r.timeMs));
      }
      expect(got).toEqual(want);
      expect(delivered.reduce((n, d) => n + d.count, 0)).toBe([...want.values()].reduce((n, l) => n + l.length, 0));
    }
  });

  it('drops at the last check what the grant no longer allows, and anything not made for that client', () => {
    const { view, live, client, delivered } = world();
    const g = view.add({ dataFromMs: BigInt(T0), dataToMs: BigInt(T0 + 3_600_000) });
    live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/+`));
    live.accepted(ecgFrame(T0 + 1000));
    live.accepted(ecgFrame(T0 + 2000, 2));
    expect(client.sent).toHaveLength(2);
    const other = { ...client, id: 'someone-else' };
    expect(live.forward(other as unknown as Client, client.sent[0]!)).toBeNull(); // made for another client
    g.revokedAtMs = 1n; // revoked between building and sending: the event has not come yet
    expect(live.forward(client as unknown as Client, client.sent[1]!)).toBeNull();
    expect(delivered).toEqual([]);
    const forged = { cmd: 'publish', topic: `vp/consented/${PSEUDONYM}/ecg`, payload: Buffer.from(client.sent[1]!.payload), qos: 0, retain: false, dup: false } as unknown as AedesPublishPacket;
    expect(live.forward(client as unknown as Client, forged)).toBeNull(); // same bytes, not made here
    expect(live.status()).toMatchObject({ deliveries: 0, dropped: 2 });
  });

  it('cuts on revocation: inactive at once, the live aggregate logged, then the notice, then the broker subscription removed', async () => {
    const { view, live, client, events } = world();
    const g = view.add({ dataFromMs: BigInt(T0), dataToMs: BigInt(T0 + 3_600_000) });
    expect(live.authorizeSubscribe(client as unknown as Client, sub(`vp/researcher/${RESEARCHER.toLowerCase()}/notices`))).not.toBeNull();
    live.authorizeSubscribe(client as unknown as Client, sub(`vp/consented/${PSEUDONYM}/ecg`));
    live.accepted(ecgFrame(T0 + 1000));
    const built = client.sent.length;
    g.revokedAtMs = BigInt(NOW);
    view.emit('revoked', { grant: { ...g }, revokedAtMs: NOW, blockNumber: 9, cause: 'revoked' });
    live.accepted(ecgFrame(T0 + 2000, 2));
    expect(client.sent.length).toBe(built); // nothing built after the cut
    expect(live.forward(client as unknown as Client, client.sent[0]!)).toBeNull(); // nor sent
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([`endSubscription ${client.id}#1`, 'notice subscription_ended', 'unsubscribed']);
    const notice = JSON.parse(client.sent[client.sent.length - 1]!.payload.toString()) as LiveNotice;
    expect(notice).toEqual({ event: 'subscription_ended', topic: `vp/consented/${PSEUDONYM}/ecg`, code: 'REVOKED', grantId: g.grantId.toString(), atMs: NOW });
    expect(live.forward(client as unknown as Client, client.sent[client.sent.length - 1]!)).not.toBeNull(); // notices pass, once
    expect(live.status()).toMatchObject({ subscriptions: 0, cut: 1 });
  });
});
