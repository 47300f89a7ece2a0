/**
 * PROTOCOL.md §6.4 against the real gateway process: what its broker does with a device's
 * keep-alive, will, clean-session flag and a second connection of the same device.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { signFrame } from '../../firmware-proto/device.js';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { deviceClientId, frameTopic } from '../../firmware-proto/topics.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';

const influx = useInfluxd();
let dir: string;
let gw: GatewayProcess;
const [dev, other] = fleetDevices('mqtt-session', 2, 'heart_rate');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-mqtt-session-'));
  writeEnrolmentFile(join(dir, 'fleet.json'), [dev!, other!]);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', join(dir, 'gw'), '--registry.source', 'file', '--chain.mode', 'off']);
  gw = await GatewayProcess.start({
    dataDir: join(dir, 'gw'),
    'influx.url': influx.handle.url,
    'chain.mode': 'off',
    'registry.source': 'file',
    'mqtt.port': 0,
    'http.port': 0,
  });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function options(d: typeof dev, extra: IClientOptions): IClientOptions {
  const clientId = deviceClientId(d!.deviceId);
  return {
    clientId,
    username: d!.deviceId,
    password: Buffer.from(makeConnectPassword(d!.deviceId, clientId, d!.keys.secretKey)),
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    keepalive: 30,
    clean: true,
    ...extra,
  };
}

/** Connects; resolves with the CONNACK's session-present flag, or 'closed' when the connection closes first. */
function connect(d: typeof dev, extra: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean } | 'closed'> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${gw.mqttPort}`, options(d, extra));
  client.on('error', () => undefined);
  return new Promise((resolve) => {
    client.once('connect', (p) => resolve({ client, sessionPresent: p.sessionPresent }));
    client.once('close', () => resolve('closed'));
  });
}

function frame(d: typeof dev, seq: number, timestampMs: number): Buffer {
  return Buffer.from(
    signFrame(
      {
        deviceId: d!.deviceId,
        seq: BigInt(seq),
        timestampMs: BigInt(timestampMs),
        sensor: 1,
        scale: 0,
        intervalUs: 1_000_000,
        samples: Int32Array.from([70, 71]),
      },
      d!.keys.secretKey,
    ),
  );
}

describe('PROTOCOL.md §6.4', () => {
  it('closes a CONNECT with keep-alive 0 or above mqtt.maxKeepaliveS without CONNACK, counted', async () => {
    expect(await connect(dev, { keepalive: 0 })).toBe('closed');
    expect(await connect(dev, { keepalive: 301 })).toBe('closed');
    const s = await gw.status();
    expect(s.mqtt.refusedBy['MQTT_KEEPALIVE_REFUSED']).toBe(2);
    expect(s.mqtt.limits.maxKeepaliveS).toBe(300);
  });

  it('has no session to resume: session-present is 0 with Clean Session 0, on the second connection too', async () => {
    for (let i = 0; i < 2; i++) {
      const c = await connect(other, { clean: false });
      expect(c).not.toBe('closed');
      if (c === 'closed') return;
      expect(c.sessionPresent).toBe(false);
      await c.client.endAsync();
    }
  });

  it('closes the older connection when the same device connects again', async () => {
    const first = await connect(other, {});
    if (first === 'closed') throw new Error('first connection refused');
    const closed = new Promise<void>((resolve) => first.client.once('close', () => resolve()));
    const second = await connect(other, {});
    expect(second).not.toBe('closed');
    await closed;
    if (second !== 'closed') await second.client.endAsync();
  });

  it('judges a will, published when the connection ends without DISCONNECT, as a frame of the device', async () => {
    const before = (await gw.status()).frames;
    const now = Date.now();
    const c = await connect(dev, { will: { topic: frameTopic(dev!.deviceId), payload: frame(dev, 1, now - 10_000), qos: 1, retain: false } });
    if (c === 'closed') throw new Error('connection refused');
    c.client.stream.destroy(); // no DISCONNECT: the broker publishes the will
    await gw.until((s) => s.frames.accepted === before.accepted + 1, 30_000, 'the will accepted as a frame');
    const d = await connect(dev, { will: { topic: 'not/a/frame/topic', payload: Buffer.from('bye'), qos: 0, retain: false } });
    if (d === 'closed') throw new Error('connection refused');
    d.client.stream.destroy();
    const s = await gw.until(
      (st) => (st.frames.rejectedBy['FRAME_TOO_SHORT'] ?? 0) === (before.rejectedBy['FRAME_TOO_SHORT'] ?? 0) + 1,
      30_000,
      'the will refused as a frame',
    );
    expect(s.frames.accepted).toBe(before.accepted + 1);
  });
});
