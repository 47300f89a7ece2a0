/**
 * The MQTT CONNECT token (PROTOCOL.md §6.1): its byte layout, its signature, and the
 * connect vectors (firmware-proto/vectors/connect/). The gateway's check is private to its
 * broker, so `specCheck` below spells out §6.1 step by step; every vector must get exactly
 * its reason and CONNACK return code from it, and honest tokens must be reproducible byte
 * for byte from their seed, time and nonce.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CONNECT_TOKEN_BYTES, connectSigningMessage, makeConnectPassword, parseConnectPassword } from '../../firmware-proto/connect.js';
import { CONNECT_REASONS, type ConnectReason } from '../../firmware-proto/reasons.js';
import { CONNECT_TAG, deviceIdFromKey, generateKeys } from '../../firmware-proto/signing.js';
import { deviceClientId } from '../../firmware-proto/topics.js';
import { isDeviceId } from '../../firmware-proto/frame.js';
import { connectVectors, type ConnectVector } from '../support/connect-vectors.js';

const vectors = connectVectors;
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function opensslVerify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
  return cryptoVerify(null, msg, key, sig);
}

const CONNACK: Record<ConnectReason, 4 | 5> = {
  CONNECT_MALFORMED: 4,
  CONNECT_BAD_SIGNATURE: 4,
  CONNECT_STALE: 4,
  CONNECT_REPLAYED: 4,
  CONNECT_UNKNOWN_DEVICE: 5,
  CONNECT_REVOKED: 5,
};

/** PROTOCOL.md §6.1, "Gateway checks, in order", one line per step. */
function specCheck(v: ConnectVector): ConnectReason | null {
  const { username, clientId } = v.connect;
  const password = bytes(v.connect.password);
  const now = BigInt(v.gateway.nowMs);
  // 1. username is a device id, password is 88 bytes, client id is vp-dev-<device id>
  if (!isDeviceId(username) || password.length !== 88 || clientId !== `vp-dev-${username}`) return 'CONNECT_MALFORMED';
  // 2. enrolled
  const dev = v.gateway.devices.find((d) => d.deviceId === username);
  if (!dev) return 'CONNECT_UNKNOWN_DEVICE';
  // 3. not revoked at the gateway's time
  if (dev.revokedAtMs !== null && BigInt(dev.revokedAtMs) <= now) return 'CONNECT_REVOKED';
  // 4. signature over CONNECT_TAG ‖ device id ‖ u16 len ‖ client id ‖ timestamp ‖ nonce
  const ts = password.subarray(0, 8);
  const nonce = password.subarray(8, 24);
  const sig = password.subarray(24, 88);
  const cid = Buffer.from(clientId, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(cid.length);
  const msg = Buffer.concat([Buffer.from('VitalProof/connect/v1\0', 'utf8'), Buffer.from(username, 'hex'), len, cid, ts, nonce]);
  if (!opensslVerify(bytes(dev.publicKey), msg, sig)) return 'CONNECT_BAD_SIGNATURE';
  // 5. |t − now| ≤ window and t ≥ gateway start
  const t = Buffer.from(ts).readBigUInt64BE(0);
  const diff = t > now ? t - now : now - t;
  if (diff > BigInt(v.gateway.windowMs) || t < BigInt(v.gateway.startedAtMs)) return 'CONNECT_STALE';
  // 6. nonce not accepted before
  if (v.gateway.usedNonces.includes(hex(nonce))) return 'CONNECT_REPLAYED';
  return null;
}

describe('connect token layout (§6.1)', () => {
  const keys = generateKeys(new Uint8Array(32).fill(3));
  const id = deviceIdFromKey(keys.publicKey);
  const clientId = deviceClientId(id);
  const nonce = Uint8Array.from({ length: 16 }, (_, i) => i);

  it('is timestamp (u64 BE) ‖ nonce (16) ‖ signature (64) = 88 bytes, and parses back', () => {
    const pw = makeConnectPassword(id, clientId, keys.secretKey, 1_700_000_000_123, nonce);
    expect(pw.length).toBe(CONNECT_TOKEN_BYTES);
    expect(CONNECT_TOKEN_BYTES).toBe(88);
    expect(hex(pw.subarray(0, 8))).toBe((1_700_000_000_123).toString(16).padStart(16, '0'));
    expect(hex(pw.subarray(8, 24))).toBe(hex(nonce));
    const t = parseConnectPassword(pw)!;
    expect(t.timestampMs).toBe(1_700_000_000_123n);
    expect(hex(t.nonce)).toBe(hex(nonce));
    expect(hex(t.signature)).toBe(hex(pw.subarray(24)));
  });

  it('parses a password inside a larger buffer (offsets respected)', () => {
    const pw = makeConnectPassword(id, clientId, keys.secretKey, 42, nonce);
    const big = new Uint8Array(200);
    big.set(pw, 17);
    const t = parseConnectPassword(big.subarray(17, 17 + 88))!;
    expect(t.timestampMs).toBe(42n);
    expect(hex(t.nonce)).toBe(hex(nonce));
  });

  it('refuses any other password length', () => {
    for (const n of [0, 1, 87, 89, 176]) expect(parseConnectPassword(new Uint8Array(n))).toBeUndefined();
  });

  it('signs CONNECT_TAG ‖ device id (8) ‖ len(client id) (u16 BE) ‖ client id (UTF-8) ‖ timestamp ‖ nonce', () => {
    const msg = connectSigningMessage(id, 'vp-dev-é', 7n, nonce);
    const want = Buffer.concat([
      Buffer.from(CONNECT_TAG),
      Buffer.from(id, 'hex'),
      Buffer.from([0, 9]),
      Buffer.from('vp-dev-é', 'utf8'),
      Buffer.from('0000000000000007', 'hex'),
      Buffer.from(nonce),
    ]);
    expect(hex(msg)).toBe(want.toString('hex'));
    expect(hex(CONNECT_TAG)).toBe('566974616c50726f6f662f636f6e6e6563742f763100');
  });

  it('verifies under node:crypto with the device key, and not under another key or another client id', () => {
    const pw = makeConnectPassword(id, clientId, keys.secretKey, 1_700_000_000_000, nonce);
    const t = parseConnectPassword(pw)!;
    expect(opensslVerify(keys.publicKey, connectSigningMessage(id, clientId, t.timestampMs, t.nonce), t.signature)).toBe(true);
    expect(opensslVerify(generateKeys(new Uint8Array(32).fill(4)).publicKey, connectSigningMessage(id, clientId, t.timestampMs, t.nonce), t.signature)).toBe(
      false,
    );
    expect(opensslVerify(keys.publicKey, connectSigningMessage(id, `${clientId}x`, t.timestampMs, t.nonce), t.signature)).toBe(false);
  });

  it('uses a fresh random nonce by default', () => {
    const a = parseConnectPassword(makeConnectPassword(id, clientId, keys.secretKey, 1))!;
    const b = parseConnectPassword(makeConnectPassword(id, clientId, keys.secretKey, 1))!;
    expect(hex(a.nonce)).not.toBe(hex(b.nonce));
  });
});

describe('connect vector set', () => {
  it('names every CONNECT reason, and some tokens that must be let in', () => {
    const reasons = new Set(vectors.map(([, v]) => v.wantReason));
    for (const r of Object.keys(CONNECT_REASONS)) expect(reasons, r).toContain(r);
    expect(reasons).toContain(null);
  });
});

describe.each(vectors)('connect %s', (_name, v) => {
  it(`${v.wantReason ?? 'is accepted'}, CONNACK return code ${v.connackReturnCode}`, () => {
    expect(specCheck(v)).toBe(v.wantReason);
    expect(v.connackReturnCode).toBe(v.wantReason === null ? 0 : CONNACK[v.wantReason]);
  });

  if (v.token) {
    it('is reproduced byte for byte from its seed, timestamp and nonce', () => {
      const t = v.token!;
      const pw = makeConnectPassword(t.deviceId, t.clientId, bytes(t.secretKey), Number(t.timestampMs), bytes(t.nonce));
      const want = bytes(v.connect.password);
      expect(hex(pw)).toBe(hex(want));
    });
  }
});
