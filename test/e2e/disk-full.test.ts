/**
 * The disk fills (issue #10, A and C): the gateway's data dir — spool, checkpoints, batches,
 * registry cache, the embedded chain's state — sits on a small tmpfs that another process
 * fills under load. Whatever the gateway does, every frame a device had acknowledged ends up
 * in InfluxDB exactly once:
 *   - below spool.minFreeBytes it holds acknowledgements, raises disk_low, and resumes by
 *     itself when space returns, without exiting;
 *   - filled to the last byte, with the early check off, the spool write fails and the process
 *     exits non-zero (a supervisor restarts it; here the test does), never a live process that
 *     serves nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions, type FleetProgress, type FleetReport } from '../../device-sim/run.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { findFreePort } from '../../gateway/util/net.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { drained, expectStoredExactly } from '../support/stored.js';
import { mountTmpfs, type Tmpfs } from '../support/tmpfs.js';

const influx = useInfluxd();
const MiB = 1024 * 1024;
// One fleet per phase: a simulated device that already covered the recent past would have to
// wait for the real clock before its next frames (device-sim/clock.ts).
const DEVICES = { low: 4, full: 4, torn: 3, held: 3, after: 3 } as const;
const FRAMES = 300;
let fs: Tmpfs;
let gw: GatewayProcess;
let sink: InfluxSink;
let mqttPort: number;
let simDir: string;
const fleets = new Map<string, SimDevice[]>();

function flags(extra: Record<string, string | number> = {}): Record<string, string | number> {
  return {
    dataDir: join(fs.dir, 'gw'),
    gatewayId: 'gw-disk',
    'influx.url': influx.handle.url,
    'mqtt.port': mqttPort,
    'http.port': 0,
    'storage.retryMinMs': 50,
    'storage.retryMaxMs': 400,
    'batch.intervalMs': 500,
    'spool.minFreeBytes': 8 * MiB,
    ...extra,
  };
}

beforeAll(async () => {
  fs = mountTmpfs(64 * MiB);
  mkdirSync(join(fs.dir, 'gw'));
  mqttPort = await findFreePort();
  simDir = mkdtempSync(join(tmpdir(), 'vp-disk-sim-'));
  for (const [seed, n] of Object.entries(DEVICES)) {
    const devices = fleetDevices(`disk-${seed}`, n, 'mix');
    fleets.set(seed, devices);
    const file = join(fs.dir, `${seed}.json`);
    writeEnrolmentFile(file, devices);
    execFileSync(process.execPath, [CLI, 'enrol', file, '--dataDir', join(fs.dir, 'gw')]);
  }
  sink = new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-disk' });
});

afterAll(async () => {
  await gw?.stop();
  fs?.unmount();
  if (simDir) rmSync(simDir, { recursive: true, force: true });
});

function fleet(seed: keyof typeof DEVICES, o: Partial<FleetOptions>): Promise<FleetReport> {
  return runFleet({
    brokerUrl: `mqtt://127.0.0.1:${mqttPort}`,
    devices: DEVICES[seed],
    seed: `disk-${seed}`,
    sensors: 'mix',
    frames: FRAMES,
    // The simulator's own state lives off the tmpfs: the devices' disks are not the gateway's.
    stateDir: join(simDir, seed),
    backoff: { initialMs: 50, maxMs: 500 },
    drainTimeoutMs: 120_000,
    progressIntervalMs: 20,
    ...o,
  });
}

describe('a full disk', () => {
  it('below minFreeBytes: holds acknowledgements, alarms, and resumes by itself when space returns', async () => {
    gw = await GatewayProcess.start(flags());
    let filler: string | undefined;
    let progress: FleetProgress | undefined;
    const run = fleet('low', {
      onProgress: (p) => {
        progress = p;
        if (!filler && p.acked >= 100) filler = fs.fill(4 * MiB);
      },
    });
    const alarm = await gw.waitFor((l) => l.event === 'disk_low');
    expect(alarm.event).toBe('disk_low');
    const held = await gw.until((s) => s.spool.diskLow, 30_000, 'status shows the disk low');
    const atAlarm = progress;
    expect(held.spool.diskFreeBytes).toBeLessThan(8 * MiB);
    expect(held.alarms.map((x) => x.code)).toContain('DISK_FULL');
    // /healthz is not healthy while acknowledgements are held.
    expect((await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`)).status).toBe(503);
    expect(atAlarm!.acked).toBeLessThan(DEVICES.low * FRAMES);
    expect(gw.proc.exitCode).toBeNull();
    rmSync(filler!);
    await gw.waitFor((l) => l.event === 'disk_low_cleared');
    await gw.waitFor((l) => l.event === 'alarm_cleared' && l['code'] === 'DISK_FULL');
    const report = await run;
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(DEVICES.low * FRAMES);
    expect(gw.proc.exitCode).toBeNull();
    await drained(gw);
    await expectStoredExactly(sink, fleets.get('low')!, report);
  });

  it('filled to the last byte: exits non-zero, and after a restart every acknowledged frame is stored once', async () => {
    await gw.stop();
    gw = await GatewayProcess.start(flags({ 'spool.minFreeBytes': 0 }));
    const first = gw;
    let filler: string | undefined;
    let restarted: Promise<void> | undefined;
    const report = await fleet('full', {
      onProgress: (p) => {
        if (!filler && p.acked >= 100) {
          filler = fs.fill(0);
          restarted = (async () => {
            const code = await first.exited;
            // The test is the supervisor: it restarts the gateway once there is room again.
            expect(code).not.toBe(0);
            expect(code).not.toBeNull();
            rmSync(filler!);
            gw = await GatewayProcess.start(flags({ 'spool.minFreeBytes': 0 }));
          })();
        }
      },
    });
    await restarted;
    expect(first.lines.some((l) => l.event === 'fatal')).toBe(true);
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(DEVICES.full * FRAMES);
    expect(report.connections.connects).toBeGreaterThan(DEVICES.full);
    const s = await drained(gw);
    expect(s.spool.lostOnRecovery).toBeUndefined();
    expect(gw.lines.some((l) => l.event === 'spool_loss')).toBe(false);
    await expectStoredExactly(sink, fleets.get('full')!, report);
  });
});

/** Byte offsets at which each record of a spool segment starts (u32 BE payload length ‖ 12 more header bytes ‖ payload). */
function recordOffsets(path: string): number[] {
  const data = readFileSync(path);
  const out: number[] = [];
  for (let off = 0; off + 16 <= data.length; off += 16 + data.readUInt32BE(off)) out.push(off);
  return out;
}

function lastSegment(): string {
  const dir = join(fs.dir, 'gw', 'spool');
  return join(
    dir,
    readdirSync(dir)
      .filter((n) => n.endsWith('.wal'))
      .sort()
      .at(-1)!,
  );
}

describe('a damaged spool tail', () => {
  it('a torn last record (power cut mid-write) is cut at restart and nothing acknowledged is lost', async () => {
    await gw.stop();
    gw = await GatewayProcess.start(flags());
    const report = await fleet('torn', { frames: 100 });
    expect(report.frames.acked).toBe(DEVICES.torn * 100);
    await gw.kill();
    // Half a record after the last one: its header says 500 bytes, 40 are there.
    const torn = Buffer.alloc(56);
    torn.writeUInt32BE(500, 0);
    appendFileSync(lastSegment(), torn);
    gw = await GatewayProcess.start(flags());
    const recovered = await gw.waitFor((l) => l.event === 'spool_recovered');
    expect(recovered['truncatedBytes']).toBe(56);
    expect(gw.lines.some((l) => l.event === 'spool_loss')).toBe(false);
    await drained(gw);
    await expectStoredExactly(sink, fleets.get('torn')!, report);
  });

  it('a tail shorter than the checkpoint is reported as lost, and the next frames get new positions and are stored', async () => {
    // Frames stored (the checkpoint moves) but held in the open batch (the spool is not
    // released): the records between the release point and the checkpoint are what a lost
    // tail can take.
    await gw.stop();
    gw = await GatewayProcess.start(flags({ 'batch.intervalMs': 600_000 }));
    const held = await fleet('held', { frames: 30 });
    expect(held.frames.acked).toBe(DEVICES.held * 30);
    await gw.until((s) => s.storage.framesWritten >= s.frames.accepted && s.batches.open.frames >= DEVICES.held * 30, 60_000, 'stored, not sealed');
    await gw.kill();
    const seg = lastSegment();
    const offsets = recordOffsets(seg);
    // The last five records vanish, as with a disk that acknowledged a sync it never made.
    truncateSync(seg, offsets[offsets.length - 5]!);
    gw = await GatewayProcess.start(flags());
    const loss = await gw.waitFor((l) => l.event === 'spool_loss');
    expect(loss['records']).toBe(5);
    expect(loss['why']).toBe('TAIL_BELOW_CHECKPOINT');
    const s = await gw.status();
    expect(s.spool.lostOnRecovery).toEqual([{ from: loss['from'], to: loss['to'], why: 'TAIL_BELOW_CHECKPOINT' }]);
    // The open batch is sealed with what survived, so no new frame takes a lost frame's leaf.
    const sealed = await gw.waitFor((l) => l.event === 'batch_sealed_after_loss');
    expect(sealed['leaves']).toBe(DEVICES.held * 30 - 5);
    // New frames get positions above the lost ones: every one reaches InfluxDB (before the fix,
    // the storage writer took them for frames it had stored already and skipped them).
    const more = await fleet('after', { frames: 50 });
    expect(more.frames.acked).toBe(DEVICES.after * 50);
    await drained(gw);
    await expectStoredExactly(sink, fleets.get('after')!, more);
    // The frames lost from the spool had been stored before: InfluxDB still has all of them.
    for (const d of fleets.get('held')!) expect((await sink.queryFrames(d.deviceId)).length).toBe(30);
  });
});
