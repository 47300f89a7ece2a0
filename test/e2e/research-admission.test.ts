/**
 * Researcher admission on the gateway's MQTT broker (issue #10, item 4), against the real
 * gateway process (embedded anvil with ConsentRegistry, real influxd, a wearable streaming ECG
 * in real time): keys without a live grant only within their pool (NO_LIVE_GRANT, CONNACK 5),
 * a cap per key (TOO_MANY_CONNECTIONS), a client id held by one researcher refused to another
 * key (CLIENT_ID_IN_USE, CONNACK 2) while the holder stays connected and keeps receiving, no
 * researcher left registered after 200 connections dropped right after CONNACK, and the log
 * bounded under floods: a SUBSCRIBE with 5,000 refused filters and 10,000 refused logins each
 * write at most `log.limitBurst` lines, and one `log_suppressed` line counts the rest.
 *
 * Every wait is for a CONNACK, a message, a log line or a status value, with a deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { getAddress, type Wallet } from 'ethers';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { fleetDevices } from '../../device-sim/fleet.js';
import { runFleet, type FleetReport } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import type { LiveMessage } from '../../gateway/research/live.js';
import { useInfluxd } from '../support/influxd.js';
import {
  bindPatient,
  connectPacket,
  grant,
  loginPassword,
  rawConnect,
  researcherKey,
  researcherOptions,
  startConsentWorld,
  type ConsentWorld,
} from '../support/consent-world.js';

const influx = useInfluxd();
const GATEWAY_ID = 'gw-admission';
const HOUR = 3_600_000;
const BURST = 5;
const device = fleetDevices('admission-live', 1, 'ecg')[0]!;
const P = device.patient;

const R = researcherKey('admission main');
const THIEF = researcherKey('admission thief');
const UNGRANTED = [researcherKey('admission ungranted 1'), researcherKey('admission ungranted 2')];
/** Keys for the leak test: five logins each fit one key's burst of self-issued logins. */
const LEAKERS = Array.from({ length: 40 }, (_, i) => researcherKey(`admission leak ${i}`));

let w: ConsentWorld;
const liveStop = new AbortController();
let liveRun: Promise<FleetReport>;
const open: MqttClient[] = [];

const url = (): string => `mqtt://127.0.0.1:${w.gw.mqttPort}`;

/** CONNACK return code of a CONNECT through mqtt.js: 0 connected (then closed), else the refusal. */
async function connackOf(opts: IClientOptions): Promise<number> {
  try {
    const c = await connectAsync(url(), opts);
    await c.endAsync();
    return 0;
  } catch (e) {
    return (e as Error & { code?: number }).code ?? -1;
  }
}

async function connectKept(wallet: Wallet, clientId?: string): Promise<MqttClient> {
  const c = await connectAsync(url(), await researcherOptions(wallet, GATEWAY_ID, clientId));
  open.push(c);
  return c;
}

/** The SUBACK return codes of one SUBSCRIBE (mqtt.js reports a refused filter as an error carrying the packet). */
function subackCodes(client: MqttClient, topics: string | string[]): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(topics, { qos: 0 }, (err, _granted, packet) => {
      const codes = (packet as { granted?: number[] } | undefined)?.granted;
      if (codes) resolve(codes);
      else reject(err ?? new Error('SUBACK without return codes'));
    });
  });
}

const refusedBy = async (code: string): Promise<number> => (await w.gw.status()).consent.loginRefusedBy[code] ?? 0;

/** Waits for a delivery on `client` that arrives after now. */
function nextDelivery(client: MqttClient, timeoutMs: number): Promise<LiveMessage> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      client.off('message', on);
      reject(new Error(`no delivery within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (topic: string, payload: Buffer): void => {
      if (!topic.startsWith('vp/consented/')) return;
      clearTimeout(t);
      client.off('message', on);
      resolve(JSON.parse(payload.toString('utf8')) as LiveMessage);
    };
    client.on('message', on);
  });
}

beforeAll(async () => {
  w = await startConsentWorld('admission', GATEWAY_ID, influx.handle.url, [device], {
    'research.maxUngrantedConnections': 1,
    'research.maxConnectionsPerResearcher': 5,
    'log.limitBurst': BURST,
    // One window for the whole suite: every line of it is counted at shutdown.
    'log.limitWindowMs': 600_000,
    'login.selfIssuedPerS': 1000,
    // Room for one SUBSCRIBE of 5,000 filters: what is measured here is the log, not the packet limit.
    'mqtt.maxResearcherPacketBytes': 1024 * 1024,
  });
  liveRun = runFleet({
    brokerUrl: `mqtt://127.0.0.1:${w.gw.mqttPort}`,
    devices: 1,
    seed: 'admission-live',
    sensors: 'ecg',
    durationMs: 600_000,
    signal: liveStop.signal,
    stateDir: `${w.dir}/sim`,
    drainTimeoutMs: 30_000,
  });
  const patient = devWallet(3, w.provider);
  await bindPatient(w, P, patient);
  const t = Date.now();
  let last = 0;
  for (const who of [R, THIEF, ...LEAKERS]) last = (await grant(w, patient, P, who.address, ['ecg'], t - HOUR, t + HOUR, t + HOUR)).block;
  await w.gw.until(
    (s) => s.consent.following && (s.consent.lastBlock ?? 0) >= last && s.consent.grants === 2 + LEAKERS.length,
    20_000,
    'the gateway sees every grant',
  );
}, 180_000);

afterAll(async () => {
  liveStop.abort();
  await liveRun?.catch(() => undefined);
  for (const c of open) await c.endAsync().catch(() => undefined);
  w?.provider.destroy();
  await w?.gw.stop();
  if (w) rmSync(w.dir, { recursive: true, force: true });
});

describe('researcher admission', () => {
  it('admits keys without a live grant only within their pool, and refuses the rest with NO_LIVE_GRANT (CONNACK 5), counted', async () => {
    const first = await connectKept(UNGRANTED[0]!);
    expect(first.connected).toBe(true);
    expect(await connackOf(await researcherOptions(UNGRANTED[1]!, GATEWAY_ID))).toBe(5);
    expect(await refusedBy('NO_LIVE_GRANT')).toBe(1);
    // Subscribing tells the admitted one why it receives nothing, as before.
    expect(await subackCodes(first, `vp/consented/${P}/ecg`)).toEqual([128]);
    const s = await w.gw.status();
    expect(s.consent.researchersConnected).toBe(1);
  });

  it('refuses a client id held by a connected researcher to another key (CLIENT_ID_IN_USE, CONNACK 2): the holder stays connected and keeps receiving', async () => {
    const clientId = 'vp-research-admission-main';
    const holder = await connectKept(R, clientId);
    expect(await subackCodes(holder, `vp/consented/${P}/ecg`)).toEqual([0]);
    await nextDelivery(holder, 15_000);
    let closed = false;
    holder.on('close', () => (closed = true));
    // The thief holds a grant of its own: only the client id is in the way.
    expect(await connackOf(await researcherOptions(THIEF, GATEWAY_ID, clientId))).toBe(2);
    expect(await refusedBy('CLIENT_ID_IN_USE')).toBe(1);
    const after = Date.now();
    const m = await nextDelivery(holder, 15_000);
    expect(m).toMatchObject({ patient: P, metric: 'ecg', deviceId: device.deviceId });
    expect(Date.now()).toBeGreaterThanOrEqual(after);
    expect(closed).toBe(false);
    expect(holder.connected).toBe(true);
    // Under its own id the thief is admitted: the refusal was the id, nothing else.
    expect(await connackOf(await researcherOptions(THIEF, GATEWAY_ID))).toBe(0);
  });

  it('caps the connections of one key (TOO_MANY_CONNECTIONS, CONNACK 5)', async () => {
    // R holds one connection from the test before: four more reach the cap of five.
    const sockets: Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await rawConnect(w.gw.mqttPort, connectPacket(`vp-research-cap-${i}`, R.address, await loginPassword(R, GATEWAY_ID)), { drop: false });
      expect(r.code).toBe(0);
      sockets.push(r.socket!);
    }
    const sixth = await rawConnect(w.gw.mqttPort, connectPacket('vp-research-cap-5', R.address, await loginPassword(R, GATEWAY_ID)), { drop: true });
    expect(sixth.code).toBe(5);
    expect(await refusedBy('TOO_MANY_CONNECTIONS')).toBe(1);
    for (const s of sockets) s.destroy();
    await w.gw.until((s) => s.consent.researchersConnected === 2, 10_000, 'the four extra connections released'); // the ungranted one and R's holder
  });

  it('leaves no researcher registered after 200 connections dropped right after CONNACK', async () => {
    const before = (await w.gw.status()).consent.researchersConnected;
    const packets = await Promise.all(
      LEAKERS.flatMap((k, i) =>
        Array.from({ length: 5 }, async (_, j) => connectPacket(`vp-research-leak-${i}-${j}`, k.address, await loginPassword(k, GATEWAY_ID))),
      ),
    );
    const codes: (number | null)[] = [];
    for (let i = 0; i < packets.length; i += 50)
      codes.push(...(await Promise.all(packets.slice(i, i + 50).map(async (p) => (await rawConnect(w.gw.mqttPort, p, { drop: true })).code))));
    expect(codes.filter((c) => c === 0)).toHaveLength(200);
    const s = await w.gw.until((x) => x.consent.researchersConnected === before, 30_000, 'every dropped researcher released');
    expect(s.consent.researchersConnected).toBe(before);
    // And it stays so: one more round trip through the broker (a CONNECT and its CONNACK) later.
    expect(await connackOf(await researcherOptions(THIEF, GATEWAY_ID))).toBe(0);
    expect((await w.gw.until((x) => x.consent.researchersConnected === before, 10_000, 'still released')).consent.researchersConnected).toBe(before);
  });
});

describe('refusals logged with a bound', () => {
  it('writes at most the burst of lines for a SUBSCRIBE with 5,000 refused filters, and counts every filter', async () => {
    const client = open.find((c) => c.options.clientId === 'vp-research-admission-main')!;
    const before = (await w.gw.status()).consent.subscribeRefusedBy['NO_GRANT'] ?? 0;
    const topics = Array.from({ length: 5000 }, (_, i) => `vp/consented/pt-nobody-${i}/ecg`);
    const codes = await subackCodes(client, topics);
    expect(codes).toHaveLength(5000);
    expect(codes.every((c) => c === 128)).toBe(true);
    const s = await w.gw.until((x) => (x.consent.subscribeRefusedBy['NO_GRANT'] ?? 0) - before === 5000, 10_000, 'the 5,000 refusals counted');
    const lines = w.gw.lines.filter((l) => l.event === 'research_subscribe_refused').length;
    console.log(
      `5,000-filter SUBSCRIBE: ${lines} research_subscribe_refused lines written in all (burst ${BURST}); ${Object.values(s.consent.subscribeRefusedBy).reduce((a, b) => a + b, 0)} refusals counted`,
    );
    expect(lines).toBeLessThanOrEqual(BURST);
    expect(client.connected).toBe(true);
  });

  it('writes at most the burst of lines for 10,000 refused logins (keys without a grant while their pool is full)', async () => {
    const before = await refusedBy('NO_LIVE_GRANT');
    const linesBefore = w.gw.lines.length;
    // Random keys, a password of the right shape and no valid signature: refused on the claim alone.
    const password = `${Buffer.from('VitalProof researcher login\nflood').toString('base64url')}.0x${'11'.repeat(65)}`;
    const flood = 10_000;
    const codes = new Map<number | null, number>();
    const deadline = Date.now() + 240_000;
    for (let i = 0; i < flood && Date.now() < deadline; i += 32) {
      const batch = Array.from({ length: Math.min(32, flood - i) }, () =>
        rawConnect(w.gw.mqttPort, connectPacket(`flood-${randomBytes(6).toString('hex')}`, getAddress(`0x${randomBytes(20).toString('hex')}`), password), {
          drop: true,
        }),
      );
      for (const r of await Promise.all(batch)) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
    }
    expect(Object.fromEntries(codes)).toEqual({ 5: flood });
    expect((await refusedBy('NO_LIVE_GRANT')) - before).toBe(flood);
    const written = w.gw.lines.slice(linesBefore);
    const byEvent: Record<string, number> = {};
    for (const l of written) byEvent[l.event ?? '-'] = (byEvent[l.event ?? '-'] ?? 0) + 1;
    const refusedLines = w.gw.lines.filter((l) => l.event === 'research_connect_refused').length;
    console.log(
      `10,000 refused logins: ${refusedLines} research_connect_refused lines in all (burst ${BURST}); lines written during the flood by event: ${JSON.stringify(byEvent)}`,
    );
    expect(refusedLines).toBeLessThanOrEqual(BURST);
    // The wearable streams on meanwhile (batches, anchors, access-log entries): what the flood itself may add is a few warnings.
    expect(written.filter((l) => l.level >= 40).length).toBeLessThanOrEqual(20);
  }, 300_000);

  it('says at shutdown how many lines it did not write, by reason, matching the counters', async () => {
    const s = await w.gw.status();
    const sum = (o: Record<string, number>, keys?: string[]): number =>
      Object.entries(o)
        .filter(([k]) => !keys || keys.includes(k))
        .reduce((n, [, v]) => n + v, 0);
    liveStop.abort();
    await liveRun;
    await w.gw.stop();
    const summaries = w.gw.lines.filter((l) => l.event === 'log_suppressed');
    const of = (event: string): Record<string, unknown> | undefined => summaries.find((l) => l['of'] === event);
    const logins = sum(s.consent.loginRefusedBy);
    const filters = sum(s.consent.subscribeRefusedBy);
    expect(of('research_connect_refused')).toMatchObject({ suppressed: logins - BURST, windowMs: 600_000 });
    const writtenNoGrant = w.gw.lines.filter((l) => l.event === 'research_connect_refused' && l['reason'] === 'NO_LIVE_GRANT').length;
    expect((of('research_connect_refused')!['byReason'] as Record<string, number>)['NO_LIVE_GRANT']).toBe(
      s.consent.loginRefusedBy['NO_LIVE_GRANT']! - writtenNoGrant,
    );
    expect(of('research_subscribe_refused')).toMatchObject({ suppressed: filters - BURST });
    expect(summaries).toHaveLength(2);
    console.log(`log lines for ${logins} refused logins and ${filters} refused filters: ${2 * BURST} lines + ${summaries.length} summaries`);
  });
});
