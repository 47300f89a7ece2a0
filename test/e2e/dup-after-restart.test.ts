/**
 * An honest resend after a restart is a duplicate, not a REPLAY (issue #10, 9): a device whose
 * PUBACK was lost with the gateway process resends the same frame with DUP = 1 to the
 * restarted gateway. Its device state now comes from the checkpoint, which keeps the newest
 * frames' hashes, so the resend is recognised: acknowledged, counted as a duplicate, stored
 * once. A different frame under the same seq is still a REPLAY.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { deviceClientId, frameTopic } from '../../firmware-proto/topics.js';
import { InfluxSink } from '../../gateway/storage/influx-sink.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { heartRate, testDevice } from '../support/devices.js';
import { drained } from '../support/stored.js';

const influx = useInfluxd();
const offChain = { 'chain.mode': 'off', 'registry.source': 'file' } as const;
const dev = testDevice('dup-restart');
let dir: string;
let gw: GatewayProcess;

function flags(): Record<string, string | number> {
  return { dataDir: join(dir, 'gw'), gatewayId: 'gw-dup', 'influx.url': influx.handle.url, 'mqtt.port': 0, 'http.port': 0, ...offChain };
}

async function connect(port: number): Promise<mqtt.MqttClient> {
  const clientId = deviceClientId(dev.id);
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId,
    username: dev.id,
    password: Buffer.from(makeConnectPassword(dev.id, clientId, dev.keys.secretKey)),
    protocolVersion: 4,
    reconnectPeriod: 0,
    clean: true,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-dup-'));
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify({ version: 1, devices: [dev.enrolment] }));
  execFileSync(process.execPath, [
    CLI,
    'enrol',
    join(dir, 'fleet.json'),
    '--dataDir',
    join(dir, 'gw'),
    ...Object.entries(offChain).flatMap(([k, v]) => [`--${k}`, v]),
  ]);
  gw = await GatewayProcess.start(flags());
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('counts a DUP resend of a checkpointed frame after a restart as a duplicate, and stores it once', async () => {
  const t0 = Date.now() - 60_000;
  const frames = Array.from({ length: 5 }, (_, i) => dev.core.record(heartRate(t0 + i * 5_000, [60 + i, 61, 62, 63, 64])));
  let client = await connect(gw.mqttPort);
  for (const f of frames) await client.publishAsync(frameTopic(dev.id), Buffer.from(f.raw), { qos: 1 });
  await client.endAsync();
  // Stored and checkpointed: after the restart these frames are known only from the checkpoint.
  const before = await drained(gw);
  expect(before.frames.accepted).toBe(5);
  await gw.kill();
  gw = await GatewayProcess.start(flags());
  client = await connect(gw.mqttPort);
  // The resend of the last two frames (their PUBACKs "lost"), flagged DUP as PROTOCOL.md §8.2 says.
  for (const f of frames.slice(3)) await client.publishAsync(frameTopic(dev.id), Buffer.from(f.raw), { qos: 1, dup: true });
  // A different frame under an accepted seq is not a resend.
  const forged = dev.core.record(heartRate(t0 + 30_000, [70, 70, 70, 70, 70]));
  const replayOfSeq = Buffer.from(forged.raw);
  await client.publishAsync(frameTopic(dev.id), replayOfSeq, { qos: 1 });
  await client.publishAsync(frameTopic(dev.id), Buffer.from(frames[4]!.raw), { qos: 1, dup: false });
  await client.endAsync();
  const s = await drained(gw);
  expect(s.frames.duplicates).toBe(2);
  expect(s.frames.rejectedBy).toEqual({ REPLAY: 1 });
  expect(s.frames.accepted).toBe(1);
  const stored = await new InfluxSink({ url: influx.handle.url, database: 'vitalproof', gatewayId: 'gw-dup' }).queryFrames(dev.id);
  expect(stored.map((f) => f.seq)).toEqual([...frames.map((f) => f.seq), forged.seq]);
});
