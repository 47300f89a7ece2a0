/**
 * The uplink end to end (docs/uplink.md): simulated wearables → the real gateway process →
 * (MQTT over TLS) → a real Mosquitto 2 with dynamic security → a subscriber on a hub account. Every frame the
 * gateway acknowledged reaches the hub with its exact signed bytes, first copies in sequence
 * order per device; through a broker restart (the spool holds the frames) and a SIGKILL of the
 * gateway (the uplink resumes from its cursor: duplicates allowed, identical, nothing lost);
 * anchored batches are announced; the retained status says online, and offline after a crash.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { decodeFrame } from '../../firmware-proto/frame.js';
import { FRAME_TAG } from '../../firmware-proto/signing.js';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetOptions, type FleetReport } from '../../device-sim/run.js';
import { BatchStore } from '../../gateway/anchor/batch-store.js';
import { ensureDevCa } from '../../gateway/tls/dev-ca.js';
import { brokerCommand } from '../../gateway/cli/broker.js';
import { decodeUplinkMessage, type UplinkAnchor, type UplinkFrame, type UplinkStatusMessage } from '../../gateway/uplink/envelope.js';
import { useInfluxd } from '../support/influxd.js';
import { useMosquitto } from '../support/mosquitto.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';

const influx = useInfluxd();
// The gateways reach the broker over TLS (a DEV ONLY CA made here); the hub on its plain loopback listener.
const caDir = mkdtempSync(join(tmpdir(), 'vp-uplink-ca-'));
const ca = ensureDevCa(caDir);
const broker = useMosquitto({ tls: { cert: ca.serverCert, key: ca.serverKey } });
const GATEWAY = 'gw-up';
const FLEETS = { path: 3, brokerDown: 3, sigkill: 3 } as const;
let dir: string;
let gw: GatewayProcess;
let hub: MqttClient;
const fleets = new Map<string, SimDevice[]>();

/** What the hub received, in arrival order. */
const received = { frames: [] as UplinkFrame[], anchors: [] as UplinkAnchor[], status: [] as UplinkStatusMessage[], refused: [] as string[] };
/** Arrival index of each frame's first copy and of each anchor, by batch: the latest frame, the first anchor. */
const lastFrameOfBatch = new Map<bigint, number>();
const firstAnchorOfBatch = new Map<bigint, number>();
const firstCopies = new Set<string>();
let arrivals = 0;
let onMessage: (() => void) | undefined;

/** Resolves once `pred` holds over what the hub received (checked on every message). */
function hubHas(pred: () => boolean): Promise<void> {
  if (pred()) return Promise.resolve();
  return new Promise((res) => {
    const prev = onMessage;
    onMessage = () => {
      prev?.();
      if (pred()) {
        onMessage = prev;
        res();
      }
    };
  });
}

function gatewayFlags(extra: Record<string, string | number> = {}): Record<string, string | number> {
  return {
    dataDir: join(dir, 'gw'),
    gatewayId: GATEWAY,
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'batch.intervalMs': 500,
    'uplink.url': broker.handle.tlsUrl!,
    'uplink.tls.ca': ca.caCert,
    'uplink.passwordFile': join(dir, 'gw.pw'),
    'uplink.retryMinMs': 50,
    'uplink.retryMaxMs': 400,
    'uplink.statusIntervalMs': 500,
    ...extra,
  };
}

async function provision(): Promise<void> {
  const env = { VP_BROKER_URL: broker.handle.url, VP_BROKER_ADMIN_USER: broker.handle.admin.username, VP_BROKER_ADMIN_PASSWORD: broker.handle.admin.password };
  const io = { out: () => undefined, err: (l: string) => console.error(l) };
  writeFileSync(join(dir, 'gw.pw'), 'gateway-password-0123\n', { mode: 0o600 });
  writeFileSync(join(dir, 'hub.pw'), 'hub-password-0123\n', { mode: 0o600 });
  expect(await brokerCommand(['init'], io, env)).toBe(0);
  expect(await brokerCommand(['add-gateway', GATEWAY, '--password-file', join(dir, 'gw.pw')], io, env)).toBe(0);
  expect(await brokerCommand(['add-hub', 'h1', '--password-file', join(dir, 'hub.pw')], io, env)).toBe(0);
}

/** The hub: a persistent session (QoS 1 messages wait in the broker while it is away), reconnecting by itself. */
async function startHub(): Promise<MqttClient> {
  const c = connect(broker.handle.url, {
    username: 'vp-hub-h1',
    password: 'hub-password-0123',
    clientId: 'vp-hub-h1-test',
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 100,
  });
  c.on('message', (topic, payload) => {
    try {
      const m = decodeUplinkMessage(topic, payload);
      arrivals++;
      if (m.kind === 'frame') {
        received.frames.push(m);
        if (!firstCopies.has(`${m.device}/${m.seq}`)) lastFrameOfBatch.set(m.batch, arrivals);
        firstCopies.add(`${m.device}/${m.seq}`);
      } else if (m.kind === 'anchor') {
        received.anchors.push(m);
        if (!firstAnchorOfBatch.has(m.batch)) firstAnchorOfBatch.set(m.batch, arrivals);
      } else received.status.push(m);
    } catch (e) {
      received.refused.push(`${topic}: ${(e as Error).message}`);
    }
    onMessage?.();
  });
  await new Promise<void>((res) => c.once('connect', () => res()));
  await c.subscribeAsync(`vitalproof/uplink/${GATEWAY}/#`, { qos: 1 });
  return c;
}

function fleet(seed: keyof typeof FLEETS, o: Partial<FleetOptions>): Promise<FleetReport> {
  return runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: FLEETS[seed],
    seed,
    stateDir: join(dir, `state-${seed}`),
    backoff: { initialMs: 50, maxMs: 500 },
    drainTimeoutMs: 30_000,
    ...o,
  });
}

/**
 * Every frame the fleet had acknowledged reached the hub with bytes its device signed; any
 * second copy is byte-identical; first copies arrive in sequence order per device.
 * @returns the number of duplicate copies.
 */
async function expectDelivered(seed: keyof typeof FLEETS, acked: Map<string, Set<bigint>>): Promise<number> {
  const devices = fleets.get(seed)!;
  const want = [...acked.values()].reduce((n, s) => n + s.size, 0);
  const key = (f: { device: string; seq: bigint }): string => `${f.device}/${f.seq}`;
  const ours = (): UplinkFrame[] => received.frames.filter((f) => acked.has(f.device));
  await hubHas(() => new Set(ours().map(key)).size >= want);
  let duplicates = 0;
  for (const d of devices) {
    const pub = createPublicKey({
      key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(d.keys.publicKey)]),
      format: 'der',
      type: 'spki',
    });
    const first = new Map<bigint, UplinkFrame>();
    const order: bigint[] = [];
    for (const f of ours().filter((x) => x.device === d.deviceId)) {
      const seen = first.get(f.seq);
      if (seen) {
        expect(f.frame.equals(seen.frame), `copy of ${key(f)} is identical`).toBe(true);
        duplicates++;
        continue;
      }
      first.set(f.seq, f);
      order.push(f.seq);
      const decoded = decodeFrame(f.frame);
      expect(verify(null, Buffer.concat([FRAME_TAG, decoded.body]), pub, decoded.signature), `${key(f)} verifies under its device key`).toBe(true);
      expect(f).toMatchObject({ gateway: GATEWAY, transport: 'mqtt', patient: d.patient });
      expect(f.batch).toBeGreaterThanOrEqual(1n);
    }
    expect([...first.keys()].sort((a, b) => (a < b ? -1 : 1))).toEqual([...(acked.get(d.deviceId) ?? [])].sort((a, b) => (a < b ? -1 : 1)));
    expect(order, `first copies of ${d.deviceId} in sequence order`).toEqual([...order].sort((a, b) => (a < b ? -1 : 1)));
  }
  expect(received.refused).toEqual([]);
  return duplicates;
}

/** The acknowledged seqs of a fleet run, per device. */
function ackCollector(): { acked: Map<string, Set<bigint>>; onAck: (device: string, seq: bigint) => void } {
  const acked = new Map<string, Set<bigint>>();
  return { acked, onAck: (device, seq) => acked.set(device, (acked.get(device) ?? new Set()).add(seq)) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-uplink-'));
  await provision();
  const all: SimDevice[] = [];
  for (const [seed, n] of Object.entries(FLEETS)) {
    const devices = fleetDevices(seed, n, 'mix');
    fleets.set(seed, devices);
    all.push(...devices);
  }
  writeEnrolmentFile(join(dir, 'fleet.json'), all);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', join(dir, 'gw')]);
  hub = await startHub();
  gw = await GatewayProcess.start(gatewayFlags());
});

afterAll(async () => {
  await gw?.stop();
  await hub?.endAsync(true);
  rmSync(dir, { recursive: true, force: true });
  rmSync(caDir, { recursive: true, force: true });
});

describe('uplink to the hospital broker', () => {
  it('publishes every accepted frame exactly once, in sequence order per device, and says it is online', async () => {
    const { acked, onAck } = ackCollector();
    const report = await fleet('path', { frames: 30, onAck });
    expect(report.frames.acked).toBe(FLEETS.path * 30);
    expect(await expectDelivered('path', acked)).toBe(0);
    await hubHas(() => received.status.some((s) => s.state === 'online'));
    const s = await gw.until((x) => x.uplink?.enabled === true && x.uplink.lag.records === 0, 20_000, 'uplink caught up');
    expect(s.uplink).toMatchObject({ enabled: true, connected: true, url: broker.handle.tlsUrl });
    const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
    expect(metrics).toContain('vitalproof_uplink_connected 1');
    expect(metrics).toMatch(new RegExp(`^vitalproof_uplink_published_frames_total ${s.uplink?.enabled ? s.uplink.published.frames : -1}$`, 'm'));
    // The broker password is in neither /status nor the log.
    expect(JSON.stringify(s)).not.toContain('gateway-password');
    expect(JSON.stringify(gw.lines)).not.toContain('gateway-password');
  });

  it('keeps accepting while the broker is down, and delivers everything in order when it returns', async () => {
    const { acked, onAck } = ackCollector();
    let stopped: Promise<void> | undefined;
    const report = await fleet('brokerDown', {
      frames: 60,
      onAck,
      progressIntervalMs: 20,
      onProgress: (p) => {
        if (!stopped && p.acked >= 40) stopped = broker.handle.stop();
      },
    });
    await stopped;
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.brokerDown * 60);
    // The gateway acknowledged every frame while the broker was away: the spool holds the unpublished ones.
    const down = await gw.until((x) => x.uplink?.enabled === true && !x.uplink.connected && x.uplink.lag.records > 0, 20_000, 'uplink down with a lag');
    expect(down.spool.backlogFrames).toBeGreaterThanOrEqual(down.uplink?.enabled ? down.uplink.lag.records : 1);
    expect(gw.lines.filter((l) => l.event === 'uplink_down').length).toBe(1);
    await broker.handle.restart();
    await expectDelivered('brokerDown', acked);
    await gw.until((x) => x.uplink?.enabled === true && x.uplink.connected && x.uplink.lag.records === 0, 20_000, 'uplink caught up');
    expect(gw.lines.filter((l) => l.event === 'uplink_recovered').length).toBe(1);
  });

  it('resumes from its cursor after a SIGKILL mid-stream while the broker is away: nothing lost', async () => {
    const { acked, onAck } = ackCollector();
    const port = gw.mqttPort;
    let restarted: Promise<void> | undefined;
    const report = await fleet('sigkill', {
      frames: 80,
      onAck,
      progressIntervalMs: 20,
      onProgress: (p) => {
        if (!restarted && p.acked >= 100) {
          // Frames the broker never acknowledged are in the spool only when the gateway dies.
          restarted = (async () => {
            await broker.handle.stop();
            await gw.kill();
            gw = await GatewayProcess.start(gatewayFlags({ 'mqtt.port': port }));
          })();
        }
      },
    });
    await restarted;
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.sigkill * 80);
    await gw.until(
      (x) => x.uplink?.enabled === true && !x.uplink.connected && x.uplink.lag.records > 0,
      20_000,
      'restarted gateway holding frames for the broker',
    );
    await broker.handle.restart();
    await expectDelivered('sigkill', acked);
    await gw.waitFor((l) => l.event === 'uplink_recovered');
  });

  it('has the broker announce a killed gateway offline, and says online again after its restart', async () => {
    const before = received.status.length;
    await gw.kill();
    await hubHas(() => received.status.slice(before).some((s) => s.state === 'offline'));
    const offlineAt = received.status.findIndex((s, i) => i >= before && s.state === 'offline');
    gw = await GatewayProcess.start(gatewayFlags());
    await hubHas(() => received.status.slice(offlineAt).some((s) => s.state === 'online'));
  });

  it('announces every anchored batch with its root, matching the batch store', async () => {
    const s = await gw.until(
      (x) => x.batches.open.frames === 0 && x.batches.pendingAnchors === 0 && x.uplink?.enabled === true && x.uplink.lag.records === 0,
      30_000,
      'all batches anchored',
    );
    const last = BigInt(s.batches.lastAnchored);
    expect(last).toBeGreaterThan(0n);
    await hubHas(() => new Set(received.anchors.map((a) => a.batch)).size >= Number(last));
    const store = new BatchStore(join(dir, 'gw', 'batches'));
    for (let b = 1n; b <= last; b++) {
      const a = received.anchors.find((x) => x.batch === b);
      expect(a, `anchor of batch ${b}`).toBeDefined();
      expect(a).toMatchObject({ gateway: GATEWAY, root: store.get(b)!.root, leafCount: store.get(b)!.leafCount, txHash: store.anchorOf(b)!.txHash });
    }
    // An anchor comes after (the first copy of) every frame of its batch.
    for (const [b, at] of firstAnchorOfBatch) expect(at, `anchor of batch ${b} after its frames`).toBeGreaterThan(lastFrameOfBatch.get(b) ?? 0);
    // Every frame names a batch that the hub learnt was anchored.
    const anchored = new Set(received.anchors.map((a) => a.batch));
    for (const f of received.frames) expect(anchored.has(f.batch), `batch ${f.batch} of ${f.device}/${f.seq} announced`).toBe(true);
  });

  it('says offline, with its last figures, on a clean stop', async () => {
    const before = received.status.length;
    await gw.stop();
    expect(await gw.exited).toBe(0);
    await hubHas(() => received.status.slice(before).some((m) => m.state === 'offline'));
    const last = received.status.slice(before).find((m) => m.state === 'offline')!;
    // Not the last will (which carries no figures): the gateway published it itself.
    expect(last).toMatchObject({ gateway: GATEWAY, uplinkLag: 0 });
    expect(last.atMs).toBeGreaterThan(0);
  });
});
