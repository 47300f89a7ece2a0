/**
 * Deploys DeviceRegistry, AnchorRegistry and ConsentRegistry, grants their roles, and keeps a
 * deployment record (chain id, addresses, deploy block) so that every later start talks to the
 * same contracts, and notices loudly when the chain under it is not the one it deployed to.
 *
 * Records written before ConsentRegistry existed lack it. verifyDeployment refuses them
 * (DEPLOYMENT_INCOMPLETE); completeDeployment adds the missing contract next to the recorded
 * ones, keeping them and every anchor; loadOrDeploy does that on its own.
 *
 * @example
 *   const chain = await startAnvil({ dataDir: join(dataDir, 'chain') });
 *   const provider = new JsonRpcProvider(chain.url, chain.chainId, { staticNetwork: true });
 *   const { record, deviceRegistry, anchorRegistry, consentRegistry, deployed } =
 *     await loadOrDeploy(dataDir, provider, devWallet(0, provider));
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ContractFactory, getAddress, resolveAddress, type AddressLike, type Provider, type Signer, type TransactionReceipt } from 'ethers';
import { writeFileAtomic } from '../util/atomic-file.js';
import { anchorRegistryArtifact, consentRegistryArtifact, deviceRegistryArtifact, INPUT_SHA256, SOLC_VERSION } from './artifacts.js';
import {
  anchorRegistryAt,
  consentRegistryAt,
  deviceRegistryAt,
  ROLES,
  type AnchorRegistryContract,
  type ConsentRegistryContract,
  type DeviceRegistryContract,
} from './contracts.js';
import { ChainError } from './errors.js';

export const DEPLOYMENT_FILE = 'deployment.json';

export interface DeployedContract {
  address: string;
  txHash: string;
  block: number;
}

/** What deployment.json holds, complete: every contract this build talks to. Version 1. */
export interface DeploymentRecord {
  version: 1;
  chainId: number;
  deployer: string;
  deviceRegistry: DeployedContract;
  anchorRegistry: DeployedContract;
  consentRegistry: DeployedContract;
  /** The block of the first deployment transaction, and its hash: a reset chain has another one there. */
  deployBlock: number;
  deployBlockHash: string;
  /**
   * Accounts granted roles at deployment: DEFAULT_ADMIN of every contract; HOSPITAL_ADMIN of
   * DeviceRegistry and ConsentRegistry; GATEWAY of AnchorRegistry.
   */
  roles: { admin: string; hospitalAdmins: string[]; gateways: string[] };
  /** Which build was deployed (gateway/chain/artifacts.ts). */
  build: { solcVersion: string; inputSha256: string };
  deployedAt: string;
}

/**
 * deployment.json as read from disk: a record written before ConsentRegistry existed has no
 * `consentRegistry`. verifyDeployment refuses such a record (DEPLOYMENT_INCOMPLETE);
 * completeDeployment (and loadOrDeploy, on its own) adds the contract.
 */
export type StoredDeploymentRecord = Omit<DeploymentRecord, 'consentRegistry'> & { consentRegistry?: DeployedContract };

export interface Deployment {
  record: DeploymentRecord;
  deviceRegistry: DeviceRegistryContract;
  anchorRegistry: AnchorRegistryContract;
  consentRegistry: ConsentRegistryContract;
}

export interface DeployOptions {
  /** DEFAULT_ADMIN_ROLE of every contract (may grant and revoke roles). Default: the signer. */
  admin?: AddressLike;
  /** Granted HOSPITAL_ADMIN_ROLE of DeviceRegistry and ConsentRegistry (needs the signer to be the admin). Default: [signer]. */
  hospitalAdmins?: AddressLike[];
  /** Granted GATEWAY_ROLE (needs the signer to be the admin). Default: [signer]. */
  gateways?: AddressLike[];
  /** Confirmations to wait for per transaction. Default 1. */
  confirmations?: number;
  /**
   * Deadline for each transaction to be mined with its confirmations (ms). Default 120,000.
   * ethers' wait() polls in the background and swallows polling failures: without a deadline, a
   * chain that stops answering mid-deployment would hold the deployment (and the gateway's start) forever.
   */
  txTimeoutMs?: number;
}

/** Default of DeployOptions.txTimeoutMs. */
export const DEPLOY_TX_TIMEOUT_MS = 120_000;

export interface LoadOrDeployOptions extends DeployOptions {
  /**
   * Called after a fresh deployment and before its record is written: make the deployment
   * durable here (embedded chain: `() => anvil.checkpoint()`), or a crash in between leaves a
   * record of contracts that the restarted chain does not have.
   */
  makeDurable?: () => Promise<unknown>;
}

/**
 * Deploys the three contracts from `signer`, then grants the roles. Transactions go one after
 * another, each waited for, so nonces never race. DeviceRegistry and AnchorRegistry go first,
 * so a deployer gets the same addresses for them as before ConsentRegistry existed.
 * @throws Error from ethers when a transaction fails; ChainError never.
 */
export async function deployContracts(signer: Signer, opts: DeployOptions = {}): Promise<Deployment> {
  const provider = requireProvider(signer);
  const confirmations = opts.confirmations ?? 1;
  const txTimeoutMs = opts.txTimeoutMs ?? DEPLOY_TX_TIMEOUT_MS;
  const deployer = getAddress(await signer.getAddress());
  const admin = getAddress(await resolveAddress(opts.admin ?? deployer));
  const hospitalAdmins = await Promise.all((opts.hospitalAdmins ?? [deployer]).map(async (a) => getAddress(await resolveAddress(a))));
  const gateways = await Promise.all((opts.gateways ?? [deployer]).map(async (a) => getAddress(await resolveAddress(a))));
  const needsGrants = hospitalAdmins.length + gateways.length > 0;
  if (needsGrants && admin !== deployer) {
    throw new TypeError(
      'deployContracts: to grant roles at deployment the signer must be the admin; deploy with admin = signer, grant, then transfer DEFAULT_ADMIN_ROLE',
    );
  }

  const dev = await deployOne(new ContractFactory(deviceRegistryArtifact.abi, deviceRegistryArtifact.bytecode, signer), admin, confirmations, txTimeoutMs);
  const anc = await deployOne(new ContractFactory(anchorRegistryArtifact.abi, anchorRegistryArtifact.bytecode, signer), admin, confirmations, txTimeoutMs);
  const con = await deployOne(new ContractFactory(consentRegistryArtifact.abi, consentRegistryArtifact.bytecode, signer), admin, confirmations, txTimeoutMs);
  const deviceRegistry = deviceRegistryAt(dev.address, signer);
  const anchorRegistry = anchorRegistryAt(anc.address, signer);
  const consentRegistry = consentRegistryAt(con.address, signer);
  for (const a of hospitalAdmins) await (await deviceRegistry.grantRole(ROLES.HOSPITAL_ADMIN, a)).wait(confirmations, txTimeoutMs);
  for (const a of hospitalAdmins) await (await consentRegistry.grantRole(ROLES.HOSPITAL_ADMIN, a)).wait(confirmations, txTimeoutMs);
  for (const g of gateways) await (await anchorRegistry.grantRole(ROLES.GATEWAY, g)).wait(confirmations, txTimeoutMs);

  const chainId = Number((await provider.getNetwork()).chainId);
  const deployBlock = Math.min(dev.block, anc.block, con.block);
  const block = await provider.getBlock(deployBlock);
  if (!block?.hash) throw new Error(`deployContracts: block ${deployBlock} not found right after deploying`);
  const record: DeploymentRecord = {
    version: 1,
    chainId,
    deployer,
    deviceRegistry: dev,
    anchorRegistry: anc,
    consentRegistry: con,
    deployBlock,
    deployBlockHash: block.hash,
    roles: { admin, hospitalAdmins, gateways },
    build: { solcVersion: SOLC_VERSION, inputSha256: INPUT_SHA256 },
    deployedAt: new Date().toISOString(),
  };
  return { record, deviceRegistry, anchorRegistry, consentRegistry };
}

async function deployOne(factory: ContractFactory, admin: string, confirmations: number, txTimeoutMs: number): Promise<DeployedContract> {
  const c = await factory.deploy(admin);
  const tx = c.deploymentTransaction();
  if (!tx) throw new Error('deployContracts: no deployment transaction');
  const receipt: TransactionReceipt | null = await tx.wait(confirmations, txTimeoutMs);
  if (!receipt?.contractAddress) throw new Error(`deployContracts: deployment ${tx.hash} has no contract address`);
  return { address: getAddress(receipt.contractAddress), txHash: tx.hash, block: receipt.blockNumber };
}

/** The contracts of this build, in record order: record key, contract name, artifact. */
const CONTRACTS = [
  ['deviceRegistry', 'DeviceRegistry', deviceRegistryArtifact],
  ['anchorRegistry', 'AnchorRegistry', anchorRegistryArtifact],
  ['consentRegistry', 'ConsentRegistry', consentRegistryArtifact],
] as const;

/** What an operator does about a record without ConsentRegistry. */
const INCOMPLETE_HINT =
  'the record was written before ConsentRegistry existed. Embedded chain: the next gateway start adds it. External chain: run "vitalproof chain deploy --rpc URL --key-file <DEFAULT_ADMIN key> --complete <record>", which deploys only what is missing and keeps the recorded contracts and every anchor; deploying everything afresh instead orphans the earlier anchors';

/**
 * Checks that `record` describes contracts that are live on `provider`'s chain: same chain
 * id, the deploy block still there with the same hash, exactly this build's code at every
 * address, and no contract of this build missing from the record.
 * @returns the record, now known to be complete.
 * @throws ChainError DEPLOYMENT_CHAIN_MISMATCH, DEPLOYMENT_CHAIN_REPLACED, DEPLOYMENT_MISSING,
 *   DEPLOYMENT_CODE_MISMATCH; DEPLOYMENT_INCOMPLETE for a record without ConsentRegistry (checked
 *   last: the contracts it does record are checked first).
 */
export async function verifyDeployment(provider: Provider, record: StoredDeploymentRecord): Promise<DeploymentRecord> {
  await verifyRecorded(provider, record);
  if (!isComplete(record)) throw new ChainError('DEPLOYMENT_INCOMPLETE', { missing: missingContracts(record), hint: INCOMPLETE_HINT });
  return record;
}

/** Whether `record` names every contract of this build. */
export function isComplete(record: StoredDeploymentRecord): record is DeploymentRecord {
  return missingContracts(record).length === 0;
}

function missingContracts(record: StoredDeploymentRecord): string[] {
  return CONTRACTS.filter(([key]) => !record[key]).map(([, name]) => name);
}

/** verifyDeployment for the contracts `record` names, without asking for the others. */
async function verifyRecorded(provider: Provider, record: StoredDeploymentRecord): Promise<void> {
  const chainId = Number((await provider.getNetwork()).chainId);
  if (chainId !== record.chainId) throw new ChainError('DEPLOYMENT_CHAIN_MISMATCH', { expected: record.chainId, got: chainId });
  for (const [key, name, artifact] of CONTRACTS) {
    const c = record[key];
    if (!c) continue;
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
      throw new ChainError('DEPLOYMENT_CODE_MISMATCH', {
        contract: name,
        address: c.address,
        hint: 'the contract there is another build; deploy this build afresh or run the matching gateway version',
      });
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

/**
 * Adds to an existing deployment what this build has and `record` lacks (ConsentRegistry, for
 * a record written before it existed), keeping the recorded contracts and everything on them.
 * The recorded contracts are verified first. ConsentRegistry's admin is `signer`, which must
 * hold DEFAULT_ADMIN_ROLE on DeviceRegistry; it grants HOSPITAL_ADMIN_ROLE to the recorded
 * hospital admins that still hold that role on DeviceRegistry (one revoked since gets nothing;
 * one granted since is not in the record: grant it by hand). Nothing is written to disk.
 *
 * A crash before the caller writes the new record leaves an unused ConsentRegistry on chain
 * that nothing refers to; the next completion deploys another.
 * @returns the complete deployment; `added` names the contracts deployed now ([] when the
 *   record was complete already: then nothing is sent).
 * @throws ChainError from verifyDeployment; DEPLOYMENT_INCOMPLETE when `signer` is not the admin.
 */
export async function completeDeployment(
  signer: Signer,
  record: StoredDeploymentRecord,
  opts: { confirmations?: number; txTimeoutMs?: number } = {},
): Promise<Deployment & { added: string[] }> {
  const provider = requireProvider(signer);
  await verifyRecorded(provider, record);
  const handles = (r: DeploymentRecord): Deployment => ({
    record: r,
    deviceRegistry: deviceRegistryAt(r.deviceRegistry.address, signer),
    anchorRegistry: anchorRegistryAt(r.anchorRegistry.address, signer),
    consentRegistry: consentRegistryAt(r.consentRegistry.address, signer),
  });
  if (isComplete(record)) return { ...handles(record), added: [] };

  const confirmations = opts.confirmations ?? 1;
  const txTimeoutMs = opts.txTimeoutMs ?? DEPLOY_TX_TIMEOUT_MS;
  const admin = getAddress(await signer.getAddress());
  const deviceRegistry = deviceRegistryAt(record.deviceRegistry.address, signer);
  if (!(await deviceRegistry.hasRole(ROLES.DEFAULT_ADMIN, admin))) {
    throw new ChainError('DEPLOYMENT_INCOMPLETE', {
      missing: missingContracts(record),
      signer: admin,
      hint: `${admin} does not hold DEFAULT_ADMIN_ROLE on DeviceRegistry ${record.deviceRegistry.address}: complete the deployment with the key of its admin`,
    });
  }
  const hospitalAdmins: string[] = [];
  for (const a of record.roles.hospitalAdmins) if (await deviceRegistry.hasRole(ROLES.HOSPITAL_ADMIN, a)) hospitalAdmins.push(a);
  const con = await deployOne(new ContractFactory(consentRegistryArtifact.abi, consentRegistryArtifact.bytecode, signer), admin, confirmations, txTimeoutMs);
  const consentRegistry = consentRegistryAt(con.address, signer);
  for (const a of hospitalAdmins) await (await consentRegistry.grantRole(ROLES.HOSPITAL_ADMIN, a)).wait(confirmations, txTimeoutMs);
  // Every recorded contract was just found to run this build's code, and the new one is this build.
  const complete: DeploymentRecord = { ...record, consentRegistry: con, build: { solcVersion: SOLC_VERSION, inputSha256: INPUT_SHA256 } };
  return { ...handles(complete), added: ['ConsentRegistry'] };
}

/**
 * The record in `path`, or undefined when there is none. A record without ConsentRegistry
 * (written before it existed) is returned as it is: reading it for the addresses of the other
 * contracts (proof verification) is fine; verifyDeployment refuses it.
 * @throws ChainError DEPLOYMENT_RECORD_INVALID
 */
export function readDeploymentRecord(path: string): StoredDeploymentRecord | undefined {
  if (!existsSync(path)) return undefined;
  let r: Partial<StoredDeploymentRecord>;
  try {
    r = JSON.parse(readFileSync(path, 'utf8')) as Partial<StoredDeploymentRecord>;
  } catch (e) {
    throw new ChainError('DEPLOYMENT_RECORD_INVALID', { path, reason: (e as Error).message });
  }
  const okContract = (c: unknown): boolean => {
    const x = c as Partial<DeployedContract> | undefined;
    return typeof x?.address === 'string' && /^0x[0-9a-fA-F]{40}$/.test(x.address) && typeof x.block === 'number' && typeof x.txHash === 'string';
  };
  if (
    r.version !== 1 ||
    typeof r.chainId !== 'number' ||
    !okContract(r.deviceRegistry) ||
    !okContract(r.anchorRegistry) ||
    (r.consentRegistry !== undefined && !okContract(r.consentRegistry)) ||
    typeof r.deployBlock !== 'number' ||
    typeof r.deployBlockHash !== 'string'
  ) {
    throw new ChainError('DEPLOYMENT_RECORD_INVALID', {
      path,
      reason: 'needs version 1, chainId, deviceRegistry, anchorRegistry, consentRegistry (or none), deployBlock, deployBlockHash',
    });
  }
  return r as StoredDeploymentRecord;
}

/** Writes the record atomically (temp file, fsync, rename). */
export function writeDeploymentRecord(path: string, record: StoredDeploymentRecord): void {
  writeFileAtomic(path, `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * First start: deploys, grants roles, writes `dataDir/deployment.json`. Later starts: reads
 * it and verifies it against the chain (verifyDeployment), never redeploying on its own: a
 * chain that lost the contracts is reported (ChainError DEPLOYMENT_MISSING / _REPLACED), not
 * papered over with a fresh deployment that would orphan every proof made before.
 *
 * A record written before ConsentRegistry existed is completed (completeDeployment: the
 * recorded contracts are verified and kept, ConsentRegistry is deployed with `signer` as its
 * admin), made durable, and rewritten; `added` names what was added. This is safe because no
 * recorded contract refers to ConsentRegistry: adding it changes nothing that exists.
 * @returns the deployment; `deployed` is true for a fresh deployment, `added` lists contracts
 *   added to an existing record ([] otherwise).
 */
export async function loadOrDeploy(
  dataDir: string,
  provider: Provider,
  signer: Signer,
  opts: LoadOrDeployOptions = {},
): Promise<Deployment & { deployed: boolean; added: string[]; path: string }> {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, DEPLOYMENT_FILE);
  const existing = readDeploymentRecord(path);
  const connected = signer.provider ? signer : signer.connect(provider);
  if (existing) {
    const d = await completeDeployment(connected, existing, {
      ...(opts.confirmations !== undefined ? { confirmations: opts.confirmations } : {}),
      ...(opts.txTimeoutMs !== undefined ? { txTimeoutMs: opts.txTimeoutMs } : {}),
    });
    if (d.added.length > 0) {
      await opts.makeDurable?.();
      writeDeploymentRecord(path, d.record);
    }
    return { ...d, deployed: false, path };
  }
  const d = await deployContracts(connected, opts);
  await opts.makeDurable?.();
  writeDeploymentRecord(path, d.record);
  return { ...d, deployed: true, added: [], path };
}

function requireProvider(signer: Signer): Provider {
  if (!signer.provider) throw new TypeError('the signer must be connected to a provider');
  return signer.provider;
}
