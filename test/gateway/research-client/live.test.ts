/**
 * The researcher's MQTT client (LiveSubscription, gateway/research-client/live.ts) against a
 * real aedes broker that plays the gateway's part of docs/research-api.md with the gateway's own
 * login check (ResearcherAuthenticator.verifyMqttLogin): the notice topic first, a refused
 * subscription with the notice saying why, a delivery, a reconnect with a fresh login (a login
 * is single use: a replayed one would be refused), the cut, and a login for another gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes, type Client } from 'aedes';
import { Wallet } from 'ethers';
import { ResearcherAuthenticator, decodeLogin, parseChallenge } from '../../../gateway/consent/auth.js';
import { LiveSubscription, noticeTopic, type Delivery, type LiveEvents, type Notice } from '../../../gateway/research-client/index.js';

const researcher = new Wallet('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');
const P = 'pt-live-1';
const HR = `vp/consented/${P}/heart_rate`;
const SPO2 = `vp/consented/${P}/spo2`;

let broker: Aedes;
let server: Server;
let url: string;
const auth = new ResearcherAuthenticator({ gatewayId: 'gw-live' });
/** Every CONNECT's verdict, in order, with its nonce. */
const logins: { ok: boolean; code?: string; nonce?: string }[] = [];
const connected: Client[] = [];
/** Topics the broker refuses, with the code its notice gives. */
const refusing = new Map<string, string>([[SPO2, 'SENSOR_NOT_GRANTED']]);

function publish(topic: string, doc: unknown): void {
  broker.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(doc)), qos: 0, retain: false, dup: false }, () => undefined);
}

function nextEvent<T extends unknown[]>(live: LiveSubscription, name: keyof LiveEvents): Promise<T> {
  return once(live, name) as Promise<T>;
}

beforeAll(async () => {
  broker = await Aedes.createBroker({
    authenticate: (_client, username, password, done) => {
      const r = auth.verifyMqttLogin(username, password);
      const login = password ? decodeLogin(password) : undefined;
      const nonce = login ? parseChallenge(login.text)?.nonce : undefined;
      logins.push({ ok: r.ok, ...(r.ok ? {} : { code: r.code }), ...(nonce ? { nonce } : {}) });
      if (r.ok) return done(null, true);
      done(Object.assign(new Error(r.code), { returnCode: r.code === 'AUTH_WRONG_GATEWAY' ? 5 : 4 } as const), false);
    },
    authorizeSubscribe: (_client, sub, cb) => cb(null, refusing.has(sub.topic) ? null : sub),
  });
  // As the gateway does: after the SUBACK, a notice saying why each refused subscription was refused.
  broker.on('subscribe', (subs) => {
    for (const s of subs)
      if ((s.qos as number) === 128)
        publish(noticeTopic(researcher.address), {
          event: 'subscription_refused',
          topic: s.topic,
          code: refusing.get(s.topic)!,
          grantId: '7',
          atMs: 1,
        } satisfies Notice);
  });
  broker.on('clientReady', (c) => connected.push(c));
  server = createServer(broker.handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((r) => broker.close(() => r()));
  await new Promise<void>((r) => server.close(() => r()));
});

describe('LiveSubscription', () => {
  it('subscribes, is told why a metric is refused, receives, reconnects with a fresh login, and ends on the cut', async () => {
    const live = new LiveSubscription({ brokerUrl: url, key: researcher, gatewayId: 'gw-live', pseudonym: P, metrics: ['heart_rate', 'spo2'] });
    const subscribed: string[] = [];
    const refused: [string, Notice | undefined][] = [];
    live.on('subscribed', (t) => subscribed.push(t));
    live.on('refused', (t, n) => refused.push([t, n]));
    const [accepted] = await nextEvent<[number]>(live, 'ready');
    expect(accepted).toBe(1);
    expect(subscribed).toEqual([HR]);
    expect(refused).toEqual([[SPO2, { event: 'subscription_refused', topic: SPO2, code: 'SENSOR_NOT_GRANTED', grantId: '7', atMs: 1 }]]);
    expect([...live.active]).toEqual([HR]);

    const d: Delivery = {
      grantId: '7',
      patient: P,
      metric: 'heart_rate',
      deviceId: '00112233aabbccdd',
      seq: '3',
      frameSha256: 'ab'.repeat(32),
      readings: [{ timeMs: 1, values: { value: 70 } }],
    };
    const got = nextEvent<[Delivery, string]>(live, 'delivery');
    publish(HR, d);
    expect(await got).toEqual([d, HR]);

    // The connection drops: the client comes back with a new login (the old one would be a replay) and resubscribes.
    const resubscribed = new Promise<void>((resolve) => {
      broker.on('subscribe', (subs, client) => {
        if (client && client !== connected[0] && subs.some((s) => s.topic === HR)) resolve();
      });
    });
    const lost = nextEvent(live, 'connectionLost');
    connected[0]!.close();
    await lost;
    await resubscribed;
    expect(logins).toHaveLength(2);
    expect(logins.every((l) => l.ok)).toBe(true);
    expect(logins[0]!.nonce).not.toBe(logins[1]!.nonce);

    const ended = nextEvent<[Notice, string[]]>(live, 'ended');
    const idle = nextEvent(live, 'idle');
    publish(noticeTopic(researcher.address), { event: 'subscription_ended', topic: HR, code: 'REVOKED', grantId: '7', atMs: 2 } satisfies Notice);
    expect(await ended).toEqual([{ event: 'subscription_ended', topic: HR, code: 'REVOKED', grantId: '7', atMs: 2 }, [HR]]);
    await idle;
    expect(live.active.size).toBe(0);
    await live.close();
  });

  it('takes a refused resubscription after a reconnect as the end of that subscription', async () => {
    const live = new LiveSubscription({ brokerUrl: url, key: researcher, gatewayId: 'gw-live', pseudonym: P, metrics: ['heart_rate'] });
    expect(await nextEvent<[number]>(live, 'ready')).toEqual([1]);
    const mine = connected[connected.length - 1]!;
    refusing.set(HR, 'EXPIRED'); // the grant ended while the connection was down
    const ended = nextEvent<[Notice, string[]]>(live, 'ended');
    const idle = nextEvent(live, 'idle');
    mine.close();
    const [notice, topics] = await ended;
    expect(notice).toMatchObject({ event: 'subscription_refused', topic: HR, code: 'EXPIRED' });
    expect(topics).toEqual([HR]);
    await idle;
    expect(live.active.size).toBe(0);
    await live.close();
    refusing.delete(HR);
  });

  it('reports a login the gateway refuses, and a broker it cannot reach', async () => {
    const before = logins.length;
    const wrong = new LiveSubscription({ brokerUrl: url, key: researcher, gatewayId: 'gw-elsewhere', pseudonym: P, metrics: ['heart_rate'] });
    const [rc] = await nextEvent<[number, string]>(wrong, 'loginRefused');
    expect(rc).toBe(5);
    expect(logins.slice(before)).toEqual([expect.objectContaining({ ok: false, code: 'AUTH_WRONG_GATEWAY' })]);
    await wrong.close();

    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const nowhere = new LiveSubscription({
      brokerUrl: `mqtt://127.0.0.1:${port}`,
      key: researcher,
      gatewayId: 'gw-live',
      pseudonym: P,
      metrics: ['heart_rate'],
    });
    const [e] = await nextEvent<[Error]>(nowhere, 'connectFailed');
    expect(e.message).toMatch(/ECONNREFUSED/);
    await nowhere.close();
  });
});
