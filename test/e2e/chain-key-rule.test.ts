/**
 * The key rule for keys enrolled directly on chain, through the real gateway process (issue
 * #10, item 3). Before: the hospital admin's key called DeviceRegistry.enrol with the identity
 * point as public key, the gateway listed the device as active, and a forged CONNECT token
 * (R = identity, S = 0) got CONNACK 0. Now the gateway logs the refusal at error level, never
 * lists the device, and refuses the forged token with return code 5 (CONNECT_UNKNOWN_DEVICE),
 * while an honest device enrolled through the CLI connects.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { deviceIdFromKey } from '../../firmware-proto/signing.js';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { deviceClientId } from '../../firmware-proto/topics.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { deviceRegistryAt } from '../../gateway/chain/contracts.js';
import type { DeploymentRecord } from '../../gateway/chain/deploy.js';
import { deviceIdToBytes8, siteIdOf } from '../../gateway/chain/ids.js';
import { chainProvider, EMBEDDED_ACCOUNTS } from '../../gateway/chain/runtime.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { embeddedChainUrl } from '../support/anchored.js';
import { testDevice } from '../support/devices.js';

const influx = useInfluxd();
const IDENTITY = `01${'00'.repeat(31)}`;
const IDENTITY_ID = deviceIdFromKey(Buffer.from(IDENTITY, 'hex'));
const honest = testDevice('e2e-key-rule-honest', 'pt-honest');
let dir: string;
let gw: GatewayProcess;
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-e2e-keyrule-'));
  gw = await GatewayProcess.start({ dataDir: join(dir, 'gw'), 'influx.url': influx.handle.url, 'mqtt.port': 0, 'http.port': 0 });
});

afterAll(async () => {
  for (const c of clients) c.end(true);
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** One CONNECT with MQTT.js (3.1.1, no reconnect); resolves on CONNACK either way. */
function attempt(clientId: string, username: string, password: Uint8Array): Promise<{ connected: boolean; returnCode?: number }> {
  const client = connect({
    host: '127.0.0.1',
    port: gw.mqttPort,
    protocolVersion: 4,
    clientId,
    username,
    password: Buffer.from(password),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  clients.push(client);
  client.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve({ connected: true }));
    client.once('error', (e) => {
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'number') resolve({ connected: false, returnCode: code });
      else reject(e);
    });
    client.once('close', () => reject(new Error('connection closed before CONNACK')));
  });
}

it('refuses the identity key enrolled directly on chain: logged, never listed, the forged CONNECT refused', async () => {
  const gwDir = join(dir, 'gw');
  const record = JSON.parse(readFileSync(join(gwDir, 'chain', 'deployment.json'), 'utf8')) as DeploymentRecord;
  const provider = chainProvider(embeddedChainUrl(gwDir), record.chainId, 100);
  try {
    // The hospital admin's key, straight to the contract: no CLI, no enrolment check.
    const admin = deviceRegistryAt(record.deviceRegistry.address, devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin, provider));
    await (await admin.enrol(deviceIdToBytes8(IDENTITY_ID), `0x${IDENTITY}`, `0x${'11'.repeat(32)}`, siteIdOf('default'))).wait();
  } finally {
    provider.destroy();
  }
  const alarm = await gw.waitFor((l) => l.event === 'registry_key_refused' || l.event === 'exited');
  expect(alarm).toMatchObject({ event: 'registry_key_refused', level: 50, device: IDENTITY_ID, reason: 'SMALL_ORDER', source: 'chain' });

  // R = identity, S = 0: OpenSSL accepts it for any message under the identity key.
  const now = Date.now();
  const forged = Buffer.from(makeConnectPassword(IDENTITY_ID, deviceClientId(IDENTITY_ID), new Uint8Array(32).fill(1), now));
  forged.set(Buffer.concat([Buffer.from(IDENTITY, 'hex'), Buffer.alloc(32)]), 24);
  expect(await attempt(deviceClientId(IDENTITY_ID), IDENTITY_ID, forged)).toEqual({ connected: false, returnCode: 5 });
  const s = await gw.status();
  expect(s.mqtt.connectRefusedBy['CONNECT_UNKNOWN_DEVICE']).toBe(1);
  // The operator sees it as an alarm (a warning: the key is refused, nothing is at risk).
  const raised = await gw.waitFor((l) => l.event === 'alarm_raised' && l['code'] === 'REGISTRY_BAD_KEY');
  expect(String(raised['detail'])).toContain(`${IDENTITY_ID} SMALL_ORDER`);
  expect((await gw.status()).alarms.map((x) => x.code)).toContain('REGISTRY_BAD_KEY');

  // The device list of the running gateway's chain does not have it; an honest device enrolled through the CLI connects.
  const file = join(dir, 'honest.json');
  writeFileSync(file, JSON.stringify({ version: 1, devices: [honest.enrolment] }));
  execFileSync(process.execPath, [CLI, 'enrol', file, '--dataDir', gwDir]);
  const listed = execFileSync(process.execPath, [CLI, 'devices', '--dataDir', gwDir], { encoding: 'utf8' });
  expect(listed).toContain(honest.id);
  expect(listed).not.toContain(IDENTITY_ID);
  await gw.waitFor((l) => l.event === 'registry_changed' && (l['devices'] as number) >= 1);
  const ok = await attempt(deviceClientId(honest.id), honest.id, makeConnectPassword(honest.id, deviceClientId(honest.id), honest.keys.secretKey));
  expect(ok).toEqual({ connected: true });
});
