/**
 * Shared pieces of the contract suites: deploying one contract from the generated
 * artifacts, asserting an exact custom error with its arguments, and reading the events of
 * a receipt with their arguments.
 */
import { expect } from 'vitest';
import { ContractFactory, type ContractTransactionResponse, type Interface, type Signer, type TransactionReceipt } from 'ethers';
import { anchorRegistryArtifact, consentRegistryArtifact, deviceRegistryArtifact } from '../../gateway/chain/artifacts.js';
import {
  anchorRegistryAt,
  consentRegistryAt,
  decodeRevert,
  deviceRegistryAt,
  type AnchorRegistryContract,
  type ConsentRegistryContract,
  type DeviceRegistryContract,
} from '../../gateway/chain/contracts.js';

export async function deployDeviceRegistry(signer: Signer, admin: string): Promise<DeviceRegistryContract> {
  const c = await new ContractFactory(deviceRegistryArtifact.abi, deviceRegistryArtifact.bytecode, signer).deploy(admin);
  await c.waitForDeployment();
  return deviceRegistryAt(await c.getAddress(), signer);
}

export async function deployAnchorRegistry(signer: Signer, admin: string): Promise<AnchorRegistryContract> {
  const c = await new ContractFactory(anchorRegistryArtifact.abi, anchorRegistryArtifact.bytecode, signer).deploy(admin);
  await c.waitForDeployment();
  return anchorRegistryAt(await c.getAddress(), signer);
}

export async function deployConsentRegistry(signer: Signer, admin: string): Promise<ConsentRegistryContract> {
  const c = await new ContractFactory(consentRegistryArtifact.abi, consentRegistryArtifact.bytecode, signer).deploy(admin);
  await c.waitForDeployment();
  return consentRegistryAt(await c.getAddress(), signer);
}

/**
 * Asserts that `action` reverts with exactly the custom error `name` and exactly `args`
 * (decoded with `iface`, compared deeply: bigints, checksummed addresses, lowercase hex).
 */
export async function expectRevert<E, N extends keyof E & string>(action: Promise<unknown>, iface: Interface, name: N, args: E[N]): Promise<void> {
  let failure: unknown;
  try {
    await action;
  } catch (e) {
    failure = e;
  }
  expect(failure, `expected a revert with ${name}`).toBeDefined();
  const decoded = decodeRevert<E>(failure, iface);
  expect(decoded, `expected ${name}, got an error without a known custom error: ${String((failure as Error).message)}`).toBeDefined();
  expect({ name: decoded!.name, args: decoded!.args }).toEqual({ name, args });
}

/** Sends, waits for the receipt, and fails the test when there is none. */
export async function mined(tx: Promise<ContractTransactionResponse>): Promise<TransactionReceipt> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error('transaction has no receipt');
  return receipt;
}

/** The events of `receipt` that `iface` knows, in log order, with their arguments as arrays. */
export function eventsOf(receipt: TransactionReceipt, iface: Interface): { name: string; args: unknown[] }[] {
  const out: { name: string; args: unknown[] }[] = [];
  for (const log of receipt.logs) {
    const parsed = iface.parseLog(log);
    if (parsed) out.push({ name: parsed.name, args: parsed.args.toArray(true) });
  }
  return out;
}

/** A plain-object copy of a struct ethers decoded, for deep equality. */
export function plain(result: object): Record<string, unknown> {
  return (result as { toObject(deep?: boolean): Record<string, unknown> }).toObject(true);
}
