/**
 * What the chain commands (admin, consent) share: the configuration they run with, the chain
 * they open (gateway/chain/runtime.ts openChainForCli), ConsentRegistry, and sending a
 * transaction with a contract's revert reported in words.
 */
import type { TransactionReceipt } from 'ethers';
import { ConfigError, configFromFlags, type GatewayConfig } from '../config.js';
import { anchorRegistryInterface, consentRegistryAt, consentRegistryInterface, decodeRevert, type ConsentRegistryContract } from '../chain/contracts.js';
import { openChainForCli, type ChainRuntime } from '../chain/runtime.js';
import type { CliIo } from './output.js';

/**
 * The configuration a chain command runs with. On an external chain the configuration must
 * name a key file (chain.keyFile, the gateway's); a patient's or an admin's command signs with
 * its own key and never uses that one, so when none is configured the command's own key file
 * stands in (the configuration check passes, nothing else changes).
 */
export function chainConfig(flags: Record<string, string>, own: readonly string[], ownKeyFile: string | undefined): GatewayConfig {
  try {
    return configFromFlags(flags, own);
  } catch (e) {
    if (!(e instanceof ConfigError) || !ownKeyFile || flags['chain.keyFile'] !== undefined || !/chain\.keyFile/.test(e.message)) throw e;
    return configFromFlags({ ...flags, 'chain.keyFile': ownKeyFile }, own);
  }
}

/** Opens the command's chain, runs `fn`, and stops the chain (saving an embedded chain started for the command). */
export async function withChain(cfg: GatewayConfig, fn: (chain: ChainRuntime) => Promise<number>): Promise<number> {
  const chain = await openChainForCli(cfg);
  try {
    await chain.ready();
    return await fn(chain);
  } finally {
    await chain.stop();
  }
}

/** ConsentRegistry of the chain. @throws ConfigError when the deployment record predates it. */
export function consentOf(chain: ChainRuntime): ConsentRegistryContract {
  if (!chain.record.consentRegistry)
    throw new ConfigError('the deployment record has no ConsentRegistry: add it with "vitalproof chain deploy --complete <record>"');
  return consentRegistryAt(chain.record.consentRegistry.address, chain.provider);
}

/**
 * Sends a transaction and waits for it (one confirmation), then makes an embedded chain's state
 * durable. A revert with a contract's custom error is reported on `io.err` and gives undefined.
 */
export async function send(
  tx: () => Promise<{ wait: (confirmations?: number) => Promise<TransactionReceipt | null> }>,
  chain: ChainRuntime,
  io: CliIo,
): Promise<TransactionReceipt | undefined> {
  try {
    const receipt = await (await tx()).wait(1);
    if (!receipt) throw new Error('the transaction has no receipt');
    await chain.makeDurable();
    return receipt;
  } catch (e) {
    const why = revertMessage(e);
    if (!why) throw e;
    io.err(`refused by the contract: ${why}`);
    return undefined;
  }
}

/** "ConsentRegistryNotPatient(0x…, 0x…, 0x…)": a contract's custom error in `e`, undefined when `e` is something else. */
export function revertMessage(e: unknown): string | undefined {
  for (const iface of [consentRegistryInterface, anchorRegistryInterface]) {
    const r = decodeRevert(e, iface);
    if (r) return `${r.name}(${(r.args as unknown[]).map((a) => String(a)).join(', ')})${REVERT_HINTS[r.name] ? `: ${REVERT_HINTS[r.name]}` : ''}`;
  }
  return undefined;
}

const REVERT_HINTS: Record<string, string> = {
  AccessControlUnauthorizedAccount: 'the signing account lacks the role this needs',
  ConsentRegistryNotPatient: 'only the address bound to the patient may grant or revoke (vitalproof admin bind-patient)',
  ConsentRegistryAlreadyRevoked: 'the grant was revoked already',
  ConsentRegistryExpiryNotInFuture: 'the expiry must be after the current block time',
  ConsentRegistryInvertedDataWindow: 'the data window ends before it starts',
  ConsentRegistryTooManyOpenGrants: 'the patient has 32 grants in force for this researcher: revoke one first',
  ConsentRegistryAddressAlreadyBound: 'an address speaks for one patient at most',
};
