/**
 * Complete accounting of disclosures through a crash (issue #10, item 7), against the real
 * gateway process: a researcher receives live ECG deliveries of three patients (three wearables
 * streaming in real time), the gateway is SIGKILLed the instant a delivery arrives, restarted on
 * the same data dir, and each patient's disclosure report (GET /patient/disclosures) must cover
 * every reading the researcher received: for every (device, seq) delivered, an entry of that
 * researcher and grant whose metrics and data range contain it, and per grant at least as many
 * readings counted as were received. Before live deliveries were logged ahead of sending, the
 * last seconds of deliveries (up to 5 s per subscription) were missing after such a crash.
 *
 * Every wait is for a message, a status value or a process exit, with a deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { connectAsync, type MqttClient } from 'mqtt';
import type { HDNodeWallet } from 'ethers';
import { fleetDevices } from '../../device-sim/fleet.js';
import { runFleet, type FleetReport } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import type { AccessEntryJson } from '../../gateway/consent/access-entry.js';
import type { DisclosureReport } from '../../gateway/consent/disclosure.js';
import type { LiveMessage } from '../../gateway/research/live.js';
import { useInfluxd } from '../support/influxd.js';
import { GatewayProcess } from '../support/gateway-process.js';
import { bindPatient, grant, researcherKey, researcherOptions, startConsentWorld, type ConsentWorld } from '../support/consent-world.js';

const influx = useInfluxd();
const GATEWAY_ID = 'gw-crash';
const HOUR = 3_600_000;
const SEED = 'crash-live';
const devices = fleetDevices(SEED, 3, 'ecg');
const R = researcherKey('crash');
/** Deliveries received before the kill is sent (several per patient and per second of streaming). */
const KILL_AFTER = 24;

let w: ConsentWorld;
let gw: GatewayProcess;
const patients: HDNodeWallet[] = [];
const grants = new Map<string, bigint>();
const liveStop = new AbortController();
let liveRun: Promise<FleetReport>;
let client: MqttClient;
const received: { atMs: number; m: LiveMessage }[] = [];

beforeAll(async () => {
  w = await startConsentWorld('crash', GATEWAY_ID, influx.handle.url, devices);
  gw = w.gw;
  const t = Date.now();
  let last = 0;
  for (const [i, d] of devices.entries()) {
    const patient = devWallet(3 + i, w.provider);
    patients.push(patient);
    await bindPatient(w, d.patient, patient);
    const g = await grant(w, patient, d.patient, R.address, ['ecg'], t - HOUR, t + HOUR, t + HOUR);
    grants.set(d.patient, g.id);
    last = g.block;
  }
  await gw.until(
    (s) => s.consent.following && (s.consent.lastBlock ?? 0) >= last && s.consent.grants === devices.length,
    20_000,
    'the gateway sees the grants',
  );
  liveRun = runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: devices.length,
    seed: SEED,
    sensors: 'ecg',
    durationMs: 600_000,
    signal: liveStop.signal,
    stateDir: `${w.dir}/sim`,
    drainTimeoutMs: 5_000,
    backoff: { initialMs: 100, maxMs: 1000 },
  });
}, 180_000);

afterAll(async () => {
  liveStop.abort();
  await liveRun?.catch(() => undefined);
  await client?.endAsync(true).catch(() => undefined);
  w?.provider.destroy();
  await gw?.stop();
  if (w) rmSync(w.dir, { recursive: true, force: true });
});

async function post(base: string, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The patient's disclosure report from the running gateway (HTTP login with the patient's key). */
async function disclosures(patient: HDNodeWallet, pseudonym: string): Promise<AccessEntryJson[]> {
  const base = `http://127.0.0.1:${gw.httpPort}`;
  const ch = await post(base, '/auth/challenge', { address: patient.address, purpose: 'http' });
  expect(ch.status, JSON.stringify(ch.body)).toBe(200);
  const text = ch.body['challenge'] as string;
  const login = await post(base, '/auth/login', { challenge: text, signature: await patient.signMessage(text) });
  expect(login.status, JSON.stringify(login.body)).toBe(200);
  const res = await fetch(`${base}/patient/disclosures?pseudonym=${pseudonym}`, { headers: { authorization: `Bearer ${login.body['token'] as string}` } });
  expect(res.status).toBe(200);
  const report = (await res.json()) as DisclosureReport;
  expect(report.summary.errors).toBe(0);
  return report.items.map((i) => (i.status === 'anchored' ? i.proof.entry : i.entry));
}

describe('accounting of live disclosures through a crash', () => {
  it('covers every reading the researcher received with an access-log entry after a SIGKILL mid-stream and a restart', async () => {
    // The chain must keep the bindings and grants across the kill: an anchor confirmed after them makes the embedded chain checkpoint.
    client = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, await researcherOptions(R, GATEWAY_ID, 'vp-research-crash'));
    let killed = false;
    let armed = false;
    const killedAt = new Promise<number>((resolve) => {
      client.on('message', (topic, payload) => {
        if (!topic.startsWith('vp/consented/')) return;
        received.push({ atMs: Date.now(), m: JSON.parse(payload.toString('utf8')) as LiveMessage });
        if (armed && !killed && received.length >= KILL_AFTER) {
          killed = true;
          gw.proc.kill('SIGKILL'); // the instant a delivery arrives: the next batch is being logged or sent
          resolve(Date.now());
        }
      });
    });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    for (const d of devices) await client.subscribeAsync(`vp/consented/${d.patient}/ecg`, { qos: 0 });
    await gw.until(
      (s) => BigInt(s.accessLog.anchored) >= 1n && BigInt(s.batches.lastAnchored) >= 1n,
      60_000,
      'frames and access entries anchored after the grants',
    );
    armed = true;
    const at = await Promise.race([
      killedAt,
      new Promise<number>((_, rej) => setTimeout(() => rej(new Error(`only ${received.length} deliveries in 120 s`)), 120_000)),
    ]);
    expect(await gw.exited).toBeNull(); // killed by the signal, no exit code
    await closed; // nothing more can arrive from the dead process
    liveStop.abort();
    await liveRun.catch(() => undefined);
    const afterKill = received.filter((r) => r.atMs > at).length;
    console.log(
      `${received.length} deliveries received (${received.reduce((n, r) => n + r.m.readings.length, 0)} readings), ${afterKill} of them after the kill was sent`,
    );

    gw = await GatewayProcess.start(w.flags);
    const entries = new Map<string, AccessEntryJson[]>();
    for (const [i, d] of devices.entries())
      entries.set(
        d.patient,
        (await disclosures(patients[i]!, d.patient)).filter((e) => e.kind === 'live' && e.researcher === R.address),
      );

    const uncovered: string[] = [];
    for (const { m } of received) {
      const first = Math.floor(m.readings[0]!.timeMs);
      const last = Math.floor(m.readings[m.readings.length - 1]!.timeMs);
      const covered = (entries.get(m.patient) ?? []).some(
        (e) => e.grantId === m.grantId && e.metrics.includes(m.metric) && e.fromMs <= first && last <= e.toMs,
      );
      if (!covered) uncovered.push(`${m.deviceId}/${m.seq} (${m.patient}, grant ${m.grantId}, ${first}..${last})`);
    }
    expect(uncovered, 'deliveries received that no access-log entry covers').toEqual([]);
    for (const d of devices) {
      const got = received.filter((r) => r.m.patient === d.patient).reduce((n, r) => n + r.m.readings.length, 0);
      const counted = entries.get(d.patient)!.reduce((n, e) => n + e.count, 0);
      expect(got, d.patient).toBeGreaterThan(0);
      expect(counted, `${d.patient}: readings counted in the log against readings received`).toBeGreaterThanOrEqual(got);
      for (const e of entries.get(d.patient)!) expect(e.grantId).toBe(grants.get(d.patient)!.toString());
    }
  }, 300_000);
});
