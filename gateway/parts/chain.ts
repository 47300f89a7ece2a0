/**
 * The chain (embedded anvil or an external RPC, docs/anchoring.md) and the device registry,
 * which follows the chain's DeviceRegistry or reads the registry file when the chain is off.
 */
import { openChain, type ChainRuntime } from '../chain/runtime.js';
import { openRegistry } from '../registry/open.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { PartContext } from './lifecycle.js';

/** The chain anchors go to; undefined when chain.mode is off. */
export async function connectChain(ctx: PartContext): Promise<ChainRuntime | undefined> {
  const { config, log, life } = ctx;
  if (config.chain.mode === 'off') return undefined;
  const c = await openChain(config, log);
  life.onStop(() => c.stop());
  log.info(
    {
      event: 'chain_ready',
      mode: c.mode,
      url: c.url,
      chainId: c.chainId,
      gateway: c.address,
      anchorRegistry: c.record.anchorRegistry.address,
      deviceRegistry: c.record.deviceRegistry.address,
    },
    'chain connected',
  );
  return c;
}

/** The enrolled devices; every reload is logged (`registry_changed`). */
export function openDevices(ctx: PartContext, chain: ChainRuntime | undefined): DeviceRegistry {
  const { config, log, life } = ctx;
  // Embedded chain: the in-process registry can enrol (the demo does) with the dev hospital admin.
  const registry = openRegistry(config, chain, log, chain?.adminSigner ? { signer: chain.adminSigner } : {});
  life.onStop(() => registry.close());
  registry.on('changed', () => {
    const all = registry.list();
    log.info({ event: 'registry_changed', devices: all.length, revoked: all.filter((d) => d.revokedAtMs !== undefined).length }, 'device registry reloaded');
  });
  return registry;
}
