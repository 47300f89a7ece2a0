/**
 * gateway/chain/anvil.ts and gateway/chain/deploy.ts against real anvil processes: the chain
 * survives stop() + restart() and a SIGKILL after a checkpoint, loadOrDeploy deploys once
 * and reuses the record after, and every way the chain can turn out not to be the one in the
 * record is reported with its own code.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { JsonRpcProvider } from 'ethers';
import { DEV_MNEMONIC, devWallet, resolveAnvilBinary, startAnvil, STATE_FILE, type AnvilHandle } from '../../../gateway/chain/anvil.js';
import {
  deployContracts,
  DEPLOYMENT_FILE,
  loadOrDeploy,
  readDeploymentRecord,
  verifyDeployment,
  type DeploymentRecord,
} from '../../../gateway/chain/deploy.js';
import { isChainError, type ChainErrorCode } from '../../../gateway/chain/errors.js';
import { anchorRegistryAt, ROLES, STREAM } from '../../../gateway/chain/contracts.js';
import { anchorRegistryArtifact } from '../../../gateway/chain/artifacts.js';
import { localProvider } from '../../support/anvil.js';
import { mined } from '../../support/contracts.js';

const root = (label: string): string => `0x${createHash('sha256').update(label).digest('hex')}`;
const T0 = 1_795_000_000_000n;

const dirs: string[] = [];
const running: AnvilHandle[] = [];
const providers: JsonRpcProvider[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-anvil-rt-'));
  dirs.push(d);
  return d;
}
async function start(
  dataDir: string,
  opts: { checkpointIntervalMs?: number; chainId?: number } = {},
): Promise<{ chain: AnvilHandle; provider: JsonRpcProvider }> {
  const chain = await startAnvil({ dataDir, checkpointIntervalMs: 0, ...opts });
  running.push(chain);
  const provider = localProvider(chain.url, chain.chainId);
  providers.push(provider);
  return { chain, provider };
}
async function expectChainError(action: Promise<unknown>, code: ChainErrorCode): Promise<void> {
  const e = await action.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(isChainError(e, code), `expected ChainError ${code}, got ${String(e)}`).toBe(true);
}

afterEach(async () => {
  for (const p of providers.splice(0)) p.destroy();
  for (const c of running.splice(0)) await c.kill();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('startAnvil', () => {
  it('serves JSON-RPC on 127.0.0.1 with chain id 31337 and the funded DEV ONLY accounts of the test mnemonic', async () => {
    const { chain, provider } = await start(tempDir());
    expect(chain.url).toBe(`http://127.0.0.1:${chain.port}`);
    expect(chain.chainId).toBe(31337);
    expect(Number((await provider.getNetwork()).chainId)).toBe(31337);
    expect(devWallet(0).address).toBe('0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266');
    expect(DEV_MNEMONIC.split(' ')).toHaveLength(12);
    expect(await provider.getBalance(devWallet(9).address)).toBe(10_000n * 10n ** 18n);
    expect(chain.pid).toBeGreaterThan(0);
  });

  it('keeps every block, receipt and storage slot across stop() + restart(), on the same URL', async () => {
    const dataDir = tempDir();
    const { chain, provider } = await start(dataDir);
    const { record, anchorRegistry } = await loadOrDeploy(dataDir, provider, devWallet(0, provider));
    const receipt = await mined(anchorRegistry.anchor(STREAM.FRAMES, 1n, root('before restart'), 42n, T0, T0 + 1n));
    const url = chain.url;

    await chain.stop();
    expect(chain.pid).toBeUndefined();
    expect(existsSync(join(dataDir, STATE_FILE))).toBe(true);
    await chain.restart();
    expect(chain.url).toBe(url);

    const after = anchorRegistryAt(record.anchorRegistry.address, provider);
    expect((await after.anchorOf(devWallet(0).address, STREAM.FRAMES, 1n)).root).toBe(root('before restart'));
    expect(await after.nextBatchSeq(devWallet(0).address, STREAM.FRAMES)).toBe(2n);
    expect((await provider.getTransactionReceipt(receipt.hash))?.blockHash).toBe(receipt.blockHash);
    const logs = await provider.getLogs({ address: record.anchorRegistry.address, fromBlock: record.deployBlock, toBlock: 'latest' });
    expect(logs.map((l) => l.transactionHash)).toContain(receipt.hash);

    // The deployment is reused, and anchoring goes on where it stopped.
    const again = await loadOrDeploy(dataDir, provider, devWallet(0, provider));
    expect(again.deployed).toBe(false);
    expect(again.record).toEqual(record);
    await mined(again.anchorRegistry.anchor(STREAM.FRAMES, 2n, root('after restart'), 1n, T0, T0));
  });

  it('after a SIGKILL, keeps what the last checkpoint() wrote and loses only what came later', async () => {
    const dataDir = tempDir();
    const { chain, provider } = await start(dataDir);
    const { anchorRegistry } = await loadOrDeploy(dataDir, provider, devWallet(0, provider), { makeDurable: () => chain.checkpoint() });
    await mined(anchorRegistry.anchor(STREAM.FRAMES, 1n, root('durable'), 1n, T0, T0));
    const cp = await chain.checkpoint();
    expect(cp?.blockNumber).toBe(await provider.getBlockNumber());
    expect(await chain.checkpoint()).toBeUndefined(); // head unchanged: nothing to write
    await mined(anchorRegistry.anchor(STREAM.FRAMES, 2n, root('lost'), 1n, T0, T0));

    await chain.kill();
    await chain.restart();
    const gw = devWallet(0).address;
    expect(await anchorRegistry.isAnchored(gw, STREAM.FRAMES, 1n, root('durable'))).toBe(true);
    expect(await anchorRegistry.nextBatchSeq(gw, STREAM.FRAMES)).toBe(2n);
    // The gateway re-sends batch 2 from its own queue; the chain takes it again.
    await mined(anchorRegistry.anchor(STREAM.FRAMES, 2n, root('lost'), 1n, T0, T0));
  });

  it('checkpoints on its own every checkpointIntervalMs once the head moved', async () => {
    const dataDir = tempDir();
    const { chain, provider } = await start(dataDir, { checkpointIntervalMs: 100 });
    await loadOrDeploy(dataDir, provider, devWallet(0, provider));
    const head = await provider.getBlockNumber();
    await expect.poll(() => chain.lastCheckpoint?.blockNumber, { timeout: 5000, interval: 50 }).toBe(head);
    await chain.kill();
    await chain.restart();
    expect(await provider.getBlockNumber()).toBe(head);
    expect((await loadOrDeploy(dataDir, provider, devWallet(0, provider))).deployed).toBe(false);
  });

  it('refuses a state file anvil could not load (ANVIL_STATE_CORRUPT) instead of starting an empty chain', async () => {
    const dataDir = tempDir();
    const { chain, provider } = await start(dataDir);
    await loadOrDeploy(dataDir, provider, devWallet(0, provider));
    await chain.stop();
    const statePath = join(dataDir, STATE_FILE);
    const text = readFileSync(statePath, 'utf8');
    writeFileSync(statePath, text.slice(0, text.length / 2)); // what a crash in a non-atomic dump leaves
    await expectChainError(chain.restart(), 'ANVIL_STATE_CORRUPT');
    await expectChainError(startAnvil({ dataDir, checkpointIntervalMs: 0 }), 'ANVIL_STATE_CORRUPT');
  });

  it('refuses another chain id than the data dir was created with (ANVIL_CHAIN_ID_MISMATCH)', async () => {
    const dataDir = tempDir();
    const { chain } = await start(dataDir, { chainId: 4242 });
    expect(chain.chainId).toBe(4242);
    await chain.stop();
    await expectChainError(startAnvil({ dataDir, chainId: 31337 }), 'ANVIL_CHAIN_ID_MISMATCH');
    const again = await start(dataDir); // no chain id given: the data dir's
    expect(again.chain.chainId).toBe(4242);
  });

  it('names a missing binary (ANVIL_NOT_FOUND) and finds the installed one by default', async () => {
    expect(() => resolveAnvilBinary('/nonexistent/anvil')).toThrowError(/ANVIL_NOT_FOUND/);
    expect(resolveAnvilBinary()).toMatch(/@foundry-rs[/\\]anvil-[a-z0-9]+-[a-z0-9]+[/\\]bin[/\\]anvil(\.exe)?$/);
  });
});

describe('loadOrDeploy and verifyDeployment', () => {
  it('deploys once with roles granted, writes the record, and reuses it afterwards', async () => {
    const dataDir = tempDir();
    const { provider } = await start(dataDir);
    const admin = devWallet(0, provider);
    const hospital = devWallet(1).address;
    const gateway = devWallet(2).address;
    const first = await loadOrDeploy(dataDir, provider, admin, { hospitalAdmins: [hospital], gateways: [gateway] });
    expect(first.deployed).toBe(true);
    const onDisk = readDeploymentRecord(join(dataDir, DEPLOYMENT_FILE));
    expect(onDisk).toEqual(first.record);
    expect(first.record).toMatchObject({
      version: 1,
      chainId: 31337,
      deployer: admin.address,
      roles: { admin: admin.address, hospitalAdmins: [hospital], gateways: [gateway] },
    });
    expect(first.record.deployBlockHash).toBe((await provider.getBlock(first.record.deployBlock))?.hash);
    expect(await first.deviceRegistry.hasRole(ROLES.HOSPITAL_ADMIN, hospital)).toBe(true);
    expect(await first.anchorRegistry.hasRole(ROLES.GATEWAY, gateway)).toBe(true);
    expect(await first.anchorRegistry.hasRole(ROLES.GATEWAY, admin.address)).toBe(false);
    expect(await first.deviceRegistry.hasRole(ROLES.DEFAULT_ADMIN, admin.address)).toBe(true);

    const blocks = await provider.getBlockNumber();
    const second = await loadOrDeploy(dataDir, provider, admin);
    expect(second.deployed).toBe(false);
    expect(second.record).toEqual(first.record);
    expect(await provider.getBlockNumber()).toBe(blocks); // nothing sent
  });

  it('says the chain was reset when the recorded contracts are gone (DEPLOYMENT_MISSING)', async () => {
    const dataDir = tempDir();
    const { chain, provider } = await start(dataDir);
    await loadOrDeploy(dataDir, provider, devWallet(0, provider));
    await chain.stop();
    rmSync(join(dataDir, STATE_FILE)); // the chain state is lost; the record is not
    await chain.restart();
    const e = await loadOrDeploy(dataDir, provider, devWallet(0, provider)).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isChainError(e, 'DEPLOYMENT_MISSING')).toBe(true);
    expect(String((e as Error).message)).toMatch(/chain was reset/);
  });

  it('notices contracts redeployed at the same addresses on a reset chain (DEPLOYMENT_CHAIN_REPLACED)', async () => {
    const dataDir = tempDir();
    const { chain, provider } = await start(dataDir);
    const { record } = await loadOrDeploy(dataDir, provider, devWallet(0, provider));
    await chain.stop();
    rmSync(join(dataDir, STATE_FILE));
    await chain.restart();
    await provider.send('evm_mine', []); // the reset chain differs before the deployment
    const redeployed = await deployContracts(devWallet(0, provider));
    expect(redeployed.record.deviceRegistry.address).toBe(record.deviceRegistry.address); // same deployer, same nonces
    expect(redeployed.record.anchorRegistry.address).toBe(record.anchorRegistry.address);
    await expectChainError(verifyDeployment(provider, record), 'DEPLOYMENT_CHAIN_REPLACED');
  });

  it('refuses a record for another chain id, other code at an address, and a malformed file', async () => {
    const dataDir = tempDir();
    const { provider } = await start(dataDir);
    const { record } = await loadOrDeploy(dataDir, provider, devWallet(0, provider));
    const other: DeploymentRecord = { ...record, chainId: 1 };
    await expectChainError(verifyDeployment(provider, other), 'DEPLOYMENT_CHAIN_MISMATCH');
    const swapped: DeploymentRecord = { ...record, deviceRegistry: record.anchorRegistry };
    await expectChainError(verifyDeployment(provider, swapped), 'DEPLOYMENT_CODE_MISMATCH');
    const code = await provider.getCode(record.anchorRegistry.address);
    expect(code).toBe(anchorRegistryArtifact.deployedBytecode);

    const bad = tempDir();
    copyFileSync(join(dataDir, DEPLOYMENT_FILE), join(bad, DEPLOYMENT_FILE));
    writeFileSync(join(bad, DEPLOYMENT_FILE), '{"version": 2}');
    await expectChainError(loadOrDeploy(bad, provider, devWallet(0, provider)), 'DEPLOYMENT_RECORD_INVALID');
  });
});
