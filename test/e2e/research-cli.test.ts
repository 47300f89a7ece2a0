/**
 * The researcher and patient command lines end to end: the real gateway process (embedded chain,
 * influxd), simulated wearables, and `vitalproof admin | consent | research` as processes.
 * The hospital binds a patient, the patient grants, the researcher logs in, receives live
 * readings (`research subscribe`), exports them as JSON and CSV with proofs, verifies them, and
 * is cut off when the patient revokes; the patient's `consent list --disclosures` shows every
 * access, each with a proof that verifies. A researcher without a grant is told why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { parseBundles } from '../../gateway/proof/bundle.js';
import type { ApiFrame, Delivery } from '../../gateway/research-client/index.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { anchoredAll, embeddedChainUrl } from '../support/anchored.js';
import { RunningCli } from '../support/running-cli.js';

const influx = useInfluxd();
const FRAMES = 12;
const devices = fleetDevices('research-cli', 2, 'heart_rate,spo2');
const shared = devices[0]!;
const P = shared.patient;
const patient = devWallet(3);
const researcher = devWallet(4);
const stranger = devWallet(6);
let dir: string;
let dataDir: string;
let gw: GatewayProcess;
let url: string;
let mqttUrl: string;
let grantId: string;
const keyFile = (name: string): string => join(dir, `${name}.key`);

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, HOME: dir } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A command line that keeps running (research subscribe), with HOME at the test's dir (its session store). */
const running = (args: string[]): RunningCli => new RunningCli(args, { HOME: dir });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-research-cli-'));
  dataDir = join(dir, 'gw');
  for (const [name, w] of [
    ['patient', patient],
    ['researcher', researcher],
    ['stranger', stranger],
  ] as const)
    writeFileSync(keyFile(name), `${w.privateKey}\n`, { mode: 0o600 });
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  const enrol = cli('enrol', join(dir, 'fleet.json'), '--dataDir', dataDir);
  expect(enrol.code, enrol.stderr).toBe(0);
  gw = await GatewayProcess.start({
    dataDir,
    gatewayId: 'gw-research',
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'batch.intervalMs': 300,
    'accessLog.intervalMs': 300,
  });
  url = `http://127.0.0.1:${gw.httpPort}`;
  mqttUrl = `mqtt://127.0.0.1:${gw.mqttPort}`;
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('sharing with a researcher through the command lines', () => {
  let subscriber: RunningCli;

  it("binds the patient and grants on the running gateway's chain; the gateway sees the grant", async () => {
    const bind = cli('admin', 'bind-patient', P, patient.address, '--dataDir', dataDir);
    expect(bind.code, bind.stderr).toBe(0);
    expect(bind.stdout).toMatch(/\(patientRef 0x[0-9a-f]{64}, enrolled devices\)/);
    const g = cli(
      'consent',
      'grant',
      '--key-file',
      keyFile('patient'),
      '--pseudonym',
      P,
      '--researcher',
      researcher.address,
      '--metrics',
      'heart_rate,spo2',
      '--from',
      'now-1h',
      '--to',
      'now+1h',
      '--expires',
      'now+1h',
      '--purpose',
      'e2e study',
      '--dataDir',
      dataDir,
      '--json',
    );
    expect(g.code, g.stderr).toBe(0);
    grantId = (JSON.parse(g.stdout) as { grantId: string }).grantId;
    await gw.until((s) => s.consent.grants >= 1 && s.consent.inForce >= 1, 10_000, 'the consent view has the grant');
  });

  it('logs in, keeps the session to itself, and lists the grant', () => {
    const r = cli('research', 'login', '--key-file', keyFile('researcher'), '--url', url);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^logged in to gateway gw-research at ${url} as ${researcher.address}; session valid until `));
    expect(r.stdout).toMatch(/1 grant, 1 in force/);
    const sessions = join(dir, '.vitalproof', 'sessions.json');
    expect(statSync(sessions).mode & 0o777).toBe(0o600);
    const doc = JSON.parse(readFileSync(sessions, 'utf8')) as { sessions: { url: string; address: string; gatewayId: string; token: string }[] };
    expect(doc.sessions).toEqual([
      expect.objectContaining({ url, address: researcher.address, gatewayId: 'gw-research', token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) }),
    ]);
    const grants = cli('research', 'grants', '--url', url, '--json');
    expect(grants.code, grants.stderr).toBe(0);
    expect(JSON.parse(grants.stdout)).toEqual([
      expect.objectContaining({ grantId, patient: P, researcher: researcher.address, metrics: ['heart_rate', 'spo2'], status: 'OK' }),
    ]);
  });

  it('tells a researcher without a grant why it receives nothing', async () => {
    const r = running([
      'research',
      'subscribe',
      '--key-file',
      keyFile('stranger'),
      '--pseudonym',
      P,
      '--metric',
      'heart_rate',
      '--url',
      url,
      '--mqtt',
      mqttUrl,
      '--gateway-id',
      'gw-research',
    ]);
    expect(await r.exited).toBe(1);
    expect(r.err).toContain(`refused: vp/consented/${P}/heart_rate: NO_GRANT`);
    expect(r.out).toEqual([]);
    // A login for another gateway is refused at CONNECT (5: not authorised).
    const other = running([
      'research',
      'subscribe',
      '--key-file',
      keyFile('researcher'),
      '--pseudonym',
      P,
      '--metric',
      'heart_rate',
      '--mqtt',
      mqttUrl,
      '--gateway-id',
      'gw-elsewhere',
    ]);
    expect(await other.exited).toBe(1);
    expect(other.err.join('\n')).toMatch(/the gateway refused the login at mqtt:\/\/127\.0\.0\.1:\d+: not authorised \(5\)/);
  });

  it("subscribes, and receives every reading of the patient's wearable live, and nothing else", async () => {
    subscriber = running([
      'research',
      'subscribe',
      '--key-file',
      keyFile('researcher'),
      '--pseudonym',
      P,
      '--metric',
      'heart_rate,spo2',
      '--url',
      url,
      '--mqtt',
      mqttUrl,
    ]);
    await subscriber.until(() => subscriber.err.filter((l) => l.startsWith('subscribed to ')).length === 2, 'both subscriptions');
    const report = await runFleet({
      brokerUrl: mqttUrl,
      devices: devices.length,
      seed: 'research-cli',
      sensors: 'heart_rate,spo2',
      frames: FRAMES,
      stateDir: join(dir, 'sim'),
      drainTimeoutMs: 60_000,
    });
    expect(report.frames.acked).toBe(devices.length * FRAMES);
    await subscriber.until(() => subscriber.out.length >= FRAMES, `${FRAMES} deliveries`);
    const got = subscriber.out.map((l) => JSON.parse(l) as Delivery);
    expect(got).toHaveLength(FRAMES);
    for (const d of got) {
      expect(d).toMatchObject({ grantId, patient: P, deviceId: shared.deviceId });
      expect(['heart_rate', 'spo2']).toContain(d.metric);
      expect(d.frameSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(d.readings.length).toBeGreaterThan(0);
    }
    expect(new Set(got.map((d) => d.seq)).size).toBe(FRAMES);
    await anchoredAll(gw);
  });

  it('exports the grant as JSON with proofs, page by page, with a progress line', () => {
    const file = join(dir, 'grant.json');
    const r = cli('research', 'export', grantId, '--out', file, '--proofs', '--limit', '5', '--url', url);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`exported grant ${grantId}: 3 pages, ${FRAMES} frames, \\d+ readings, ${FRAMES} proofs`));
    expect(r.stdout).toMatch(new RegExp(`wrote ${file} \\(json, ${FRAMES} frames`));
    const doc = JSON.parse(readFileSync(file, 'utf8')) as {
      format: string;
      grantId: string;
      patient: string;
      frames: ApiFrame[];
      summary: { pages: number; frames: number };
    };
    expect(doc).toMatchObject({ format: 'vitalproof.research-export', grantId, patient: P, summary: { pages: 3, frames: FRAMES } });
    expect(doc.frames.map((f) => f.seq)).toEqual([...doc.frames].sort((a, b) => a.readings[0]!.timeMs - b.readings[0]!.timeMs).map((f) => f.seq));
    expect(new Set(doc.frames.map((f) => `${f.deviceId}/${f.seq}`))).toEqual(
      new Set(subscriber.out.map((l) => JSON.parse(l) as Delivery).map((d) => `${d.deviceId}/${d.seq}`)),
    );
    const bundles = parseBundles(JSON.parse(readFileSync(`${file}.proofs.json`, 'utf8')));
    expect(bundles).toHaveLength(FRAMES);
    // Without a session and without the key, nothing is fetched (and nothing written).
    const none = cli('research', 'export', grantId, '--out', join(dir, 'none.json'), '--url', url, '--session-file', join(dir, 'no-sessions.json'));
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no session with .* vitalproof research login --key-file F/);
    expect(() => statSync(join(dir, 'none.json'))).toThrow();
  });

  it('exports CSV exactly as the API serves it, with proofs', async () => {
    const file = join(dir, 'grant.csv');
    const r = cli('research', 'export', grantId, '--out', file, '--format', 'csv', '--proofs', '--limit', '4', '--url', url);
    expect(r.code, r.stderr).toBe(0);
    const { token } = (JSON.parse(readFileSync(join(dir, '.vitalproof', 'sessions.json'), 'utf8')) as { sessions: { token: string }[] }).sessions[0]!;
    let served = '';
    let cursor: string | null = null;
    do {
      const res = await fetch(`${url}/research/grants/${grantId}/readings?format=csv&limit=4${cursor ? `&cursor=${cursor}` : ''}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      served += served ? text.slice(text.indexOf('\n') + 1) : text;
      cursor = res.headers.get('x-next-cursor');
    } while (cursor);
    expect(readFileSync(file, 'utf8')).toBe(served);
    expect(parseBundles(JSON.parse(readFileSync(`${file}.proofs.json`, 'utf8')))).toHaveLength(FRAMES);
  });

  it('verifies the exports against the chain and their signed frames, and catches an edited reading', () => {
    const rpc = embeddedChainUrl(dataDir);
    const json = cli('research', 'verify', join(dir, 'grant.json'), '--rpc', rpc);
    expect(json.code, json.stdout + json.stderr).toBe(0);
    expect(json.stdout).toMatch(new RegExp(`${FRAMES} bundles: ${FRAMES} ok, 0 failed`));
    expect(json.stdout).toMatch(new RegExp(`${FRAMES} frames match their signed, proven frame, 0 do not, 0 have no proof`));
    const csv = cli('research', 'verify', join(dir, 'grant.csv'), '--offline');
    expect(csv.code, csv.stdout + csv.stderr).toBe(0);
    const edited = join(dir, 'edited.json');
    const doc = JSON.parse(readFileSync(join(dir, 'grant.json'), 'utf8')) as { frames: ApiFrame[] };
    const r0 = doc.frames[0]!.readings[0]!;
    r0.values['value'] = r0.values['value']! + 1;
    writeFileSync(edited, JSON.stringify(doc));
    copyFileSync(join(dir, 'grant.json.proofs.json'), `${edited}.proofs.json`);
    const bad = cli('research', 'verify', edited, '--offline');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`MISMATCH ${doc.frames[0]!.deviceId}/${doc.frames[0]!.seq}`));
    expect(cli('research', 'verify', join(dir, 'grant.json')).code).toBe(2); // neither --rpc nor --offline
  });

  it('ends the subscription when the patient revokes, and the export is refused after', async () => {
    const r = cli('consent', 'revoke', grantId, '--key-file', keyFile('patient'), '--dataDir', dataDir);
    expect(r.code, r.stderr).toBe(0);
    expect(await subscriber.exited).toBe(0);
    expect(subscriber.err).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^subscription ended: vp/consented/${P}/(heart_rate|spo2): REVOKED \\(grant ${grantId}\\)`)),
        `every subscription has ended; ${FRAMES} deliveries received`,
      ]),
    );
    const after = cli('research', 'export', grantId, '--out', join(dir, 'late.json'), '--url', url);
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/HTTP 403 REVOKED/);
  });

  it('shows the patient every access, each with a proof that verifies', async () => {
    await gw.until(
      (s) => s.accessLog.entries > 0 && s.accessLog.liveAggregates === 0 && s.accessLog.openEntries === 0 && s.accessLog.pending === 0,
      30_000,
      'every access anchored',
    );
    const r = cli(
      'consent',
      'list',
      '--pseudonym',
      P,
      '--key-file',
      keyFile('patient'),
      '--disclosures',
      '--dataDir',
      dataDir,
      '--url',
      url,
      '--out',
      join(dir, 'report.json'),
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`\\n  ${grantId}\\s+REVOKED `));
    const m = /disclosures \(gateway gw-research\): (\d+) accesses, (\d+) readings, to 1 researcher \(([^)]+)\); (\d+) anchored, 0 pending, 0 errors/.exec(
      r.stdout,
    );
    expect(m, r.stdout).not.toBeNull();
    expect(m![3]).toBe(researcher.address);
    const lines = r.stdout.split('\n').filter((l) => /^ {2}#\d+ /.test(l));
    expect(lines.length).toBe(Number(m![1]));
    expect(lines.every((l) => l.endsWith('proof verified'))).toBe(true);
    expect(lines.some((l) => /^ {2}#\d+ live /.test(l))).toBe(true);
    expect(lines.filter((l) => /^ {2}#\d+ export /.test(l)).length).toBe(3 + 3 + 3); // the pages of the JSON export, of the CSV export, and of the API read directly above
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { format: string; items: { status: string }[] };
    expect(report.format).toBe('vitalproof.disclosure-report');
    expect(report.items.every((i) => i.status === 'anchored')).toBe(true);
    const other = cli(
      'consent',
      'list',
      '--pseudonym',
      devices[1]!.patient,
      '--key-file',
      keyFile('patient'),
      '--disclosures',
      '--dataDir',
      dataDir,
      '--url',
      url,
    );
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/wrong key or wrong pseudonym/);
  });
});
