/**
 * The chain seam: the embedded anvil (default) or an external EVM JSON-RPC endpoint, behind
 * one shape that the anchorer, the registry and the CLI use alike.
 *
 *   embedded   anvil on loopback, state in dataDir/chain, contracts deployed on first start
 *              (and ConsentRegistry added to a record written before it existed),
 *              deployment record in dataDir/chain/deployment.json. DEV ONLY accounts of the
 *              well-known test mnemonic: 0 deploys and administers the contracts, 1 is the
 *              hospital admin (enrol, revoke, bind patients), 2 is the gateway (anchors). The URL of the
 *              running node is written to dataDir/chain/endpoint.json for the CLI.
 *   external   chain.rpcUrl, the deployment record of `vitalproof chain deploy`, and the
 *              gateway's key from chain.keyFile. The gateway starts even when the endpoint is
 *              down: anchoring waits, ingest does not.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JsonRpcProvider, Wallet, type HDNodeWallet, type Signer } from 'ethers';
import type { GatewayConfig } from '../config.js';
import { ConfigError } from '../config.js';
import type { Logger } from '../log.js';
import { devWallet, startAnvil, type AnvilHandle } from './anvil.js';
import {
  anchorRegistryAt,
  consentRegistryAt,
  deviceRegistryAt,
  type AnchorRegistryContract,
  type ConsentRegistryContract,
  type DeviceRegistryContract,
} from './contracts.js';
import { DEPLOYMENT_FILE, loadOrDeploy, readDeploymentRecord, verifyDeployment, type StoredDeploymentRecord } from './deploy.js';
import { DEFAULT_RPC_TIMEOUT_MS, deadlineFetchRequest } from './rpc-deadline.js';

export const ENDPOINT_FILE = 'endpoint.json';

/** DEV ONLY: which account of the test mnemonic does what on the embedded chain. */
export const EMBEDDED_ACCOUNTS = { deployer: 0, hospitalAdmin: 1, gateway: 2 } as const;

export interface ChainRuntime {
  mode: 'embedded' | 'external';
  url: string;
  chainId: number;
  provider: JsonRpcProvider;
  /** The gateway's account: it anchors, and sends nothing else (so its nonces never race). */
  signer: Signer;
  /** Embedded chain: the DEV ONLY hospital admin account that enrols and revokes (another account than the gateway's). */
  adminSigner?: Signer;
  address: string;
  /** Complete on the embedded chain; an external chain's record may predate ConsentRegistry (ready() then rejects). */
  record: StoredDeploymentRecord;
  deviceRegistry: DeviceRegistryContract;
  anchorRegistry: AnchorRegistryContract;
  /** Undefined only when the record predates ConsentRegistry (external chain: ready() rejects with DEPLOYMENT_INCOMPLETE). */
  consentRegistry?: ConsentRegistryContract;
  /** Resolves once the deployment was checked against the chain (retry after a failure). */
  ready(): Promise<void>;
  /** Persists the chain's state where that is ours to do (embedded anvil); no-op otherwise. */
  makeDurable(): Promise<unknown>;
  anvil?: AnvilHandle;
  stop(): Promise<void>;
}

export function chainDir(dataDir: string): string {
  return join(dataDir, 'chain');
}

/**
 * An ethers provider for a known chain: no network detection round trips, quick polling, and a
 * deadline on every request (./rpc-deadline.ts): a node that does not answer fails calls with
 * ChainError CHAIN_TIMEOUT after `rpcTimeoutMs` instead of holding them for minutes.
 */
export function chainProvider(url: string, chainId: number, pollingInterval = 250, rpcTimeoutMs = DEFAULT_RPC_TIMEOUT_MS): JsonRpcProvider {
  return new JsonRpcProvider(deadlineFetchRequest(url, rpcTimeoutMs), chainId, { staticNetwork: true, pollingInterval, cacheTimeout: -1 });
}

/** Reads a private key file: 64 hex digits, with or without 0x, surrounding whitespace allowed. @throws ConfigError */
export function readKeyFile(path: string): Wallet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new ConfigError(`cannot read key file ${path}: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
  }
  const hex = text.startsWith('0x') ? text : `0x${text}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex)) throw new ConfigError(`key file ${path} must hold a 32-byte private key as 64 hex digits`, 'CONFIG_FILE_UNREADABLE');
  return new Wallet(hex);
}

/**
 * The chain for a command-line tool (enrol, revoke, audit, export): the external endpoint;
 * or the embedded chain of the gateway running on this data dir; or, when none runs, the
 * embedded chain started just for this command from the data dir's state (and stopped,
 * with its state saved, by `stop`).
 */
export async function openChainForCli(cfg: GatewayConfig, log?: Logger): Promise<ChainRuntime> {
  if (cfg.chain.mode === 'off') throw new ConfigError('chain.mode is off: this command needs a chain', 'CONFIG_NO_CHAIN');
  if (cfg.chain.mode === 'external') return openChain(cfg, log);
  const running = runningEndpoint(cfg.dataDir);
  if (!running) return openChain(cfg, log, { writeEndpoint: false });
  const record = readDeploymentRecord(join(chainDir(cfg.dataDir), DEPLOYMENT_FILE));
  if (!record) throw new ConfigError(`the running gateway's chain has no deployment record in ${chainDir(cfg.dataDir)}`, 'CONFIG_NO_CHAIN');
  const provider = chainProvider(running.url, record.chainId, 100, cfg.chain.rpcTimeoutMs);
  return {
    ...embeddedRuntime(running.url, provider, record),
    // The running gateway's anvil runtime checkpoints the chain within a second of a new block.
    makeDurable: () => Promise.resolve(),
    stop: () => {
      provider.destroy();
      return Promise.resolve();
    },
  };
}

/** What an embedded chain's runtime holds besides its lifecycle: the DEV ONLY accounts and the contracts. */
function embeddedRuntime(url: string, provider: JsonRpcProvider, record: StoredDeploymentRecord): Omit<ChainRuntime, 'makeDurable' | 'stop'> {
  const signer = devWallet(EMBEDDED_ACCOUNTS.gateway, provider);
  return {
    mode: 'embedded',
    url,
    chainId: record.chainId,
    provider,
    signer,
    adminSigner: devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin, provider),
    address: signer.address,
    record,
    deviceRegistry: deviceRegistryAt(record.deviceRegistry.address, signer),
    anchorRegistry: anchorRegistryAt(record.anchorRegistry.address, signer),
    ...(record.consentRegistry ? { consentRegistry: consentRegistryAt(record.consentRegistry.address, signer) } : {}),
    ready: () => Promise.resolve(),
  };
}

/** The URL of the embedded chain a running gateway serves, if one is running on this data dir. */
export function runningEndpoint(dataDir: string): { url: string; pid: number } | undefined {
  const p = join(chainDir(dataDir), ENDPOINT_FILE);
  if (!existsSync(p)) return undefined;
  try {
    const e = JSON.parse(readFileSync(p, 'utf8')) as { url: string; pid: number };
    process.kill(e.pid, 0); // throws when no such process
    return e;
  } catch {
    return undefined;
  }
}

/**
 * Starts (embedded) or connects to (external) the chain of `cfg`.
 * @throws ChainError when the embedded chain cannot start or its deployment does not match;
 *   ConfigError for a missing deployment record or key file in external mode.
 */
export async function openChain(cfg: GatewayConfig, log?: Logger, opts: { writeEndpoint?: boolean } = {}): Promise<ChainRuntime> {
  if (cfg.chain.mode === 'embedded') {
    const dir = chainDir(cfg.dataDir);
    const anvil = await startAnvil({ dataDir: dir, ...(cfg.chain.embeddedPort ? { port: cfg.chain.embeddedPort } : {}), ...(log ? { log } : {}) });
    try {
      const provider = chainProvider(anvil.url, anvil.chainId, 100, cfg.chain.rpcTimeoutMs);
      const d = await loadOrDeploy(dir, provider, devWallet(EMBEDDED_ACCOUNTS.deployer, provider), {
        hospitalAdmins: [devWallet(EMBEDDED_ACCOUNTS.hospitalAdmin).address],
        gateways: [devWallet(EMBEDDED_ACCOUNTS.gateway).address],
        makeDurable: () => anvil.checkpoint(),
      });
      if (d.deployed)
        log?.info(
          {
            event: 'contracts_deployed',
            chainId: d.record.chainId,
            deviceRegistry: d.record.deviceRegistry.address,
            anchorRegistry: d.record.anchorRegistry.address,
            consentRegistry: d.record.consentRegistry.address,
            block: d.record.deployBlock,
          },
          'contracts deployed on the embedded chain',
        );
      if (d.added.length > 0)
        log?.info(
          { event: 'contracts_added', chainId: d.record.chainId, added: d.added, consentRegistry: d.record.consentRegistry.address },
          "contracts added to the embedded chain's deployment",
        );
      const endpoint = join(dir, ENDPOINT_FILE);
      if (opts.writeEndpoint !== false) writeFileSync(endpoint, JSON.stringify({ url: anvil.url, pid: process.pid }));
      return {
        ...embeddedRuntime(anvil.url, provider, d.record),
        makeDurable: () => anvil.checkpoint(),
        anvil,
        stop: async () => {
          if (opts.writeEndpoint !== false) rmSync(endpoint, { force: true });
          provider.destroy();
          await anvil.stop();
        },
      };
    } catch (e) {
      await anvil.stop();
      throw e;
    }
  }
  if (cfg.chain.mode !== 'external') throw new ConfigError(`chain.mode "${cfg.chain.mode}" has no chain to open`, 'CONFIG_NO_CHAIN');
  const recordPath = cfg.chain.deployment || join(chainDir(cfg.dataDir), DEPLOYMENT_FILE);
  const record = readDeploymentRecord(recordPath);
  if (!record)
    throw new ConfigError(
      `no deployment record at ${recordPath}: deploy the contracts with "vitalproof chain deploy" and point chain.deployment at its record`,
      'CONFIG_NO_CHAIN',
    );
  const provider = chainProvider(cfg.chain.rpcUrl, record.chainId, 1000, cfg.chain.rpcTimeoutMs);
  const wallet = readKeyFile(cfg.chain.keyFile).connect(provider) as Wallet | HDNodeWallet;
  let verified: Promise<void> | undefined;
  return {
    mode: 'external',
    url: cfg.chain.rpcUrl,
    chainId: record.chainId,
    provider,
    signer: wallet,
    address: wallet.address,
    record,
    deviceRegistry: deviceRegistryAt(record.deviceRegistry.address, wallet),
    anchorRegistry: anchorRegistryAt(record.anchorRegistry.address, wallet),
    ...(record.consentRegistry ? { consentRegistry: consentRegistryAt(record.consentRegistry.address, wallet) } : {}),
    ready: () => {
      verified ??= verifyDeployment(provider, record).then(
        () => undefined,
        (e: unknown) => {
          verified = undefined;
          throw e;
        },
      );
      return verified;
    },
    makeDurable: () => Promise.resolve(),
    stop: () => {
      provider.destroy();
      return Promise.resolve();
    },
  };
}
