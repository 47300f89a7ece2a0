/**
 * The key rule (PROTOCOL.md §2.2) wherever a key enters apart from the chain (the chain is
 * test/gateway/registry/chain-registry-keys.test.ts): the CLI's enrolment check, the registry file
 * (written by `vitalproof enrol`, but also editable by hand), CONNECT, and `vitalproof verify`.
 * Every key vector of firmware-proto/vectors/keys/ that breaks the rule is refused in each
 * place, with its problem named.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeBody } from '../../../firmware-proto/frame.js';
import { concat, deviceIdFromKey, type KeyProblem } from '../../../firmware-proto/signing.js';
import { deviceClientId } from '../../../firmware-proto/topics.js';
import { checkEnrolment, KeyRuleCache, refusedKeysBy } from '../../../gateway/registry/registry.js';
import { FileRegistry } from '../../../gateway/registry/file-registry.js';
import { ConnectAuthenticator } from '../../../gateway/transport/mqtt/connect-auth.js';
import { buildBundle, BundleFormatError, parseBundle } from '../../../gateway/proof/bundle.js';
import { verifyBundle } from '../../../gateway/proof/verify.js';
import { Rfc6962Tree } from '../../../gateway/merkle/tree.js';
import { STREAM } from '../../../gateway/chain/contracts.js';
import { heartRate, testDevice } from '../../support/devices.js';

interface KeyVector {
  name: string;
  publicKey: string;
  wantProblem: KeyProblem | null;
}
const DIR = fileURLToPath(new URL('../../../firmware-proto/vectors/keys/', import.meta.url));
const VECTORS: KeyVector[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ name: f.replace(/\.json$/, ''), ...(JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Omit<KeyVector, 'name'>) }));
const BAD = VECTORS.filter((v) => v.wantProblem !== null);
const BAD32 = BAD.filter((v) => v.publicKey.length === 64);
const IDENTITY = `01${'00'.repeat(31)}`;
const FORGED_SIGNATURE = Buffer.concat([Buffer.from(IDENTITY, 'hex'), Buffer.alloc(32)]);
const T0 = 1_795_000_000_000;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the CLI enrolment check (checkEnrolment, used by `vitalproof enrol` on chain and on file)', () => {
  it.each(BAD.map((v) => [v.name, v] as const))('refuses %s as KEY_<problem>', (_n, v) => {
    const id = deviceIdFromKey(Buffer.from(v.publicKey, 'hex'));
    expect(checkEnrolment({ deviceId: id, publicKey: v.publicKey, patient: 'pt-keyrule' })).toMatchObject({ reason: `KEY_${v.wantProblem}` });
  });

  it('accepts every good key vector', () => {
    for (const v of VECTORS.filter((x) => x.wantProblem === null)) {
      expect(
        checkEnrolment({ deviceId: deviceIdFromKey(Buffer.from(v.publicKey, 'hex')), publicKey: v.publicKey, patient: 'pt-keyrule' }),
        v.name,
      ).toBeUndefined();
    }
  });
});

describe('KeyRuleCache', () => {
  it('names the same problem as the vectors, for raw bytes and for hex, and calls a non-hex string WRONG_LENGTH', () => {
    const c = new KeyRuleCache(4); // tiny: clearing when full must not change answers
    for (const v of VECTORS) {
      expect(c.check(v.publicKey), v.name).toBe(v.wantProblem);
      expect(c.check(Buffer.from(v.publicKey, 'hex')), v.name).toBe(v.wantProblem);
    }
    expect(c.check('zz'.repeat(32))).toBe('WRONG_LENGTH');
  });
});

describe('FileRegistry: a hand-edited registry file with bad keys', () => {
  it('serves only the good devices, lists the others as refused with their problem, logs each once, and keeps them in the file on save', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vp-keyrule-'));
    dirs.push(dir);
    const path = join(dir, 'registry.json');
    const good = testDevice('keyrule-good');
    const stored = (publicKey: string, patient: string) => ({
      deviceId: deviceIdFromKey(Buffer.from(publicKey, 'hex')),
      publicKey,
      patient,
      sensors: ['heart_rate'],
      enrolledAtMs: T0,
    });
    const devices = [stored(Buffer.from(good.keys.publicKey).toString('hex'), 'pt-good'), ...BAD.map((v, i) => stored(v.publicKey, `pt-bad-${i}`))];
    writeFileSync(path, JSON.stringify({ version: 1, devices }));

    const errors: Record<string, unknown>[] = [];
    const reg = new FileRegistry(path, { log: { error: (o) => void errors.push(o as Record<string, unknown>) } });
    try {
      expect(reg.list().map((d) => d.deviceId)).toEqual([good.id]);
      for (const d of devices.slice(1)) expect(reg.get(d.deviceId)).toBeUndefined();
      expect(reg.refusedKeys().map((r) => r.reason)).toEqual(BAD.map((v) => v.wantProblem));
      expect(refusedKeysBy(reg.refusedKeys())).toEqual(refusedKeysBy(BAD.map((v) => ({ deviceId: '', publicKey: '', reason: v.wantProblem! }))));
      expect(errors).toHaveLength(BAD.length);
      expect(errors.every((e) => e['event'] === 'registry_key_refused' && e['source'] === 'file' && !JSON.stringify(e).includes('pt-bad'))).toBe(true);

      // An enrolment rewrites the file: the refused entries stay in it, as the operator's evidence.
      const other = testDevice('keyrule-other');
      expect((await reg.enrol([other.enrolment])).enrolled).toEqual([other.id]);
      const after = JSON.parse(readFileSync(path, 'utf8')) as { devices: { deviceId: string }[] };
      expect(after.devices.map((d) => d.deviceId).sort()).toEqual([...devices.map((d) => d.deviceId), other.id].sort());
      // A second registry on the same file (a restart) refuses them again.
      const again = new FileRegistry(path);
      expect(
        again
          .list()
          .map((d) => d.deviceId)
          .sort(),
      ).toEqual([good.id, other.id].sort());
      expect(again.refusedKeys()).toHaveLength(BAD.length);
      await again.close();
      expect(errors).toHaveLength(BAD.length); // not logged again by the first registry
    } finally {
      await reg.close();
    }
  });
});

describe('CONNECT against a registry file holding the identity key', () => {
  it('refuses the universal forgery R = identity, S = 0 as CONNECT_UNKNOWN_DEVICE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vp-keyrule-'));
    dirs.push(dir);
    const id = deviceIdFromKey(Buffer.from(IDENTITY, 'hex'));
    writeFileSync(
      join(dir, 'registry.json'),
      JSON.stringify({ version: 1, devices: [{ deviceId: id, publicKey: IDENTITY, patient: 'pt-id', sensors: [], enrolledAtMs: T0 }] }),
    );
    const reg = new FileRegistry(join(dir, 'registry.json'));
    const now = Date.now();
    const auth = new ConnectAuthenticator(reg, { windowMs: 30_000, startedAtMs: now - 1000, now: () => now });
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(now));
    expect(auth.check(deviceClientId(id), id, Buffer.concat([ts, Buffer.alloc(16, 1), FORGED_SIGNATURE]))).toEqual({
      ok: false,
      reason: 'CONNECT_UNKNOWN_DEVICE',
    });
  });
});

describe('`vitalproof verify` (verifyBundle) refuses every bad key with BAD_PUBLIC_KEY and its problem', () => {
  /** A bundle of a frame "from" the device of `publicKeyHex`, signed R = identity, S = 0, in a one-leaf tree. */
  function forgedBundle(publicKeyHex: string) {
    const deviceId = deviceIdFromKey(Buffer.from(publicKeyHex, 'hex'));
    const raw = concat(encodeBody({ deviceId, seq: 1n, ...heartRate(T0, [70, 71]) }), FORGED_SIGNATURE);
    const tree = Rfc6962Tree.fromLeafData([raw]);
    return buildBundle({
      raw,
      publicKey: Buffer.from(publicKeyHex, 'hex'),
      deviceRegistry: { chainId: 31337, address: '0x5FbDB2315678afecb367f032d93F642f64180aa3' },
      leafIndex: 0,
      treeSize: 1,
      auditPath: [],
      root: tree.root(),
      anchor: {
        chainId: 31337,
        contract: '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512',
        gateway: '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266',
        stream: STREAM.FRAMES,
        batchSeq: 1n,
        firstFrameTimeMs: T0,
        lastFrameTimeMs: T0,
        txHash: `0x${'ab'.repeat(32)}`,
        blockNumber: 7,
        blockHash: `0x${'cd'.repeat(32)}`,
      },
      gatewayId: 'ward-keys',
      generatedAtMs: T0 + 1000,
    });
  }

  it.each(BAD32.map((v) => [v.name, v] as const))('%s', async (_n, v) => {
    const verdict = await verifyBundle(forgedBundle(v.publicKey), { offline: true });
    const sig = verdict.checks.find((c) => c.check === 'signature')!;
    expect(sig).toMatchObject({ status: 'fail', code: 'BAD_PUBLIC_KEY', detail: { problem: v.wantProblem, publicKey: v.publicKey } });
    expect(verdict.ok).toBe(false);
  });

  it('the identity forgery would pass every other offline check: only the key rule stops it', async () => {
    const verdict = await verifyBundle(forgedBundle(IDENTITY), { offline: true });
    expect(Object.fromEntries(verdict.checks.map((c) => [c.check, c.status]))).toMatchObject({ frame: 'pass', signature: 'fail', inclusion: 'pass' });
  });

  it('a key of the wrong length is no bundle at all: BundleFormatError, before any check', () => {
    const good = forgedBundle(IDENTITY);
    for (const v of BAD.filter((x) => x.wantProblem === 'WRONG_LENGTH')) {
      const json = JSON.parse(JSON.stringify(good)) as { device: { publicKey: string } };
      json.device.publicKey = v.publicKey;
      expect(() => parseBundle(json), v.name).toThrow(BundleFormatError);
    }
  });
});
