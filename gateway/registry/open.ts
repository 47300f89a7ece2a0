/**
 * Opening the device registry a config names: the DeviceRegistry contract (followed and
 * cached locally, registry/chain-registry.ts) or the registry file (registry/file-registry.ts).
 * The gateway and the command-line tools open it the same way, here.
 */
import { join } from 'node:path';
import type { Signer } from 'ethers';
import { ConfigError, type GatewayConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { ChainRuntime } from '../chain/runtime.js';
import { FileRegistry } from './file-registry.js';
import { ChainRegistry } from './chain-registry.js';
import type { DeviceRegistry } from './registry.js';

/** The registry file of a data dir (registry.source "file"). */
export function registryPath(dataDir: string): string {
  return join(dataDir, 'registry.json');
}

/** The device registry of `config`: the DeviceRegistry contract (followed, cached locally) or the registry file. */
export function openRegistry(
  config: GatewayConfig,
  chain: ChainRuntime | undefined,
  log?: Logger,
  opts: { follow?: boolean; signer?: Signer } = {},
): DeviceRegistry & { sync?: () => Promise<void> } {
  if (config.registry.source === 'file') return new FileRegistry(registryPath(config.dataDir), { watch: opts.follow ?? true, ...(log ? { log } : {}) });
  if (!chain) throw new ConfigError('registry.source "chain" needs a chain', 'CONFIG_NO_CHAIN');
  return new ChainRegistry({
    provider: chain.provider,
    deviceRegistryAddress: chain.record.deviceRegistry.address,
    deployBlock: chain.record.deployBlock,
    chainId: chain.chainId,
    dataDir: join(config.dataDir, 'registry'),
    site: config.registry.site,
    confirmations: config.chain.confirmations,
    rpcTimeoutMs: config.chain.rpcTimeoutMs,
    follow: opts.follow ?? true,
    ...(opts.signer ? { signer: opts.signer } : {}),
    ...(log ? { log } : {}),
  });
}
