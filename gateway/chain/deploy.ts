/**
 * Deploys DeviceRegistry and AnchorRegistry, grants their roles, and keeps a deployment
 * record (chain id, addresses, deploy block) so that every later start talks to the same
 * contracts, and notices loudly when the chain under it is not the one it deployed to.
 *
 * @example
 *   const chain = await startAnvil({ dataDir: join(dataDir, 'chain') });
 *   const provider = new JsonRpcProvider(chain.url, chain.chainId, { staticNetwork: true });
 *   const { record, deviceRegistry, anchorRegistry, deployed } =
 *     await loadOrDeploy(dataDir, provider, devWallet(0, provider));
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ContractFactory, getAddress, resolveAddress, type AddressLike, type Provider, type Signer, type TransactionReceipt } from 'ethers';
import { writeAtomic } from '../spool/wal.js';
import { anchorRegistryArtifact, deviceRegistryArtifact, INPUT_SHA256, SOLC_VERSION } from './artifacts.js';
import { anchorRegistryAt, deviceRegistryAt, ROLES, type AnchorRegistryContract, type DeviceRegistryContract } from './contracts.js';
import { ChainError } from './errors.js';

export const DEPLOYMENT_FILE = 'deployment.json';

export interface DeployedContract {
  address: string;
  txHash: string;
  block: number;
}

/** What deployment.json holds. Version 1. */
export interface DeploymentRecord {
  version: 1;
  chainId: number;
  deployer: string;
  deviceRegistry: DeployedContract;
  anchorRegistry: DeployedContract;
  /** The block of the first deployment transaction, and its hash: a reset chain has another one there. */
  deployBlock: number;
  deployBlockHash: string;
  /** Accounts granted roles at deployment (DEFAULT_ADMIN of both contracts, HOSPITAL_ADMIN, GATEWAY). */
  roles: { admin: string; hospitalAdmins: string[]; gateways: string[] };
  /** Which build was deployed (gateway/chain/artifacts.ts). */
  build: { solcVersion: string; inputSha256: string };
  deployedAt: string;
}

export interface Deployment {
  record: DeploymentRecord;
  deviceRegistry: DeviceRegistryContract;
  anchorRegistry: AnchorRegistryContract;
}

export interface DeployOptions {
  /** DEFAULT_ADMIN_ROLE of both contracts (may grant and revoke roles). Default: the signer. */
  admin?: AddressLike;
  /** Granted HOSPITAL_ADMIN_ROLE (needs the signer to be the admin). Default: [signer]. */
  hospitalAdmins?: AddressLike[];
  /** Granted GATEWAY_ROLE (needs the signer to be the admin). Default: [signer]. */
  gateways?: AddressLike[];
  /** Confirmations to wait for per transaction. Default 1. */
  confirmations?: number;
}

export interface LoadOrDeployOptions extends DeployOptions {
  /**
   * Called after a fresh deployment and before its record is written: make the deployment
   * durable here (embedded chain: `() => anvil.checkpoint()`), or a crash in between leaves a
   * record of contracts that the restarted chain does not have.
   */
  makeDurable?: () => Promise<unknown>;
}

/**
 * Deploys both contracts from `signer`, then grants the roles. Transactions go one after
 * another, each waited for, so nonces never race.
 * @throws Error from ethers when a transaction fails; ChainError never.
 */
export async function deployContracts(signer: Signer, opts: DeployOptions = {}): Promise<Deployment> {
  const provider = requireProvider(signer);
  const confirmations = opts.confirmations ?? 1;
  const deployer = getAddress(await signer.getAddress());
  const admin = getAddress(await resolveAddress(opts.admin ?? deployer));
  const hospitalAdmins = await Promise.all((opts.hospitalAdmins ?? [deployer]).map(async (a) => getAddress(await resolveAddress(a))));
  const gateways = await Promise.all((opts.gateways ?? [deployer]).map(async (a) => getAddress(await resolveAddress(a))));
  const needsGrants = hospitalAdmins.length + gateways.length > 0;
  if (needsGrants && admin !== deployer) {
    throw new TypeError('deployContracts: to grant roles at deployment the signer must be the admin; deploy with admin = signer, grant, then transfer DEFAULT_ADMIN_ROLE');
  }

  const dev = await deployOne(new ContractFactory(deviceRegistryArtifact.abi, deviceRegistryArtifact.bytecode, signer), admin, confirmations);
  const anc = await deployOne(new ContractFactory(anchorRegistryArtifact.abi, anchorRegistryArtifact.bytecode, signer), admin, confirmations);
  const deviceRegistry = deviceRegistryAt(dev.address, signer);
  const anchorRegistry = anchorRegistryAt(anc.address, signer);
  for (const a of hospitalAdmins) await (await deviceRegistry.grantRole(ROLES.HOSPITAL_ADMIN, a)).wait(confirmations);
  for (const g of gateways) await (await anchorRegistry.grantRole(ROLES.GATEWAY, g)).wait(confirmations);

  const chainId = Number((await provider.getNetwork()).chainId);
  const deployBlock = Math.min(dev.block, anc.block);
  const block = await provider.getBlock(deployBlock);
  if (!block?.hash) throw new Error(`deployContracts: block ${deployBlock} not found right after deploying`);
  const record: DeploymentRecord = {
    version: 1,
    chainId,
    deployer,
    deviceRegistry: dev,
    anchorRegistry: anc,
    deployBlock,
    deployBlockHash: block.hash,
    roles: { admin, hospitalAdmins, gateways },
    build: { solcVersion: SOLC_VERSION, inputSha256: INPUT_SHA256 },
    deployedAt: new Date().toISOString(),
  };
  return { record, deviceRegistry, anchorRegistry };
}

async function deployOne(factory: ContractFactory, admin: string, confirmations: number): Promise<DeployedContract> {
  const c = await factory.deploy(admin);
  const tx = c.deploymentTransaction();
  if (!tx) throw new Error('deployContracts: no deployment transaction');
  const receipt: TransactionReceipt | null = await tx.wait(confirmations);
  if (!receipt?.contractAddress) throw new Error(`deployContracts: deployment ${tx.hash} has no contract address`);
  return { address: getAddress(receipt.contractAddress), txHash: tx.hash, block: receipt.blockNumber };
}

/**
 * Checks that `record` describes contracts that are live on `provider`'s chain: same chain
 * id, the deploy block still there with the same hash, and exactly this build's code at
 * both addresses.
 * @throws ChainError DEPLOYMENT_CHAIN_MISMATCH, DEPLOYMENT_CHAIN_REPLACED, DEPLOYMENT_MISSING, DEPLOYMENT_CODE_MISMATCH.
 */
export async function verifyDeployment(provider: Provider, record: DeploymentRecord): Promise<void> {
  const chainId = Number((await provider.getNetwork()).chainId);
  if (chainId !== record.chainId) throw new ChainError('DEPLOYMENT_CHAIN_MISMATCH', { expected: record.chainId, got: chainId });
  for (const [name, c, artifact] of [
    ['DeviceRegistry', record.deviceRegistry, deviceRegistryArtifact],
    ['AnchorRegistry', record.anchorRegistry, anchorRegistryArtifact],
  ] as const) {
    const code = await provider.getCode(c.address);
    if (code === '0x') {
      throw new ChainError('DEPLOYMENT_MISSING', {
        contract: name,
        address: c.address,
        deployBlock: record.deployBlock,
        hint: 'the chain was reset (embedded chain: its state file lost or replaced?); anchors recorded before are not on it. Restore the chain state, or move deployment.json away to deploy afresh',
      });
    }
    if (code.toLowerCase() !== artifact.deployedBytecode.toLowerCase()) {
      throw new ChainError('DEPLOYMENT_CODE_MISMATCH', { contract: name, address: c.address, hint: 'the contract there is another build; deploy this build afresh or run the matching gateway version' });
    }
  }
  const block = await provider.getBlock(record.deployBlock);
  if (block?.hash !== record.deployBlockHash) {
    throw new ChainError('DEPLOYMENT_CHAIN_REPLACED', {
      deployBlock: record.deployBlock,
      expected: record.deployBlockHash,
      got: block?.hash ?? null,
      hint: 'contracts at the recorded addresses were deployed again on a reset chain; earlier anchors are not on it',
    });
  }
}

/** The record in `path`, or undefined when there is none. @throws ChainError DEPLOYMENT_RECORD_INVALID */
export function readDeploymentRecord(path: string): DeploymentRecord | undefined {
  if (!existsSync(path)) return undefined;
  let r: Partial<DeploymentRecord>;
  try {
    r = JSON.parse(readFileSync(path, 'utf8')) as Partial<DeploymentRecord>;
  } catch (e) {
    throw new ChainError('DEPLOYMENT_RECORD_INVALID', { path, reason: (e as Error).message });
  }
  const okContract = (c: unknown): boolean => {
    const x = c as Partial<DeployedContract> | undefined;
    return typeof x?.address === 'string' && /^0x[0-9a-fA-F]{40}$/.test(x.address) && typeof x.block === 'number' && typeof x.txHash === 'string';
  };
  if (r.version !== 1 || typeof r.chainId !== 'number' || !okContract(r.deviceRegistry) || !okContract(r.anchorRegistry) || typeof r.deployBlock !== 'number' || typeof r.deployBlockHash !== 'string') {
    throw new ChainError('DEPLOYMENT_RECORD_INVALID', { path, reason: 'needs version 1, chainId, deviceRegistry, anchorRegistry, deployBlock, deployBlockHash' });
  }
  return r as DeploymentRecord;
}

/** Writes the record atomically (temp file, fsync, rename). */
export function writeDeploymentRecord(path: string, record: DeploymentRecord): void {
  writeAtomic(path, `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * First start: deploys, grants roles, writes `dataDir/deployment.json`. Later starts: reads
 * it and verifies it against the chain (verifyDeployment), never redeploying on its own: a
 * chain that lost the contracts is reported (ChainError DEPLOYMENT_MISSING / _REPLACED), not
 * papered over with a fresh deployment that would orphan every proof made before.
 */
export async function loadOrDeploy(
  dataDir: string,
  provider: Provider,
  signer: Signer,
  opts: LoadOrDeployOptions = {},
): Promise<Deployment & { deployed: boolean; path: string }> {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, DEPLOYMENT_FILE);
  const existing = readDeploymentRecord(path);
  if (existing) {
    await verifyDeployment(provider, existing);
    return {
      record: existing,
      deviceRegistry: deviceRegistryAt(existing.deviceRegistry.address, signer),
      anchorRegistry: anchorRegistryAt(existing.anchorRegistry.address, signer),
      deployed: false,
      path,
    };
  }
  const d = await deployContracts(signer.provider ? signer : signer.connect(provider), opts);
  await opts.makeDurable?.();
  writeDeploymentRecord(path, d.record);
  return { ...d, deployed: true, path };
}

function requireProvider(signer: Signer): Provider {
  if (!signer.provider) throw new TypeError('the signer must be connected to a provider');
  return signer.provider;
}
