/**
 * The MQTT listener's guard pieces without sockets: the fixed-header reader (every split of a
 * valid stream passes whole; each rule's breach is refused on its header bytes), the
 * connection caps, the certificate check of mutual TLS, the refusal log's summaries, and the
 * configuration rules for plain listeners and TLS.
 */
import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { PacketGuard, type ScanResult } from '../../../../gateway/transport/mqtt/packet-guard.js';
import { Admission, sourceOf } from '../../../../gateway/transport/mqtt/admission.js';
import { deviceCertRefusal } from '../../../../gateway/transport/mqtt/tls.js';
import { RefusalLog } from '../../../../gateway/transport/mqtt/refusal-log.js';
import { ConfigError, DEFAULTS, isLoopbackHost, loadConfig } from '../../../../gateway/config.js';
import { MAX_FRAME_BYTES } from '../../../../firmware-proto/frame.js';
import { frameTopic } from '../../../../firmware-proto/topics.js';
import { connectPacket, publishHeader, publishPacket, subscribePacket, varint } from '../../../support/mqtt-raw.js';
import { prng, type TestRng } from '../../../support/prng.js';

const DEVICE = '8154e161025692be';
const CONNECT = connectPacket({ clientId: `vp-dev-${DEVICE}`, username: DEVICE, password: Buffer.alloc(88, 7) });
const PINGREQ = Buffer.from([0xc0, 0x00]);
const DISCONNECT = Buffer.from([0xe0, 0x00]);

function refusal(r: ScanResult): string | undefined {
  return 'refused' in r ? r.refused : undefined;
}

/** Feeds `bytes` in the given pieces, admitting at `admitLimit` when the guard holds; returns the bytes passed, or the refusal. */
function feed(g: PacketGuard, pieces: Buffer[], admitLimit: number): { passed: Buffer } | { refused: string } {
  const out: Buffer[] = [];
  let held = Buffer.alloc(0);
  for (const p of pieces) {
    let chunk = Buffer.concat([held, p]);
    held = Buffer.alloc(0);
    for (;;) {
      const r = g.scan(chunk);
      if ('refused' in r) return { refused: r.refused };
      out.push(chunk.subarray(0, r.pass));
      if (r.pass === chunk.length) break;
      // The broker decides on the CONNECT here; the rest is scanned again under the role's limit.
      expect(g.held).toBe(true);
      g.admit(admitLimit);
      chunk = chunk.subarray(r.pass);
    }
  }
  return { passed: Buffer.concat(out) };
}

function splits(bytes: Buffer, rng: TestRng): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length;) {
    const n = 1 + rng.int(40);
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('PacketGuard', () => {
  const frame = Buffer.alloc(MAX_FRAME_BYTES, 1);
  const stream = Buffer.concat([
    CONNECT,
    publishPacket(frameTopic(DEVICE), frame, 1),
    PINGREQ,
    publishPacket(frameTopic(DEVICE), Buffer.alloc(300, 2), 2),
    subscribePacket('vp/x', 3),
    DISCONNECT,
  ]);

  it('passes a valid stream whole in any split, holding what follows the CONNECT until admit()', () => {
    const rng = prng(10_001);
    const passedWhole = (r: ReturnType<typeof feed>): boolean => 'passed' in r && r.passed.equals(stream);
    for (let i = 0; i < 200; i++) expect(passedWhole(feed(new PacketGuard(4096), splits(stream, rng), MAX_FRAME_BYTES + 1024))).toBe(true);
    expect(
      passedWhole(
        feed(
          new PacketGuard(4096),
          [...stream].map((b) => Buffer.from([b])),
          MAX_FRAME_BYTES + 1024,
        ),
      ),
    ).toBe(true);
  });

  it('stops at the end of the CONNECT and passes nothing more until admitted', () => {
    const g = new PacketGuard(4096);
    const r = g.scan(stream);
    expect(r).toEqual({ pass: CONNECT.length });
    expect(g.held).toBe(true);
    expect(g.scan(stream.subarray(CONNECT.length))).toEqual({ pass: 0 });
    g.admit(MAX_FRAME_BYTES + 1024);
    expect(g.scan(stream.subarray(CONNECT.length))).toEqual({ pass: stream.length - CONNECT.length });
  });

  it('refuses a CONNECT over the limit on its header bytes, before any body', () => {
    const g = new PacketGuard(4096);
    const header = Buffer.concat([Buffer.from([0x10]), varint(64 * 1024 * 1024)]);
    const r = g.scan(header);
    expect(r).toEqual({ refused: 'MQTT_PACKET_TOO_LARGE', detail: { limit: 4096, declared: 1 + 4 + 64 * 1024 * 1024, packetType: 1 } });
    // Refused for good: nothing passes afterwards.
    expect(refusal(g.scan(Buffer.alloc(10)))).toBe('MQTT_PACKET_TOO_LARGE');
  });

  it('allows a CONNECT of exactly the limit and refuses one byte more', () => {
    const sized = (n: number): Buffer => {
      for (let p = 0; p < n; p++) {
        const c = connectPacket({ clientId: 'c', username: 'u', password: Buffer.alloc(p) });
        if (c.length === n) return c;
      }
      throw new Error(`no CONNECT of ${n} bytes`);
    };
    expect(new PacketGuard(4096).scan(sized(4096))).toEqual({ pass: 4096 });
    expect(refusal(new PacketGuard(4096).scan(sized(4097)))).toBe('MQTT_PACKET_TOO_LARGE');
  });

  it("judges packets after the CONNECT against the admitted role's limit", () => {
    const g = new PacketGuard(4096);
    expect(g.scan(CONNECT)).toEqual({ pass: CONNECT.length });
    g.admit(8192);
    const big = publishHeader(frameTopic(DEVICE), 200 * 1024 * 1024);
    const r = g.scan(big);
    expect(refusal(r)).toBe('MQTT_PACKET_TOO_LARGE');
    expect('refused' in r && r.detail.limit).toBe(8192);
  });

  it('refuses headers no MQTT 3.1.1 client sends', () => {
    const cases: [string, Buffer][] = [
      ['PUBLISH before CONNECT', publishPacket('t', Buffer.alloc(3))],
      ['PINGREQ before CONNECT', PINGREQ],
      ['reserved type 0', Buffer.from([0x00, 0x00])],
      ['CONNECT with flag bits', Buffer.from([0x11, 0x00])],
    ];
    for (const [what, bytes] of cases) expect(refusal(new PacketGuard(4096).scan(bytes)), what).toBe('MQTT_MALFORMED');
    const after: [string, Buffer][] = [
      ['second CONNECT', CONNECT],
      ['CONNACK (server to client)', Buffer.from([0x20, 0x02, 0x00, 0x00])],
      ['SUBACK (server to client)', Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00])],
      ['reserved type 15', Buffer.from([0xf0, 0x00])],
      ['SUBSCRIBE without its 0010 flags', Buffer.from([0x80, 0x00])],
      ['PUBLISH with QoS 3', Buffer.from([0x36, 0x00])],
      ['PINGREQ with flag bits', Buffer.from([0xc1, 0x00])],
      ['remaining length of 5 bytes', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])],
    ];
    for (const [what, bytes] of after) {
      const g = new PacketGuard(4096);
      g.scan(CONNECT);
      g.admit(MAX_FRAME_BYTES + 1024);
      expect(refusal(g.scan(bytes)), what).toBe('MQTT_MALFORMED');
    }
  });

  it('answers any bytes with a pass or a code, never passing more than it was given (bounded fuzz)', () => {
    const rng = prng(10_002);
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const g = new PacketGuard(64 + rng.int(4097));
      const lead = rng.int(4) === 0 ? CONNECT : Buffer.alloc(0);
      const junk = Buffer.from(rng.bytes(1 + rng.int(64)));
      const r = g.scan(Buffer.concat([lead, junk]));
      if ('refused' in r) {
        refused++;
        expect(['MQTT_PACKET_TOO_LARGE', 'MQTT_MALFORMED']).toContain(r.refused);
      } else expect(r.pass).toBeLessThanOrEqual(lead.length + junk.length);
    }
    expect(refused).toBeGreaterThan(10_000);
  });
});

describe('Admission', () => {
  it('caps per source and in total, and gives slots back', () => {
    const a = new Admission({ maxConnections: 5, maxPerSource: 2 });
    expect(a.take('10.0.0.1')).toBeUndefined();
    expect(a.take('10.0.0.1')).toBeUndefined();
    expect(a.take('10.0.0.1')).toBe('MQTT_TOO_MANY_FROM_SOURCE');
    expect(a.take('10.0.0.2')).toBeUndefined();
    expect(a.take('10.0.0.2')).toBeUndefined();
    expect(a.take('10.0.0.3')).toBeUndefined();
    expect(a.take('10.0.0.4')).toBe('MQTT_TOO_MANY_CONNECTIONS');
    expect(a.open).toBe(5);
    a.release('10.0.0.1');
    expect(a.take('10.0.0.4')).toBeUndefined();
    for (const s of ['10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.3', '10.0.0.4']) a.release(s);
    expect(a.open).toBe(0);
    expect(a.sources).toBe(0);
    // A release without a take changes nothing.
    a.release('10.9.9.9');
    expect(a.open).toBe(0);
  });

  it('takes an IPv4-mapped IPv6 peer for the IPv4 address it is', () => {
    expect(sourceOf('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(sourceOf('fe80::1')).toBe('fe80::1');
    expect(sourceOf(undefined)).toBe('unknown');
  });
});

describe('deviceCertRefusal (mutual TLS)', () => {
  it('needs a verified certificate naming the device, only when required', () => {
    expect(deviceCertRefusal(false, undefined, DEVICE)).toBeUndefined();
    expect(deviceCertRefusal(true, { tls: false, authorized: false }, DEVICE)).toBe('MQTT_CERT_REQUIRED');
    expect(deviceCertRefusal(true, { tls: true, authorized: false, commonName: DEVICE }, DEVICE)).toBe('MQTT_CERT_REQUIRED');
    expect(deviceCertRefusal(true, { tls: true, authorized: true, commonName: '0000000000000000' }, DEVICE)).toBe('MQTT_CERT_MISMATCH');
    expect(deviceCertRefusal(true, { tls: true, authorized: true }, DEVICE)).toBe('MQTT_CERT_MISMATCH');
    expect(deviceCertRefusal(true, { tls: true, authorized: true, commonName: DEVICE }, DEVICE)).toBeUndefined();
  });
});

describe('RefusalLog', () => {
  it('writes one summary for a burst, then at most one line per interval', async () => {
    const lines: Record<string, unknown>[] = [];
    let notify: (() => void) | undefined;
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        notify?.();
        cb();
      },
    });
    const log = pino({ level: 'info' }, sink);
    const rl = new RefusalLog(log, 200);
    const lineCount = (n: number): Promise<void> =>
      new Promise((res) => {
        const check = (): void => (lines.length >= n ? res() : undefined);
        notify = check;
        check();
      });
    for (let i = 0; i < 500; i++) rl.note(i % 2 ? 'MQTT_PACKET_TOO_LARGE' : 'MQTT_CONNECT_TIMEOUT', `10.0.${i % 7}.1`);
    await lineCount(1);
    expect(lines[0]).toMatchObject({ event: 'mqtt_refused', total: 500, byReason: { MQTT_PACKET_TOO_LARGE: 250, MQTT_CONNECT_TIMEOUT: 250 }, sources: 7 });
    for (let i = 0; i < 300; i++) rl.note('MQTT_TOO_MANY_FROM_SOURCE', '10.0.0.9', i === 0 ? 'abcdefabcdefabcd' : undefined);
    await lineCount(2);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({
      event: 'mqtt_refused',
      total: 300,
      byReason: { MQTT_TOO_MANY_FROM_SOURCE: 300 },
      topSources: [{ source: '10.0.0.9', n: 300 }],
      devices: ['abcdefabcdefabcd'],
    });
    expect(lines[1]!.sinceMs as number).toBeGreaterThanOrEqual(200);
    rl.flush();
    expect(lines).toHaveLength(2);
  });
});

describe('MQTT configuration', () => {
  const flags = (f: Record<string, string>): Record<string, string> => ({ dataDir: '/tmp/vp-config-test', ...f });

  it('knows loopback listen addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '', '10.0.0.5', 'gateway.ward3.local', '128.0.0.1', '127.0.0.1.example.org']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('refuses plain MQTT on a non-loopback address unless mqtt.allowPlain is true', () => {
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.host': '0.0.0.0' }) })).toThrow(ConfigError);
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.host': '0.0.0.0' }) })).toThrow(
      /mqtt\.host is "0\.0\.0\.0", not a loopback address.*mqtt\.allowPlain/,
    );
    expect(() => loadConfig({ env: { VP_MQTT_HOST: '10.1.1.1' }, flags: flags({}) })).toThrow(ConfigError);
    expect(loadConfig({ env: {}, flags: flags({ 'mqtt.host': '0.0.0.0', 'mqtt.allowPlain': 'true' }) }).mqtt.allowPlain).toBe('true');
    expect(loadConfig({ env: {}, flags: flags({}) }).mqtt.host).toBe('127.0.0.1');
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.allowPlain': 'yes' }) })).toThrow(/mqtt\.allowPlain must be true or false/);
  });

  it('checks the TLS settings go together', () => {
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.tls.cert': '/x/server.crt' }) })).toThrow(/mqtt\.tls\.cert and mqtt\.tls\.key go together/);
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.tls.ca': '/x/ca.crt' }) })).toThrow(/mqtt\.tls\.ca needs a TLS listener/);
    expect(() =>
      loadConfig({ env: {}, flags: flags({ 'mqtt.tls.cert': '/x/s.crt', 'mqtt.tls.key': '/x/s.key', 'mqtt.tls.requireClientCert': 'true' }) }),
    ).toThrow(/requireClientCert true needs mqtt\.tls\.ca/);
    const c = loadConfig({
      env: {},
      flags: flags({ 'mqtt.tls.cert': 's.crt', 'mqtt.tls.key': 's.key', 'mqtt.tls.ca': 'ca.crt', 'mqtt.tls.requireClientCert': 'true' }),
    });
    expect(c.mqtt.tls.cert.startsWith('/')).toBe(true);
    expect(c.mqtt.tls.port).toBe(8883);
  });

  it('refuses limits that would cut honest devices off, and the sizes default from the frame limit', () => {
    expect(DEFAULTS.mqtt.maxDevicePacketBytes).toBe(MAX_FRAME_BYTES + 1024);
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.maxDevicePacketBytes': String(MAX_FRAME_BYTES) }) })).toThrow(
      /mqtt\.maxDevicePacketBytes must be an integer >= 16448/,
    );
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.maxConnections': '0' }) })).toThrow(/mqtt\.maxConnections must be an integer >= 1/);
    expect(() => loadConfig({ env: {}, flags: flags({ 'mqtt.maxKeepaliveS': '70000' }) })).toThrow(/mqtt\.maxKeepaliveS must be <= 65535/);
  });
});
