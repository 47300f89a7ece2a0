/**
 * Proofs anyone can check, end to end: simulated wearables → the real gateway (embedded
 * chain) → anchored batches; bundles come out of the HTTP API and `vitalproof export`, and
 * `vitalproof verify` checks them against the chain, offline, and after tampering.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { runFleet } from '../../device-sim/run.js';
import { parseBundles, type ProofBundle, type ProofBundles } from '../../gateway/proof/bundle.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { anchoredAll, embeddedChainUrl } from '../support/anchored.js';

const influx = useInfluxd();
const DEVICES = 3;
const FRAMES = 12;
let dir: string;
let gw: GatewayProcess;
let sink: InfluxSink;
const devices = fleetDevices('proofs', DEVICES, 'mix');

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-proofs-'));
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', join(dir, 'gw')]);
  gw = await GatewayProcess.start({
    dataDir: join(dir, 'gw'),
    gatewayId: 'gw-proofs',
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'batch.intervalMs': 300,
  });
  sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-proofs' });
  const report = await runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: DEVICES,
    seed: 'proofs',
    frames: FRAMES,
    stateDir: join(dir, 'sim'),
    drainTimeoutMs: 60_000,
  });
  expect(report.frames.acked).toBe(DEVICES * FRAMES);
  await anchoredAll(gw);
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('proof bundles', () => {
  it('serves the bundle of one frame over HTTP, and a coded error for a frame it does not hold', async () => {
    const [f] = await sink.queryFrames(devices[0]!.deviceId);
    const res = await fetch(`http://127.0.0.1:${gw.httpPort}/proofs/frame/${f!.device}/${f!.seq}`);
    expect(res.status).toBe(200);
    const [b] = parseBundles(await res.json());
    expect(b!.frame).toMatchObject({ deviceId: f!.device, seq: f!.seq.toString(), raw: Buffer.from(f!.raw).toString('base64') });
    expect(b!.anchor.batchSeq).toBe(f!.batch!.toString());
    expect(b!.inclusion.leafIndex).toBe(f!.leaf);
    const missing = await fetch(`http://127.0.0.1:${gw.httpPort}/proofs/frame/${f!.device}/999999`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'FRAME_NOT_FOUND' });
  });

  it('exports every anchored frame of a device, and verify passes each against the chain', () => {
    const id = devices[1]!.deviceId;
    const file = join(dir, 'export.json');
    const exp = cli('export', '--device', id, '--out', file, '--dataDir', join(dir, 'gw'));
    expect(exp.code, exp.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as ProofBundles;
    expect(doc.bundles.length).toBe(FRAMES);
    expect(new Set(doc.bundles.map((b) => b.frame.seq)).size).toBe(FRAMES);
    expect(doc.bundles.every((b) => b.frame.deviceId === id)).toBe(true);
    const v = cli('verify', file, '--rpc', embeddedChainUrl(join(dir, 'gw')));
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const offline = cli('verify', file, '--offline');
    expect(offline.code, offline.stdout).toBe(0);
    expect(offline.stdout).toMatch(/anchor/);
    expect(offline.stdout).toMatch(/skip/i);
  });

  it('verify fails a bundle whose reading was changed, and one that claims another tree size', () => {
    const id = devices[2]!.deviceId;
    const file = join(dir, 'one.json');
    const [first] = JSON.parse(cli('export', '--device', id, '--limit', '1', '--dataDir', join(dir, 'gw')).stdout).bundles as ProofBundle[];
    expect(first).toBeDefined();
    const raw = Buffer.from(first!.frame.raw, 'base64');
    raw[40] = raw[40]! ^ 0x01; // a sample byte, under the signature
    writeFileSync(file, JSON.stringify({ ...first, frame: { ...first!.frame, raw: raw.toString('base64') } }));
    const edited = cli('verify', file, '--rpc', embeddedChainUrl(join(dir, 'gw')), '--json');
    expect(edited.code).toBe(1);
    writeFileSync(file, JSON.stringify({ ...first, inclusion: { ...first!.inclusion, treeSize: first!.inclusion.treeSize + 1 } }));
    const resized = cli('verify', file, '--rpc', embeddedChainUrl(join(dir, 'gw')));
    expect(resized.code).toBe(1);
  });
});
