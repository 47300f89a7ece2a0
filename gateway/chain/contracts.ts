/**
 * Typed handles on the deployed contracts, their role and stream ids, and decoding of their
 * custom errors. The ABIs, bytecode and types come from the generated ./artifacts.ts.
 *
 * @example
 *   const anchors = anchorRegistryAt(record.anchorRegistry.address, wallet);
 *   try { await (await anchors.anchor(STREAM.FRAMES, seq, root, n, t0, t1)).wait(); }
 *   catch (e) {
 *     const r = decodeRevert<AnchorRegistryErrors>(e, anchors.interface);
 *     if (r?.name === 'AnchorRegistryBatchAlreadyAnchored' && r.args[1] === root) { ... }
 *   }
 */
import { Contract, Interface, id, isHexString, type ContractRunner, type Result } from 'ethers';
import { anchorRegistryAbi, deviceRegistryAbi, type AnchorRegistryContract, type DeviceRegistryContract } from './artifacts.js';

export type { AnchorRegistryContract, AnchorRegistryErrors, AnchorRegistryEvents, DeviceRegistryContract, DeviceRegistryErrors, DeviceRegistryEvents, Anchor, Device } from './artifacts.js';

/** Role ids, as the contracts compute them (keccak256 of the name; the admin role is zero). */
export const ROLES = {
  DEFAULT_ADMIN: `0x${'00'.repeat(32)}`,
  HOSPITAL_ADMIN: id('HOSPITAL_ADMIN_ROLE'),
  GATEWAY: id('GATEWAY_ROLE'),
} as const;

/** Stream ids of AnchorRegistry: each (gateway, stream) has its own batch sequence, from 1. */
export const STREAM = { FRAMES: 0, ACCESS_LOG: 1 } as const;
export type StreamId = (typeof STREAM)[keyof typeof STREAM];

/** The first batch sequence of every (gateway, stream). */
export const FIRST_BATCH_SEQ = 1n;

export const deviceRegistryInterface = new Interface(deviceRegistryAbi);
export const anchorRegistryInterface = new Interface(anchorRegistryAbi);

export function deviceRegistryAt(address: string, runner: ContractRunner | null = null): DeviceRegistryContract {
  return new Contract(address, deviceRegistryInterface, runner) as unknown as DeviceRegistryContract;
}

export function anchorRegistryAt(address: string, runner: ContractRunner | null = null): AnchorRegistryContract {
  return new Contract(address, anchorRegistryInterface, runner) as unknown as AnchorRegistryContract;
}

/** A decoded custom error; with an error map from artifacts.ts, `args` is typed by `name`. */
export type DecodedRevert<E> = { [K in keyof E & string]: { name: K; args: E[K]; selector: string } }[keyof E & string];

/**
 * The custom error a failed call or transaction reverted with, decoded with `iface`;
 * undefined when `e` carries no revert data or the data is not one of `iface`'s errors
 * (then look at `e` itself: a network failure, a nonce problem, out of gas, ...).
 */
export function decodeRevert<E = Record<string, unknown[]>>(e: unknown, iface: Interface): DecodedRevert<E> | undefined {
  const data = revertData(e);
  if (!data) return undefined;
  let parsed;
  try {
    parsed = iface.parseError(data);
  } catch {
    return undefined;
  }
  if (!parsed) return undefined;
  return { name: parsed.name, args: deepArray(parsed.args), selector: parsed.selector } as DecodedRevert<E>;
}

/** Revert data in an ethers error, wherever the provider put it. */
export function revertData(e: unknown): string | undefined {
  const seen = new Set<unknown>();
  const walk = (x: unknown, depth: number): string | undefined => {
    if (!x || typeof x !== 'object' || seen.has(x) || depth > 5) return undefined;
    seen.add(x);
    const o = x as Record<string, unknown>;
    if (typeof o['data'] === 'string' && isHexString(o['data']) && o['data'].length >= 10) return o['data'];
    for (const k of ['error', 'info', 'cause']) {
      const found = walk(o[k], depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return walk(e, 0);
}

function deepArray(r: Result): unknown[] {
  return r.toArray(true);
}
