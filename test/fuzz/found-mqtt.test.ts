/**
 * What `npm run fuzz` found at the MQTT listener, reduced to its smallest input against the
 * real gateway process (docs/fuzzing.md, "Findings"): a device CONNECT refused at
 * authentication writes one `connect_refused` log line each. Anyone can send such a CONNECT (a
 * device id is no secret, and a token that does not verify proves nothing), so the log grows at
 * the attacker's rate; gateway/log.ts says events like this go through a LogLimiter (a burst per
 * window, then one `log_suppressed` line), as the researcher CONNECT refusals and the listener's
 * MQTT_* refusals already do. The test fails while the finding stands.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { deviceClientId } from '../../firmware-proto/topics.js';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';

const REFUSALS = 40;
/** gateway/log.ts LogLimiter's default burst per window (log.limitBurst). */
const BURST = 10;
const device = fleetDevices('found-mqtt', 1, 'heart_rate')[0]!;
let dir: string;
let gw: GatewayProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-found-mqtt-'));
  writeEnrolmentFile(join(dir, 'fleet.json'), [device]);
  execFileSync(process.execPath, [CLI, 'enrol', join(dir, 'fleet.json'), '--dataDir', join(dir, 'gw'), '--registry.source', 'file', '--chain.mode', 'off']);
  gw = await GatewayProcess.start({ dataDir: join(dir, 'gw'), 'registry.source': 'file', 'chain.mode': 'off', 'mqtt.port': 0, 'http.port': 0 });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('MQTT findings of the fuzzer', () => {
  it(`counts ${REFUSALS} refused device CONNECTs one by one, but logs them at most ${BURST} lines a window`, async () => {
    const clientId = deviceClientId(device.deviceId);
    for (let i = 0; i < REFUSALS; i++) {
      // An enrolled device id with 88 random bytes as its token: CONNECT_BAD_SIGNATURE, CONNACK 4.
      const code = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, {
        clientId,
        username: device.deviceId,
        password: randomBytes(88),
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        keepalive: 30,
      }).then(
        async (c) => {
          await c.endAsync();
          return 0;
        },
        (e: Error & { code?: number }) => e.code,
      );
      expect(code).toBe(4);
    }
    // A barrier in the log: a first packet that is not a CONNECT is refused (MQTT_MALFORMED) and,
    // the first refusal after a quiet spell, summed into an mqtt_refused line at once. Every line
    // logged for the CONNECTs above was written before it.
    const s = netConnect(gw.mqttPort, '127.0.0.1');
    s.on('error', () => undefined);
    s.write(Buffer.from([0xc0, 0x00]));
    const barrier = await gw.waitFor((l) => l.event === 'mqtt_refused');
    s.destroy();
    expect(barrier.event).toBe('mqtt_refused');
    expect((await gw.status()).mqtt.connectRefusedBy['CONNECT_BAD_SIGNATURE']).toBe(REFUSALS);
    expect(gw.lines.filter((l) => l.event === 'connect_refused').length).toBeLessThanOrEqual(BURST);
  });
});
