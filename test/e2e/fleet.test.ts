/**
 * A hospital on one box (docs/fleet.md), every part real: one influxd, one anvil with the
 * contracts deployed by `vitalproof chain deploy`, Mosquitto 2 with its dynamic-security plugin
 * as the hospital broker, three bedside gateway processes and two hub processes. A wearable
 * moves from gateway A to gateway B mid-stream; researchers connected to either hub follow the
 * patient across the move (every frame once, in sequence order), storage holds each frame once,
 * and revoking the grant cuts both hubs' streams.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as mqttConnect } from 'mqtt';
import { fleetDevices } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { consentRegistryAt } from '../../gateway/chain/contracts.js';
import type { FleetSnapshot } from '../../gateway/hub/fleet-view.js';
import type { HubSnapshot } from '../../gateway/hub/status.js';
import type { LiveMessage } from '../../gateway/research/live.js';
import { InfluxHttp, seriesRows } from '../../gateway/storage/influx-http.js';
import { useInfluxd } from '../support/influxd.js';
import { useAnvil } from '../support/anvil.js';
import { useMosquitto } from '../support/mosquitto.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { bindPatient, grant, mined, researcherKey, type ConsentWorld } from '../support/consent-world.js';
import { drained } from '../support/stored.js';
import type { DisclosureReport } from '../../gateway/consent/disclosure.js';
import { verifyAccessBundle } from '../../gateway/proof/access-verify.js';
import { VerifyCache } from '../../gateway/proof/verify.js';
import { startHospital, until, type Hospital } from '../../scripts/lib/hospital.js';
import { follow } from '../support/hospital.js';

const influx = useInfluxd();
const chain = useAnvil();
const broker = useMosquitto();
const SEED = 'fleet';
const SENSORS = 'accelerometer,ecg'; // 1-s frames: the wearable waits little for its clock
const devices = fleetDevices(SEED, 1, SENSORS);
const wearable = devices[0]!;
const GATEWAYS = ['gw-a', 'gw-b', 'gw-c'] as const;
const HUBS = ['hub-1', 'hub-2'] as const;
const HUB_ID = 'hub';
const patient = devWallet(8);

let hospital: Hospital;
let world: ConsentWorld;
const gw = new Map<string, GatewayProcess>();
const hub = new Map<string, GatewayProcess>();

beforeAll(async () => {
  // The recipe the demo's hospital uses too (scripts/lib/hospital.ts).
  hospital = await startHospital({
    dir: mkdtempSync(join(tmpdir(), 'vp-fleet-')),
    chainUrl: chain.handle.url,
    influxUrl: influx.handle.url,
    broker: broker.handle,
    devices,
    gateways: GATEWAYS,
    hubs: HUBS,
    hubId: HUB_ID,
    gatewayFlags: { 'batch.intervalMs': 300, 'storage.retryMinMs': 50, 'accessLog.intervalMs': 300 },
    hubFlags: { 'hub.holdMs': 1500, 'accessLog.intervalMs': 300 },
  });
  for (const [name, p] of hospital.gateways) gw.set(name, p);
  for (const [name, p] of hospital.hubs) hub.set(name, p);
  const { dir, record, provider } = hospital;
  world = { dir, dataDir: hospital.dataDir('gw-a'), gw: gw.get('gw-a')!, record, provider, flags: {} };
});

afterAll(async () => {
  await hospital?.stop();
  if (hospital) rmSync(hospital.dir, { recursive: true, force: true });
});

function fleet(port: number, frames: number): ReturnType<typeof runFleet> {
  const o: FleetOptions = {
    brokerUrl: `mqtt://127.0.0.1:${port}`,
    devices: 1,
    seed: SEED,
    sensors: SENSORS,
    stateDir: join(hospital.dir, 'wearable'),
    frames,
    backoff: { initialMs: 50, maxMs: 500 },
    drainTimeoutMs: 20_000,
  };
  return runFleet(o);
}

describe('a hospital of three gateways and two hubs', () => {
  it('follows a patient whose wearable moves from gw-a to gw-b, on both hubs: every frame once, in order', async () => {
    const researcher = researcherKey('fleet');
    await bindPatient(world, wearable.patient, patient);
    const now = Date.now();
    const g = await grant(
      world,
      patient.connect(world.provider),
      wearable.patient,
      researcher.address,
      SENSORS.split(','),
      now - 3600_000,
      now + 3600_000,
      now + 3600_000,
    );
    // Both hubs see the grant before the researchers subscribe.
    for (const h of hub.values())
      await until('the grant on the hub', async () => ((await h.get<HubSnapshot>('/status')).consent.inForce > 0 ? true : undefined));
    const r1 = await follow(hub.get('hub-1')!, HUB_ID, researcher, wearable.patient, 'r-hub-1');
    const r2 = await follow(hub.get('hub-2')!, HUB_ID, researcher, wearable.patient, 'r-hub-2');

    const atA = await fleet(gw.get('gw-a')!.mqttPort, 8);
    expect(atA.drained).toBe(true);
    const atB = await fleet(gw.get('gw-b')!.mqttPort, 8);
    expect(atB.drained).toBe(true);
    const total = atA.frames.acked + atB.frames.acked;
    expect(total).toBe(16);

    const seqsOf = (got: LiveMessage[]): number[] => got.map((m) => Number(m.seq));
    const expected = Array.from({ length: total }, (_, i) => i + 1);
    for (const r of [r1, r2]) {
      await until('every frame delivered', () => (r.got.length >= total ? true : undefined));
      expect(seqsOf(r.got), 'in sequence order, each once').toEqual(expected);
      expect(r.got.every((m) => m.grantId === g.id.toString() && m.deviceId === wearable.deviceId)).toBe(true);
    }
    // Storage: each frame once, taken by the gateway it went to.
    for (const name of ['gw-a', 'gw-b']) await drained(gw.get(name)!);
    const http = new InfluxHttp({ url: influx.handle.url });
    const q = async (m: string): Promise<Record<string, unknown>[]> =>
      seriesRows(await http.query(`SELECT * FROM "${m}" WHERE "device" = $d`, { database: 'vitalproof', params: { d: wearable.deviceId } }));
    expect((await q('frames')).map((r) => Number(r['seq'])).sort((a, b) => a - b)).toEqual(expected);
    const by = new Map<string, number>();
    for (const a of await q('acceptances')) by.set(String(a['gateway']), (by.get(String(a['gateway'])) ?? 0) + 1);
    expect(Object.fromEntries(by)).toEqual({ 'gw-a': atA.frames.acked, 'gw-b': atB.frames.acked });

    // The hubs know where the wearable is now, and every gateway's status.
    const f = await hub.get('hub-1')!.get<FleetSnapshot>('/fleet');
    expect(f.devices).toEqual([expect.objectContaining({ device: wearable.deviceId, gateway: 'gw-b', seq: String(total) })]);
    await until('all three gateways online at the hub', async () => {
      const s = await hub.get('hub-2')!.get<FleetSnapshot>('/fleet');
      return s.gateways.filter((x) => x.state === 'online').length === 3 ? true : undefined;
    });
    const lines = execFileSync(process.execPath, [CLI, 'fleet', '--url', `http://127.0.0.1:${hub.get('hub-1')!.httpPort}`], { encoding: 'utf8' });
    expect(lines).toMatch(new RegExp(`${wearable.deviceId} on gw-b`));
    expect(lines).toMatch(/gw-c\s+online/);
    const status = execFileSync(process.execPath, [CLI, 'status', '--url', `http://127.0.0.1:${hub.get('hub-2')!.httpPort}`], { encoding: 'utf8' });
    expect(status).toMatch(/^hub hub \(instance hub-2\)/);
    expect(status).toMatch(/uplink {2}connected/);
    expect(status).toMatch(new RegExp(`order {3}${total} released`));

    // Revocation cuts both hubs' streams.
    const consent = consentRegistryAt(hospital.record.consentRegistry.address, patient.connect(world.provider));
    await mined(consent.revoke(g.id));
    for (const r of [r1, r2])
      await until(
        'subscription_ended on both hubs',
        () => (r.notices.some((n) => (n as { event?: string }).event === 'subscription_ended') ? true : undefined),
        5000,
      );
    const before = [r1.got.length, r2.got.length];
    const after = await fleet(gw.get('gw-c')!.mqttPort, 3);
    expect(after.drained).toBe(true);
    await drained(gw.get('gw-c')!);
    // The hubs heard gw-c's frames (and delivered none of them).
    for (const h of hub.values())
      await until('gw-c frames at the hub', async () => ((await h.get<FleetSnapshot>('/fleet')).devices[0]?.gateway === 'gw-c' ? true : undefined));
    expect([r1.got.length, r2.got.length]).toEqual(before);
    for (const r of [r1, r2]) await r.client.endAsync();
  });

  it("answers the patient's disclosure report at one hub with the accesses logged at both, each proof verified on chain", async () => {
    // Both hubs delivered the stream above: each logged those live disclosures in its own access log.
    const base = `http://127.0.0.1:${hub.get('hub-1')!.httpPort}`;
    const post = async (path: string, body: unknown): Promise<Record<string, unknown>> =>
      (await (await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as Record<
        string,
        unknown
      >;
    const ch = await post('/auth/challenge', { address: patient.address, purpose: 'http' });
    const text = ch['challenge'] as string;
    const token = (await post('/auth/login', { challenge: text, signature: await patient.signMessage(text) }))['token'] as string;
    const report = async (): Promise<DisclosureReport> =>
      (await (
        await fetch(`${base}/patient/disclosures?pseudonym=${wearable.patient}`, { headers: { authorization: `Bearer ${token}` } })
      ).json()) as DisclosureReport;
    // hub-2's entries appear once its access batches are anchored and written to the store.
    const r = await until('entries of both hubs, all anchored', async () => {
      const x = await report();
      const by = new Set(x.items.map((i) => (i.status === 'anchored' ? i.proof.gatewayId : '')));
      return x.summary.pending === 0 && by.has(HUB_ID) && by.has(`${HUB_ID}.hub-2`) ? x : undefined;
    });
    expect(r.summary.errors).toBe(0);
    const cache = new VerifyCache();
    for (const item of r.items) {
      if (item.status !== 'anchored') throw new Error(`not anchored: ${JSON.stringify(item)}`);
      expect(item.proof.entry.pseudonym).toBe(wearable.patient);
      const v = await verifyAccessBundle(item.proof, {
        provider: world.provider,
        cache,
        trusted: { chainId: world.record.chainId, anchorRegistry: world.record.anchorRegistry.address, consentRegistry: world.record.consentRegistry.address },
      });
      expect(v.ok, JSON.stringify(v.checks)).toBe(true);
    }
    // Every reading either hub delivered is accounted for: the two hubs' entries together.
    const count = (g: string): number => r.items.reduce((n, i) => n + (i.status === 'anchored' && i.proof.gatewayId === g ? i.proof.entry.count : 0), 0);
    expect(count(HUB_ID)).toBeGreaterThan(0);
    expect(count(`${HUB_ID}.hub-2`)).toBe(count(HUB_ID));
  });

  it("audits the patient across every gateway with a hub's configuration: every point intact, each frame once", async () => {
    const flags = Object.entries({ dataDir: hospital.dataDir('hub-1'), 'influx.url': influx.handle.url, ...hospital.chainFlags('hub-1') }).flatMap(([k, v]) => [
      `--${k}`,
      v,
    ]);
    const json = join(hospital.dir, 'hospital-audit.json');
    // The last frames' batches are sealed, anchored and written to the store within seconds: audit until they are.
    const r = await until('a clean hospital audit', () => {
      try {
        execFileSync(process.execPath, [CLI, 'audit', '--hospital', '--patient', wearable.patient, '--json', json, ...flags], { encoding: 'utf8' });
      } catch {
        return undefined;
      }
      return JSON.parse(readFileSync(json, 'utf8')) as {
        ok: boolean;
        summary: { readings: number; acceptances: number; counts: Record<string, number> };
        gateways: { gateway: string }[];
      };
    });
    expect(r.ok).toBe(true);
    expect(r.gateways.map((g) => g.gateway)).toEqual(['gw-a', 'gw-b', 'gw-c']);
    expect(r.summary.readings).toBe(19); // 8 at gw-a, 8 at gw-b, 3 at gw-c
    expect(r.summary.acceptances).toBe(19);
    expect(r.summary.counts['seq_gap']).toBe(0);
  });

  it('refuses a device CONNECT at a hub', async () => {
    const h = hub.get('hub-1')!;
    const c = mqttConnect(`mqtt://127.0.0.1:${h.mqttPort}`, {
      clientId: `vp-dev-${wearable.deviceId}`,
      username: wearable.deviceId,
      password: 'x',
      reconnectPeriod: 0,
    });
    const err = await new Promise<Error>((res) => c.once('error', res));
    c.end(true);
    expect(err.message).toMatch(/Not authorized|Connection refused/i);
    expect((await h.get<HubSnapshot>('/status')).mqtt).toBeDefined();
  });
});
