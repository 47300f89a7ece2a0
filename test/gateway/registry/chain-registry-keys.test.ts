/**
 * The key rule (PROTOCOL.md §2.2) for keys that enter through the chain (issue #10, item 3):
 * the hospital admin's key calls DeviceRegistry.enrol directly, past the CLI's check, with
 * every 32-byte key vector that breaks the rule (the identity point, the other small-order
 * points, non-canonical encodings, mixed-order and off-curve keys). Against a real anvil and
 * the real contract, the ChainRegistry must refuse each (never served by get() or list()),
 * count it by reason, log it once at error level, and keep refusing it from its cache; a
 * forged CONNECT token (R = identity, S = 0, which OpenSSL accepts under the identity key) and
 * a forged frame through the IngestPipeline must both be refused.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsonRpcProvider } from 'ethers';
import { encodeBody } from '../../../firmware-proto/frame.js';
import { concat, deviceIdFromKey, frameSigningMessage, type KeyProblem } from '../../../firmware-proto/signing.js';
import { connectSigningMessage } from '../../../firmware-proto/connect.js';
import { deviceClientId } from '../../../firmware-proto/topics.js';
import { deployContracts, type DeploymentRecord } from '../../../gateway/chain/deploy.js';
import { deviceRegistryAt } from '../../../gateway/chain/contracts.js';
import { deviceIdToBytes8, siteIdOf } from '../../../gateway/chain/ids.js';
import { CACHE_FILE, ChainRegistry, type ChainRegistryOptions, type RegistryLog } from '../../../gateway/registry/chain-registry.js';
import type { DeviceRecord } from '../../../gateway/registry/registry.js';
import { ConnectAuthenticator } from '../../../gateway/transport/mqtt/connect-auth.js';
import { ed25519KeyObject, verifyEd25519 } from '../../../gateway/verify/ed25519.js';
import { Wal } from '../../../gateway/spool/wal.js';
import { VerifyPool } from '../../../gateway/verify/pool.js';
import { Quarantine } from '../../../gateway/ingest/quarantine.js';
import { Metrics } from '../../../gateway/status/metrics.js';
import { DeviceStates } from '../../../gateway/ingest/device-state.js';
import { IngestPipeline } from '../../../gateway/ingest/pipeline.js';
import { findFreePort } from '../../../gateway/util/net.js';
import { useAnvil } from '../../support/anvil.js';
import { until } from '../../support/device-registry-suite.js';
import { heartRate, testDevice } from '../../support/devices.js';
import { mined } from '../../support/contracts.js';

const chain = useAnvil();

interface KeyVector {
  publicKey: string;
  wantProblem: KeyProblem | null;
}
const VECTORS_DIR = fileURLToPath(new URL('../../../firmware-proto/vectors/keys/', import.meta.url));
/**
 * Every key vector that breaks the rule and that the contract takes: 32 bytes, and not all
 * zero (a point of order 4, which DeviceRegistry itself refuses as DeviceRegistryZeroPublicKey).
 */
const BAD_KEYS = readdirSync(VECTORS_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ name: f.replace(/\.json$/, ''), ...(JSON.parse(readFileSync(join(VECTORS_DIR, f), 'utf8')) as KeyVector) }))
  .filter((v) => v.wantProblem !== null && v.publicKey.length === 64 && !/^0+$/.test(v.publicKey))
  .map((v) => ({ ...v, reason: v.wantProblem as KeyProblem, deviceId: deviceIdFromKey(Buffer.from(v.publicKey, 'hex')) }));
const IDENTITY = BAD_KEYS.find((v) => v.name === 'small-order-identity')!;
/** R = the identity point's encoding, S = 0: accepted by OpenSSL for every message under the identity key. */
const FORGED_SIGNATURE = Buffer.concat([Buffer.from(IDENTITY.publicKey, 'hex'), Buffer.alloc(32)]);

let record: DeploymentRecord;
const dirs: string[] = [];
const open: ChainRegistry[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-chain-keys-'));
  dirs.push(d);
  return d;
}

function captureLog(): { log: RegistryLog; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg, ...obj });
  return { log: { info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

function registry(dataDir: string, opts: Partial<ChainRegistryOptions> = {}): ChainRegistry {
  const r = new ChainRegistry({
    provider: chain.provider,
    deviceRegistryAddress: record.deviceRegistry.address,
    deployBlock: record.deployBlock,
    dataDir,
    pollIntervalMs: 50,
    maxBackoffMs: 200,
    ...opts,
  });
  open.push(r);
  return r;
}

const expectedBy = (): Partial<Record<KeyProblem, number>> => {
  const by: Partial<Record<KeyProblem, number>> = {};
  for (const v of BAD_KEYS) by[v.reason] = (by[v.reason] ?? 0) + 1;
  return by;
};

/** The identity device's forged CONNECT password: timestamp ‖ nonce ‖ (identity ‖ 0³²). */
function forgedConnect(nowMs: number): { clientId: string; password: Uint8Array; message: Uint8Array } {
  const clientId = deviceClientId(IDENTITY.deviceId);
  const nonce = Buffer.alloc(16, 0x5a);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(nowMs));
  return {
    clientId,
    password: Buffer.concat([ts, nonce, FORGED_SIGNATURE]),
    message: connectSigningMessage(IDENTITY.deviceId, clientId, BigInt(nowMs), nonce),
  };
}

let direct: DeploymentRecord['deployBlock'];
const honest = testDevice('keys-honest', 'pt-keys-honest');

beforeAll(async () => {
  ({ record } = await deployContracts(chain.wallet(0)));
  // Directly on the contract with the hospital admin's key (dev account 0 holds HOSPITAL_ADMIN_ROLE
  // after deployment): no CLI, no checkEnrolment. The contract accepts every one of these keys.
  const contract = deviceRegistryAt(record.deviceRegistry.address, chain.wallet(0));
  const site = siteIdOf('icu-keys');
  let last = 0;
  for (const [i, v] of BAD_KEYS.entries()) {
    const receipt = await mined(contract.enrol(deviceIdToBytes8(v.deviceId), `0x${v.publicKey}`, `0x${(i + 1).toString(16).padStart(64, '0')}`, site));
    last = receipt.blockNumber;
  }
  // An honest device beside them, enrolled the same way: the rule must not refuse good keys.
  const r = await mined(contract.enrol(deviceIdToBytes8(honest.id), `0x${Buffer.from(honest.keys.publicKey).toString('hex')}`, `0x${'ab'.repeat(32)}`, site));
  direct = Math.max(last, r.blockNumber);
});

afterEach(async () => {
  for (const r of open.splice(0)) await r.close();
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('ChainRegistry: keys enrolled on chain past the CLI', () => {
  it('has a vector for every problem a bytes32 key can have, the identity point among them', () => {
    expect(new Set(BAD_KEYS.map((v) => v.reason))).toEqual(new Set(['NON_CANONICAL', 'NOT_ON_CURVE', 'SMALL_ORDER', 'MIXED_ORDER']));
    expect(IDENTITY.publicKey).toBe(`01${'00'.repeat(31)}`);
    // Why it matters: node:crypto (OpenSSL) accepts R = identity, S = 0 for any message under this key.
    expect(verifyEd25519(ed25519KeyObject(Buffer.from(IDENTITY.publicKey, 'hex')), Buffer.from('any message at all'), FORGED_SIGNATURE)).toBe(true);
  });

  it('refuses each bad key: never listed, get() serves nothing, counted by reason, one error line per device', async () => {
    const { log, lines } = captureLog();
    const r = registry(tempDir(), { log });
    await r.ready();
    expect(r.status().lastBlock).toBeGreaterThanOrEqual(direct);

    for (const v of BAD_KEYS) expect(r.get(v.deviceId), `${v.name} must not be served`).toBeUndefined();
    expect(r.list().map((d) => d.deviceId)).toEqual([honest.id]);
    expect(r.get(honest.id)).toMatchObject({ deviceId: honest.id });

    const refused = r.refusedKeys();
    expect(refused.map((x) => [x.deviceId, x.reason, x.publicKey]).sort()).toEqual(BAD_KEYS.map((v) => [v.deviceId, v.reason, v.publicKey]).sort());
    for (const x of refused) expect(x.block).toBeGreaterThan(record.deployBlock);
    expect(r.status()).toMatchObject({ devices: BAD_KEYS.length + 1, refusedKeys: BAD_KEYS.length, refusedKeysBy: expectedBy() });

    const alarms = lines.filter((l) => l['event'] === 'registry_key_refused');
    expect(alarms.every((l) => l['level'] === 'error')).toBe(true);
    expect(alarms.map((l) => [l['device'], l['reason']]).sort()).toEqual(BAD_KEYS.map((v) => [v.deviceId, v.reason]).sort());
    // Nothing identifying a patient in the alarm: device id, reason, block, contract.
    for (const a of alarms) expect(Object.keys(a).sort()).toEqual(['block', 'contract', 'device', 'event', 'level', 'msg', 'reason', 'source']);

    // Further rounds, with new blocks, do not log again.
    await r.sync();
    await chain.provider.send('evm_mine', []);
    await r.sync();
    expect(lines.filter((l) => l['event'] === 'registry_key_refused')).toHaveLength(BAD_KEYS.length);
  });

  it('a follower started before the enrolments sees each event and refuses it as it arrives', async () => {
    const dir = tempDir();
    const { log, lines } = captureLog();
    const later = deviceRegistryAt(record.deviceRegistry.address, chain.wallet(0));
    const r = registry(dir, { log });
    await r.ready();
    const before = r.refusedKeys().length;
    // One more bad key, sent while the follower runs: a mixed-order key that is not among the vectors.
    const fresh = await freshMixedOrderKey();
    const freshId = deviceIdFromKey(fresh);
    const seen = until(r, () => r.refusedKeys().some((x) => x.deviceId === freshId), 'the follower to refuse the new key');
    await mined(later.enrol(deviceIdToBytes8(freshId), `0x${fresh.toString('hex')}`, `0x${'cd'.repeat(32)}`, siteIdOf('icu-keys')));
    await seen;
    expect(r.get(freshId)).toBeUndefined();
    expect(r.refusedKeys()).toHaveLength(before + 1);
    expect(lines.filter((l) => l['event'] === 'registry_key_refused' && l['device'] === freshId)).toEqual([
      expect.objectContaining({ level: 'error', reason: 'MIXED_ORDER' }),
    ]);
  });

  it('re-checks the keys of its cache at load: a cached bad key is refused before the chain is reached', async () => {
    const dir = tempDir();
    const first = registry(dir);
    await first.ready();
    const onChain = first
      .refusedKeys()
      .map((x) => [x.deviceId, x.reason])
      .sort();
    expect(onChain.length).toBeGreaterThanOrEqual(BAD_KEYS.length); // the vectors, and any key another test enrolled since
    await first.close();
    const cache = JSON.parse(readFileSync(join(dir, CACHE_FILE), 'utf8')) as { version: number; devices: { deviceId: string; publicKey: string }[] };
    // The cache keeps what the chain holds, in the version 1 format of before: bad keys included.
    expect(cache.version).toBe(1);
    expect(cache.devices.map((d) => d.deviceId).sort()).toEqual([...onChain.map(([id]) => id!), honest.id].sort());
    expect(Object.keys(cache.devices[0]!).sort()).toEqual(['block', 'deviceId', 'enrolledAtMs', 'patientRef', 'publicKey', 'site']);
    writeFileSync(join(dir, CACHE_FILE), JSON.stringify(cache)); // as an older gateway wrote it (no indentation)

    // The chain is unreachable: a port nothing listens on.
    const deadPort = await findFreePort();
    const dead = new JsonRpcProvider(`http://127.0.0.1:${deadPort}`, 31337, { staticNetwork: true });
    const { log, lines } = captureLog();
    const r = registry(dir, { provider: dead, follow: false, log });
    try {
      expect(r.list().map((d) => d.deviceId)).toEqual([honest.id]);
      expect(r.get(IDENTITY.deviceId)).toBeUndefined();
      expect(
        r
          .refusedKeys()
          .map((x) => [x.deviceId, x.reason])
          .sort(),
      ).toEqual(onChain);
      expect(r.status().refusedKeys).toBe(onChain.length);
      expect(lines.filter((l) => l['event'] === 'registry_key_refused')).toHaveLength(onChain.length);
    } finally {
      await r.close();
      dead.destroy();
    }
  });

  it('CONNECT with a forged token (R = identity, S = 0) for the identity device is refused as unknown', async () => {
    const r = registry(tempDir());
    await r.ready();
    const now = Date.now();
    const auth = new ConnectAuthenticator(r, { windowMs: 30_000, startedAtMs: now - 1000, now: () => now });
    const f = forgedConnect(now);
    // The token is a valid signature under the key the chain holds: only the key rule stops it.
    expect(verifyEd25519(ed25519KeyObject(Buffer.from(IDENTITY.publicKey, 'hex')), f.message, FORGED_SIGNATURE)).toBe(true);
    expect(auth.check(f.clientId, IDENTITY.deviceId, f.password)).toEqual({ ok: false, reason: 'CONNECT_UNKNOWN_DEVICE' });
    expect(auth.rememberedNonces).toBe(0);

    // Defence in depth: the same token against a registry that does serve the key (as the
    // gateway's did before this rule) is still refused by CONNECT's own check.
    const leaky: Pick<ChainRegistry, 'get'> = {
      get: (id: string): DeviceRecord | undefined =>
        id === IDENTITY.deviceId
          ? { deviceId: id, publicKey: Buffer.from(IDENTITY.publicKey, 'hex'), patient: 'ref-x', sensors: [], enrolledAtMs: 0 }
          : undefined,
    };
    const strict = new ConnectAuthenticator(leaky, { windowMs: 30_000, startedAtMs: now - 1000, now: () => now });
    expect(strict.check(f.clientId, IDENTITY.deviceId, f.password)).toEqual({ ok: false, reason: 'CONNECT_UNKNOWN_DEVICE' });
  });

  it('a forged heart-rate frame for the identity device goes through the IngestPipeline as UNKNOWN_DEVICE and is not spooled', async () => {
    const dir = tempDir();
    const r = registry(dir);
    await r.ready();
    const wal = await Wal.open(join(dir, 'spool'));
    const verifier = new VerifyPool(0);
    try {
      const metrics = new Metrics();
      const now = Date.now();
      const pipeline = new IngestPipeline({
        registry: r,
        verifier,
        wal,
        states: new DeviceStates(),
        quarantine: new Quarantine(join(dir, 'quarantine')),
        metrics,
        now: () => now,
      });
      const body = encodeBody({ deviceId: IDENTITY.deviceId, seq: 1n, ...heartRate(now - 5000, [72, 73, 74]) });
      const raw = concat(body, FORGED_SIGNATURE);
      expect(verifyEd25519(ed25519KeyObject(Buffer.from(IDENTITY.publicKey, 'hex')), frameSigningMessage(body), FORGED_SIGNATURE)).toBe(true);
      const out = await pipeline.submit(raw, { transport: 'mqtt', sender: IDENTITY.deviceId, channelDevice: IDENTITY.deviceId, retransmission: false });
      expect(out).toMatchObject({ status: 'rejected', reason: 'UNKNOWN_DEVICE' });
      expect(metrics.rejectedBy.UNKNOWN_DEVICE).toBe(1);
      expect(metrics.accepted).toBe(0);
      expect(wal.durableLsn).toBe(0n);
    } finally {
      await verifier.close();
      await wal.close();
    }
  });
});

/** A mixed-order key that is not among the vectors: a fresh honest key plus a point of order 8. */
async function freshMixedOrderKey(): Promise<Buffer> {
  const ed = await import('@noble/ed25519');
  const order8 = ed.Point.fromBytes(Buffer.from(BAD_KEYS.find((v) => v.name === 'small-order-order-8-a')!.publicKey, 'hex'));
  const pub = ed.Point.fromBytes(testDevice('keys-mixed-fresh').keys.publicKey);
  return Buffer.from(pub.add(order8).toBytes());
}
