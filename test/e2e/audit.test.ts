/**
 * The audit against real servers: simulated wearables → the real gateway process (embedded
 * anvil, anchoring every 500 ms) → a real influxd. InfluxDB is then tampered with the
 * `influx` command-line client, as anyone with database access could, and the audit must
 * name exactly what was done, point by point.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions, type FleetReport } from '../../device-sim/run.js';
import { HEADER_BYTES, decodeFrame, sampleTimeNs, sampleValue } from '../../firmware-proto/frame.js';
import { BatchStore } from '../../gateway/anchor/batch-store.js';
import { runAudit, type AuditChain, type AuditOptions, type AuditReport, type Finding } from '../../gateway/audit/audit.js';
import { auditCommand } from '../../gateway/cli/audit.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { chainProvider } from '../../gateway/chain/runtime.js';
import { Rfc6962Tree } from '../../gateway/merkle/tree.js';
import { FileRegistry } from '../../gateway/registry/file-registry.js';
import { InfluxHttp } from '../../gateway/storage/influx-http.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { drained } from '../support/stored.js';
import { anchoredAll, embeddedChainUrl } from '../support/anchored.js';

const influx = useInfluxd();
const GATEWAY = 'gw-audit';
const FLEETS = {
  clean: { n: 3, sensors: 'heart_rate,spo2,skin_temperature,accelerometer' },
  gap: { n: 1, sensors: 'heart_rate,spo2' },
  unanchored: { n: 1, sensors: 'heart_rate' },
} as const;
type Seed = keyof typeof FLEETS;

let dir: string;
let gwDir: string;
let gw: GatewayProcess;
let sink: InfluxSink;
let chain: AuditChain;
let destroyChain: () => void;
const fleets = new Map<Seed, SimDevice[]>();

function enrol(seed: Seed, dataDir: string, extra: string[] = []): void {
  const devices = fleetDevices(seed, FLEETS[seed].n, FLEETS[seed].sensors);
  fleets.set(seed, devices);
  const file = join(dir, `${seed}.json`);
  writeEnrolmentFile(file, devices);
  execFileSync(process.execPath, [CLI, 'enrol', file, '--dataDir', dataDir, ...extra]);
}

function fleet(seed: Seed, port: number, o: Partial<FleetOptions>): Promise<FleetReport> {
  return runFleet({
    brokerUrl: `mqtt://127.0.0.1:${port}`,
    devices: FLEETS[seed].n,
    seed,
    sensors: FLEETS[seed].sensors,
    stateDir: join(dir, `state-${seed}`),
    backoff: { initialMs: 50, maxMs: 500 },
    drainTimeoutMs: 30_000,
    ...o,
  });
}

/** One InfluxQL statement through the `influx` command-line client, as a database user would. */
function influxql(q: string): void {
  execFileSync('influx', ['-host', '127.0.0.1', '-port', String(influx.handle.port), '-database', 'vitalproof', '-precision', 'ns', '-execute', q], {
    stdio: 'pipe',
  });
}

/**
 * Sample and `frames` points InfluxDB holds for the devices a gateway accepted frames of (every
 * point has a seq field), counted by InfluxDB itself. Schema v2: those points carry no gateway
 * tag; the gateway's `acceptances` (which do) say which devices are its.
 */
async function countPoints(gatewayId: string, device?: string): Promise<number> {
  const http = new InfluxHttp({ url: influx.handle.url });
  const tagged = await http.query(`SHOW TAG VALUES FROM "acceptances" WITH KEY = "device" WHERE "gateway" = '${gatewayId}'`, { database: 'vitalproof' });
  const devices = tagged.flatMap((x) => x.values.map((v) => String(v[1]))).filter((d) => device === undefined || d === device);
  if (devices.length === 0) return 0;
  const where = `"gateway" = '' AND (${devices.map((d) => `"device" = '${d}'`).join(' OR ')})`;
  const series = await http.query(`SELECT COUNT("seq") FROM /.*/ WHERE ${where}`, { database: 'vitalproof' });
  return series.reduce((n, s) => n + s.values.reduce((m, v) => m + Number(v[1]), 0), 0);
}

function fileKeys(dataDir: string): Pick<AuditOptions, 'keys' | 'keysSource'> {
  const reg = new FileRegistry(join(dataDir, 'registry.json'));
  return { keys: (id) => reg.get(id)?.publicKey, keysSource: 'file' };
}

function audit(o: Partial<AuditOptions> = {}): Promise<AuditReport> {
  return runAudit({
    influx: { url: influx.handle.url, database: 'vitalproof' },
    batchStore: new BatchStore(join(gwDir, 'batches')),
    chain,
    gatewayId: GATEWAY,
    ...fileKeys(gwDir),
    ...o,
  });
}

const key = (f: Pick<Finding, 'code' | 'measurement' | 'device' | 'timeNs'>): string => `${f.code} ${f.measurement} ${f.device} ${f.timeNs}`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-audit-'));
  gwDir = join(dir, 'gw');
  enrol('clean', gwDir);
  enrol('gap', gwDir);
  gw = await GatewayProcess.start({
    dataDir: gwDir,
    gatewayId: GATEWAY,
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'batch.intervalMs': 500,
  });
  sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: GATEWAY });
  const record = JSON.parse(readFileSync(join(gwDir, 'chain', 'deployment.json'), 'utf8')) as DeploymentRecord;
  const provider = chainProvider(embeddedChainUrl(gwDir), record.chainId, 100);
  destroyChain = () => provider.destroy();
  const s = await gw.status();
  if (!s.chain.gateway) throw new Error('the gateway runs without a chain');
  chain = { provider, anchorRegistry: record.anchorRegistry.address, deviceRegistry: record.deviceRegistry.address, gateways: [s.chain.gateway] };
});

afterAll(async () => {
  destroyChain?.();
  await gw?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('audit end to end', () => {
  it('finds every point of untouched data intact, and the CLI exits 0', async () => {
    const report = await fleet('clean', gw.mqttPort, { frames: 30 });
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.clean.n * 30);
    await anchoredAll(gw);
    const points = await countPoints(GATEWAY);
    expect(points).toBeGreaterThan(FLEETS.clean.n * 30);

    const r = await audit();
    expect(r.findings).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.summary.points).toBe(points);
    expect(r.summary.counts).toEqual({ intact: points, edited: 0, frame_tampered: 0, missing: 0, not_anchored: 0, unverifiable: 0, unexpected: 0, seq_gap: 0 });
    expect(r.devices.map((d) => d.device).sort()).toEqual(
      fleets
        .get('clean')!
        .map((d) => d.deviceId)
        .sort(),
    );
    for (const d of r.devices) expect(['chain', 'file']).toContain(d.keySource);
    expect(r.batches.length).toBeGreaterThan(0);
    expect(r.batches.every((b) => b.status === 'anchored' && b.chainRoot === b.root)).toBe(true);

    // The command: InfluxDB and the chain found through the running gateway.
    const lines: string[] = [];
    const json = join(dir, 'clean.json');
    expect(await auditCommand(['--dataDir', gwDir, '--json', json], (l) => lines.push(l))).toBe(0);
    expect(lines.join('\n')).toMatch(/OK: every point intact/);
    const parsed = JSON.parse(readFileSync(json, 'utf8')) as AuditReport;
    expect(parsed.ok).toBe(true);
    expect(parsed.summary.counts.intact).toBe(points);

    // A range that cuts frames of interleaved sensors (1 s, 5 s and 10 s frames): the samples
    // inside it trace to frames that start before it, and frames just outside it close what
    // would otherwise look like sequence gaps.
    const d0 = fleets.get('clean')![0]!.deviceId;
    const f0 = await sink.queryFrames(d0);
    const fromMs = Number(f0[Math.floor(f0.length / 3)]!.timeNs / 1_000_000n) + 300;
    const toMs = fromMs + 9_000;
    const ranged = await audit({ device: d0, fromMs, toMs });
    expect(ranged.findings).toEqual([]);
    expect(ranged.ok).toBe(true);
    const inRange = await new InfluxHttp({ url: influx.handle.url }).query(
      `SELECT COUNT("seq") FROM /.*/ WHERE "gateway" = '' AND "device" = '${d0}' AND time >= ${fromMs}ms AND time < ${toMs}ms`,
      { database: 'vitalproof' },
    );
    expect(ranged.summary.points).toBe(inRange.reduce((n, s) => n + Number(s.values[0]![1]), 0));

    // Usage and configuration errors are exit code 2, before anything is read.
    const usage: string[] = [];
    expect(await auditCommand(['--dataDir', gwDir, '--device', 'not-a-device'], (l) => usage.push(l))).toBe(2);
    expect(usage[0]).toMatch(/--device must be 16 lowercase hex digits/);
    expect(await auditCommand(['--dataDir', join(dir, 'nowhere')], () => undefined)).toBe(2);

    // Without a chain nothing can be called intact.
    const blind = await audit({ chain: undefined });
    expect(blind.ok).toBe(false);
    expect(blind.summary.counts.unverifiable).toBe(points);
    expect(blind.summary.counts.intact).toBe(0);
  });

  it('names exactly the edited point, the deleted point and every point of the altered frame', async () => {
    const [d0, d1, d2] = fleets.get('clean')!.map((d) => d.deviceId) as [string, string, string];
    const before = await countPoints(GATEWAY);

    // 1. One heart-rate value of d0 changed in place (same series, same time).
    const hr0 = await sink.queryPoints('heart_rate', d0);
    const edited = hr0[2]!;
    const frames0 = await sink.queryFrames(d0);
    influxql(`INSERT heart_rate,device=${d0},patient=${edited.patient} value=${edited.values['value']! + 7} ${edited.timeNs}`);

    // 2. One SpO2 point of d1 deleted.
    const spo1 = await sink.queryPoints('spo2', d1);
    const deleted = spo1[1]!;
    influxql(`DELETE FROM "spo2" WHERE "device"='${d1}' AND time = ${deleted.timeNs}`);

    // 3. One byte of one stored heart-rate frame of d2 changed (its first sample, +-1).
    const frames2 = await sink.queryFrames(d2);
    const altered = frames2.find((f) => f.sensor === 'heart_rate' && f.count > 1)!;
    const raw = Buffer.from(altered.raw);
    raw[HEADER_BYTES + 3]! ^= 1;
    influxql(`INSERT frames,device=${d2},patient=${altered.patient},sensor=heart_rate raw="${raw.toString('base64')}" ${altered.timeNs}`);
    expect(Buffer.from((await sink.queryFrames(d2, undefined, undefined, altered.seq))[0]!.raw).equals(raw)).toBe(true);
    const alteredFrame = decodeFrame(altered.raw);

    const lines: string[] = [];
    const json = join(dir, 'tampered.json');
    expect(await auditCommand(['--dataDir', gwDir, '--json', json, '--limit', '50'], (l) => lines.push(l))).toBe(1);
    const r = JSON.parse(readFileSync(json, 'utf8')) as AuditReport;
    expect(r.ok).toBe(false);

    const editedFrame = frames0.find((f) => f.seq === edited.seq)!;
    const deletedFrame = (await sink.queryFrames(d1)).find((f) => f.seq === deleted.seq)!;
    const expected = [
      key({ code: 'edited', measurement: 'heart_rate', device: d0, timeNs: edited.timeNs.toString() }),
      key({ code: 'missing', measurement: 'spo2', device: d1, timeNs: deleted.timeNs.toString() }),
      key({ code: 'frame_tampered', measurement: 'frames', device: d2, timeNs: altered.timeNs.toString() }),
      ...Array.from({ length: altered.count }, (_, i) =>
        key({ code: 'frame_tampered', measurement: 'heart_rate', device: d2, timeNs: sampleTimeNs(alteredFrame, i).toString() }),
      ),
    ];
    expect(r.findings.map(key).sort()).toEqual(expected.sort());
    expect(r.summary.counts).toEqual({
      intact: before - 2 - (altered.count + 1),
      edited: 1,
      frame_tampered: altered.count + 1,
      missing: 1,
      not_anchored: 0,
      unverifiable: 0,
      unexpected: 0,
      seq_gap: 0,
    });
    expect(r.summary.points).toBe(before - 1);

    const e = r.findings.find((f) => f.code === 'edited')!;
    expect(e).toMatchObject({
      field: 'value',
      stored: edited.values['value']! + 7,
      expected: edited.values['value'],
      seq: edited.seq.toString(),
      batch: editedFrame.batch!.toString(),
      leaf: editedFrame.leaf,
    });
    const m = r.findings.find((f) => f.code === 'missing')!;
    const deletedIndex = Number((deleted.timeNs - deletedFrame.timeNs) / (BigInt(deletedFrame.intervalUs) * 1000n));
    expect(m).toMatchObject({
      seq: deleted.seq.toString(),
      batch: deletedFrame.batch!.toString(),
      leaf: deletedFrame.leaf,
      expected: sampleValue(decodeFrame(deletedFrame.raw), deletedIndex),
    });
    for (const t of r.findings.filter((f) => f.code === 'frame_tampered')) {
      expect(t).toMatchObject({ device: d2, seq: altered.seq.toString(), batch: altered.batch!.toString(), leaf: altered.leaf });
      expect(t.reason).toMatch(/signature does not verify/);
      expect(t.reason).toMatch(new RegExp(`not leaf ${altered.leaf} of batch ${altered.batch} `));
    }
    // The printed summary names each of them.
    const text = lines.join('\n');
    expect(text).toMatch(/NOT OK: 8 findings/);
    expect(text).toMatch(new RegExp(`edited +heart_rate +${d0} .*value stored ${edited.values['value']! + 7}, signed ${edited.values['value']}`));
    expect(text).toMatch(new RegExp(`missing +spo2 +${d1}`));
  });

  it('reports a frame deleted with all its samples as a missing batch leaf', async () => {
    const d1 = fleets.get('clean')![1]!.deviceId;
    const gone = (await sink.queryFrames(d1)).find((f) => f.sensor === 'accelerometer')!;
    const f = decodeFrame(gone.raw);
    influxql(`DELETE FROM "frames" WHERE "device"='${d1}' AND "sensor"='accelerometer' AND time = ${gone.timeNs}`);
    influxql(`DELETE FROM "accelerometer" WHERE "device"='${d1}' AND time >= ${sampleTimeNs(f, 0)} AND time <= ${sampleTimeNs(f, f.count - 1)}`);
    expect((await sink.queryPoints('accelerometer', d1)).some((p) => p.seq === gone.seq)).toBe(false);

    const r = await audit({ device: d1 });
    const leafFinding = r.findings.find((x) => x.measurement === 'frames')!;
    expect(r.findings.map((x) => `${x.code} ${x.measurement}`).sort()).toEqual(['missing frames', 'missing spo2']);
    expect(leafFinding).toMatchObject({
      code: 'missing',
      device: d1,
      seq: gone.seq.toString(),
      batch: gone.batch!.toString(),
      leaf: gone.leaf,
      timeNs: gone.timeNs.toString(),
    });
    expect(r.summary.counts.intact).toBe(r.summary.points);
    expect(r.summary.points).toBe(await countPoints(GATEWAY, d1));
  });

  it('names inserted points, edited seq fields, an edited batch reference and an undecodable frame', async () => {
    const [d0, , d2] = fleets.get('clean')!.map((d) => d.deviceId) as [string, string, string];
    const hr = await sink.queryPoints('heart_rate', d0);
    const edited = hr[2]!; // changed by the test above
    const p = hr[4]!;
    const insertedAt = p.timeNs + 500_000_000n; // between two samples of a 1 s interval
    influxql(`INSERT heart_rate,device=${d0},patient=${p.patient} seq=${p.seq}i,value=80 ${insertedAt}`);
    const q = (await sink.queryPoints('spo2', d0))[3]!;
    influxql(`INSERT spo2,device=${d0},patient=${q.patient} seq=${q.seq + 1000n}i ${q.timeNs}`);
    const fs = (await sink.queryFrames(d0)).find((f) => f.sensor === 'skin_temperature')!;
    influxql(`INSERT acceptances,device=${d0},gateway=${GATEWAY},sensor=skin_temperature batch=${fs.batch! + 1n}i ${fs.timeNs}`);
    const spoFrame = (await sink.queryFrames(d2)).find((f) => f.sensor === 'spo2')!;
    influxql(`INSERT frames,device=${d2},patient=${spoFrame.patient},sensor=spo2 raw="AAAA" ${spoFrame.timeNs}`);

    const r0 = await audit({ device: d0 });
    expect(r0.findings.map(key).sort()).toEqual(
      [
        key({ code: 'edited', measurement: 'heart_rate', device: d0, timeNs: edited.timeNs.toString() }),
        key({ code: 'unexpected', measurement: 'heart_rate', device: d0, timeNs: insertedAt.toString() }),
        key({ code: 'edited', measurement: 'spo2', device: d0, timeNs: q.timeNs.toString() }),
        key({ code: 'edited', measurement: 'frames', device: d0, timeNs: fs.timeNs.toString() }),
      ].sort(),
    );
    expect(r0.findings.find((f) => f.code === 'edited' && f.measurement === 'spo2')).toMatchObject({
      field: 'seq',
      stored: (q.seq + 1000n).toString(),
      expected: q.seq.toString(),
    });
    expect(r0.findings.find((f) => f.code === 'edited' && f.measurement === 'frames')).toMatchObject({
      field: 'batch',
      stored: (fs.batch! + 1n).toString(),
      expected: fs.batch!.toString(),
      batch: fs.batch!.toString(),
      leaf: fs.leaf,
    });
    expect(r0.summary.points).toBe(await countPoints(GATEWAY, d0));

    const r2 = await audit({ device: d2 });
    const undecodable = r2.findings.filter((f) => f.seq === spoFrame.seq.toString());
    expect(undecodable.map(key).sort()).toEqual(
      [
        key({ code: 'frame_tampered', measurement: 'frames', device: d2, timeNs: spoFrame.timeNs.toString() }),
        ...Array.from({ length: spoFrame.count }, (_, i) =>
          key({ code: 'frame_tampered', measurement: 'spo2', device: d2, timeNs: (spoFrame.timeNs + BigInt(i * spoFrame.intervalUs) * 1000n).toString() }),
        ),
      ].sort(),
    );
    for (const f of undecodable) expect(f.reason).toMatch(/does not decode/);
    // The frame altered in the test above is still reported, and nothing else is.
    expect(r2.findings.length).toBe(undecodable.length + 6);
  });

  it('reports the frames of batches that are not anchored as not_anchored, never intact', async () => {
    const bDir = join(dir, 'gw-b');
    enrol('unanchored', bDir, ['--registry.source', 'file', '--chain.mode', 'off']);
    const gwB = await GatewayProcess.start({
      dataDir: bDir,
      gatewayId: 'gw-b',
      'influx.url': influx.handle.url,
      'mqtt.port': 0,
      'http.port': 0,
      'batch.intervalMs': 500,
      'chain.mode': 'off',
      'registry.source': 'file',
    });
    try {
      const report = await fleet('unanchored', gwB.mqttPort, { frames: 10 });
      expect(report.frames.acked).toBe(10);
      await drained(gwB);
      const points = await countPoints('gw-b');
      expect(points).toBeGreaterThan(10);
      const store = new BatchStore(join(bDir, 'batches'));
      for (const withChain of [true, false]) {
        const r = await runAudit({
          influx: { url: influx.handle.url, database: 'vitalproof' },
          batchStore: store,
          ...(withChain ? { chain } : {}),
          gatewayId: 'gw-b',
          ...fileKeys(bDir),
        });
        expect(r.ok).toBe(false);
        expect(r.summary.counts).toEqual({
          intact: 0,
          edited: 0,
          frame_tampered: 0,
          missing: 0,
          not_anchored: points,
          unverifiable: 0,
          unexpected: 0,
          seq_gap: 0,
        });
        expect(r.findings.every((f) => f.code === 'not_anchored' && /not sealed yet|not anchored/.test(f.reason))).toBe(true);
        expect(r.batches.every((b) => b.status === 'sealed' || b.status === 'open')).toBe(true);
        expect(r.otherGateways).toEqual([GATEWAY]);
        // Enrolled in gw-b's registry file only: the key comes from there, and the report says so.
        expect(r.devices.map((d) => d.keySource)).toEqual(['file']);
        expect(r.keySources).toEqual({ file: 1 });
      }
    } finally {
      await gwB.stop();
    }
  });

  it('names the sequence numbers a device skipped', async () => {
    const report = await fleet('gap', gw.mqttPort, { frames: 40, faults: 'gap=0.25' });
    expect(report.drained).toBe(true);
    expect(report.faults.expectedSeqGaps).toBeGreaterThan(0);
    await anchoredAll(gw);
    const device = fleets.get('gap')![0]!.deviceId;
    // Ground truth: every number below nextSeq was taken; those in no batch were skipped.
    const store = new BatchStore(join(gwDir, 'batches'));
    const signed = new Set<bigint>();
    for (let s = 1n; s <= store.lastSealed; s++) for (const l of store.get(s)!.leaves) if (l.device === device) signed.add(l.seq);
    const first = [...signed].reduce((a, b) => (a < b ? a : b));
    const skipped: string[] = [];
    for (let s = first; s < BigInt(report.perDevice[0]!.nextSeq); s++) if (!signed.has(s)) skipped.push(s.toString());
    expect(skipped.length).toBe(report.faults.expectedSeqGaps);

    const r = await audit({ device });
    expect(r.findings.every((f) => f.code === 'seq_gap')).toBe(true);
    expect(r.findings.flatMap((f) => f.missingSeqs!)).toEqual(skipped);
    expect(r.summary.counts.seq_gap).toBe(r.findings.length);
    expect(r.summary.counts.intact).toBe(await countPoints(GATEWAY, device));
    expect(r.ok).toBe(false);

    // A range that starts in the middle of a frame: its samples inside the range are checked
    // against the frame that starts before it; the gaps are those between frames in the range.
    const frames = await sink.queryFrames(device);
    const mid = frames[10]!;
    const fromMs = Number(mid.timeNs / 1_000_000n) + 2500;
    const toMs = fromMs + 20_000;
    const ranged = await audit({ device, fromMs, toMs });
    const http = new InfluxHttp({ url: influx.handle.url });
    const inRange = await http.query(
      `SELECT COUNT("seq") FROM /.*/ WHERE "gateway" = '' AND "device" = '${device}' AND time >= ${fromMs}ms AND time < ${toMs}ms`,
      {
        database: 'vitalproof',
      },
    );
    const expectedPoints = inRange.reduce((n, s) => n + Number(s.values[0]![1]), 0);
    expect(ranged.summary.points).toBe(expectedPoints);
    expect(ranged.summary.counts.intact).toBe(expectedPoints);
    const seqsInRange = frames.filter((f) => f.timeNs >= BigInt(fromMs) * 1_000_000n && f.timeNs < BigInt(toMs) * 1_000_000n).map((f) => f.seq);
    const lo = seqsInRange.reduce((a, b) => (a < b ? a : b));
    const hi = seqsInRange.reduce((a, b) => (a > b ? a : b));
    expect(ranged.findings.length).toBeGreaterThan(0);
    expect(ranged.findings.flatMap((f) => f.missingSeqs!)).toEqual(skipped.filter((s) => BigInt(s) > lo && BigInt(s) < hi));
  });

  it('reports every point of a batch whose root the chain does not hold as frame_tampered', async () => {
    const device = fleets.get('gap')![0]!.deviceId; // untouched in InfluxDB
    const frames = await sink.queryFrames(device);
    const target = frames[0]!.batch!;
    // A copy of the batch store in which batch `target` was rewritten consistently: one leaf
    // of another device replaced, and the root recomputed, so only the chain can tell.
    const copy = join(dir, 'batches-rewritten');
    cpSync(join(gwDir, 'batches'), copy, { recursive: true });
    const store = new BatchStore(copy);
    const path = store.batchPath(target);
    const file = JSON.parse(readFileSync(path, 'utf8')) as { root: string; leafHashes: string; frames: [string, string, number, string][] };
    const victim = Math.max(
      0,
      file.frames.findIndex(([d]) => d !== device),
    );
    const hashes = Buffer.from(file.leafHashes, 'base64');
    hashes[victim * 32]! ^= 0xff;
    file.leafHashes = hashes.toString('base64');
    file.root = `0x${Rfc6962Tree.fromLeafHashes(Array.from({ length: hashes.length / 32 }, (_, i) => hashes.subarray(i * 32, i * 32 + 32)))
      .root()
      .toString('hex')}`;
    writeFileSync(path, JSON.stringify(file));

    const r = await audit({ device, batchStore: new BatchStore(copy) });
    const inTarget = frames.filter((f) => f.batch === target);
    const pointsInTarget = inTarget.reduce((n, f) => n + f.count + 1, 0);
    expect(r.batches.find((b) => b.batch === target.toString())).toMatchObject({ status: 'root_mismatch', root: file.root });
    const tampered = r.findings.filter((f) => f.code === 'frame_tampered');
    expect(tampered.length).toBe(pointsInTarget);
    expect(r.findings.filter((f) => f.code !== 'frame_tampered' && f.code !== 'seq_gap')).toEqual([]);
    expect(r.summary.counts.intact).toBe(r.summary.points - pointsInTarget);
    expect(new Set(tampered.map((f) => f.batch))).toEqual(new Set([target.toString()]));
    for (const f of tampered) expect(f.reason).toMatch(/but the chain anchored/);
    // The same store, untouched, passes for that batch.
    const clean = await audit({ device });
    expect(clean.findings.filter((f) => f.batch === target.toString() && f.code === 'frame_tampered')).toEqual([]);
  });
});
