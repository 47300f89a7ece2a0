/**
 * A hospital on one box for a vitest file (scripts/lib/hospital.ts, the demo's recipe): influxd,
 * anvil and Mosquitto started once per file, then the contracts, the enrolment, the broker
 * accounts, the gateways and the hub instances; everything stopped in afterAll. With helpers the
 * fleet suites share: a researcher's live connection to a hub, waiting on a condition, and
 * starting a killed gateway or hub again with the flags it had.
 *
 * @example
 *   const hospital = useHospital({ devices, gateways: ['gw-a', 'gw-b'], hubs: ['hub-1', 'hub-2'] });
 *   it('…', async () => { const h = hospital.h; await h.gateways.get('gw-a')!.kill(); … });
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { connect as mqttConnect, type MqttClient } from 'mqtt';
import type { HDNodeWallet, Wallet } from 'ethers';
import type { HubSnapshot } from '../../gateway/hub/status.js';
import type { SimDevice } from '../../device-sim/fleet.js';
import type { LiveMessage } from '../../gateway/research/live.js';
import { startHospital, until, type Hospital } from '../../scripts/lib/hospital.js';
import { GatewayProcess } from '../../scripts/lib/gateway-process.js';
import { useInfluxd, type InfluxdFixture } from './influxd.js';
import { useAnvil } from './anvil.js';
import { useMosquitto, type MosquittoFixture } from './mosquitto.js';
import { bindPatient, grant, researcherOptions, type ConsentWorld } from './consent-world.js';

export { until };

export interface HospitalFixture {
  /** Valid inside tests (after beforeAll). */
  readonly h: Hospital;
  readonly influx: InfluxdFixture;
  readonly broker: MosquittoFixture;
  readonly chainUrl: string;
  /** What test/support/consent-world.ts needs to bind patients and grant, through the first gateway. */
  readonly world: ConsentWorld;
  /** Processes started again by respawn: stopped in afterAll too. */
  readonly restarted: GatewayProcess[];
}

export function useHospital(o: {
  devices: readonly SimDevice[];
  gateways: readonly string[];
  hubs: readonly string[];
  gatewayFlags?: Record<string, string | number>;
  hubFlags?: (dir: string) => Record<string, string | number>;
}): HospitalFixture {
  const influx = useInfluxd();
  const chain = useAnvil();
  const broker = useMosquitto();
  let dir: string | undefined;
  let h: Hospital | undefined;
  let world: ConsentWorld | undefined;
  const restarted: GatewayProcess[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vp-hospital-'));
    h = await startHospital({
      dir,
      chainUrl: chain.handle.url,
      influxUrl: influx.handle.url,
      broker: { url: broker.handle.url, admin: broker.handle.admin },
      devices: o.devices,
      gateways: o.gateways,
      hubs: o.hubs,
      gatewayFlags: { 'batch.intervalMs': 300, 'storage.retryMinMs': 50, ...o.gatewayFlags },
      hubFlags: { 'accessLog.intervalMs': 300, 'hub.holdMs': 1500, ...o.hubFlags?.(dir) },
    });
    const first = o.gateways[0]!;
    world = { dir, dataDir: h.dataDir(first), gw: h.gateways.get(first)!, record: h.record, provider: h.provider, flags: {} };
  });
  afterAll(async () => {
    await Promise.all(restarted.map((p) => p.stop()));
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('the hospital is not started yet: use the fixture inside a test or hook');
    return v;
  };
  return {
    get h() {
      return need(h);
    },
    get world() {
      return need(world);
    },
    get chainUrl() {
      return chain.handle.url;
    },
    influx,
    broker,
    restarted,
  };
}

/**
 * Starts a gateway or hub again with the flags it was started with (after a SIGKILL), and
 * `overrides` on top (an `mqtt.port` to come back where its devices reconnect).
 */
export async function respawn(f: HospitalFixture, p: GatewayProcess, overrides: Record<string, string | number> = {}): Promise<GatewayProcess> {
  const [, , command, ...args] = p.proc.spawnargs;
  const flags: Record<string, string | number> = {};
  for (let i = 0; i + 1 < args.length; i += 2) flags[args[i]!.replace(/^--/, '')] = args[i + 1]!;
  const again = await GatewayProcess.start({ ...flags, ...overrides }, {}, command as 'run' | 'hub');
  f.restarted.push(again);
  return again;
}

/** A researcher's live connection to a hub, collecting deliveries (vp/consented/…) and notices apart. */
export async function follow(
  hub: GatewayProcess,
  hubId: string,
  who: Wallet,
  pseudonym: string,
  clientId: string,
): Promise<{ client: MqttClient; got: LiveMessage[]; notices: unknown[] }> {
  const client = mqttConnect(`mqtt://127.0.0.1:${hub.mqttPort}`, await researcherOptions(who, hubId, clientId));
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

/**
 * The hospital binds the patient of `pseudonym` to `patient`, who grants `researcher` the
 * `metrics` (data window and expiry an hour either side of now); resolves once every hub has it.
 */
export async function grantAtHubs(
  f: HospitalFixture,
  patient: HDNodeWallet,
  pseudonym: string,
  researcher: string,
  metrics: string[],
): Promise<{ id: bigint; block: number }> {
  const w = f.world;
  await bindPatient(w, pseudonym, patient);
  const now = Date.now();
  const g = await grant(w, patient.connect(w.provider), pseudonym, researcher, metrics, now - 3600_000, now + 3600_000, now + 3600_000);
  for (const p of f.h.hubs.values())
    await until('the grant at the hub', async () => ((await p.get<HubSnapshot>('/status')).consent.inForce > 0 ? true : undefined));
  return g;
}
