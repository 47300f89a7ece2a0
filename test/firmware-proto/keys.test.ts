/**
 * The enrolment rule for public keys (PROTOCOL.md §2.2) against the key vectors
 * (firmware-proto/vectors/keys/): checkPublicKey names exactly the problem each vector names,
 * and accepts the good keys. The first problem in §2.2 order wins: WRONG_LENGTH, NOT_ON_CURVE,
 * NON_CANONICAL, SMALL_ORDER, MIXED_ORDER.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { describe, expect, it } from 'vitest';
import { checkPublicKey, deviceIdFromKey, generateKeys, keyFingerprint, signBody, FRAME_TAG, concat, type KeyProblem } from '../../firmware-proto/signing.js';
import { SMALL_ORDER_POINTS } from '../../scripts/gen-vectors.js';

interface KeyVector {
  desc: string;
  publicKey: string;
  wantProblem: KeyProblem | null;
  secretKey?: string;
  universalForgery?: { message: string; signature: string };
}

const DIR = fileURLToPath(new URL('../../firmware-proto/vectors/keys/', import.meta.url));
const vectors: [string, KeyVector][] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(DIR + f, 'utf8')) as KeyVector]);
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const keyObject = (raw: Uint8Array) => createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });

describe('key vector set', () => {
  it('has good keys and at least one vector for every problem', () => {
    const problems = new Set(vectors.map(([, v]) => v.wantProblem));
    expect([...problems].sort()).toEqual(([null, 'WRONG_LENGTH', 'NOT_ON_CURVE', 'NON_CANONICAL', 'SMALL_ORDER', 'MIXED_ORDER'] as const).slice().sort());
  });

  it('lists all 8 small-order points, each its own point of order dividing 8', () => {
    const small = vectors.filter(([, v]) => v.wantProblem === 'SMALL_ORDER').map(([, v]) => v.publicKey);
    expect(new Set(small).size).toBe(8);
    expect(small.sort()).toEqual(SMALL_ORDER_POINTS.map((p) => p.hex).sort());
    for (const h of small) {
      const p = ed.Point.fromBytes(bytes(h), false);
      expect(p.multiply(8n, false).is0(), h).toBe(true);
      expect(ed.Point.fromBytes(p.toBytes()).equals(p)).toBe(true);
    }
  });
});

describe.each(vectors)('key %s', (_name, v) => {
  // The security property first (refused or not), then the exact diagnosis the operator sees.
  it(`is ${v.wantProblem === null ? 'accepted' : 'refused'} at enrolment`, () => {
    expect(checkPublicKey(bytes(v.publicKey)) === null).toBe(v.wantProblem === null);
  });

  it(`enrolment says ${v.wantProblem ?? 'acceptable'}`, () => {
    expect(checkPublicKey(bytes(v.publicKey))).toBe(v.wantProblem);
  });

  if (v.secretKey !== undefined) {
    it('comes from its seed, and signs frames that node:crypto verifies', () => {
      const keys = generateKeys(bytes(v.secretKey!));
      expect(Buffer.from(keys.publicKey).toString('hex')).toBe(v.publicKey);
      const body = new TextEncoder().encode('any frame body');
      const sig = signBody(body, keys.secretKey);
      expect(cryptoVerify(null, concat(FRAME_TAG, body), keyObject(keys.publicKey), sig)).toBe(true);
      expect(deviceIdFromKey(keys.publicKey)).toMatch(/^[0-9a-f]{16}$/);
      expect(keyFingerprint(keys.publicKey)).toMatch(/^[0-9a-f]{16}$/);
    });
  }

  if (v.universalForgery !== undefined) {
    // Why enrolment must refuse: OpenSSL's cofactorless check does not reject the identity key,
    // and under it one fixed signature verifies for every message.
    it('would let anyone forge under node:crypto: the universal forgery verifies for any message', () => {
      const { message, signature } = v.universalForgery!;
      const key = keyObject(bytes(v.publicKey));
      expect(cryptoVerify(null, bytes(message), key, bytes(signature))).toBe(true);
      expect(cryptoVerify(null, new TextEncoder().encode('VitalProof/frame/v1\0 a frame never sent'), key, bytes(signature))).toBe(true);
    });
  }
});

describe('device ids and fingerprints (§2.1)', () => {
  it('derive from the key: first 8 bytes of SHA-256("VitalProof/device-id/v1" ‖ key), and of SHA-256(key)', () => {
    const pub = bytes('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    // The worked example of PROTOCOL.md §2.1.
    expect(deviceIdFromKey(pub)).toBe('2bf670914b489316');
    expect(keyFingerprint(pub)).toBe('21fe31dfa154a261');
    expect(deviceIdFromKey(pub)).toBe(
      createHash('sha256')
        .update(Buffer.concat([Buffer.from('VitalProof/device-id/v1'), pub]))
        .digest('hex')
        .slice(0, 16),
    );
    expect(keyFingerprint(pub)).toBe(createHash('sha256').update(pub).digest('hex').slice(0, 16));
    expect(deviceIdFromKey(pub)).not.toBe(keyFingerprint(pub));
  });
});
