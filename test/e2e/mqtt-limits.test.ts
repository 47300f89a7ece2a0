/**
 * Pre-authentication limits of the MQTT listener (issue #10, item 1) against the real gateway
 * process: oversized packets from anonymous sockets and from an enrolled device are refused on
 * their fixed header, the gateway's memory (VmHWM/VmRSS from /proc) stays far below what the
 * attackers declared and returns afterwards, honest devices keep getting PUBACKs throughout;
 * the CONNECT deadline, keep-alive bounds, and the per-source and total connection caps.
 *
 * Attackers dial from their own loopback addresses (127.0.0.2 …), honest devices from
 * 127.0.0.1, so that the per-source cap tells them apart as it would on a ward network.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile, type SimDevice } from '../../device-sim/fleet.js';
import { runFleet, type FleetReport } from '../../device-sim/run.js';
import { MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import { frameTopic } from '../../firmware-proto/topics.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';
import { deviceConnect, publishHeader, publishPacket, RawClient, varint } from '../support/mqtt-raw.js';

const influx = useInfluxd();
const MiB = 1024 * 1024;
/** What each attacking socket declares (and tries to send). */
const FLOOD = 64 * MiB;
const PER_SOURCE = 4;
const TOTAL = 12;
/** Each fleet runs once from a fresh state dir, so its frames lie in the past and go as fast as PUBACKs come. */
const FLEETS = { warm: 2, honest: 2, big: 1, hold: 12 } as const;
let dir: string;
let gw: GatewayProcess;
const fleets = new Map<string, SimDevice[]>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-mqtt-limits-'));
  for (const [seed, n] of Object.entries(FLEETS)) {
    const devices = fleetDevices(`limits-${seed}`, n, 'heart_rate');
    fleets.set(seed, devices);
    writeEnrolmentFile(join(dir, `${seed}.json`), devices);
    execFileSync(process.execPath, [CLI, 'enrol', join(dir, `${seed}.json`), '--dataDir', join(dir, 'gw'), '--registry.source', 'file', '--chain.mode', 'off']);
  }
  gw = await GatewayProcess.start({
    dataDir: join(dir, 'gw'),
    'influx.url': influx.handle.url,
    'chain.mode': 'off',
    'registry.source': 'file',
    'mqtt.port': 0,
    'http.port': 0,
    'mqtt.connectDeadlineMs': 1500,
    'mqtt.maxConnectionsPerSource': PER_SOURCE,
    'mqtt.maxConnections': TOTAL,
    'mqtt.maxKeepaliveS': 120,
    'mqtt.refusalLogIntervalMs': 1000,
  });
});

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function fleet(seed: keyof typeof FLEETS, frames: number): Promise<FleetReport> {
  return runFleet({
    brokerUrl: `mqtt://127.0.0.1:${gw.mqttPort}`,
    devices: FLEETS[seed],
    seed: `limits-${seed}`,
    sensors: 'heart_rate',
    frames,
    stateDir: join(dir, `state-${seed}`),
    backoff: { initialMs: 50, maxMs: 500 },
    drainTimeoutMs: 30_000,
  });
}

/** The gateway's resident set now and its peak since the last reset, in bytes (/proc/<pid>/status). */
function memory(): { rss: number; peak: number } {
  const text = readFileSync(`/proc/${gw.pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux clear_refs 5), so the next peak is this test's. */
function resetPeak(): void {
  writeFileSync(`/proc/${gw.pid}/clear_refs`, '5');
}

const refused = (s: StatusSnapshot, code: string): number => s.mqtt.refusedBy[code] ?? 0;
const open = (port: number, localAddress: string): Promise<RawClient> => RawClient.open(port, { localAddress });

describe('MQTT pre-authentication limits', () => {
  it('refuses oversized packets from anonymous sockets on their header: memory stays bounded and returns, honest devices keep their PUBACKs', async () => {
    await fleet('warm', 20); // warm up: workers, sockets, InfluxDB writes
    const before = await gw.status();
    const base = memory();
    resetPeak();

    const honest = fleet('honest', 150);
    const attackers = await Promise.all([0, 1, 2, 3].map(() => open(gw.mqttPort, '127.0.0.2')));
    // Two PUBLISHes as first packet, two CONNECTs with a 64 MiB password: all declared 64 MiB.
    const headers = [
      publishHeader(frameTopic('0000000000000000'), FLOOD),
      publishHeader(frameTopic('0000000000000001'), FLOOD),
      Buffer.concat([Buffer.from([0x10]), varint(FLOOD)]),
      // protocol "MQTT" level 4, user name and password flags, keep-alive 30, client id "x", user "x", then the password's bytes
      Buffer.concat([Buffer.from([0x10]), varint(FLOOD), Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0xc2, 0, 30, 0, 1, 0x78, 0, 1, 0x78, 0xff, 0xff])]),
    ];
    const sent = await Promise.all(attackers.map((a, i) => a.flood(headers[i]!, FLOOD)));
    await Promise.all(attackers.map((a) => a.closed));
    const report = await honest;

    const peak = memory().peak;
    const after = await gw.until(
      (s) =>
        refused(s, 'MQTT_PACKET_TOO_LARGE') - refused(before, 'MQTT_PACKET_TOO_LARGE') >= 2 &&
        refused(s, 'MQTT_MALFORMED') - refused(before, 'MQTT_MALFORMED') >= 2,
      10_000,
      'refusals counted',
    );
    const rssAfter = memory().rss;
    const declared = attackers.length * FLOOD;
    const bytesSent = sent.reduce((a, b) => a + b, 0);
    console.info(
      `[mqtt-limits] declared ${declared} B by 4 anonymous sockets, sent ${bytesSent} B before the gateway closed them; gateway RSS ${base.rss} B before, peak ${peak} B during, ${rssAfter} B after`,
    );

    // Each socket was closed long before its packet could have been sent.
    for (const n of sent) expect(n).toBeLessThan(FLOOD / 2);
    // A PUBLISH before CONNECT is malformed; a CONNECT over maxConnectBytes too large: one each.
    expect(refused(after, 'MQTT_MALFORMED') - refused(before, 'MQTT_MALFORMED')).toBe(2);
    expect(refused(after, 'MQTT_PACKET_TOO_LARGE') - refused(before, 'MQTT_PACKET_TOO_LARGE')).toBe(2);
    // Before the guard one such packet took the gateway past 500 MB: the peak now stays far below what was declared.
    expect(peak - base.rss).toBeLessThan(declared / 8);
    expect(rssAfter - base.rss).toBeLessThan(declared / 16);
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(FLEETS.honest * 150);
    // Summed into rate-limited lines, not one per socket.
    const line = await gw.waitFor((l) => l.event === 'mqtt_refused');
    expect(line.event).toBe('mqtt_refused');
    expect(gw.lines.filter((l) => l.event === 'mqtt_refused').length).toBeLessThanOrEqual(2);
    // /metrics carries the same counters.
    const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
    expect(metrics).toContain(`vitalproof_mqtt_refused_total{reason="MQTT_PACKET_TOO_LARGE"} ${refused(after, 'MQTT_PACKET_TOO_LARGE')}`);
  });

  it('disconnects an enrolled device whose PUBLISH exceeds the device limit before buffering it; its honest frames are accepted after it reconnects', async () => {
    const [dev] = fleets.get('big')!;
    const before = await gw.status();
    resetPeak();
    const base = memory();

    const c = await open(gw.mqttPort, '127.0.0.1');
    c.socket.write(deviceConnect(dev!.deviceId, dev!.keys.secretKey));
    expect(await c.connack()).toBe(0);
    const sent = await c.flood(publishHeader(frameTopic(dev!.deviceId), FLOOD), FLOOD);
    await c.closed;
    expect(sent).toBeLessThan(FLOOD / 2);
    expect(memory().peak - base.rss).toBeLessThan(FLOOD / 4);
    const after = await gw.until((s) => refused(s, 'MQTT_PACKET_TOO_LARGE') > refused(before, 'MQTT_PACKET_TOO_LARGE'), 10_000, 'oversized PUBLISH counted');
    expect(refused(after, 'MQTT_PACKET_TOO_LARGE') - refused(before, 'MQTT_PACKET_TOO_LARGE')).toBe(1);
    const line = await gw.waitFor((l) => l.event === 'mqtt_refused' && Array.isArray(l['devices']) && (l['devices'] as string[]).includes(dev!.deviceId));
    expect(line['devices']).toContain(dev!.deviceId);

    // Just over the frame limit but within the packet limit: the decoder refuses it (FRAME_OVERSIZED), the device stays connected.
    const c2 = await open(gw.mqttPort, '127.0.0.1');
    c2.socket.write(deviceConnect(dev!.deviceId, dev!.keys.secretKey));
    expect(await c2.connack()).toBe(0);
    c2.socket.write(publishPacket(frameTopic(dev!.deviceId), Buffer.alloc(MAX_FRAME_BYTES + 100, 1), 7));
    expect(await c2.receivedAfterConnack(4)).toBe(true);
    expect([...c2.received.subarray(4, 8)]).toEqual([0x40, 0x02, 0x00, 0x07]); // PUBACK of packet 7
    c2.close();
    await c2.closed;
    const s = await gw.status();
    expect((s.frames.rejectedBy['FRAME_OVERSIZED'] ?? 0) - (before.frames.rejectedBy['FRAME_OVERSIZED'] ?? 0)).toBe(1);

    const report = await fleet('big', 30);
    expect(report.drained).toBe(true);
    expect(report.frames.acked).toBe(30);
  });

  it('closes connections without an accepted CONNECT at the deadline, and CONNECTs with keep-alive 0 or above the bound', async () => {
    const before = await gw.status();
    const silent = await open(gw.mqttPort, '127.0.0.2');
    const halfConnect = await open(gw.mqttPort, '127.0.0.2');
    halfConnect.socket.write(deviceConnect(fleets.get('big')![0]!.deviceId, fleets.get('big')![0]!.keys.secretKey).subarray(0, 20));
    await Promise.all([silent.closed, halfConnect.closed]);
    expect(silent.received.length).toBe(0);
    expect(halfConnect.received.length).toBe(0);

    const [dev] = fleets.get('honest')!;
    for (const keepaliveS of [0, 121]) {
      const c = await open(gw.mqttPort, '127.0.0.1');
      c.socket.write(deviceConnect(dev!.deviceId, dev!.keys.secretKey, keepaliveS));
      // MQTT 3.1.1 §3.2.2.3: no return code applies, so no CONNACK.
      expect(await c.connack()).toBeUndefined();
    }
    const ok = await open(gw.mqttPort, '127.0.0.1');
    ok.socket.write(deviceConnect(dev!.deviceId, dev!.keys.secretKey, 120));
    expect(await ok.connack()).toBe(0);
    ok.close();

    const after = await gw.until((s) => refused(s, 'MQTT_CONNECT_TIMEOUT') - refused(before, 'MQTT_CONNECT_TIMEOUT') >= 2, 10_000, 'deadline refusals counted');
    expect(refused(after, 'MQTT_CONNECT_TIMEOUT') - refused(before, 'MQTT_CONNECT_TIMEOUT')).toBe(2);
    expect(refused(after, 'MQTT_KEEPALIVE_REFUSED') - refused(before, 'MQTT_KEEPALIVE_REFUSED')).toBe(2);
  });

  it('caps connections per source address and in total, and frees the slots when they close', async () => {
    const hold = fleets.get('hold')!;
    await gw.until((s) => s.mqtt.connections === 0, 10_000, 'no connection open');
    const before = await gw.status();
    const admitted = async (i: number, from: string): Promise<RawClient> => {
      const c = await open(gw.mqttPort, from);
      c.socket.write(deviceConnect(hold[i]!.deviceId, hold[i]!.keys.secretKey));
      expect(await c.connack()).toBe(0);
      return c;
    };
    const holders: RawClient[] = [];
    for (let i = 0; i < PER_SOURCE; i++) holders.push(await admitted(i, '127.0.0.3'));
    // One more from the same address is closed at once, before any byte is read.
    const extra = await RawClient.open(gw.mqttPort, { localAddress: '127.0.0.3' }).catch(() => undefined);
    if (extra) await extra.closed;
    // Another address still gets in, until the total cap.
    for (let i = PER_SOURCE; i < TOTAL; i++) holders.push(await admitted(i, `127.0.0.${4 + Math.floor((i - PER_SOURCE) / PER_SOURCE)}`));
    expect((await gw.status()).mqtt.connections).toBe(TOTAL);
    const over = await RawClient.open(gw.mqttPort, { localAddress: '127.0.0.9' }).catch(() => undefined);
    if (over) await over.closed;
    const full = await gw.until((s) => refused(s, 'MQTT_TOO_MANY_CONNECTIONS') > refused(before, 'MQTT_TOO_MANY_CONNECTIONS'), 10_000, 'total cap counted');
    expect(refused(full, 'MQTT_TOO_MANY_FROM_SOURCE') - refused(before, 'MQTT_TOO_MANY_FROM_SOURCE')).toBe(1);
    expect(refused(full, 'MQTT_TOO_MANY_CONNECTIONS') - refused(before, 'MQTT_TOO_MANY_CONNECTIONS')).toBe(1);

    for (const h of holders) h.close();
    await gw.until((s) => s.mqtt.connections === 0, 10_000, 'slots freed');
    const again = await admitted(0, '127.0.0.3');
    again.close();
  });
});
