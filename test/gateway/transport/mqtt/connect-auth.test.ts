/**
 * The gateway's CONNECT decision (PROTOCOL.md §6.1): every connect vector through
 * ConnectAuthenticator, the class the broker uses, with the vector's gateway state (clock,
 * start time, enrolled and revoked devices, nonces already accepted); then the same
 * decision through the real embedded broker, with MQTT 3.1.1 clients, down to the CONNACK
 * return code.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeConnectPassword } from '../../../../firmware-proto/connect.js';
import { CONNECT_REASONS } from '../../../../firmware-proto/reasons.js';
import { deviceClientId, frameTopic } from '../../../../firmware-proto/topics.js';
import { CONNACK_REFUSAL_CODE, ConnectAuthenticator } from '../../../../gateway/transport/mqtt/connect-auth.js';
import { MqttTransport } from '../../../../gateway/transport/mqtt/broker.js';
import type { DeviceRecord } from '../../../../gateway/registry/registry.js';
import { FileRegistry } from '../../../../gateway/registry/file-registry.js';
import { Wal } from '../../../../gateway/spool/wal.js';
import { VerifyPool } from '../../../../gateway/verify/pool.js';
import { Quarantine } from '../../../../gateway/ingest/quarantine.js';
import { Metrics } from '../../../../gateway/status/metrics.js';
import { DeviceStates } from '../../../../gateway/ingest/device-state.js';
import { IngestPipeline } from '../../../../gateway/ingest/pipeline.js';
import { heartRate, testDevice, type TestDevice } from '../../../support/devices.js';
import { connectVectors, type ConnectVector } from '../../../support/connect-vectors.js';

const vectors = connectVectors;
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

/** The registry is not under test: a map with what the vector enrols is enough. */
function vectorRegistry(v: ConnectVector): { get(id: string): DeviceRecord | undefined } {
  const devices = new Map<string, DeviceRecord>(
    v.gateway.devices.map((d) => [
      d.deviceId,
      {
        deviceId: d.deviceId,
        publicKey: bytes(d.publicKey),
        patient: 'pt-vector',
        sensors: [],
        enrolledAtMs: 0,
        ...(d.revokedAtMs !== null ? { revokedAtMs: Number(d.revokedAtMs) } : {}),
      },
    ]),
  );
  return { get: (id) => devices.get(id) };
}

/** A gateway in the state the vector describes. Nonces it "accepted before" carry the gateway time, so none has expired. */
function vectorGateway(v: ConnectVector): ConnectAuthenticator {
  const nowMs = Number(v.gateway.nowMs);
  return new ConnectAuthenticator(vectorRegistry(v), {
    windowMs: v.gateway.windowMs,
    startedAtMs: Number(v.gateway.startedAtMs),
    now: () => nowMs,
    usedNonces: v.gateway.usedNonces.map((n) => [n, nowMs] as const),
  });
}

const checkVector = (auth: ConnectAuthenticator, v: ConnectVector) => auth.check(v.connect.clientId, v.connect.username, bytes(v.connect.password));

describe('connect vectors through ConnectAuthenticator (§6.1)', () => {
  it('cover every connect reason and some accepted tokens', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(30);
    const reasons = new Set(vectors.map(([, v]) => v.wantReason));
    for (const r of Object.keys(CONNECT_REASONS)) expect(reasons, r).toContain(r);
    expect(reasons).toContain(null);
  });

  it.each(vectors)('%s', (_name, v) => {
    const verdict = checkVector(vectorGateway(v), v);
    if (v.wantReason === null) {
      expect(verdict).toEqual({ ok: true, deviceId: v.connect.username });
      expect(v.connackReturnCode).toBe(0);
    } else {
      expect(verdict).toEqual({ ok: false, reason: v.wantReason });
      expect(CONNACK_REFUSAL_CODE[v.wantReason]).toBe(v.connackReturnCode);
    }
  });
});

describe('ConnectAuthenticator state', () => {
  const accepted = vectors.filter(([, v]) => v.wantReason === null);

  it.each(accepted)('accepts %s once, then refuses the same token as CONNECT_REPLAYED', (_name, v) => {
    const auth = vectorGateway(v);
    expect(checkVector(auth, v).ok).toBe(true);
    expect(auth.rememberedNonces).toBe(1);
    expect(checkVector(auth, v)).toEqual({ ok: false, reason: 'CONNECT_REPLAYED' });
  });

  it('remembers a nonce it accepted itself as the vectors state it (replayed-nonce), and keeps step 5 before step 6 (stale-and-replayed)', () => {
    for (const name of ['replayed-nonce', 'stale-and-replayed']) {
      const v = vectors.find(([n]) => n === name)![1];
      const t = v.token!;
      const now = Number(v.gateway.nowMs);
      // The vector's state, reached by accepting a fresh token with the same nonce instead of by construction.
      const auth = new ConnectAuthenticator(vectorRegistry(v), { windowMs: v.gateway.windowMs, startedAtMs: Number(v.gateway.startedAtMs), now: () => now });
      const earlier = makeConnectPassword(t.deviceId, t.clientId, bytes(t.secretKey), now - 1, bytes(t.nonce));
      expect(auth.check(t.clientId, t.deviceId, earlier)).toEqual({ ok: true, deviceId: t.deviceId });
      expect(checkVector(auth, v)).toEqual({ ok: false, reason: v.wantReason });
    }
  });

  it('refuses a CONNECT without user name or password as CONNECT_MALFORMED, never throwing', () => {
    const v = vectors.find(([n]) => n === 'valid')![1];
    const auth = vectorGateway(v);
    expect(auth.check(v.connect.clientId, undefined, bytes(v.connect.password))).toEqual({ ok: false, reason: 'CONNECT_MALFORMED' });
    expect(auth.check(v.connect.clientId, v.connect.username, undefined)).toEqual({ ok: false, reason: 'CONNECT_MALFORMED' });
    expect(auth.check('', v.connect.username, bytes(v.connect.password))).toEqual({ ok: false, reason: 'CONNECT_MALFORMED' });
    expect(auth.rememberedNonces).toBe(0);
  });

  it('forgets nonces only once their tokens are stale, so a pruned token is still refused', () => {
    const dev = testDevice('prune');
    const clientId = deviceClientId(dev.id);
    const rec: DeviceRecord = { deviceId: dev.id, publicKey: dev.keys.publicKey, patient: dev.patient, sensors: [], enrolledAtMs: 0 };
    let now = 1_800_000_000_000;
    const auth = new ConnectAuthenticator({ get: (id) => (id === dev.id ? rec : undefined) }, { windowMs: 30_000, startedAtMs: now, now: () => now });
    const nonce = (i: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, k) => (k < 4 ? (i >>> (8 * k)) & 0xff : k));
    const first = makeConnectPassword(dev.id, clientId, dev.keys.secretKey, now, nonce(0));
    expect(auth.check(clientId, dev.id, first).ok).toBe(true);
    // Fill the cache past the pruning threshold (1024) while the first token is still fresh.
    for (let i = 1; i < 1100; i++) expect(auth.check(clientId, dev.id, makeConnectPassword(dev.id, clientId, dev.keys.secretKey, now, nonce(i))).ok).toBe(true);
    expect(auth.check(clientId, dev.id, first)).toEqual({ ok: false, reason: 'CONNECT_REPLAYED' });
    // 30 s later the tokens are at the edge of the window: still remembered.
    now += 30_000;
    expect(auth.check(clientId, dev.id, makeConnectPassword(dev.id, clientId, dev.keys.secretKey, now, nonce(5000))).ok).toBe(true);
    expect(auth.rememberedNonces).toBe(1101);
    expect(auth.check(clientId, dev.id, first)).toEqual({ ok: false, reason: 'CONNECT_REPLAYED' });
    // One ms more: the old tokens are stale, and pruned at the next accepted token.
    now += 1;
    expect(auth.check(clientId, dev.id, makeConnectPassword(dev.id, clientId, dev.keys.secretKey, now, nonce(5001))).ok).toBe(true);
    expect(auth.rememberedNonces).toBe(2);
    expect(auth.check(clientId, dev.id, first)).toEqual({ ok: false, reason: 'CONNECT_STALE' });
  });
});

// ---------------------------------------------------------------- through the real broker

type Attempt = { client: MqttClient; connected: true } | { client: MqttClient; connected: false; returnCode: number };

/** One CONNECT with MQTT.js (3.1.1, no automatic reconnect); resolves on CONNACK either way. */
function attempt(port: number, clientId: string, username: string, password: Uint8Array): Promise<Attempt> {
  const client = connect({
    host: '127.0.0.1',
    port,
    protocolVersion: 4,
    clientId,
    username,
    password: Buffer.from(password),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  // Later errors (a takeover, the broker closing) are not what this attempt waits for.
  client.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve({ client, connected: true }));
    client.once('error', (e) => {
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'number') resolve({ client, connected: false, returnCode: code });
      else reject(e);
    });
    client.once('close', () => reject(new Error('connection closed before CONNACK')));
  });
}

// Each step waits for an MQTT event; a missing one fails fast instead of at the 120 s default.
describe('CONNECT through the embedded broker', { timeout: 15_000 }, () => {
  let dir: string;
  let wal: Wal;
  let registry: FileRegistry;
  let metrics: Metrics;
  let transport: MqttTransport;
  const clients: MqttClient[] = [];
  const alice: TestDevice = testDevice('alice');
  const bob: TestDevice = testDevice('bob');
  const carol: TestDevice = testDevice('carol');
  const stranger: TestDevice = testDevice('stranger');
  const token = (d: TestDevice): Uint8Array => makeConnectPassword(d.id, deviceClientId(d.id), d.keys.secretKey);
  const tryDevice = async (d: TestDevice, password = token(d)): Promise<Attempt> => {
    const a = await attempt(transport.port, deviceClientId(d.id), d.id, password);
    clients.push(a.client);
    return a;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vp-connect-'));
    wal = await Wal.open(join(dir, 'spool'));
    registry = new FileRegistry(join(dir, 'registry.json'));
    const res = await registry.enrol([alice.enrolment, bob.enrolment, carol.enrolment]);
    expect(res.enrolled).toHaveLength(3);
    await registry.revoke(carol.id, Date.now() - 60_000);
    metrics = new Metrics();
    const pipeline = new IngestPipeline({
      registry,
      verifier: new VerifyPool(0),
      wal,
      states: new DeviceStates(),
      quarantine: new Quarantine(join(dir, 'quarantine')),
      metrics,
    });
    transport = new MqttTransport({ host: '127.0.0.1', port: 0, pipeline, registry, metrics, log: pino({ level: 'silent' }) });
    await transport.start();
    expect(transport.port).toBeGreaterThan(0);
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await transport?.stop();
    await wal?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets a device in with a fresh token, and refuses the same password on a second connection with return code 4', async () => {
    const password = token(alice);
    const first = await tryDevice(alice, password);
    expect(first.connected).toBe(true);
    const second = await tryDevice(alice, password);
    expect(second).toMatchObject({ connected: false, returnCode: 4 });
    expect(metrics.connectRefusedBy.CONNECT_REPLAYED).toBe(1);
    // The refused attempt did not take over the session of the connected device.
    expect(first.client.connected).toBe(true);
    expect(transport.devices.has(alice.id)).toBe(true);
    // A new token is a new CONNECT: it connects (and takes over the session, as the client id is the same).
    expect((await tryDevice(alice)).connected).toBe(true);
  });

  it('refuses an unknown device with return code 5', async () => {
    expect(await tryDevice(stranger)).toMatchObject({ connected: false, returnCode: 5 });
    expect(metrics.connectRefusedBy.CONNECT_UNKNOWN_DEVICE).toBe(1);
  });

  it('refuses a revoked device with return code 5', async () => {
    expect(await tryDevice(carol)).toMatchObject({ connected: false, returnCode: 5 });
    expect(metrics.connectRefusedBy.CONNECT_REVOKED).toBe(1);
  });

  it('refuses a token signed by another key, and a malformed password, with return code 4', async () => {
    const forged = makeConnectPassword(bob.id, deviceClientId(bob.id), alice.keys.secretKey);
    expect(await tryDevice(bob, forged)).toMatchObject({ connected: false, returnCode: 4 });
    expect(await tryDevice(bob, token(bob).subarray(0, 87))).toMatchObject({ connected: false, returnCode: 4 });
    expect(metrics.connectRefusedBy.CONNECT_BAD_SIGNATURE).toBe(1);
    expect(metrics.connectRefusedBy.CONNECT_MALFORMED).toBe(1);
  });

  it('disconnects a connected device when it is revoked, and refuses it from then on', async () => {
    const a = await tryDevice(bob);
    expect(a.connected).toBe(true);
    // The broker learns of the connection a little after CONNACK (aedes' clientReady) and handles
    // packets only from then on, so a frame's PUBACK means the connection is registered.
    await a.client.publishAsync(frameTopic(bob.id), Buffer.from(bob.core.record(heartRate(Date.now() - 5_000, [70])).raw), { qos: 1 });
    expect(metrics.accepted).toBe(1);
    expect(transport.devices.has(bob.id)).toBe(true);
    const closed = new Promise<void>((res) => a.client.once('close', () => res()));
    await registry.revoke(bob.id, Date.now());
    await closed;
    expect(await tryDevice(bob)).toMatchObject({ connected: false, returnCode: 5 });
    expect(metrics.connectRefusedBy.CONNECT_REVOKED).toBe(2);
  });
});
