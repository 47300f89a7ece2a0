/**
 * Faults in a hospital on one box (test/support/hospital.ts: two gateways, two hub instances,
 * the hospital Mosquitto), while a wearable streams in real time and researchers follow its
 * patient on both hubs: a SIGKILL of a hub, a SIGKILL of the gateway the wearable is on (it
 * comes back on the same port), and a restart of Mosquitto. Afterwards: every acknowledged frame
 * is stored once, each gateway anchored every frame it accepted exactly once, and the researcher
 * on the surviving hub received every granted frame, in sequence order, and nothing outside the
 * grant (the grant covers the accelerometer; the wearable also sends ECG).
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { fleetDevices } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions, type FleetReport } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import type { FleetSnapshot } from '../../gateway/hub/fleet-view.js';
import type { LiveMessage } from '../../gateway/research/live.js';
import { InfluxHttp, seriesRows } from '../../gateway/storage/influx-http.js';
import type { GatewayProcess } from '../support/gateway-process.js';
import { anchoredAll, expectAcceptancesAnchored } from '../support/anchored.js';
import { researcherKey } from '../support/consent-world.js';
import { follow, grantAtHubs, respawn, until, useHospital } from '../support/hospital.js';

const SENSORS = 'accelerometer,ecg'; // 1-s frames
const devices = fleetDevices('fleet-faults', 1, SENSORS);
const wearable = devices[0]!;
const patient = devWallet(8);
const researcher = researcherKey('fleet-faults');
const hospital = useHospital({ devices, gateways: ['gw-a', 'gw-b'], hubs: ['hub-1', 'hub-2'] });

/** The wearable streaming in real time to `gw` until stop() (which drains: every frame acknowledged). */
function stream(gw: GatewayProcess): { stop(): Promise<FleetReport> } {
  const ctrl = new AbortController();
  const o: FleetOptions = {
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: 1,
    seed: 'fleet-faults',
    sensors: SENSORS,
    stateDir: join(hospital.h.dir, 'wearable'),
    signal: ctrl.signal,
    backoff: { initialMs: 50, maxMs: 300 },
    drainTimeoutMs: 20_000,
  };
  const run = runFleet(o);
  return {
    stop: async () => {
      ctrl.abort();
      return run;
    },
  };
}

const accepted = async (gw: GatewayProcess): Promise<number> => (await gw.status()).frames.accepted;

describe('faults while a patient is followed across the hospital', () => {
  it('loses, repeats and mis-delivers nothing through a hub SIGKILL, a gateway SIGKILL and a Mosquitto restart', async () => {
    const { h } = hospital;
    const g = await grantAtHubs(hospital, patient, wearable.patient, researcher.address, ['accelerometer']);
    const [hub1, hub2] = [h.hubs.get('hub-1')!, h.hubs.get('hub-2')!];
    const r1 = await follow(hub1, h.hubId, researcher, wearable.patient, 'r-hub-1');
    const r2 = await follow(hub2, h.hubId, researcher, wearable.patient, 'r-hub-2');

    // 1. hub-1 is killed while the wearable streams to gw-a: the researcher on hub-2 keeps receiving.
    let gwA = h.gateways.get('gw-a')!;
    const atA = stream(gwA);
    await until('deliveries at hub-2', () => (r2.got.length >= 2 ? true : undefined));
    await hub1.kill();
    const atKill = r2.got.length;
    await until('deliveries at hub-2 after hub-1 died', () => (r2.got.length >= atKill + 2 ? true : undefined));

    // 2. gw-a is killed mid-stream and comes back on its port: the wearable reconnects and resends.
    const port = gwA.mqttPort;
    await gwA.kill();
    gwA = await respawn(hospital, gwA, { 'mqtt.port': port });
    await until('frames accepted by the restarted gw-a', async () => ((await accepted(gwA)) >= 3 ? true : undefined));
    const reportA = await atA.stop();
    expect(reportA.drained).toBe(true);

    // 3. The wearable moves to gw-b, and the hospital broker restarts under the stream.
    const gwB = h.gateways.get('gw-b')!;
    const atB = stream(gwB);
    await until('frames accepted by gw-b', async () => ((await accepted(gwB)) >= 2 ? true : undefined));
    await hospital.broker.handle.restart();
    await until('frames accepted by gw-b after the restart', async () => ((await accepted(gwB)) >= 4 ? true : undefined));
    const reportB = await atB.stop();
    expect(reportB.drained).toBe(true);
    const total = reportA.frames.acked + reportB.frames.acked;

    // Storage: every acknowledged frame once; each gateway anchored what it accepted, once.
    for (const p of [gwA, gwB]) await anchoredAll(p, 30_000);
    const influx = new InfluxHttp({ url: hospital.influx.handle.url });
    const q = async (m: string): Promise<Record<string, unknown>[]> =>
      seriesRows(await influx.query(`SELECT * FROM "${m}" WHERE "device" = $d`, { database: 'vitalproof', params: { d: wearable.deviceId } }));
    const frames = await q('frames');
    const seqs = frames.map((f) => Number(f['seq'])).sort((a, b) => a - b);
    expect(seqs, 'every acknowledged frame stored, once').toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const raw = new Map(frames.map((f) => [`${wearable.deviceId}/${String(f['seq'])}`, Buffer.from(String(f['raw']), 'base64')]));
    const acceptances = await q('acceptances');
    let anchored = 0;
    for (const name of ['gw-a', 'gw-b']) {
      const mine = acceptances
        .filter((a) => a['gateway'] === name)
        .map((a) => ({ device: wearable.deviceId, seq: BigInt(String(a['seq'])), batch: BigInt(String(a['batch'])), leaf: Number(a['leaf']) }));
      anchored += await expectAcceptancesAnchored(h.dataDir(name), mine, raw, hospital.chainUrl, h.record);
    }
    expect(anchored).toBe(total);

    // The researcher on hub-2: every granted frame, in order, once; nothing outside the grant anywhere.
    const granted = frames
      .filter((f) => f['sensor'] === 'accelerometer')
      .map((f) => Number(f['seq']))
      .sort((a, b) => a - b);
    await until('hub-2 delivered the last granted frame', () => (r2.got.length >= granted.length ? true : undefined));
    const seqOf = (got: LiveMessage[]): number[] => got.map((m) => Number(m.seq));
    expect(seqOf(r2.got)).toEqual(granted);
    const r1Seqs = seqOf(r1.got);
    expect(r1Seqs, 'hub-1 delivered in order until it died').toEqual(granted.slice(0, r1Seqs.length));
    for (const m of [...r1.got, ...r2.got]) expect([m.grantId, m.metric, m.deviceId]).toEqual([g.id.toString(), 'accelerometer', wearable.deviceId]);
    const f = await hub2.get<FleetSnapshot>('/fleet');
    expect(f.devices).toEqual([expect.objectContaining({ device: wearable.deviceId, gateway: 'gw-b', seq: String(total) })]);
    for (const r of [r1, r2]) await r.client.endAsync(true);
  });
});
