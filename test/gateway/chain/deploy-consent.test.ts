/**
 * ConsentRegistry in the deployment (gateway/chain/deploy.ts, `vitalproof chain deploy|info`):
 * a fresh deployment has it with its roles; a record written before it existed fails
 * verification with DEPLOYMENT_INCOMPLETE, and is completed (by loadOrDeploy on its own, or by
 * `chain deploy --complete`) without touching the recorded contracts or their anchors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContractFactory, getAddress, getCreateAddress, type HDNodeWallet } from 'ethers';
import { anchorRegistryArtifact, consentRegistryArtifact, deviceRegistryArtifact, INPUT_SHA256, SOLC_VERSION } from '../../../gateway/chain/artifacts.js';
import { chainCommand } from '../../../gateway/cli/chain.js';
import { anchorRegistryAt, consentRegistryAt, deviceRegistryAt, ROLES, STREAM } from '../../../gateway/chain/contracts.js';
import {
  completeDeployment,
  deployContracts,
  DEPLOYMENT_FILE,
  isComplete,
  loadOrDeploy,
  readDeploymentRecord,
  verifyDeployment,
  writeDeploymentRecord,
  type StoredDeploymentRecord,
} from '../../../gateway/chain/deploy.js';
import { isChainError, type ChainErrorCode } from '../../../gateway/chain/errors.js';
import { useAnvil } from '../../support/anvil.js';
import { mined } from '../../support/contracts.js';

const chain = useAnvil({ snapshotEach: true });
const ROOT = `0x${createHash('sha256').update('a batch anchored before the upgrade').digest('hex')}`;

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vp-deploy-consent-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function expectChainError(action: Promise<unknown>, code: ChainErrorCode, message?: RegExp): Promise<void> {
  const e = await action.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(isChainError(e, code), `expected ChainError ${code}, got ${String(e)}`).toBe(true);
  if (message) expect((e as Error).message).toMatch(message);
}

/**
 * What deployContracts did before ConsentRegistry existed: DeviceRegistry and AnchorRegistry,
 * roles granted, and a record without `consentRegistry`.
 */
async function deployLegacy(signer: HDNodeWallet, hospitalAdmins: string[], gateways: string[]): Promise<StoredDeploymentRecord> {
  const one = async (artifact: typeof deviceRegistryArtifact | typeof anchorRegistryArtifact) => {
    const c = await new ContractFactory(artifact.abi, artifact.bytecode, signer).deploy(signer.address);
    const receipt = await c.deploymentTransaction()!.wait();
    return { address: getAddress(receipt!.contractAddress!), txHash: receipt!.hash, block: receipt!.blockNumber };
  };
  const dev = await one(deviceRegistryArtifact);
  const anc = await one(anchorRegistryArtifact);
  for (const a of hospitalAdmins) await mined(deviceRegistryAt(dev.address, signer).grantRole(ROLES.HOSPITAL_ADMIN, a));
  for (const g of gateways) await mined(anchorRegistryAt(anc.address, signer).grantRole(ROLES.GATEWAY, g));
  const block = await signer.provider!.getBlock(dev.block);
  return {
    version: 1,
    chainId: chain.handle.chainId,
    deployer: signer.address,
    deviceRegistry: dev,
    anchorRegistry: anc,
    deployBlock: dev.block,
    deployBlockHash: block!.hash!,
    roles: { admin: signer.address, hospitalAdmins, gateways },
    build: { solcVersion: SOLC_VERSION, inputSha256: 'an earlier build' },
    deployedAt: '2026-01-01T00:00:00.000Z',
  };
}

let admin: HDNodeWallet;
let hospital: HDNodeWallet;
let hospital2: HDNodeWallet;
let gateway: HDNodeWallet;
beforeAll(() => {
  [admin, hospital, hospital2, gateway] = [chain.wallet(0), chain.wallet(1), chain.wallet(4), chain.wallet(2)];
});

describe('deployContracts with ConsentRegistry', () => {
  it('deploys it third, with the admin and the hospital admins of DeviceRegistry; the first two keep their addresses', async () => {
    const nonce = await chain.provider.getTransactionCount(admin.address);
    const d = await deployContracts(admin, { hospitalAdmins: [hospital.address], gateways: [gateway.address] });
    expect(d.record.deviceRegistry.address).toBe(getCreateAddress({ from: admin.address, nonce }));
    expect(d.record.anchorRegistry.address).toBe(getCreateAddress({ from: admin.address, nonce: nonce + 1 }));
    expect(d.record.consentRegistry.address).toBe(getCreateAddress({ from: admin.address, nonce: nonce + 2 }));
    expect(await chain.provider.getCode(d.record.consentRegistry.address)).toBe(consentRegistryArtifact.deployedBytecode);
    expect(d.record.deployBlock).toBe(d.record.deviceRegistry.block);
    expect(await d.consentRegistry.getAddress()).toBe(d.record.consentRegistry.address);
    expect(await d.consentRegistry.hasRole(ROLES.DEFAULT_ADMIN, admin.address)).toBe(true);
    expect(await d.consentRegistry.hasRole(ROLES.HOSPITAL_ADMIN, hospital.address)).toBe(true);
    expect(await d.consentRegistry.hasRole(ROLES.HOSPITAL_ADMIN, gateway.address)).toBe(false);
    expect(await d.consentRegistry.hasRole(ROLES.HOSPITAL_ADMIN, admin.address)).toBe(false);
    expect(await verifyDeployment(chain.provider, d.record)).toEqual(d.record);
    expect(isComplete(d.record)).toBe(true);
  });

  it('verifyDeployment checks ConsentRegistry code like the others', async () => {
    const { record } = await deployContracts(admin);
    await expectChainError(
      verifyDeployment(chain.provider, { ...record, consentRegistry: record.deviceRegistry }),
      'DEPLOYMENT_CODE_MISMATCH',
      /"contract":"ConsentRegistry"/,
    );
    await expectChainError(
      verifyDeployment(chain.provider, { ...record, consentRegistry: { ...record.consentRegistry, address: getAddress(chain.wallet(9).address) } }),
      'DEPLOYMENT_MISSING',
      /"contract":"ConsentRegistry"/,
    );
  });
});

describe('a deployment record written before ConsentRegistry existed', () => {
  it('fails verifyDeployment with DEPLOYMENT_INCOMPLETE and says how to complete it; still reads for the other addresses', async () => {
    const legacy = await deployLegacy(admin, [hospital.address], [gateway.address]);
    await expectChainError(verifyDeployment(chain.provider, legacy), 'DEPLOYMENT_INCOMPLETE', /"missing":\["ConsentRegistry"\].*--complete/);
    // Other failures come first: a reset chain is the bigger news.
    await expectChainError(verifyDeployment(chain.provider, { ...legacy, chainId: 1 }), 'DEPLOYMENT_CHAIN_MISMATCH');
    const path = join(tempDir(), DEPLOYMENT_FILE);
    writeDeploymentRecord(path, legacy);
    expect(readDeploymentRecord(path)).toEqual(legacy);
    expect(isComplete(legacy)).toBe(false);
  });

  it('loadOrDeploy adds ConsentRegistry: recorded contracts and anchors kept, roles only for hospital admins still in office, record rewritten once', async () => {
    const dataDir = tempDir();
    const legacy = await deployLegacy(admin, [hospital.address, hospital2.address], [gateway.address]);
    await mined(anchorRegistryAt(legacy.anchorRegistry.address, gateway).anchor(STREAM.FRAMES, 1n, ROOT, 10, 1_000n, 2_000n));
    await mined(deviceRegistryAt(legacy.deviceRegistry.address, admin).revokeRole(ROLES.HOSPITAL_ADMIN, hospital2.address));
    writeDeploymentRecord(join(dataDir, DEPLOYMENT_FILE), legacy);

    let durable = 0;
    const d = await loadOrDeploy(dataDir, chain.provider, admin, { makeDurable: () => Promise.resolve(durable++) });
    expect({ deployed: d.deployed, added: d.added, durable }).toEqual({ deployed: false, added: ['ConsentRegistry'], durable: 1 });
    const { consentRegistry: added, build, ...rest } = d.record;
    const { build: _oldBuild, ...legacyRest } = legacy;
    expect(rest).toEqual(legacyRest);
    expect(build).toEqual({ solcVersion: SOLC_VERSION, inputSha256: INPUT_SHA256 });
    expect(await chain.provider.getCode(added.address)).toBe(consentRegistryArtifact.deployedBytecode);
    expect(readDeploymentRecord(join(dataDir, DEPLOYMENT_FILE))).toEqual(d.record);
    expect(await verifyDeployment(chain.provider, d.record)).toEqual(d.record);

    const consent = consentRegistryAt(added.address, chain.provider);
    expect(await consent.hasRole(ROLES.DEFAULT_ADMIN, admin.address)).toBe(true);
    expect(await consent.hasRole(ROLES.HOSPITAL_ADMIN, hospital.address)).toBe(true);
    expect(await consent.hasRole(ROLES.HOSPITAL_ADMIN, hospital2.address)).toBe(false); // revoked on DeviceRegistry meanwhile
    expect(await d.anchorRegistry.isAnchored(gateway.address, STREAM.FRAMES, 1n, ROOT)).toBe(true);
    expect(await d.anchorRegistry.nextBatchSeq(gateway.address, STREAM.FRAMES)).toBe(2n);

    const blocks = await chain.provider.getBlockNumber();
    const again = await loadOrDeploy(dataDir, chain.provider, admin, { makeDurable: () => Promise.resolve(durable++) });
    expect({ deployed: again.deployed, added: again.added, durable }).toEqual({ deployed: false, added: [], durable: 1 });
    expect(again.record).toEqual(d.record);
    expect(await chain.provider.getBlockNumber()).toBe(blocks); // nothing sent
  });

  it('is not completed by a signer without DEFAULT_ADMIN_ROLE on DeviceRegistry: DEPLOYMENT_INCOMPLETE, nothing sent', async () => {
    const legacy = await deployLegacy(admin, [hospital.address], [gateway.address]);
    const blocks = await chain.provider.getBlockNumber();
    await expectChainError(completeDeployment(hospital, legacy), 'DEPLOYMENT_INCOMPLETE', new RegExp(`${hospital.address} does not hold DEFAULT_ADMIN_ROLE`));
    expect(await chain.provider.getBlockNumber()).toBe(blocks);
  });

  it('is completed by `vitalproof chain deploy --complete RECORD`, and `chain info` shows ConsentRegistry (or that the record lacks it)', async () => {
    const dir = tempDir();
    const legacy = await deployLegacy(admin, [hospital.address], [gateway.address]);
    const recordPath = join(dir, 'deployment.json');
    writeDeploymentRecord(recordPath, legacy);
    writeFileSync(join(dir, 'admin.key'), `${admin.privateKey}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'gateway.key'), `${gateway.privateKey}\n`, { mode: 0o600 });
    const run = async (argv: string[]): Promise<{ code: number; lines: string[] }> => {
      const lines: string[] = [];
      const code = await chainCommand(argv, (l) => lines.push(l));
      return { code, lines };
    };
    const info = (): Promise<{ code: number; lines: string[] }> =>
      run([
        'info',
        '--dataDir',
        join(dir, 'gw'),
        '--chain.mode',
        'external',
        '--chain.rpcUrl',
        chain.handle.url,
        '--chain.deployment',
        recordPath,
        '--chain.keyFile',
        join(dir, 'gateway.key'),
      ]);

    const before = await info();
    expect(before.code).toBe(0);
    expect(before.lines.join('\n')).toMatch(/ConsentRegistry none: the deployment record predates it/);

    const done = await run(['deploy', '--rpc', chain.handle.url, '--key-file', join(dir, 'admin.key'), '--complete', recordPath]);
    expect(done.code).toBe(0);
    const record = readDeploymentRecord(recordPath)!;
    expect(isComplete(record)).toBe(true);
    expect(record.deviceRegistry).toEqual(legacy.deviceRegistry);
    expect(record.anchorRegistry).toEqual(legacy.anchorRegistry);
    expect(done.lines).toContain('added ConsentRegistry on chain 31337');
    expect(done.lines).toContain(`  ConsentRegistry ${record.consentRegistry!.address}`);
    expect(await verifyDeployment(chain.provider, record)).toEqual(record);

    const after = await info();
    expect(after.lines).toContain(`  ConsentRegistry ${record.consentRegistry!.address}`);

    const twice = await run(['deploy', '--rpc', chain.handle.url, '--key-file', join(dir, 'admin.key'), '--complete', recordPath]);
    expect(twice.lines[0]).toBe(`${recordPath} is complete already: nothing deployed`);
    expect(readFileSync(recordPath, 'utf8')).toBe(`${JSON.stringify(record, null, 2)}\n`);
  });
});
