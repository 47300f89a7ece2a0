/**
 * MQTT over TLS (issue #10, item 8) against the real gateway process, with a private
 * development CA made on the spot (gateway/tls/dev-ca.ts, the openssl CLI): devices publish
 * over mqtts and get their PUBACKs; a plain client on the TLS port, and a client that does not
 * trust the gateway's CA, get nowhere; the packet guard holds on the TLS listener too; with
 * mutual TLS a device needs a certificate naming itself; and a plain listener on a non-loopback
 * address without mqtt.allowPlain stops the gateway at start with a configuration error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetTlsOptions } from '../../device-sim/run.js';
import { connectOnce, readTlsFiles } from '../../device-sim/mqtt-link.js';
import { devClientCert, ensureDevCa, type DevCa } from '../../gateway/tls/dev-ca.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { RawClient, varint } from '../support/mqtt-raw.js';

const influx = useInfluxd();
const FLEETS = { tls: 3, mtls: 2 } as const;
let dir: string;
let ca: DevCa;
/** TLS, no client certificates. */
let gw: GatewayProcess;
/** TLS with mutual TLS required for devices. */
let mgw: GatewayProcess;
const fleets = new Map<string, SimDevice[]>();

function flags(name: string, extra: Record<string, string | number>): Record<string, string | number> {
  return {
    dataDir: join(dir, name),
    'influx.url': influx.handle.url,
    'chain.mode': 'off',
    'registry.source': 'file',
    'mqtt.port': 0,
    'http.port': 0,
    'mqtt.tls.cert': ca.serverCert,
    'mqtt.tls.key': ca.serverKey,
    'mqtt.tls.port': 0,
    'mqtt.refusalLogIntervalMs': 1000,
    ...extra,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-mqtt-tls-'));
  ca = ensureDevCa(join(dir, 'dev-ca'));
  for (const [seed, n] of Object.entries(FLEETS)) {
    const devices = fleetDevices(`tls-${seed}`, n, 'heart_rate');
    fleets.set(seed, devices);
    writeEnrolmentFile(join(dir, `${seed}.json`), devices);
    execFileSync(process.execPath, [CLI, 'enrol', join(dir, `${seed}.json`), '--dataDir', join(dir, seed), '--registry.source', 'file', '--chain.mode', 'off']);
  }
  for (const d of fleets.get('mtls')!) devClientCert(ca, d.deviceId);
  [gw, mgw] = await Promise.all([
    GatewayProcess.start(flags('tls', {})),
    GatewayProcess.start(flags('mtls', { 'mqtt.tls.ca': ca.caCert, 'mqtt.tls.requireClientCert': 'true' })),
  ]);
});

afterAll(async () => {
  await Promise.all([gw?.stop(), mgw?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

const tlsPort = async (g: GatewayProcess): Promise<number> => (await g.status()).mqtt.tls!.port;
const refused = (s: StatusSnapshot, code: string): number => s.mqtt.refusedBy[code] ?? 0;

describe('MQTT over TLS', () => {
  it('takes a fleet over mqtts with the development CA, every frame acknowledged', async () => {
    const port = await tlsPort(gw);
    const s0 = await gw.status();
    expect(s0.mqtt.tls).toEqual({ port, requireClientCert: false });
    expect(s0.mqtt.plainOnNonLoopback).toBe(false);
    const report = await runFleet({
      brokerUrl: `mqtts://127.0.0.1:${port}`,
      tls: readTlsFiles({ ca: ca.caCert }),
      devices: FLEETS.tls,
      seed: 'tls-tls',
      sensors: 'heart_rate',
      frames: 40,
      stateDir: join(dir, 'state-tls'),
      drainTimeoutMs: 30_000,
    });
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.tls * 40);
    const s = await gw.until((x) => x.frames.accepted >= FLEETS.tls * 40, 10_000, 'frames accepted');
    expect(s.frames.byTransport.mqtt.accepted).toBe(FLEETS.tls * 40);
  });

  it('gives a plain MQTT client on the TLS port, and a client that does not trust the CA, nothing', async () => {
    const port = await tlsPort(gw);
    const before = await gw.status();
    const [dev] = fleets.get('tls')!;
    const plain = await connectOnce(`mqtt://127.0.0.1:${port}`, dev!.deviceId, dev!.keys.secretKey, { timeoutMs: 5000 });
    expect(plain.connected).toBe(false);
    const untrusting = await connectOnce(`mqtts://127.0.0.1:${port}`, dev!.deviceId, dev!.keys.secretKey, { timeoutMs: 5000 });
    expect(untrusting.connected).toBe(false);
    expect(untrusting.error).toMatch(/self-signed|unable to get|certificate/i);
    const after = await gw.until(
      (s) => refused(s, 'MQTT_TLS_HANDSHAKE_FAILED') - refused(before, 'MQTT_TLS_HANDSHAKE_FAILED') >= 2,
      10_000,
      'handshake failures counted',
    );
    expect(refused(after, 'MQTT_TLS_HANDSHAKE_FAILED') - refused(before, 'MQTT_TLS_HANDSHAKE_FAILED')).toBe(2);
  });

  it('guards the TLS listener like the plain one: an oversized CONNECT is refused on its header', async () => {
    const port = await tlsPort(gw);
    const before = await gw.status();
    const c = await RawClient.open(port, { tls: { ca: readTlsFiles({ ca: ca.caCert }).ca! } });
    const declared = 64 * 1024 * 1024;
    const sent = await c.flood(Buffer.concat([Buffer.from([0x10]), varint(declared)]), declared);
    await c.closed;
    expect(sent).toBeLessThan(declared / 2);
    const after = await gw.until((s) => refused(s, 'MQTT_PACKET_TOO_LARGE') > refused(before, 'MQTT_PACKET_TOO_LARGE'), 10_000, 'oversized CONNECT counted');
    expect(refused(after, 'MQTT_PACKET_TOO_LARGE') - refused(before, 'MQTT_PACKET_TOO_LARGE')).toBe(1);
  });

  it('with mutual TLS, takes a device whose certificate names it, and refuses one naming another device or none', async () => {
    const port = await tlsPort(mgw);
    const [a, b] = fleets.get('mtls')!;
    const caPem = readTlsFiles({ ca: ca.caCert });
    const before = await mgw.status();
    expect(before.mqtt.tls).toEqual({ port, requireClientCert: true });

    // b's CONNECT token is valid; the certificate is a's.
    const aCert = devClientCert(ca, a!.deviceId);
    const wrongCn = await connectOnce(`mqtts://127.0.0.1:${port}`, b!.deviceId, b!.keys.secretKey, { tls: readTlsFiles({ ca: ca.caCert, ...aCert }) });
    expect(wrongCn).toEqual({ connected: false, returnCode: 5 });
    const noCert = await connectOnce(`mqtts://127.0.0.1:${port}`, b!.deviceId, b!.keys.secretKey, { tls: caPem });
    expect(noCert).toEqual({ connected: false, returnCode: 5 });
    // The plain loopback listener has no certificates: devices are refused there too.
    const plain = await connectOnce(`mqtt://127.0.0.1:${mgw.mqttPort}`, b!.deviceId, b!.keys.secretKey);
    expect(plain).toEqual({ connected: false, returnCode: 5 });
    const after = await mgw.until((s) => refused(s, 'MQTT_CERT_MISMATCH') > 0 && refused(s, 'MQTT_CERT_REQUIRED') >= 2, 10_000, 'certificate refusals counted');
    expect(refused(after, 'MQTT_CERT_MISMATCH') - refused(before, 'MQTT_CERT_MISMATCH')).toBe(1);
    expect(refused(after, 'MQTT_CERT_REQUIRED') - refused(before, 'MQTT_CERT_REQUIRED')).toBe(2);
    // Refused before any signature work: no CONNECT verdict was reached.
    expect(after.mqtt.connectRefusedBy).toEqual(before.mqtt.connectRefusedBy);

    const tls: FleetTlsOptions = { ...caPem, clientCertsDir: ca.dir };
    const report = await runFleet({
      brokerUrl: `mqtts://127.0.0.1:${port}`,
      tls,
      devices: FLEETS.mtls,
      seed: 'tls-mtls',
      sensors: 'heart_rate',
      frames: 30,
      stateDir: join(dir, 'state-mtls'),
      drainTimeoutMs: 30_000,
    });
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.mtls * 30);
  });

  it('will not start a plain listener on a non-loopback address without mqtt.allowPlain', () => {
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'run',
        '--dataDir',
        join(dir, 'exposed'),
        '--chain.mode',
        'off',
        '--registry.source',
        'file',
        '--mqtt.host',
        '0.0.0.0',
        '--mqtt.port',
        '0',
        '--http.port',
        '0',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/mqtt\.host is "0\.0\.0\.0", not a loopback address/);
    expect(r.stderr).toMatch(/mqtt\.allowPlain/);
    expect(r.stdout).not.toMatch(/"event":"ready"/);
  });
});
