/**
 * Anchoring on an external chain (a separate anvil standing in for Besu or Geth): contracts
 * deployed with `vitalproof chain deploy`, the gateway pointed at them with an RPC URL, a
 * deployment record and a key file. The chain goes away while wearables keep sending: the
 * gateway keeps accepting, batches queue in order, and when the chain returns every batch is
 * anchored once, in order, none skipped. Confirmations are waited for.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions } from '../../device-sim/run.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { STREAM, anchorRegistryAt } from '../../gateway/chain/contracts.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { useInfluxd } from '../support/influxd.js';
import { useAnvil } from '../support/anvil.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { anchoredAll, expectBatchesConsistent } from '../support/anchored.js';

const influx = useInfluxd();
const chain = useAnvil();
const DEVICES = 3;
let dir: string;
let gw: GatewayProcess;
let deployment: DeploymentRecord;
let sink: InfluxSink;
const gatewayAccount = devWallet(3);

function fleet(seed: string, o: Partial<FleetOptions> = {}): ReturnType<typeof runFleet> {
  return runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: DEVICES,
    seed,
    stateDir: join(dir, `sim-${seed}`),
    frames: 30,
    backoff: { initialMs: 50, maxMs: 500 },
    drainTimeoutMs: 60_000,
    ...o,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-ext-'));
  writeFileSync(join(dir, 'admin.key'), `${devWallet(0).privateKey}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'gateway.key'), `${gatewayAccount.privateKey}\n`, { mode: 0o600 });
  const out = execFileSync(
    process.execPath,
    [
      CLI,
      'chain',
      'deploy',
      '--rpc',
      chain.handle.url,
      '--key-file',
      join(dir, 'admin.key'),
      '--gateway',
      gatewayAccount.address,
      '--out',
      join(dir, 'deployment.json'),
    ],
    { encoding: 'utf8' },
  );
  expect(out).toMatch(/AnchorRegistry\s+0x[0-9a-fA-F]{40}/);
  deployment = JSON.parse(readFileSync(join(dir, 'deployment.json'), 'utf8')) as DeploymentRecord;
  expect(deployment.roles.gateways).toEqual([gatewayAccount.address]);
  for (const seed of ['ext-a', 'ext-b', 'ext-c']) {
    writeEnrolmentFile(join(dir, `${seed}.json`), fleetDevices(seed, DEVICES, 'mix'));
    execFileSync(process.execPath, [CLI, 'enrol', join(dir, `${seed}.json`), '--dataDir', join(dir, 'gw'), '--registry.source', 'file', '--chain.mode', 'off']);
  }
  gw = await GatewayProcess.start({
    dataDir: join(dir, 'gw'),
    gatewayId: 'gw-ext',
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'registry.source': 'file',
    'chain.mode': 'external',
    'chain.rpcUrl': chain.handle.url,
    'chain.deployment': join(dir, 'deployment.json'),
    'chain.keyFile': join(dir, 'gateway.key'),
    'chain.retryMinMs': 100,
    'chain.retryMaxMs': 400,
    'batch.intervalMs': 300,
  });
  sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-ext' });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('anchoring on an external chain', () => {
  it('anchors with the configured gateway account', async () => {
    const report = await fleet('ext-a');
    expect(report.drained).toBe(true);
    const s = await anchoredAll(gw);
    expect(s.chain).toMatchObject({ mode: 'external', up: true, gateway: gatewayAccount.address, chainId: chain.handle.chainId });
    const reg = anchorRegistryAt(deployment.anchorRegistry.address, chain.provider);
    expect(await reg.nextBatchSeq(gatewayAccount.address, STREAM.FRAMES)).toBe(BigInt(s.batches.lastSealed) + 1n);
    await expectBatchesConsistent(join(dir, 'gw'), sink, chain.handle.url, deployment);
  });

  it('queues batches in order while the chain is down and anchors each once when it returns', async () => {
    const before = await gw.status();
    await chain.handle.stop();
    // Two rounds with a sealed batch between them: at least two batches wait for the chain.
    const first = await fleet('ext-b', { frames: 15 });
    await gw.until(
      (s) => BigInt(s.batches.lastSealed) > BigInt(before.batches.lastSealed) && s.batches.open.frames === 0,
      30_000,
      'a batch sealed while the chain is down',
    );
    // Another fleet: the first one's clocks are ahead of real time now (frames are timestamped in the past).
    const report = await fleet('ext-c', { frames: 15 });
    expect(first.drained && report.drained).toBe(true);
    expect(first.frames.acked + report.frames.acked).toBe(DEVICES * 30);
    const down = await gw.until(
      (s) => !s.chain.up && s.batches.pendingAnchors >= 2 && s.batches.open.frames === 0,
      30_000,
      'batches queued while the chain is down',
    );
    expect(down.batches.lastAnchored).toBe(before.batches.lastAnchored);
    expect((await gw.waitFor((l) => l.event === 'chain_down')).event).toBe('chain_down');

    await chain.handle.restart();
    const s = await anchoredAll(gw);
    expect(Number(s.batches.lastAnchored)).toBeGreaterThanOrEqual(Number(down.batches.lastSealed));
    expect((await gw.waitFor((l) => l.event === 'chain_recovered')).event).toBe('chain_recovered');
    // In order and once each: one `anchored` line per batch, sequences strictly increasing by one.
    const anchored = gw.lines.filter((l) => l.event === 'anchored').map((l) => Number(l['batch']));
    expect(anchored).toEqual(Array.from({ length: anchored.length }, (_, i) => i + 1));
    await expectBatchesConsistent(join(dir, 'gw'), sink, chain.handle.url, deployment);
    const devices = [...fleetDevices('ext-b', DEVICES, 'mix'), ...fleetDevices('ext-c', DEVICES, 'mix')];
    const stored = await Promise.all(devices.map((d) => sink.queryFrames(d.deviceId)));
    expect(stored.reduce((n, f) => n + f.length, 0)).toBe(DEVICES * 30);
  });
});
