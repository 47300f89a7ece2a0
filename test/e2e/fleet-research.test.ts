/**
 * A researcher through the hub of a hospital on one box (test/support/hospital.ts): two bedside
 * gateways, two hub instances sharing hub.authSecretFile (docs/fleet.md, "Researcher sessions
 * across hubs"). The researcher logs in at hub-1 with `vitalproof research login`, exports the
 * granted patient's readings with proofs covering frames taken by both gateways and verifies
 * them; the same session works at hub-2 and at hub-1 after a SIGKILL and restart; a login
 * replayed at the other instance is AUTH_REPLAYED; logging out ends the session at both.
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fleetDevices } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { parseBundles } from '../../gateway/proof/bundle.js';
import type { HubSnapshot } from '../../gateway/hub/status.js';
import { CLI, type GatewayProcess } from '../support/gateway-process.js';
import { anchoredAll } from '../support/anchored.js';
import { researcherKey } from '../support/consent-world.js';
import { grantAtHubs, respawn, until, useHospital } from '../support/hospital.js';

const SENSORS = 'accelerometer,ecg';
const devices = fleetDevices('fleet-research', 1, SENSORS);
const wearable = devices[0]!;
const patient = devWallet(8);
const researcher = researcherKey('fleet-research');
const hospital = useHospital({
  devices,
  gateways: ['gw-a', 'gw-b'],
  hubs: ['hub-1', 'hub-2'],
  hubFlags: (dir) => ({ 'hub.authSecretFile': join(dir, 'hub-auth.secret') }),
});

const urlOf = (p: GatewayProcess): string => `http://127.0.0.1:${p.httpPort}`;

/** `vitalproof …` as a process; asynchronous, so that the fixtures' servers in this process keep answering. */
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) =>
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, HOME: hospital.h.dir } }, (err, stdout, stderr) =>
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    ),
  );
}

async function api(p: GatewayProcess, path: string, init: { token?: string; body?: unknown } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${urlOf(p)}${path}`, {
    method: init.body === undefined && !path.startsWith('/auth/') ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A login over HTTP at `p`: the signed challenge (to replay it) and the session it became. */
async function login(p: GatewayProcess): Promise<{ signed: { challenge: string; signature: string }; token: string }> {
  const c = await api(p, '/auth/challenge', { body: { address: researcher.address, purpose: 'http' } });
  expect(c.status).toBe(200);
  const challenge = c.body['challenge'] as string;
  const signed = { challenge, signature: await researcher.signMessage(challenge) };
  const r = await api(p, '/auth/login', { body: signed });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { signed, token: r.body['token'] as string };
}

describe('a researcher through the hubs of a hospital', () => {
  it('exports with proofs across gateways, keeps the session across hub instances and a restart, and logs out everywhere', async () => {
    const { h } = hospital;
    const g = await grantAtHubs(hospital, patient, wearable.patient, researcher.address, SENSORS.split(','));
    // The wearable's frames go to gw-a, then to gw-b; both store, seal and anchor them.
    const o = { devices: 1, seed: 'fleet-research', sensors: SENSORS, stateDir: join(h.dir, 'wearable'), backoff: { initialMs: 50, maxMs: 500 } };
    const atA = await runFleet({ ...o, brokerUrl: `mqtt://127.0.0.1:${h.gateways.get('gw-a')!.mqttPort}`, frames: 4 });
    const atB = await runFleet({ ...o, brokerUrl: `mqtt://127.0.0.1:${h.gateways.get('gw-b')!.mqttPort}`, frames: 4 });
    expect([atA.frames.acked, atB.frames.acked]).toEqual([4, 4]);
    for (const p of h.gateways.values()) await anchoredAll(p, 30_000);
    const [hub1, hub2] = [h.hubs.get('hub-1')!, h.hubs.get('hub-2')!];

    // Log in at hub-1 and export through it: every frame, whichever gateway took it, with a proof that verifies.
    const keyFile = join(h.dir, 'researcher.key');
    writeFileSync(keyFile, `${researcher.privateKey}\n`, { mode: 0o600 });
    const sessions = join(h.dir, 'sessions.json');
    expect((await cli('research', 'login', '--key-file', keyFile, '--url', urlOf(hub1), '--session-file', sessions)).code).toBe(0);
    const out = join(h.dir, 'export.json');
    const ex = await cli('research', 'export', g.id.toString(), '--out', out, '--proofs', '--url', urlOf(hub1), '--session-file', sessions);
    expect(ex.code, ex.stderr).toBe(0);
    const bundles = parseBundles(JSON.parse(readFileSync(`${out}.proofs.json`, 'utf8')));
    expect(bundles).toHaveLength(8);
    expect(new Set(bundles.map((b) => b.anchor.gateway))).toEqual(new Set([h.address('gw-a'), h.address('gw-b')]));
    const verified = await cli('research', 'verify', out, '--rpc', hospital.chainUrl);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);

    // The saved session, used at hub-2 as a load balancer in front of both would: the same token.
    const file = JSON.parse(readFileSync(sessions, 'utf8')) as { sessions: { url: string; token: string }[] };
    const token = file.sessions.find((s) => s.url === urlOf(hub1))!.token;
    writeFileSync(sessions, JSON.stringify({ ...file, sessions: [...file.sessions, { ...file.sessions[0]!, url: urlOf(hub2) }] }));
    const grants = await cli('research', 'grants', '--url', urlOf(hub2), '--session-file', sessions);
    expect(grants.code, grants.stderr).toBe(0);
    expect(grants.stdout).toContain(g.id.toString());

    // A login made at hub-1 cannot be replayed at hub-2 once hub-2 has heard of it.
    const second = await login(hub1);
    await until('hub-2 heard of the used challenge', async () => {
      const s = await hub2.get<HubSnapshot>('/status');
      return (s.http?.login as { shared?: { usedNonces: number } } | undefined)?.shared?.usedNonces === 2 ? true : undefined;
    });
    const replay = await api(hub2, '/auth/login', { body: second.signed });
    expect([replay.status, replay.body['error']]).toEqual([401, 'AUTH_REPLAYED']);

    // hub-1 crashes and comes back: the session still works there.
    await hub1.kill();
    const hub1b = await respawn(hospital, hub1);
    expect((await api(hub1b, '/research/grants', { token })).status).toBe(200);
    expect((await api(hub1b, '/auth/login', { body: second.signed })).body['error']).toBe('AUTH_REPLAYED');

    // Logging out at hub-2 ends the session at both instances.
    expect((await api(hub2, '/auth/logout', { token })).status).toBe(200);
    expect((await api(hub2, '/research/grants', { token })).body['error']).toBe('AUTH_UNKNOWN_SESSION');
    await until('hub-1 refuses the logged-out token', async () => ((await api(hub1b, '/research/grants', { token })).status === 401 ? true : undefined), 5000);
    expect((await api(hub1b, '/research/grants', { token })).body['error']).toBe('AUTH_UNKNOWN_SESSION');
    // The other session is still in force; logout ?all=1 ends it too, everywhere.
    expect((await api(hub2, '/research/grants', { token: second.token })).status).toBe(200);
    expect((await api(hub1b, '/auth/logout?all=1', { token: second.token })).status).toBe(200);
    await until(
      'hub-2 refuses every session of the researcher',
      async () => ((await api(hub2, '/research/grants', { token: second.token })).status === 401 ? true : undefined),
      5000,
    );
  });
});
