/**
 * Typed handles on the deployed contracts, their role and stream ids, ConsentRegistry's
 * verdict codes and sensor masks, and decoding of their custom errors. The ABIs, bytecode and
 * types come from the generated ./artifacts.ts.
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
import {
  anchorRegistryAbi,
  consentRegistryAbi,
  deviceRegistryAbi,
  type AnchorRegistryContract,
  type ConsentRegistryContract,
  type DeviceRegistryContract,
} from './artifacts.js';

export type {
  AnchorRegistryContract,
  AnchorRegistryErrors,
  AnchorRegistryEvents,
  ConsentRegistryContract,
  ConsentRegistryErrors,
  ConsentRegistryEvents,
  DeviceRegistryContract,
  DeviceRegistryErrors,
  DeviceRegistryEvents,
  Anchor,
  Device,
  Grant,
} from './artifacts.js';

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

/**
 * ConsentRegistry.checkGrant verdicts: the names and values of `enum GrantStatus` in
 * contracts/interfaces/IConsentRegistry.sol, checked in this order (a grant both revoked and
 * expired is REVOKED). test/contracts/ConsentRegistry.test.ts holds the two to each other.
 */
export const GRANT_STATUS = {
  /** The grant lets the researcher receive the reading. */
  OK: 0,
  /** No grant has this id. */
  UNKNOWN_GRANT: 1,
  /** The grant was made to another researcher. */
  NOT_GRANTEE: 2,
  /** The patient revoked the grant. */
  REVOKED: 3,
  /** The grant's expiry has passed. */
  EXPIRED: 4,
  /** The grant does not cover this sensor. */
  SENSOR_NOT_GRANTED: 5,
  /** The reading was recorded outside the grant's data window. */
  OUTSIDE_DATA_WINDOW: 6,
} as const;
export type GrantStatusName = keyof typeof GRANT_STATUS;
export type GrantStatusCode = (typeof GRANT_STATUS)[GrantStatusName];

const GRANT_STATUS_NAMES = Object.fromEntries(Object.entries(GRANT_STATUS).map(([k, v]) => [v, k])) as Record<number, GrantStatusName>;

/** The name of a checkGrant verdict (as ethers returns it, a bigint), undefined for a code this build does not know. */
export function grantStatusName(code: bigint | number): GrantStatusName | undefined {
  return GRANT_STATUS_NAMES[Number(code)];
}

/** Highest sensor code a ConsentRegistry sensor mask (uint16, bit c = code c, bit 0 unused) can hold. */
export const MAX_MASK_SENSOR_CODE = 15;

/**
 * The ConsentRegistry sensor mask of a set of sensor codes (firmware-proto/catalogue.ts):
 * bit c set for code c.
 * @throws TypeError for an empty set, or a code that is not an integer in 1..15.
 * @example sensorMaskOf([1, 2]) // 0b110 = 6: heart_rate and spo2
 */
export function sensorMaskOf(codes: Iterable<number>): number {
  let mask = 0;
  for (const c of codes) {
    if (!Number.isInteger(c) || c < 1 || c > MAX_MASK_SENSOR_CODE)
      throw new TypeError(`sensor code must be an integer in 1..${MAX_MASK_SENSOR_CODE}, got ${c}`);
    mask |= 1 << c;
  }
  if (mask === 0) throw new TypeError('a sensor mask needs at least one sensor code');
  return mask;
}

/** The sensor codes of a ConsentRegistry sensor mask, ascending. */
export function sensorCodesOf(mask: bigint | number): number[] {
  const m = Number(mask);
  const out: number[] = [];
  for (let c = 1; c <= MAX_MASK_SENSOR_CODE; c++) if ((m >> c) & 1) out.push(c);
  return out;
}

export const deviceRegistryInterface = new Interface(deviceRegistryAbi);
export const anchorRegistryInterface = new Interface(anchorRegistryAbi);
export const consentRegistryInterface = new Interface(consentRegistryAbi);

export function deviceRegistryAt(address: string, runner: ContractRunner | null = null): DeviceRegistryContract {
  return new Contract(address, deviceRegistryInterface, runner) as unknown as DeviceRegistryContract;
}

export function anchorRegistryAt(address: string, runner: ContractRunner | null = null): AnchorRegistryContract {
  return new Contract(address, anchorRegistryInterface, runner) as unknown as AnchorRegistryContract;
}

export function consentRegistryAt(address: string, runner: ContractRunner | null = null): ConsentRegistryContract {
  return new Contract(address, consentRegistryInterface, runner) as unknown as ConsentRegistryContract;
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
