/**
 * Argument checks shared by the Merkle modules. They throw TypeError: a wrong argument
 * type is a bug in the caller. Verdicts on untrusted data (a proof, a hash of the wrong
 * length inside a proof) are not decided here; see verify.ts.
 */

/** The largest value of an RFC 9162 uint64 (leaf_index, tree_size). */
export const UINT64_MAX = (1n << 64n) - 1n;

/** A short description of a value for TypeError messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  if (typeof v === 'number' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  return typeof v;
}

/**
 * @throws TypeError unless `v` is a Uint8Array (a Buffer is one) of `length` bytes when given.
 */
export function assertBytes(name: string, v: unknown, length?: number): asserts v is Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array, got ${describe(v)}`);
  if (length !== undefined && v.length !== length) {
    throw new TypeError(`${name} must be ${length} bytes, got ${v.length}`);
  }
}

/**
 * Reads an RFC 9162 uint64: a non-negative safe-integer number, or a bigint in [0, 2^64).
 * Bigints let verifiers take any index or size a proof may carry (2^64 - 1 included)
 * without the silent rounding of numbers above 2^53.
 * @throws TypeError for anything else (negative, fractional, unsafe number, NaN, other types).
 */
export function toUint64(name: string, v: unknown): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > UINT64_MAX) throw new TypeError(`${name} must be a uint64, got ${v}`);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new TypeError(`${name} must be a non-negative safe integer or a bigint, got ${v}`);
    }
    return BigInt(v);
  }
  throw new TypeError(`${name} must be a number or a bigint, got ${describe(v)}`);
}
