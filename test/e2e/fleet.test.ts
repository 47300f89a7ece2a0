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
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as mqttConnect, type MqttClient } from 'mqtt';
import type { Wallet } from 'ethers';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { consentRegistryAt } from '../../gateway/chain/contracts.js';
import { chainProvider, EMBEDDED_ACCOUNTS } from '../../gateway/chain/runtime.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { DynsecClient } from '../../gateway/fleet/dynsec.js';
import { addGateway, addHub, initBroker } from '../../gateway/fleet/broker.js';
import type { FleetSnapshot } from '../../gateway/hub/fleet-view.js';
import type { HubSnapshot } from '../../gateway/hub/status.js';
import type { LiveMessage } from '../../gateway/research/live.js';
import { InfluxHttp, seriesRows } from '../../gateway/storage/influx-http.js';
import { useInfluxd } from '../support/influxd.js';
import { useAnvil } from '../support/anvil.js';
import { useMosquitto } from '../support/mosquitto.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { bindPatient, grant, mined, researcherKey, researcherOptions, type ConsentWorld } from '../support/consent-world.js';
import { drained } from '../support/stored.js';

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
const account = { 'gw-a': devWallet(3), 'gw-b': devWallet(4), 'gw-c': devWallet(5), 'hub-1': devWallet(6), 'hub-2': devWallet(7) } as const;
const hospitalAdmin = devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin);
const patient = devWallet(8);

let dir: string;
let record: DeploymentRecord;
let world: ConsentWorld;
const gw = new Map<string, GatewayProcess>();
const hub = new Map<string, GatewayProcess>();

function chainFlags(name: string): Record<string, string> {
  return {
    'chain.mode': 'external',
    'chain.rpcUrl': chain.handle.url,
    'chain.deployment': join(dir, 'deployment.json'),
    'chain.keyFile': join(dir, `${name}.key`),
    'chain.confirmations': '1',
  };
}

function common(name: string): Record<string, string | number> {
  return {
    dataDir: join(dir, name),
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'uplink.url': broker.handle.url,
    'uplink.passwordFile': join(dir, `${name}.broker`),
    'accessLog.intervalMs': 300,
    ...chainFlags(name),
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-fleet-'));
  writeFileSync(join(dir, 'admin.key'), `${hospitalAdmin.privateKey}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'deployer.key'), `${devWallet(0).privateKey}\n`, { mode: 0o600 });
  for (const [name, w] of Object.entries(account)) writeFileSync(join(dir, `${name}.key`), `${w.privateKey}\n`, { mode: 0o600 });
  // The contracts: every gateway and every hub may anchor (hubs anchor their access logs).
  const run = (...args: string[]): string => execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  run(
    'chain',
    'deploy',
    '--rpc',
    chain.handle.url,
    '--key-file',
    join(dir, 'deployer.key'),
    '--gateway',
    Object.values(account)
      .map((w) => w.address)
      .join(','),
    '--hospital-admin',
    hospitalAdmin.address,
    '--out',
    join(dir, 'deployment.json'),
  );
  record = JSON.parse(readFileSync(join(dir, 'deployment.json'), 'utf8')) as DeploymentRecord;
  // Enrolled once on chain; every gateway and hub gets the hospital's pseudonym directory and key.
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  const asFlags = (o: Record<string, string>): string[] => Object.entries(o).flatMap(([k, v]) => [`--${k}`, v]);
  run('enrol', join(dir, 'fleet.json'), '--dataDir', join(dir, 'gw-a'), '--admin-key-file', join(dir, 'admin.key'), ...asFlags(chainFlags('gw-a')));
  for (const name of [...GATEWAYS.slice(1), ...HUBS]) {
    mkdirSync(join(dir, name), { recursive: true });
    cpSync(join(dir, 'gw-a', 'registry'), join(dir, name, 'registry'), { recursive: true });
  }
  // The hospital broker: one account per gateway (its own prefix only) and per hub.
  const ds = await DynsecClient.connect({ url: broker.handle.url, ...broker.handle.admin });
  try {
    await initBroker(ds);
    for (const name of [...GATEWAYS, ...HUBS]) {
      const password = `pw-${name}-${Math.random().toString(36).slice(2)}`;
      writeFileSync(join(dir, `${name}.broker`), `${password}\n`, { mode: 0o600 });
      if (name.startsWith('gw-')) await addGateway(ds, name, password);
      else await addHub(ds, name, password);
    }
  } finally {
    await ds.close();
  }
  const started = await Promise.all([
    ...GATEWAYS.map((name) => GatewayProcess.start({ ...common(name), gatewayId: name, 'batch.intervalMs': 300, 'storage.retryMinMs': 50 })),
    ...HUBS.map((name) => GatewayProcess.start({ ...common(name), gatewayId: HUB_ID, 'hub.instance': name, 'hub.holdMs': 1500 }, {}, 'hub')),
  ]);
  GATEWAYS.forEach((name, i) => gw.set(name, started[i]!));
  HUBS.forEach((name, i) => hub.set(name, started[GATEWAYS.length + i]!));
  const provider = chainProvider(chain.handle.url, record.chainId, 100);
  world = { dir, dataDir: join(dir, 'gw-a'), gw: gw.get('gw-a')!, record, provider, flags: {} };
});

afterAll(async () => {
  await Promise.all([...gw.values(), ...hub.values()].map((p) => p.stop()));
  world?.provider.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A researcher's live connection to a hub, collecting deliveries. */
async function follow(hubName: string, who: Wallet, pseudonym: string): Promise<{ client: MqttClient; got: LiveMessage[]; notices: unknown[] }> {
  const h = hub.get(hubName)!;
  const client = mqttConnect(`mqtt://127.0.0.1:${h.mqttPort}`, await researcherOptions(who, HUB_ID, `r-${hubName}`));
  await new Promise<void>((res, rej) => {
    client.once('connect', () => res());
    client.once('error', rej);
  });
  const got: LiveMessage[] = [];
  const notices: unknown[] = [];
  client.on('message', (topic, payload) => {
    const m = JSON.parse(payload.toString()) as LiveMessage;
    if (topic.startsWith('vp/consented/')) got.push(m);
    else notices.push(m);
  });
  const granted = await client.subscribeAsync([`vp/consented/${pseudonym}/+`, `vp/researcher/${who.address.toLowerCase()}/notices`], { qos: 0 });
  expect(granted.map((g) => g.qos)).toEqual([0, 0]);
  return { client, got, notices };
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function fleet(port: number, frames: number): ReturnType<typeof runFleet> {
  const o: FleetOptions = {
    brokerUrl: `mqtt://127.0.0.1:${port}`,
    devices: 1,
    seed: SEED,
    sensors: SENSORS,
    stateDir: join(dir, 'wearable'),
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
    const r1 = await follow('hub-1', researcher, wearable.patient);
    const r2 = await follow('hub-2', researcher, wearable.patient);

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

    // Revocation cuts both hubs' streams.
    const consent = consentRegistryAt(record.consentRegistry.address, patient.connect(world.provider));
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
