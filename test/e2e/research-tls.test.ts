/**
 * The researcher over TLS end to end (issue #10, item 8): the real gateway process with MQTT
 * over TLS (mqtt.tls.*) and HTTPS (http.tls.*) from a development CA made on the spot
 * (gateway/tls/dev-ca.ts). The researcher logs in over HTTPS and subscribes over mqtts with
 * `--ca`, wearables publish over mqtts with the same CA, and the live deliveries arrive. Without
 * --mqtt, `research subscribe` on a gateway whose API is HTTPS dials its TLS listener: refused
 * with a hint when the CA is not trusted, delivering when NODE_EXTRA_CA_CERTS names it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch } from 'undici';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { readTlsFiles } from '../../device-sim/mqtt-link.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { ensureDevCa, type DevCa } from '../../gateway/tls/dev-ca.js';
import type { Delivery } from '../../gateway/research-client/index.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { RunningCli } from '../support/running-cli.js';

const influx = useInfluxd();
const SEED = 'research-tls';
const FRAMES = 8;
const devices = fleetDevices(SEED, 2, 'heart_rate,spo2');
const P = devices[0]!.patient;
const patient = devWallet(3);
const researcher = devWallet(4);
let dir: string;
let dataDir: string;
let ca: DevCa;
let gw: GatewayProcess;
let url: string;
let mqttsUrl: string;
let grantId: string;
let https: Agent;
const keyFile = (name: string): string => join(dir, `${name}.key`);
/** HOME in the test dir: the session file stays there. */
const env = (): NodeJS.ProcessEnv => ({ HOME: dir });

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env() } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** /status over HTTPS (GatewayProcess.status speaks plain HTTP), trusting the development CA. */
async function status(): Promise<StatusSnapshot> {
  const res = await fetch(`${url}/status`, { dispatcher: https, signal: AbortSignal.timeout(5000) });
  return (await res.json()) as StatusSnapshot;
}

async function until(pred: (s: StatusSnapshot) => boolean, what: string, timeoutMs = 30_000): Promise<StatusSnapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status();
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The wearables publish `frames` more frames each over mqtts with the development CA; all acknowledged. */
async function publish(frames: number): Promise<void> {
  const report = await runFleet({
    brokerUrl: mqttsUrl,
    tls: readTlsFiles({ ca: ca.caCert }),
    devices: devices.length,
    seed: SEED,
    sensors: 'heart_rate,spo2',
    frames,
    stateDir: join(dir, 'sim'),
    drainTimeoutMs: 60_000,
  });
  expect(report.frames.acked).toBe(devices.length * frames);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-research-tls-'));
  dataDir = join(dir, 'gw');
  ca = ensureDevCa(join(dir, 'ca'));
  https = new Agent({ connect: { ca: readFileSync(ca.caCert, 'utf8') } });
  for (const [name, w] of [
    ['patient', patient],
    ['researcher', researcher],
  ] as const)
    writeFileSync(keyFile(name), `${w.privateKey}\n`, { mode: 0o600 });
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  const enrol = cli('enrol', join(dir, 'fleet.json'), '--dataDir', dataDir);
  expect(enrol.code, enrol.stderr).toBe(0);
  gw = await GatewayProcess.start({
    dataDir,
    gatewayId: 'gw-research-tls',
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'mqtt.tls.cert': ca.serverCert,
    'mqtt.tls.key': ca.serverKey,
    'mqtt.tls.port': 0,
    'http.port': 0,
    'http.tls.cert': ca.serverCert,
    'http.tls.key': ca.serverKey,
    'batch.intervalMs': 300,
    'accessLog.intervalMs': 300,
  });
  url = `https://127.0.0.1:${gw.httpPort}`;
  const ready = await gw.waitFor((l) => l.event === 'ready');
  mqttsUrl = `mqtts://127.0.0.1:${ready['mqttTlsPort'] as number}`;
  const bind = cli('admin', 'bind-patient', P, patient.address, '--dataDir', dataDir);
  expect(bind.code, bind.stderr).toBe(0);
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
    'tls study',
    '--dataDir',
    dataDir,
    '--json',
  );
  expect(g.code, g.stderr).toBe(0);
  grantId = (JSON.parse(g.stdout) as { grantId: string }).grantId;
  await until((s) => s.consent.grants >= 1 && s.consent.inForce >= 1, 'the consent view has the grant');
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await https?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a researcher over HTTPS and MQTT over TLS', () => {
  it('logs in over HTTPS and receives live readings over mqtts with --ca, from wearables on mqtts', async () => {
    const login = cli('research', 'login', '--key-file', keyFile('researcher'), '--url', url, '--ca', ca.caCert);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toMatch(new RegExp(`^logged in to gateway gw-research-tls at ${url} as ${researcher.address}`));
    const sub = new RunningCli(
      [
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
        mqttsUrl,
        '--ca',
        ca.caCert,
        '--count',
        String(FRAMES),
      ],
      env(),
    );
    try {
      await sub.until(() => sub.err.filter((l) => l.startsWith('subscribed to ')).length === 2, 'both subscriptions');
      await publish(FRAMES);
      expect(await sub.exited).toBe(0);
    } finally {
      sub.kill();
    }
    const got = sub.out.map((l) => JSON.parse(l) as Delivery);
    expect(got).toHaveLength(FRAMES);
    for (const d of got) {
      expect(d).toMatchObject({ grantId, patient: P, deviceId: devices[0]!.deviceId });
      expect(['heart_rate', 'spo2']).toContain(d.metric);
      expect(d.readings.length).toBeGreaterThan(0);
    }
    expect(new Set(got.map((d) => d.seq)).size).toBe(FRAMES);
  });

  it('exports proof bundles from the HTTPS API with --ca, and refuses an untrusted certificate without it', async () => {
    await until((s) => Number(s.batches.lastAnchored) >= 1 && s.batches.pendingAnchors === 0, 'the frames anchored');
    const out = join(dir, 'bundles.json');
    const untrusted = cli('export', '--device', devices[0]!.deviceId, '--dataDir', dataDir, '--url', url, '--out', out);
    expect(untrusted.code).not.toBe(0);
    const ok = cli('export', '--device', devices[0]!.deviceId, '--dataDir', dataDir, '--url', url, '--ca', ca.caCert, '--out', out);
    expect(ok.code, ok.stderr).toBe(0);
    expect((JSON.parse(readFileSync(out, 'utf8')) as { bundles: unknown[] }).bundles.length).toBeGreaterThan(0);
  });

  it('without --mqtt dials the TLS listener the running gateway advertises: refused untrusted, delivering with NODE_EXTRA_CA_CERTS', async () => {
    // The session saved by the login above names the gateway: no HTTPS call is needed before the broker.
    const untrusted = new RunningCli(
      ['research', 'subscribe', '--key-file', keyFile('researcher'), '--pseudonym', P, '--metric', 'heart_rate', '--dataDir', dataDir],
      env(),
    );
    expect(await untrusted.exited).toBe(1);
    expect(untrusted.err.join('\n')).toMatch(
      new RegExp(`cannot trust the broker at ${mqttsUrl.replace(/\./g, '\\.')}: [A-Z_]+ .*give its CA with --ca FILE \\(or NODE_EXTRA_CA_CERTS\\)`),
    );
    expect(untrusted.out).toEqual([]);

    const trusted = new RunningCli(
      ['research', 'subscribe', '--key-file', keyFile('researcher'), '--pseudonym', P, '--metric', 'heart_rate', '--dataDir', dataDir, '--count', '1'],
      { ...env(), NODE_EXTRA_CA_CERTS: ca.caCert },
    );
    try {
      await trusted.until(() => trusted.err.includes(`subscribed to vp/consented/${P}/heart_rate`), 'the subscription');
      await publish(2 * 2); // two sensors: at least one heart_rate frame of the shared wearable
      expect(await trusted.exited).toBe(0);
    } finally {
      trusted.kill();
    }
    expect(trusted.out).toHaveLength(1);
    expect(JSON.parse(trusted.out[0]!) as Delivery).toMatchObject({ grantId, patient: P, metric: 'heart_rate', deviceId: devices[0]!.deviceId });
  });
});
