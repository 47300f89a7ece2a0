/**
 * Consent-governed sharing with researchers, end to end: the real gateway process (embedded
 * anvil chain with ConsentRegistry, a real influxd, BLE through the simulated BlueZ on a private
 * bus), simulated wearables streaming in real time over MQTT and over BLE, patients granting
 * and revoking with their own keys, and researchers that are nothing but an Ethereum key: they
 * log in by signing (EIP-191), subscribe over MQTT (mqtt.js) and export over HTTP.
 *
 * Covered: logins by key, replays refused; subscriptions refused with SUBACK 0x80 and a notice
 * naming why (no grant, another metric, another data window, a topic outside the consented
 * tree), HTTP 403 with the same codes; live deliveries of only the granted metrics and only the
 * samples inside the data window, each exactly the samples of its signed frame; a subscription
 * cut at its grant's expiry and within 2 s of the revoking block; frames arriving over BLE
 * delivered like MQTT ones; historical exports as JSON, NDJSON and CSV, page by page, with frame
 * proofs that verify against the chain; every delivery and every export page in the patient's
 * disclosure report, each with an access proof that verifies; and not one pseudonym (nor its
 * plain SHA-256 or keccak-256) anywhere on chain: every log, every storage slot, every input.
 *
 * Nothing waits on a timer for synchronisation: every wait is for a message, a notice, a log
 * line or a status, with a deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { keccak256, toUtf8Bytes, Wallet, type HDNodeWallet, type JsonRpcProvider, type TransactionReceipt } from 'ethers';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { decodeFrame, sampleTimeNs, sampleValue } from '../../firmware-proto/frame.js';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { deviceClientId } from '../../firmware-proto/topics.js';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetReport } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { consentRegistryAt, consentRegistryInterface, sensorMaskOf } from '../../gateway/chain/contracts.js';
import { chainProvider, EMBEDDED_ACCOUNTS } from '../../gateway/chain/runtime.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { encodeLogin, selfIssuedChallenge } from '../../gateway/consent/auth.js';
import type { DisclosureReport } from '../../gateway/consent/disclosure.js';
import { verifyAccessBundle } from '../../gateway/proof/access-verify.js';
import type { ProofBundle } from '../../gateway/proof/bundle.js';
import { verifyBundle, VerifyCache } from '../../gateway/proof/verify.js';
import { sha256Hex } from '../../gateway/ingest/spool-record.js';
import type { LiveMessage, LiveNotice } from '../../gateway/research/live.js';
import type { FrameJson } from '../../gateway/research/readings.js';
import type { GrantJson } from '../../gateway/research/http.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import type { StoredFrame } from '../../gateway/storage/schema.js';
import { useInfluxd } from '../support/influxd.js';
import { usePrivateBus } from '../support/dbus.js';
import { CLI, GatewayProcess, type LogLine } from '../support/gateway-process.js';
import { anchoredAll, embeddedChainUrl } from '../support/anchored.js';

const influx = useInfluxd();
const bus = usePrivateBus();
const GATEWAY_ID = 'gw-consent';
/** The patient whose wearable streams over MQTT in real time: heart rate and SpO2 every 5 s, ECG every second. */
const LIVE = { seed: 'consent-live', sensors: 'heart_rate,spo2,ecg' } as const;
/** The patient whose wearable sends over BLE. */
const BLE = { seed: 'consent-ble', sensors: 'spo2', frames: 6 } as const;
/** Another patient, enrolled, never granting anything. */
const QUIET = { seed: 'consent-quiet', sensors: 'heart_rate' } as const;
const SECOND = 1000;
const HOUR = 3_600_000;

const liveDevice: SimDevice = fleetDevices(LIVE.seed, 1, LIVE.sensors)[0]!;
const bleDevice: SimDevice = fleetDevices(BLE.seed, 1, BLE.sensors)[0]!;
const quietDevice: SimDevice = fleetDevices(QUIET.seed, 1, QUIET.sensors)[0]!;
const P1 = liveDevice.patient;
const P2 = bleDevice.patient;
const PSEUDONYMS = [P1, P2, quietDevice.patient];

/** Researchers are keys and nothing else: no funds, no account on chain. */
const researcher = (name: string): Wallet => new Wallet(keccak256(toUtf8Bytes(`vitalproof consent e2e researcher ${name}`)));
const R = {
  /** G1: ECG and heart rate of P1 in a short data window; G5: SpO2 of P2 (BLE). */
  window: researcher('window'),
  /** G2: ECG of P1, revoked mid-stream. */
  revoked: researcher('revoked'),
  /** G3: ECG of P1, expiring a few seconds in. */
  expiring: researcher('expiring'),
  /** No grant at all. */
  none: researcher('none'),
  /** G4: ECG of P1 recorded an hour ago or more: another data window. */
  past: researcher('past'),
  /** G6: ECG of P1, all along: the control stream every cut is measured against. */
  control: researcher('control'),
};

let dir: string;
let dataDir: string;
let gw: GatewayProcess;
let sink: InfluxSink;
let provider: JsonRpcProvider;
let record: DeploymentRecord;
let patient1: HDNodeWallet;
let patient2: HDNodeWallet;
const liveStop = new AbortController();
let liveRun: Promise<FleetReport>;
const grants: Record<'G1' | 'G2' | 'G3' | 'G4' | 'G5' | 'G6', { id: bigint; fromMs: number; toMs: number; expiresAtMs: number; block: number }> = {} as never;
const clients: Record<keyof typeof R, Researcher> = {} as never;
/** What the researchers exported, for the disclosure report: pages with readings, and their readings. */
const exported: { pages: number; readings: number }[] = [];

// ---- a researcher client: mqtt.js with the signed login as password ---------------------------

interface Received<T> {
  topic: string;
  body: T;
  atMs: number;
}

class Researcher {
  readonly messages: Received<LiveMessage>[] = [];
  readonly notices: Received<LiveNotice>[] = [];
  private waiters: (() => void)[] = [];

  private constructor(
    readonly wallet: Wallet,
    readonly client: MqttClient,
  ) {
    client.on('message', (topic, payload) => {
      const atMs = Date.now();
      const body = JSON.parse(payload.toString('utf8')) as unknown;
      if (topic.endsWith('/notices')) this.notices.push({ topic, body: body as LiveNotice, atMs });
      else this.messages.push({ topic, body: body as LiveMessage, atMs });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async connect(wallet: Wallet): Promise<Researcher> {
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, await researcherLogin(wallet));
    const r = new Researcher(wallet, client);
    await client.subscribeAsync(noticeTopic(wallet.address), { qos: 1 });
    return r;
  }

  /** SUBSCRIBE: resolves with the granted QoS, or 128 for a refusal (SUBACK 0x80). */
  subscribe(topic: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.client.subscribe(topic, { qos: 0 }, (err, granted, packet) => {
        const codes = (packet as { granted?: number[] } | undefined)?.granted ?? (err as (Error & { packet?: { granted?: number[] } }) | null)?.packet?.granted;
        if (err && codes?.[0] === 128) resolve(128);
        else if (err) reject(err);
        else resolve(granted?.[0]?.qos ?? -1);
      });
    });
  }

  /** Waits for a received message or notice that satisfies `pred`, with a deadline. */
  async waitFor<T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (researcher ${this.wallet.address})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  notice(pred: (n: LiveNotice) => boolean, timeoutMs: number, what: string): Promise<Received<LiveNotice>> {
    return this.waitFor(() => this.notices.find((n) => pred(n.body)), timeoutMs, what);
  }

  /** Readings received under `grantId` (and on topics starting with `prefix`). */
  readings(grantId: bigint, prefix = ''): number {
    return this.messages.filter((m) => m.body.grantId === grantId.toString() && m.topic.startsWith(prefix)).reduce((n, m) => n + m.body.readings.length, 0);
  }
}

const noticeTopic = (address: string): string => `vp/researcher/${address.toLowerCase()}/notices`;
const topicOf = (pseudonym: string, metric: string): string => `vp/consented/${pseudonym}/${metric}`;
const lastReadingMs = (m: LiveMessage): number => m.readings[m.readings.length - 1]!.timeMs;

/** MQTT CONNECT options: the address as username, the self-issued signed challenge as password. */
async function researcherLogin(wallet: Wallet, gatewayId = GATEWAY_ID): Promise<IClientOptions> {
  const text = selfIssuedChallenge(gatewayId, wallet.address);
  return {
    username: wallet.address,
    password: encodeLogin({ text, signature: await wallet.signMessage(text) }),
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    clean: true,
  };
}

/** The CONNACK return code of a refused CONNECT. */
async function connackRefusal(opts: IClientOptions): Promise<number> {
  try {
    const c = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, opts);
    await c.endAsync();
    return 0;
  } catch (e) {
    return (e as Error & { code?: number }).code ?? -1;
  }
}

// ---- HTTP ---------------------------------------------------------------------------------------

const url = (path: string): string => `http://127.0.0.1:${gw.httpPort}${path}`;

async function post(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url(path), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function httpLogin(wallet: Wallet | HDNodeWallet): Promise<string> {
  const ch = await post('/auth/challenge', { address: wallet.address, purpose: 'http' });
  expect(ch.status).toBe(200);
  const text = ch.body['challenge'] as string;
  const login = await post('/auth/login', { challenge: text, signature: await wallet.signMessage(text) });
  expect(login.status, JSON.stringify(login.body)).toBe(200);
  expect(login.body['address']).toBe(wallet.address);
  return login.body['token'] as string;
}

async function get(path: string, token?: string): Promise<Response> {
  return fetch(url(path), { headers: token ? { authorization: `Bearer ${token}` } : {} });
}

async function getJson<T>(path: string, token?: string): Promise<{ status: number; body: T }> {
  const res = await get(path, token);
  return { status: res.status, body: (await res.json()) as T };
}

// ---- chain --------------------------------------------------------------------------------------

async function mined(tx: Promise<{ wait(): Promise<TransactionReceipt | null> }>): Promise<TransactionReceipt> {
  const r = await (await tx).wait();
  if (!r || r.status !== 1) throw new Error('transaction failed');
  return r;
}

/** patientRef of a pseudonym, as the enrolment wrote it to the registry's directory. */
function patientRefOf(pseudonym: string): string {
  const dirDoc = JSON.parse(readFileSync(join(dataDir, 'registry', 'directory.json'), 'utf8')) as {
    devices: Record<string, { patient: string; patientRef: string }>;
  };
  const e = Object.values(dirDoc.devices).find((d) => d.patient === pseudonym);
  if (!e) throw new Error(`no directory entry for ${pseudonym}`);
  return e.patientRef;
}

async function grant(
  patient: HDNodeWallet,
  pseudonym: string,
  to: Wallet,
  metrics: string[],
  fromMs: number,
  toMs: number,
  expiresAtMs: number,
): Promise<{ id: bigint; fromMs: number; toMs: number; expiresAtMs: number; block: number }> {
  const consent = consentRegistryAt(record.consentRegistry.address, patient);
  const receipt = await mined(
    consent.grant(
      patientRefOf(pseudonym),
      to.address,
      sensorMaskOf(metrics.map((m) => sensorByName(m).code)),
      fromMs,
      toMs,
      expiresAtMs,
      keccak256(toUtf8Bytes(`e2e purpose ${to.address}`)),
    ),
  );
  const ev = receipt.logs.map((l) => consentRegistryInterface.parseLog(l)).find((p) => p?.name === 'ConsentGranted');
  return { id: ev!.args[0] as bigint, fromMs, toMs, expiresAtMs, block: receipt.blockNumber };
}

// ---- set-up: enrol, run, bind patients, grant, connect researchers ------------------------------

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-consent-'));
  dataDir = join(dir, 'gw');
  writeEnrolmentFile(join(dir, 'fleet.json'), [liveDevice, bleDevice, quietDevice]);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', dataDir]);
  gw = await GatewayProcess.start(
    {
      dataDir,
      gatewayId: GATEWAY_ID,
      'influx.url': influx.handle.url,
      'mqtt.port': 0,
      'http.port': 0,
      'batch.intervalMs': 500,
      'accessLog.intervalMs': 500,
      'ble.mode': 'on',
      'ble.scanIntervalMs': 200,
      'ble.reconnectMinMs': 100,
      'ble.reconnectMaxMs': 1000,
      'ble.connectTimeoutMs': 3000,
    },
    { DBUS_SYSTEM_BUS_ADDRESS: bus.address },
  );
  sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: GATEWAY_ID });
  record = JSON.parse(readFileSync(join(dataDir, 'chain', 'deployment.json'), 'utf8')) as DeploymentRecord;
  provider = chainProvider(embeddedChainUrl(dataDir), record.chainId, 100);
  // The wearable streams in real time from now on; nobody may receive anything yet.
  liveRun = runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: 1,
    seed: LIVE.seed,
    sensors: LIVE.sensors,
    durationMs: 600_000,
    signal: liveStop.signal,
    stateDir: join(dir, 'sim-live'),
    drainTimeoutMs: 30_000,
  });

  // The hospital admin binds each patient's own key to their patientRef (never the pseudonym).
  patient1 = devWallet(3, provider);
  patient2 = devWallet(4, provider);
  const admin = consentRegistryAt(record.consentRegistry.address, devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin, provider));
  await mined(admin.bindPatient(patientRefOf(P1), patient1.address));
  await mined(admin.bindPatient(patientRefOf(P2), patient2.address));

  const t = Date.now();
  const far = t + HOUR;
  grants.G1 = await grant(patient1, P1, R.window, ['ecg', 'heart_rate'], t + 8 * SECOND, t + 16 * SECOND, far);
  grants.G2 = await grant(patient1, P1, R.revoked, ['ecg'], t - HOUR, t + HOUR, far);
  grants.G3 = await grant(patient1, P1, R.expiring, ['ecg'], t - HOUR, t + HOUR, t + 16 * SECOND);
  grants.G4 = await grant(patient1, P1, R.past, ['ecg'], t - 2 * HOUR, t - HOUR, far);
  grants.G6 = await grant(patient1, P1, R.control, ['ecg'], t - HOUR, t + HOUR, far);
  grants.G5 = await grant(patient2, P2, R.window, ['spo2'], t - HOUR, t + HOUR, far);
  const last = Math.max(...Object.values(grants).map((g) => g.block));
  await gw.until((s) => s.consent.following && (s.consent.lastBlock ?? 0) >= last && s.consent.grants === 6, 10_000, 'the gateway sees the six grants');

  for (const [name, wallet] of Object.entries(R) as [keyof typeof R, Wallet][]) clients[name] = await Researcher.connect(wallet);
  expect(await clients.window.subscribe(topicOf(P1, '+'))).toBe(0);
  expect(await clients.window.subscribe(topicOf(P2, 'spo2'))).toBe(0);
  expect(await clients.revoked.subscribe(topicOf(P1, 'ecg'))).toBe(0);
  expect(await clients.expiring.subscribe(topicOf(P1, 'ecg'))).toBe(0);
  expect(await clients.control.subscribe(topicOf(P1, 'ecg'))).toBe(0);
}, 180_000);

afterAll(async () => {
  liveStop.abort();
  await liveRun?.catch(() => undefined);
  for (const c of Object.values(clients)) await c?.client.endAsync().catch(() => undefined);
  provider?.destroy();
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// ---- the tests -----------------------------------------------------------------------------------

describe('researcher login', () => {
  it('accepts a signed login once: a replayed one is refused over MQTT (CONNACK 4) and over HTTP (401 AUTH_REPLAYED)', async () => {
    const w = researcher('login');
    const opts = await researcherLogin(w);
    const first = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, opts);
    expect(first.connected).toBe(true);
    await first.endAsync();
    expect(await connackRefusal(opts)).toBe(4);
    // Another gateway's challenge: valid signature, not for here (not authorised); a signature by another key.
    expect(await connackRefusal(await researcherLogin(w, 'gw-elsewhere'))).toBe(5);
    const text = selfIssuedChallenge(GATEWAY_ID, w.address);
    expect(await connackRefusal({ ...opts, password: encodeLogin({ text, signature: await R.none.signMessage(text) }) })).toBe(4);

    const ch = await post('/auth/challenge', { address: w.address, purpose: 'http' });
    const body = { challenge: ch.body['challenge'], signature: await w.signMessage(ch.body['challenge'] as string) };
    expect((await post('/auth/login', body)).status).toBe(200);
    const again = await post('/auth/login', body);
    expect(again.status).toBe(401);
    expect(again.body['error']).toBe('AUTH_REPLAYED');
    // A self-issued (MQTT) challenge is no HTTP login.
    expect((await post('/auth/login', { challenge: text, signature: await w.signMessage(text) })).body['error']).toBe('AUTH_WRONG_PURPOSE');
    expect((await getJson<{ error: string }>('/research/grants')).body.error).toBe('AUTH_UNKNOWN_SESSION');

    const s = await gw.status();
    expect(s.consent.loginRefusedBy['AUTH_REPLAYED']).toBeGreaterThanOrEqual(1);
    expect(s.consent.loginRefusedBy['AUTH_WRONG_GATEWAY']).toBeGreaterThanOrEqual(1);
    expect(s.consent.loginRefusedBy['AUTH_BAD_SIGNATURE']).toBeGreaterThanOrEqual(1);
    expect(s.mqtt.devicesConnected).toBeGreaterThanOrEqual(1); // the wearable streams on, beside the researchers
  });
});

describe('live access', () => {
  it('refuses what no grant covers: SUBACK 0x80 and a notice with the reason, HTTP 403 with the same code', async () => {
    const refused = async (who: Researcher, topic: string, code: string): Promise<LiveNotice> => {
      expect(await who.subscribe(topic), topic).toBe(128);
      const n = (await who.notice((x) => x.event === 'subscription_refused' && x.topic === topic, 5000, `the refusal notice of ${topic}`)).body;
      expect(n.code, topic).toBe(code);
      return n;
    };
    const none = clients.none;
    const notice = await refused(none, topicOf(P1, 'ecg'), 'NO_GRANT');
    expect(notice).toMatchObject({ event: 'subscription_refused', topic: topicOf(P1, 'ecg'), code: 'NO_GRANT' });
    expect((await refused(none, topicOf('pt-nobody-at-all', 'ecg'), 'NO_GRANT')).code).toBe('NO_GRANT'); // unknown patients look the same
    expect((await refused(clients.window, topicOf(P1, 'spo2'), 'SENSOR_NOT_GRANTED')).code).toBe('SENSOR_NOT_GRANTED');
    const past = await refused(clients.past, topicOf(P1, 'ecg'), 'OUTSIDE_DATA_WINDOW');
    expect(past).toMatchObject({ code: 'OUTSIDE_DATA_WINDOW', grantId: grants.G4.id.toString() });
    expect((await refused(clients.past, topicOf(P1, '+'), 'OUTSIDE_DATA_WINDOW')).code).toBe('OUTSIDE_DATA_WINDOW');
    // Only the consented tree and the client's own notices: no wildcard across patients, no device topics, no one else's notices.
    for (const t of ['vp/consented/+/ecg', 'vp/consented/#', '#', `vp/v1/dev/${liveDevice.deviceId}/frames`, noticeTopic(R.control.address)]) {
      expect((await refused(none, t, 'TOPIC_NOT_ALLOWED')).code, t).toBe('TOPIC_NOT_ALLOWED');
    }

    const tokens = { none: await httpLogin(R.none), window: await httpLogin(R.window), past: await httpLogin(R.past) };
    expect((await getJson<{ grants: GrantJson[] }>('/research/grants', tokens.none)).body.grants).toEqual([]);
    const notGrantee = await getJson<{ error: string }>(`/research/grants/${grants.G1.id}/readings`, tokens.none);
    expect([notGrantee.status, notGrantee.body.error]).toEqual([403, 'NOT_GRANTEE']);
    const unknown = await getJson<{ error: string }>('/research/grants/987654/readings', tokens.none);
    expect([unknown.status, unknown.body.error]).toEqual([404, 'UNKNOWN_GRANT']);
    const metric = await getJson<{ error: string }>(`/research/grants/${grants.G1.id}/readings?metric=spo2`, tokens.window);
    expect([metric.status, metric.body.error]).toEqual([403, 'SENSOR_NOT_GRANTED']);
    const window = await getJson<{ error: string }>(`/research/grants/${grants.G4.id}/readings?from=${Date.now() - 600_000}&to=${Date.now()}`, tokens.past);
    expect([window.status, window.body.error]).toEqual([403, 'OUTSIDE_DATA_WINDOW']);
    const mine = (await getJson<{ grants: GrantJson[] }>('/research/grants', tokens.window)).body.grants;
    expect(mine.map((g) => g.grantId)).toEqual([grants.G5.id.toString(), grants.G1.id.toString()]); // newest first
    expect(mine[1]).toMatchObject({
      patient: P1,
      researcher: R.window.address,
      metrics: ['heart_rate', 'ecg'],
      dataFromMs: grants.G1.fromMs,
      dataToMs: grants.G1.toMs,
      revokedAtMs: null,
      status: 'OK',
    });

    const s = await gw.status();
    expect(s.consent.subscribeRefusedBy).toMatchObject({ NO_GRANT: 2, SENSOR_NOT_GRANTED: 1, OUTSIDE_DATA_WINDOW: 2, TOPIC_NOT_ALLOWED: 5 });
    expect(none.messages).toEqual([]);
    expect(clients.past.messages).toEqual([]);
  });

  it('forwards nothing to a researcher that the gateway did not make for it: a device publishing on researcher topics reaches nobody', async () => {
    const id = quietDevice.deviceId;
    const clientId = deviceClientId(id);
    const rejectedBefore = (await gw.status()).frames.rejected;
    const device = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, {
      clientId,
      username: id,
      password: Buffer.from(makeConnectPassword(id, clientId, quietDevice.keys.secretKey)),
      protocolVersion: 4,
      reconnectPeriod: 0,
      clean: true,
    });
    const forged = JSON.stringify({
      grantId: grants.G6.id.toString(),
      patient: P1,
      metric: 'ecg',
      deviceId: id,
      seq: '1',
      frameSha256: '00'.repeat(32),
      readings: [{ timeMs: Date.now(), values: { value: 4.2 } }],
    });
    const notice = JSON.stringify({ event: 'subscription_ended', topic: topicOf(P1, 'ecg'), code: 'REVOKED', atMs: Date.now() });
    await device.publishAsync(topicOf(P1, 'ecg'), forged, { qos: 1 });
    await device.publishAsync(noticeTopic(R.control.address), notice, { qos: 1 });
    await device.endAsync();
    // The control researcher's next genuine delivery comes after anything the broker routed for those publishes.
    const published = Date.now();
    await clients.control.waitFor(() => clients.control.messages.find((m) => m.atMs > published), 10_000, 'a genuine delivery after the forged publishes');
    for (const c of Object.values(clients)) {
      expect(c.messages.some((m) => m.body.deviceId === id)).toBe(false);
      expect(c.notices.some((n) => n.body.code === 'REVOKED')).toBe(false);
    }
    // The gateway took both for (malformed) frames, and refused them: nothing else happens to a device's publish.
    expect((await gw.status()).frames.rejected - rejectedBefore).toBe(2);
  });

  it('delivers only the granted metrics, only the samples inside the data window, each with its frame reference, exactly as signed', async () => {
    const g = grants.G1;
    // Every frame that touches the window has arrived once the control stream is 6 s past its end (heart-rate frames are 5 s long).
    await clients.control.waitFor(
      () => clients.control.messages.find((m) => lastReadingMs(m.body) >= g.toMs + 6 * SECOND),
      40_000,
      'the control stream past the window',
    );
    const mine = clients.window.messages.filter((m) => m.topic.startsWith(`vp/consented/${P1}/`));
    expect(mine.length).toBeGreaterThan(5);
    expect(new Set(mine.map((m) => m.body.metric))).toEqual(new Set(['ecg', 'heart_rate']));
    for (const m of mine) {
      expect(m.topic).toBe(topicOf(P1, m.body.metric));
      expect(m.body).toMatchObject({ grantId: g.id.toString(), patient: P1, deviceId: liveDevice.deviceId });
      for (const r of m.body.readings) expect(r.timeMs >= g.fromMs && r.timeMs <= g.toMs, `reading at ${r.timeMs} inside [${g.fromMs}, ${g.toMs}]`).toBe(true);
    }
    // Exactly the samples of each signed frame that lie in the window: none more, none fewer, and every such frame.
    const maxSeq = mine.reduce((m, x) => (BigInt(x.body.seq) > m ? BigInt(x.body.seq) : m), 0n);
    const stored = await storedFrames(liveDevice.deviceId, maxSeq);
    const expected = stored
      .map((f) => ({ f, frame: decodeFrame(f.raw) }))
      .filter(({ frame }) => ['ecg', 'heart_rate'].includes(frame.spec.name))
      .map(({ f, frame }) => ({ f, frame, inside: samplesIn(frame, g.fromMs, g.toMs) }))
      .filter((x) => x.inside.length > 0);
    expect(mine.map((m) => m.body.seq).sort()).toEqual(expected.map((x) => x.f.seq.toString()).sort());
    let cut = 0;
    for (const x of expected) {
      const m = mine.find((y) => y.body.seq === x.f.seq.toString())!;
      expect(m.body.frameSha256).toBe(sha256Hex(x.f.raw));
      expect(m.body.readings).toEqual(x.inside);
      if (x.inside.length < x.frame.count) cut++;
    }
    expect(cut, 'frames across the window edges are cut, not dropped').toBeGreaterThanOrEqual(1);
  });

  it('cuts a subscription at its grant expiry: a subscription_ended notice, and nothing after', async () => {
    const g = grants.G3;
    const r = clients.expiring;
    const ended = await r.notice((n) => n.event === 'subscription_ended', 30_000, 'the expiry notice');
    expect(ended.body).toMatchObject({ event: 'subscription_ended', topic: topicOf(P1, 'ecg'), code: 'EXPIRED', grantId: g.id.toString() });
    expect(ended.body.atMs).toBeGreaterThanOrEqual(g.expiresAtMs);
    await clients.control.waitFor(
      () => clients.control.messages.find((m) => lastReadingMs(m.body) >= g.expiresAtMs + 4 * SECOND),
      30_000,
      'the control stream 4 s past the expiry',
    );
    expect(r.messages.length).toBeGreaterThan(3);
    const lastAt = Math.max(...r.messages.map((m) => m.atMs));
    console.log(`expiry → cut: notice ${ended.atMs - g.expiresAtMs} ms after expiresAtMs, last delivery ${lastAt - g.expiresAtMs} ms after it`);
    expect(ended.atMs).toBeLessThanOrEqual(g.expiresAtMs + 2 * SECOND);
    expect(lastAt).toBeLessThanOrEqual(g.expiresAtMs + 2 * SECOND);
    const token = await httpLogin(R.expiring);
    const res = await getJson<{ error: string }>(`/research/grants/${g.id}/readings`, token);
    expect([res.status, res.body.error]).toEqual([403, 'EXPIRED']);
    expect(await r.subscribe(topicOf(P1, 'ecg'))).toBe(128);
    expect((await r.notice((n) => n.event === 'subscription_refused', 5000, 'the refusal after expiry')).body.code).toBe('EXPIRED');
  });

  it('cuts a subscription within 2 s of the revoking block: a subscription_ended notice, and no delivery after', async () => {
    const g = grants.G2;
    const r = clients.revoked;
    await r.waitFor(() => r.messages.find((m) => m.atMs > Date.now() - 3 * SECOND), 10_000, 'deliveries in progress');
    expect(r.messages.length).toBeGreaterThan(3);
    const sentAt = Date.now();
    const receipt = await mined(consentRegistryAt(record.consentRegistry.address, patient1).revoke(g.id));
    const blockMs = (await provider.getBlock(receipt.blockNumber))!.timestamp * 1000;
    const ended = await r.notice((n) => n.event === 'subscription_ended', 10_000, 'the revocation notice');
    expect(ended.body).toMatchObject({ event: 'subscription_ended', topic: topicOf(P1, 'ecg'), code: 'REVOKED', grantId: g.id.toString() });
    // The control stream goes on: 4 s of readings recorded after the block have been delivered meanwhile.
    await clients.control.waitFor(
      () => clients.control.messages.find((m) => lastReadingMs(m.body) >= blockMs + 4 * SECOND),
      30_000,
      'the control stream 4 s past the revocation',
    );
    const lastAt = Math.max(...r.messages.map((m) => m.atMs));
    const cutLine = await gw.waitFor((l) => l.event === 'research_subscription_ended' && l['researcher'] === R.revoked.address && l['code'] === 'REVOKED');
    const cutAt = Date.parse(cutLine['time'] as string);
    console.log(
      `revocation → cut: sent ${sentAt - blockMs} ms after the block's timestamp (whole seconds); gateway cut ${cutAt - blockMs} ms, notice received ${ended.atMs - blockMs} ms, last delivery ${lastAt - blockMs} ms after the block's timestamp (${ended.atMs - sentAt} ms after sending)`,
    );
    expect(cutAt).toBeLessThanOrEqual(blockMs + 2 * SECOND);
    expect(ended.atMs).toBeLessThanOrEqual(blockMs + 2 * SECOND);
    expect(lastAt).toBeLessThanOrEqual(blockMs + 2 * SECOND);
    expect(r.messages.filter((m) => m.atMs > blockMs + 2 * SECOND)).toEqual([]);
    const token = await httpLogin(R.revoked);
    const res = await getJson<{ error: string }>(`/research/grants/${g.id}/readings`, token);
    expect([res.status, res.body.error]).toEqual([403, 'REVOKED']);
    const s = await gw.status();
    expect(s.consent.cut).toBe(2);
    expect(s.consent.inForce).toBe(4); // G1, G4, G5, G6
  });

  it('delivers frames that arrive over BLE like those over MQTT', async () => {
    const report = await runFleet({
      transport: 'ble',
      ble: { busAddress: bus.address, temporaryTimeoutMs: 1000, connectTimeoutMs: 1000 },
      devices: 1,
      seed: BLE.seed,
      sensors: BLE.sensors,
      frames: BLE.frames,
      stateDir: join(dir, 'sim-ble'),
      drainTimeoutMs: 60_000,
    });
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(BLE.frames);
    const r = clients.window;
    const ble = (): Received<LiveMessage>[] => r.messages.filter((m) => m.topic === topicOf(P2, 'spo2'));
    await r.waitFor(() => (ble().length >= BLE.frames ? true : undefined), 10_000, 'the BLE frames');
    expect(ble().length).toBe(BLE.frames);
    expect(new Set(ble().map((m) => m.body.seq)).size).toBe(BLE.frames);
    for (const m of ble()) expect(m.body).toMatchObject({ grantId: grants.G5.id.toString(), patient: P2, metric: 'spo2', deviceId: bleDevice.deviceId });
    expect(ble().every((m) => m.body.readings.length === sensorByName('spo2').defaultSamplesPerFrame)).toBe(true);
    expect((await gw.status()).frames.byTransport.ble.accepted).toBeGreaterThanOrEqual(BLE.frames);
    // Nobody else receives P2's data.
    for (const c of [clients.control, clients.revoked, clients.expiring, clients.none, clients.past])
      expect(c.messages.some((m) => m.topic.includes(P2))).toBe(false);
  });
});

describe('historical access', () => {
  let token: string;
  const g = (): (typeof grants)['G1'] => grants.G1;

  it('stops the live stream; everything is stored and anchored', async () => {
    liveStop.abort();
    const report = await liveRun;
    expect(report.drained).toBe(true);
    const s = await anchoredAll(gw, 90_000);
    expect(s.frames.rejected).toBe(2); // the two forged publishes, nothing else
    token = await httpLogin(R.window);
  });

  it('exports a grant as JSON page by page, each frame exactly its signed samples in the window, with proof bundles that verify on chain', async () => {
    type Page = { grantId: string; patient: string; frames: FrameJson[]; proofs: ProofBundle[]; nextCursor: string | null; from: number; to: number };
    const pages: Page[] = [];
    let cursor: string | null = null;
    do {
      const res: { status: number; body: Page } = await getJson<Page>(
        `/research/grants/${g().id}/readings?limit=3&proofs=1${cursor ? `&cursor=${cursor}` : ''}`,
        token,
      );
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toMatchObject({ grantId: g().id.toString(), patient: P1, from: g().fromMs, to: g().toMs });
      pages.push(res.body);
      cursor = res.body.nextCursor;
    } while (cursor);
    expect(pages.length).toBeGreaterThanOrEqual(3);
    expect(pages.slice(0, -1).every((p) => p.frames.length === 3)).toBe(true);
    const frames = pages.flatMap((p) => p.frames);
    expect(frames).toEqual(await expectedFrames(g().fromMs, g().toMs));
    for (const p of pages) if (p.frames.length) exported.push({ pages: 1, readings: p.frames.reduce((n, f) => n + f.readings.length, 0) });

    // One proof per frame; each verifies against the chain and carries the very frame served.
    const proofs = pages.flatMap((p) => p.proofs);
    expect(proofs.map((b) => `${b.frame.deviceId}/${b.frame.seq}`)).toEqual(frames.map((f) => `${f.deviceId}/${f.seq}`));
    const cache = new VerifyCache();
    for (const [i, b] of proofs.entries()) {
      const v = await verifyBundle(b, {
        provider,
        cache,
        trusted: { chainId: record.chainId, anchorRegistry: record.anchorRegistry.address, deviceRegistry: record.deviceRegistry.address },
      });
      expect(v.ok, JSON.stringify(v.checks)).toBe(true);
      expect(sha256Hex(Buffer.from(b.frame.raw, 'base64'))).toBe(frames[i]!.frameSha256);
      expect(b.anchor.batchSeq).toBe(frames[i]!.batch);
      expect(b.inclusion.leafIndex).toBe(frames[i]!.leaf);
    }

    // A narrower range, and one reaching outside the window (clamped to it).
    const sub = await getJson<{ frames: FrameJson[]; from: number; to: number }>(
      `/research/grants/${g().id}/readings?from=${g().fromMs + 2000}&to=${new Date(g().fromMs + 4000).toISOString()}&metric=ecg`,
      token,
    );
    expect(sub.status).toBe(200);
    expect(sub.body.frames).toEqual((await expectedFrames(g().fromMs + 2000, g().fromMs + 4000)).filter((f) => f.metric === 'ecg'));
    exported.push({ pages: 1, readings: sub.body.frames.reduce((n, f) => n + f.readings.length, 0) });
    const wide = await getJson<{ frames: FrameJson[]; from: number; to: number }>(
      `/research/grants/${g().id}/readings?from=${g().fromMs - HOUR}&to=${g().toMs + HOUR}`,
      token,
    );
    expect([wide.body.from, wide.body.to]).toEqual([g().fromMs, g().toMs]);
    expect(wide.body.frames).toEqual(frames);
    exported.push({ pages: 1, readings: frames.reduce((n, f) => n + f.readings.length, 0) });
    const bad = await getJson<{ error: string }>(`/research/grants/${g().id}/readings?cursor=not-a-cursor`, token);
    expect([bad.status, bad.body.error]).toEqual([400, 'BAD_CURSOR']);
  });

  it('streams the same readings as NDJSON and CSV, page by page', async () => {
    const all = await expectedFrames(g().fromMs, g().toMs);
    // NDJSON: frames, then a last line with the cursor.
    const nd: FrameJson[] = [];
    let cursor: string | null = null;
    do {
      const res = await get(`/research/grants/${g().id}/readings?format=ndjson&limit=4${cursor ? `&cursor=${cursor}` : ''}`, token);
      expect(res.headers.get('content-type')).toBe('application/x-ndjson');
      const lines = (await res.text())
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as FrameJson & { nextCursor?: string | null });
      const tail = lines.pop()!;
      expect(Object.keys(tail)).toEqual(['nextCursor']);
      nd.push(...lines);
      if (lines.length) exported.push({ pages: 1, readings: lines.reduce((n, f) => n + f.readings.length, 0) });
      cursor = tail.nextCursor ?? null;
    } while (cursor);
    expect(nd).toEqual(all);
    // CSV: one row per sample and channel; the next cursor in a header.
    const rows: string[] = [];
    cursor = null;
    let pages = 0;
    do {
      const res: Response = await get(`/research/grants/${g().id}/readings?format=csv&limit=5${cursor ? `&cursor=${cursor}` : ''}`, token);
      expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
      const lines = (await res.text()).trimEnd().split('\n');
      expect(lines[0]).toBe('time_ms,metric,channel,value,device,seq,frame_sha256');
      rows.push(...lines.slice(1));
      if (lines.length > 1) exported.push({ pages: 1, readings: lines.length - 1 });
      cursor = res.headers.get('x-next-cursor');
      pages++;
    } while (cursor);
    expect(pages).toBeGreaterThanOrEqual(2);
    expect(rows).toEqual(
      all.flatMap((f) =>
        f.readings.flatMap((r) => Object.entries(r.values).map(([ch, v]) => `${r.timeMs},${f.metric},${ch},${v},${f.deviceId},${f.seq},${f.frameSha256}`)),
      ),
    );
    const csvProofs = await getJson<{ error: string }>(`/research/grants/${g().id}/readings?format=csv&proofs=1`, token);
    expect([csvProofs.status, csvProofs.body.error]).toEqual([400, 'BAD_REQUEST']);
  });
});

describe('accounting of disclosures', () => {
  it('lists every live delivery and every export page in the patient report, each with an access proof that verifies on chain', async () => {
    const s = await gw.until(
      (x) => x.accessLog.liveAggregates === 0 && x.accessLog.openEntries === 0 && x.accessLog.pending === 0 && x.accessLog.sealed === x.accessLog.anchored,
      60_000,
      'every access-log entry written and anchored',
    );
    expect(s.accessLog.entries).toBeGreaterThan(0);
    const token = await httpLogin(patient1);
    const res = await getJson<DisclosureReport>(`/patient/disclosures?pseudonym=${P1}`, token);
    expect(res.status).toBe(200);
    const report = res.body;
    expect(report).toMatchObject({ format: 'vitalproof.disclosure-report', pseudonym: P1, gatewayId: GATEWAY_ID });
    expect(report.summary.pending + report.summary.errors).toBe(0);
    expect(report.items.every((i) => i.status === 'anchored')).toBe(true);
    const entries = report.items.map((i) => (i.status === 'anchored' ? i.proof.entry : i.entry));
    const sum = (who: Wallet, g: bigint, kind: 'live' | 'export'): number =>
      entries.filter((e) => e.researcher === who.address && e.grantId === g.toString() && e.kind === kind).reduce((n, e) => n + e.count, 0);
    // Every reading delivered live is counted, under the grant and researcher it went to.
    expect(sum(R.window, grants.G1.id, 'live')).toBe(clients.window.readings(grants.G1.id));
    expect(sum(R.revoked, grants.G2.id, 'live')).toBe(clients.revoked.readings(grants.G2.id));
    expect(sum(R.expiring, grants.G3.id, 'live')).toBe(clients.expiring.readings(grants.G3.id));
    expect(sum(R.control, grants.G6.id, 'live')).toBe(clients.control.readings(grants.G6.id));
    for (const [who, g] of [
      [R.window, grants.G1],
      [R.revoked, grants.G2],
      [R.expiring, grants.G3],
      [R.control, grants.G6],
    ] as const)
      expect(sum(who, g.id, 'live'), who.address).toBeGreaterThan(0);
    expect(entries.some((e) => e.researcher === R.none.address || e.researcher === R.past.address)).toBe(false);
    // Every export page with readings is one entry.
    const exports = entries.filter((e) => e.kind === 'export');
    expect(exports.length).toBe(exported.length);
    expect(exports.map((e) => e.count)).toEqual(exported.map((e) => e.readings));
    for (const e of exports) expect(e).toMatchObject({ researcher: R.window.address, grantId: grants.G1.id.toString(), pseudonym: P1 });

    const cache = new VerifyCache();
    for (const item of report.items) {
      if (item.status !== 'anchored') continue;
      const v = await verifyAccessBundle(item.proof, {
        provider,
        cache,
        trusted: { chainId: record.chainId, anchorRegistry: record.anchorRegistry.address, consentRegistry: record.consentRegistry.address },
      });
      expect(v.ok, JSON.stringify(v.checks)).toBe(true);
    }

    // The BLE patient's report has the BLE deliveries; each patient sees only their own.
    const token2 = await httpLogin(patient2);
    const r2 = (await getJson<DisclosureReport>(`/patient/disclosures?pseudonym=${P2}`, token2)).body;
    const e2 = r2.items.map((i) => (i.status === 'anchored' ? i.proof.entry : i.entry));
    expect(e2.reduce((n, e) => n + e.count, 0)).toBe(clients.window.readings(grants.G5.id));
    expect(e2.every((e) => e.pseudonym === P2 && e.grantId === grants.G5.id.toString())).toBe(true);
    const other = await getJson<{ error: string }>(`/patient/disclosures?pseudonym=${P2}`, token);
    expect([other.status, other.body.error]).toEqual([403, 'NOT_PATIENT']);
    const nobody = await getJson<{ error: string }>(`/patient/disclosures?pseudonym=${quietDevice.patient}`, token);
    expect([nobody.status, nobody.body.error]).toEqual([404, 'UNKNOWN_PATIENT']);
    const theirGrants = (await getJson<{ grants: GrantJson[] }>(`/patient/grants?pseudonym=${P1}`, token)).body.grants;
    expect(theirGrants.map((x) => [x.grantId, x.status])).toEqual(
      [grants.G6, grants.G4, grants.G3, grants.G2, grants.G1].map((x) => [x.id.toString(), x === grants.G3 ? 'EXPIRED' : x === grants.G2 ? 'REVOKED' : 'OK']),
    );
  });

  it('logs researchers, pseudonyms and grants, never a reading', () => {
    const lines: LogLine[] = gw.lines;
    expect(lines.some((l) => l.event === 'research_subscription_ended')).toBe(true);
    expect(lines.some((l) => l.event === 'research_export')).toBe(true);
    for (const l of lines) {
      const text = JSON.stringify(l);
      expect(text.includes('"readings"') || text.includes('"values"'), text.slice(0, 200)).toBe(false);
    }
    // Warnings only for what the tests provoked.
    const provoked = new Set(['research_connect_refused', 'research_login_refused', 'ble_down', 'ble_bluez_restarted']);
    expect(gw.problems().filter((l) => !provoked.has(l.event ?? ''))).toEqual([]);
  });
});

describe('privacy', () => {
  it('leaves no pseudonym on chain: not in any log, any storage slot of any contract, any transaction input', async () => {
    const needles = PSEUDONYMS.flatMap((p) => [
      Buffer.from(p, 'utf8').toString('hex'),
      createHash('sha256').update(p).digest('hex'),
      keccak256(toUtf8Bytes(p)).slice(2),
    ]);
    const clean = (where: string, hex: string): void => {
      const h = hex.toLowerCase();
      for (const n of needles) expect(h.includes(n), `${where} holds a pseudonym (or its plain hash)`).toBe(false);
    };
    const logs = await provider.getLogs({ fromBlock: 0, toBlock: 'latest' });
    expect(logs.length).toBeGreaterThan(20);
    for (const l of logs) clean(`log ${l.transactionHash}:${l.index}`, [...l.topics, l.data].join(''));
    // Access-log anchors are in there (stream 1), and grants, bindings, revocations.
    expect(logs.some((l) => l.address.toLowerCase() === record.consentRegistry.address.toLowerCase())).toBe(true);

    const dumped = (await provider.send('anvil_dumpState', [])) as string;
    const state = JSON.parse(gunzipSync(Buffer.from(dumped.replace(/^0x/, ''), 'hex')).toString('utf8')) as {
      accounts: Record<string, { storage?: Record<string, string>; code?: string }>;
    };
    let slots = 0;
    for (const [address, account] of Object.entries(state.accounts)) {
      for (const [k, v] of Object.entries(account.storage ?? {})) {
        slots++;
        clean(`storage ${address}[${k}]`, `${k}${v}`);
      }
    }
    expect(slots).toBeGreaterThan(50);
    for (const c of [record.consentRegistry.address, record.anchorRegistry.address, record.deviceRegistry.address])
      expect(Object.keys(state.accounts[c.toLowerCase()]?.storage ?? {}).length, c).toBeGreaterThan(0);

    const head = await provider.getBlockNumber();
    let inputs = 0;
    for (let n = 0; n <= head; n++) {
      const block = await provider.getBlock(n, true);
      for (const tx of block?.prefetchedTransactions ?? []) {
        inputs++;
        clean(`input of ${tx.hash}`, tx.data);
      }
    }
    expect(inputs).toBeGreaterThan(20);
  });
});

// ---- helpers on what InfluxDB holds (re-checked against the signed frames) ------------------------

/** The stored frames of a device, waiting (with a deadline) until its frame `atLeastSeq` is there. */
async function storedFrames(deviceId: string, atLeastSeq: bigint): Promise<StoredFrame[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const frames = await sink.queryFrames(deviceId);
    if (frames.some((f) => f.seq >= atLeastSeq)) return frames;
    if (Date.now() > deadline) throw new Error(`frame ${deviceId}/${atLeastSeq} not stored within 30 s`);
    await gw.status(); // one status round trip between reads: a state poll, not a timer
  }
}

/** The samples of a frame whose device time lies in [fromMs, toMs], as a delivery or an export carries them. */
function samplesIn(frame: ReturnType<typeof decodeFrame>, fromMs: number, toMs: number): { timeMs: number; values: Record<string, number> }[] {
  const out: { timeMs: number; values: Record<string, number> }[] = [];
  for (let i = 0; i < frame.count; i++) {
    const t = Number(sampleTimeNs(frame, i) / 1_000_000n);
    if (t < fromMs || t > toMs) continue;
    out.push({ timeMs: t, values: Object.fromEntries(frame.spec.channels.map((ch, c) => [ch, sampleValue(frame, i, c)])) });
  }
  return out;
}

/** What an export of G1 over [fromMs, toMs] must answer: every stored ECG / heart-rate frame of P1 with samples inside, in (time, device, seq) order. */
async function expectedFrames(fromMs: number, toMs: number): Promise<FrameJson[]> {
  const stored = await sink.queryFrames(liveDevice.deviceId);
  return stored
    .map((f) => ({ f, frame: decodeFrame(f.raw) }))
    .filter(({ frame }) => frame.spec.name === 'ecg' || frame.spec.name === 'heart_rate')
    .map(({ f, frame }) => ({ f, frame, inside: samplesIn(frame, fromMs, toMs) }))
    .filter((x) => x.inside.length > 0)
    .sort((a, b) => (a.f.timeNs !== b.f.timeNs ? (a.f.timeNs < b.f.timeNs ? -1 : 1) : a.f.seq < b.f.seq ? -1 : 1))
    .map(({ f, frame, inside }) => ({
      metric: frame.spec.name,
      deviceId: f.device,
      seq: f.seq.toString(),
      frameSha256: sha256Hex(f.raw),
      batch: f.batch?.toString() ?? null,
      leaf: f.leaf ?? null,
      readings: inside,
    }));
}
