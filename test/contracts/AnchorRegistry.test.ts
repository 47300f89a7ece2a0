/**
 * contracts/AnchorRegistry.sol against a real anvil: every function, every custom error with
 * its arguments, every event with its arguments, the role checks, and the gas of anchor().
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { ContractFactory, ZeroAddress, ZeroHash, type HDNodeWallet } from 'ethers';
import { anchorRegistryArtifact } from '../../gateway/chain/artifacts.js';
import {
  anchorRegistryAt,
  anchorRegistryInterface as iface,
  ROLES,
  STREAM,
  type AnchorRegistryContract,
  type AnchorRegistryErrors,
} from '../../gateway/chain/contracts.js';
import { useAnvil } from '../support/anvil.js';
import { deployAnchorRegistry, eventsOf, expectRevert, mined, plain } from '../support/contracts.js';

const chain = useAnvil({ snapshotEach: true });

/** A distinct, non-zero 32-byte root per label. */
const root = (label: string): string => `0x${createHash('sha256').update(label).digest('hex')}`;
const T0 = 1_795_000_000_000n;

let admin: HDNodeWallet;
let gateway: HDNodeWallet;
let gateway2: HDNodeWallet;
let outsider: HDNodeWallet;
let registry: AnchorRegistryContract;
const as = (signer: HDNodeWallet): AnchorRegistryContract => anchorRegistryAt(registry.target as string, signer);
const revert = <N extends keyof AnchorRegistryErrors & string>(action: Promise<unknown>, name: N, args: AnchorRegistryErrors[N]) =>
  expectRevert<AnchorRegistryErrors, N>(action, iface, name, args);

/** Anchors batch `seq` of `stream` from `signer` with a root derived from the arguments. */
function anchorFrom(signer: HDNodeWallet, stream: number, seq: bigint, leafCount = 10n) {
  return as(signer).anchor(stream, seq, root(`${signer.address}/${stream}/${seq}`), leafCount, T0 + seq * 10_000n, T0 + seq * 10_000n + 9_999n);
}

beforeAll(async () => {
  [admin, gateway, gateway2, outsider] = [chain.wallet(0), chain.wallet(1), chain.wallet(2), chain.wallet(3)];
  registry = await deployAnchorRegistry(admin, admin.address);
  await mined(registry.grantRole(ROLES.GATEWAY, gateway.address));
  await mined(registry.grantRole(ROLES.GATEWAY, gateway2.address));
});

describe('AnchorRegistry: deployment and roles', () => {
  it('has the documented role and stream ids, and gives DEFAULT_ADMIN_ROLE to the admin', async () => {
    expect(await registry.GATEWAY_ROLE()).toBe(ROLES.GATEWAY);
    expect(await registry.STREAM_FRAMES()).toBe(BigInt(STREAM.FRAMES));
    expect(await registry.STREAM_ACCESS_LOG()).toBe(BigInt(STREAM.ACCESS_LOG));
    expect(await registry.hasRole(ROLES.DEFAULT_ADMIN, admin.address)).toBe(true);
    expect(await registry.getRoleAdmin(ROLES.GATEWAY)).toBe(ROLES.DEFAULT_ADMIN);
    expect(await registry.hasRole(ROLES.GATEWAY, admin.address)).toBe(false);
  });

  it('refuses the zero address as admin: AnchorRegistryZeroAdmin()', async () => {
    const factory = new ContractFactory(anchorRegistryArtifact.abi, anchorRegistryArtifact.bytecode, admin);
    await revert(factory.deploy(ZeroAddress), 'AnchorRegistryZeroAdmin', []);
  });

  it('refuses anchors from accounts without GATEWAY_ROLE, the admin included: AccessControlUnauthorizedAccount', async () => {
    await revert(anchorFrom(outsider, STREAM.FRAMES, 1n), 'AccessControlUnauthorizedAccount', [outsider.address, ROLES.GATEWAY]);
    await revert(anchorFrom(admin, STREAM.FRAMES, 1n), 'AccessControlUnauthorizedAccount', [admin.address, ROLES.GATEWAY]);
  });

  it('a gateway whose role is revoked cannot anchor any more; its anchors stay', async () => {
    await mined(anchorFrom(gateway, STREAM.FRAMES, 1n));
    const receipt = await mined(registry.revokeRole(ROLES.GATEWAY, gateway.address));
    expect(eventsOf(receipt, iface)).toEqual([{ name: 'RoleRevoked', args: [ROLES.GATEWAY, gateway.address, admin.address] }]);
    await revert(anchorFrom(gateway, STREAM.FRAMES, 2n), 'AccessControlUnauthorizedAccount', [gateway.address, ROLES.GATEWAY]);
    expect(await registry.isAnchored(gateway.address, STREAM.FRAMES, 1n, root(`${gateway.address}/0/1`))).toBe(true);
  });

  it('only the admin grants GATEWAY_ROLE: AccessControlUnauthorizedAccount(caller, DEFAULT_ADMIN_ROLE)', async () => {
    await revert(as(gateway).grantRole(ROLES.GATEWAY, outsider.address), 'AccessControlUnauthorizedAccount', [gateway.address, ROLES.DEFAULT_ADMIN]);
  });
});

describe('AnchorRegistry.anchor', () => {
  it('starts every (gateway, stream) at batch 1, stores the anchor and emits Anchored with every field', async () => {
    expect(await registry.nextBatchSeq(gateway.address, STREAM.FRAMES)).toBe(1n);
    const r = root('batch one');
    const receipt = await mined(as(gateway).anchor(STREAM.FRAMES, 1n, r, 250n, T0, T0 + 9_999n));
    expect(eventsOf(receipt, iface)).toEqual([{ name: 'Anchored', args: [gateway.address, BigInt(STREAM.FRAMES), 1n, r, 250n, T0, T0 + 9_999n] }]);
    expect(plain(await registry.anchorOf(gateway.address, STREAM.FRAMES, 1n))).toEqual({
      root: r,
      leafCount: 250n,
      firstFrameTimeMs: T0,
      lastFrameTimeMs: T0 + 9_999n,
      blockNumber: BigInt(receipt.blockNumber),
    });
    expect(await registry.nextBatchSeq(gateway.address, STREAM.FRAMES)).toBe(2n);
  });

  it('accepts exactly previous + 1, batch after batch', async () => {
    for (let seq = 1n; seq <= 5n; seq++) await mined(anchorFrom(gateway, STREAM.FRAMES, seq));
    expect(await registry.nextBatchSeq(gateway.address, STREAM.FRAMES)).toBe(6n);
    for (let seq = 1n; seq <= 5n; seq++) expect(await registry.isAnchored(gateway.address, STREAM.FRAMES, seq, root(`${gateway.address}/0/${seq}`))).toBe(true);
  });

  it('refuses a skipped batch: AnchorRegistryGapInBatchSeq(expected, got)', async () => {
    await revert(anchorFrom(gateway, STREAM.FRAMES, 2n), 'AnchorRegistryGapInBatchSeq', [1n, 2n]);
    await mined(anchorFrom(gateway, STREAM.FRAMES, 1n));
    await revert(anchorFrom(gateway, STREAM.FRAMES, 3n), 'AnchorRegistryGapInBatchSeq', [2n, 3n]);
    await revert(as(gateway).anchor(STREAM.FRAMES, 2n ** 64n - 1n, root('x'), 1n, T0, T0), 'AnchorRegistryGapInBatchSeq', [2n, 2n ** 64n - 1n]);
  });

  it('refuses batch 0, which never exists: AnchorRegistryGapInBatchSeq(1, 0)', async () => {
    await revert(anchorFrom(gateway, STREAM.FRAMES, 0n), 'AnchorRegistryGapInBatchSeq', [1n, 0n]);
  });

  it('refuses a batch anchored already, with the root on chain to compare: AnchorRegistryBatchAlreadyAnchored(seq, root)', async () => {
    await mined(anchorFrom(gateway, STREAM.FRAMES, 1n));
    await mined(anchorFrom(gateway, STREAM.FRAMES, 2n));
    const onChain = root(`${gateway.address}/0/1`);
    await revert(as(gateway).anchor(STREAM.FRAMES, 1n, onChain, 10n, T0, T0), 'AnchorRegistryBatchAlreadyAnchored', [1n, onChain]);
    await revert(as(gateway).anchor(STREAM.FRAMES, 1n, root('another'), 10n, T0, T0), 'AnchorRegistryBatchAlreadyAnchored', [1n, onChain]);
  });

  it('keeps one sequence per stream: the access log starts at 1 whatever the frames stream did', async () => {
    for (let seq = 1n; seq <= 3n; seq++) await mined(anchorFrom(gateway, STREAM.FRAMES, seq));
    expect(await registry.nextBatchSeq(gateway.address, STREAM.ACCESS_LOG)).toBe(1n);
    const receipt = await mined(anchorFrom(gateway, STREAM.ACCESS_LOG, 1n, 3n));
    expect(eventsOf(receipt, iface)[0]?.args.slice(0, 3)).toEqual([gateway.address, BigInt(STREAM.ACCESS_LOG), 1n]);
    await revert(anchorFrom(gateway, STREAM.ACCESS_LOG, 4n), 'AnchorRegistryGapInBatchSeq', [2n, 4n]);
    expect(await registry.nextBatchSeq(gateway.address, STREAM.FRAMES)).toBe(4n);
    // Any stream id works: the contract does not keep a list.
    await mined(anchorFrom(gateway, 255, 1n));
    expect(await registry.nextBatchSeq(gateway.address, 255)).toBe(2n);
  });

  it('keeps one sequence per gateway: a second gateway starts at 1', async () => {
    await mined(anchorFrom(gateway, STREAM.FRAMES, 1n));
    await mined(anchorFrom(gateway, STREAM.FRAMES, 2n));
    await revert(anchorFrom(gateway2, STREAM.FRAMES, 3n), 'AnchorRegistryGapInBatchSeq', [1n, 3n]);
    await mined(anchorFrom(gateway2, STREAM.FRAMES, 1n));
    expect(await registry.nextBatchSeq(gateway2.address, STREAM.FRAMES)).toBe(2n);
    expect(await registry.isAnchored(gateway2.address, STREAM.FRAMES, 1n, root(`${gateway.address}/0/1`))).toBe(false);
  });

  it('refuses a zero root: AnchorRegistryZeroRoot()', async () => {
    await revert(as(gateway).anchor(STREAM.FRAMES, 1n, ZeroHash, 1n, T0, T0), 'AnchorRegistryZeroRoot', []);
  });

  it('refuses an empty batch: AnchorRegistryZeroLeafCount()', async () => {
    await revert(as(gateway).anchor(STREAM.FRAMES, 1n, root('x'), 0n, T0, T0), 'AnchorRegistryZeroLeafCount', []);
  });

  it('refuses a first frame time after the last: AnchorRegistryInvertedTimeRange(first, last); equal is fine', async () => {
    await revert(as(gateway).anchor(STREAM.FRAMES, 1n, root('x'), 1n, T0 + 1n, T0), 'AnchorRegistryInvertedTimeRange', [T0 + 1n, T0]);
    await mined(as(gateway).anchor(STREAM.FRAMES, 1n, root('x'), 1n, T0, T0));
  });

  it('checks the sequence before the content, so a retry learns it was anchored whatever it sends', async () => {
    await mined(anchorFrom(gateway, STREAM.FRAMES, 1n));
    await revert(as(gateway).anchor(STREAM.FRAMES, 1n, ZeroHash, 0n, T0 + 1n, T0), 'AnchorRegistryBatchAlreadyAnchored', [1n, root(`${gateway.address}/0/1`)]);
    await revert(as(gateway).anchor(STREAM.FRAMES, 3n, ZeroHash, 0n, T0 + 1n, T0), 'AnchorRegistryGapInBatchSeq', [2n, 3n]);
  });
});

describe('AnchorRegistry views', () => {
  it('anchorOf(): AnchorRegistryUnknownAnchor(gateway, stream, seq) for a batch not anchored', async () => {
    await revert(registry.anchorOf(gateway.address, STREAM.FRAMES, 1n), 'AnchorRegistryUnknownAnchor', [gateway.address, BigInt(STREAM.FRAMES), 1n]);
    await mined(anchorFrom(gateway, STREAM.FRAMES, 1n));
    await revert(registry.anchorOf(gateway.address, STREAM.ACCESS_LOG, 1n), 'AnchorRegistryUnknownAnchor', [gateway.address, BigInt(STREAM.ACCESS_LOG), 1n]);
    await revert(registry.anchorOf(gateway2.address, STREAM.FRAMES, 1n), 'AnchorRegistryUnknownAnchor', [gateway2.address, BigInt(STREAM.FRAMES), 1n]);
  });

  it('isAnchored(): true only for the exact root of an anchored batch; a verdict, never a revert', async () => {
    await mined(anchorFrom(gateway, STREAM.FRAMES, 1n));
    const r = root(`${gateway.address}/0/1`);
    expect(await registry.isAnchored(gateway.address, STREAM.FRAMES, 1n, r)).toBe(true);
    expect(await registry.isAnchored(gateway.address, STREAM.FRAMES, 1n, root('other'))).toBe(false);
    expect(await registry.isAnchored(gateway.address, STREAM.FRAMES, 2n, r)).toBe(false);
    expect(await registry.isAnchored(gateway.address, STREAM.FRAMES, 2n, ZeroHash)).toBe(false);
    expect(await registry.isAnchored(gateway.address, STREAM.ACCESS_LOG, 1n, r)).toBe(false);
    expect(await registry.isAnchored(outsider.address, STREAM.FRAMES, 1n, r)).toBe(false);
  });
});

describe('AnchorRegistry gas', () => {
  it('measures gas per anchor(): first of a gateway, first of a further stream, steady state', async () => {
    const gasOf = async (tx: ReturnType<typeof anchorFrom>): Promise<bigint> => (await mined(tx)).gasUsed;
    const first = await gasOf(anchorFrom(gateway, STREAM.FRAMES, 1n, 1000n));
    const second = await gasOf(anchorFrom(gateway, STREAM.FRAMES, 2n, 1000n));
    const steady: bigint[] = [];
    for (let seq = 3n; seq <= 22n; seq++) steady.push(await gasOf(anchorFrom(gateway, STREAM.FRAMES, seq, 1000n)));
    const firstOtherStream = await gasOf(anchorFrom(gateway, STREAM.ACCESS_LOG, 1n, 1000n));
    const min = steady.reduce((a, b) => (b < a ? b : a));
    const max = steady.reduce((a, b) => (b > a ? b : a));
    console.log(`anchor() gas: first ${first}, second ${second}, steady ${min}-${max} (20 batches), first of another stream ${firstOtherStream}`);
    // Regression bounds: two fresh slots per anchor (root; counts and times), one counter update.
    expect(first).toBeLessThan(120_000n);
    expect(max).toBeLessThan(100_000n);
    expect(max - min).toBeLessThan(1_000n);
    expect(first - max).toBeGreaterThan(10_000n); // the first write of the counter slot is the difference
  });
});
