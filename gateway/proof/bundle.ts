/**
 * The proof bundle (docs/proof-format.md, "Proof bundle"): everything a verifier needs to
 * check, without trusting the gateway, that one signed frame is in a batch anchored on chain.
 * Version 1 is a JSON object:
 *
 *   { "format": "vitalproof.proof-bundle", "version": 1,
 *     "frame":     { raw (base64 of the exact signed bytes), deviceId, seq, timestampMs, sensor },
 *     "device":    { publicKey, registry: { chainId, address, deviceId (bytes8) } },
 *     "inclusion": { leafIndex, treeSize, auditPath, root },
 *     "anchor":    { chainId, contract, gateway, stream, batchSeq, firstFrameTimeMs,
 *                    lastFrameTimeMs, txHash, blockNumber, blockHash },
 *     "gatewayId", "generatedAtMs" }
 *
 * The leaf hash is deliberately absent: a verifier recomputes it as SHA-256(0x00 ‖ raw), so a
 * bundle cannot pair a frame with someone else's leaf. `frame.deviceId/seq/timestampMs/sensor`
 * and `device.registry.deviceId` are convenience copies for people and indexes; the verifier
 * checks them against the decoded raw frame (gateway/proof/verify.ts).
 *
 * This module only knows the format. Parsing is strict and throws BundleFormatError (a
 * TypeError with a code and the path of the offending field): a bundle that does not parse is
 * not a proof of anything, so there is no verdict to give about it.
 */
import { getAddress } from 'ethers';
import { decodeFrame } from '../../firmware-proto/frame.js';
import { isError, type Remedies } from '../../firmware-proto/coded-error.js';
import { ProtocolError } from '../../firmware-proto/reasons.js';
import { HASH_SIZE } from '../merkle/rfc6962.js';
import { STREAM } from '../chain/contracts.js';
import { textOf } from '../util/text.js';

/** `format` of a single bundle. */
export const BUNDLE_FORMAT = 'vitalproof.proof-bundle';
/** `format` of a collection of bundles (exports). */
export const BUNDLES_FORMAT = 'vitalproof.proof-bundles';
/** The only version this code reads and writes. A new field means a new version. */
export const BUNDLE_VERSION = 1;

/** The closed set of reasons a JSON value is not a version-1 bundle (or collection). */
export const BUNDLE_FORMAT_ERRORS = {
  NOT_AN_OBJECT: 'the value is not a JSON object',
  UNKNOWN_FORMAT: `"format" is not "${BUNDLE_FORMAT}" (or "${BUNDLES_FORMAT}" for a collection)`,
  UNSUPPORTED_VERSION: `"version" is not ${BUNDLE_VERSION}, the only version this verifier reads`,
  MISSING_FIELD: 'a required field is missing',
  UNKNOWN_FIELD: 'a field that version 1 does not define is present',
  WRONG_TYPE: 'a field has the wrong JSON type',
  BAD_VALUE: 'a field has the right type but not an allowed value (pattern, range, encoding)',
} as const;

export type BundleFormatCode = keyof typeof BUNDLE_FORMAT_ERRORS;

/** What to do about each code: docs/proof-format.md: the field names the JSON path. */
export const BUNDLE_FORMAT_ERROR_REMEDIES: Remedies<BundleFormatCode> = {
  NOT_AN_OBJECT: 'Give the file of a proof bundle (or a collection of them), as the gateway exported it.',
  UNKNOWN_FORMAT: 'Give a `vitalproof.proof-bundle` (or `vitalproof.proof-bundles`); an access proof is checked by `vitalproof research verify`.',
  UNSUPPORTED_VERSION: 'Use a verifier that reads this version.',
  MISSING_FIELD: 'The bundle was cut or edited: export it again from the gateway.',
  UNKNOWN_FIELD: 'The bundle was edited, or made by a newer gateway: export it again, or use a verifier of that version.',
  WRONG_TYPE: 'The bundle was edited (a number where a string goes, say): export it again.',
  BAD_VALUE: 'The bundle was edited, or is not canonical: export it again.',
};

/**
 * A value that is not a version-1 proof bundle. `field` is the JSON path of the offending
 * field (`inclusion.auditPath[2]`, `bundles[3].anchor.txHash`; `''` for the value itself).
 */
export class BundleFormatError extends TypeError {
  // Not a CodedError: docs/proof-format.md promises verifiers a TypeError, and a class has one
  // base. It keeps CodedError's shape (code, `CODE: ...` message) and its own isBundleFormatError.
  readonly code: BundleFormatCode;
  readonly field: string;
  constructor(code: BundleFormatCode, field: string, detail: string) {
    super(`${code}: ${field || 'bundle'}: ${detail}`);
    this.name = 'BundleFormatError';
    this.code = code;
    this.field = field;
  }
}

export function isBundleFormatError(e: unknown, code?: BundleFormatCode): e is BundleFormatError {
  return e instanceof BundleFormatError && (code === undefined || e.code === code);
}

/** The frame: its exact signed bytes, and copies of header fields for people and indexes. */
export interface BundleFrame {
  /** Standard base64 (RFC 4648 §4, padded) of the exact signed frame bytes, body ‖ signature. */
  raw: string;
  /** Copy: 16 lowercase hex digits (PROTOCOL.md §2.1). */
  deviceId: string;
  /** Copy: sequence number, decimal string (uint64 does not fit a JSON number). */
  seq: string;
  /** Copy: device time of the first sample, Unix ms. */
  timestampMs: number;
  /** Copy: catalogue name of the sensor (firmware-proto/catalogue.ts), e.g. "heart_rate". */
  sensor: string;
}

export interface BundleDevice {
  /** The device's Ed25519 public key, 64 lowercase hex digits (no 0x). */
  publicKey: string;
  /** Where the device is enrolled. */
  registry: {
    chainId: number;
    /** DeviceRegistry address, EIP-55 checksummed after parsing. */
    address: string;
    /** Copy: the frame's device id as the contract's bytes8, "0x" + 16 lowercase hex digits. */
    deviceId: string;
  };
}

export interface BundleInclusion {
  /** RFC 9162 leaf_index, 0-based position of the frame in its batch. */
  leafIndex: number;
  /** RFC 9162 tree_size as the bundle claims it; the verifier takes it from the chain too. */
  treeSize: number;
  /** RFC 9162 inclusion_path, sibling hashes from the leaf up, each "0x" + 64 lowercase hex. */
  auditPath: string[];
  /** Merkle root of the batch, "0x" + 64 lowercase hex. */
  root: string;
}

export interface BundleAnchor {
  chainId: number;
  /** AnchorRegistry address, EIP-55 checksummed after parsing. */
  contract: string;
  /** The gateway's account that anchored the batch, EIP-55 checksummed after parsing. */
  gateway: string;
  /** AnchorRegistry stream: always 0 (STREAM.FRAMES) for a frame. */
  stream: number;
  /** Batch sequence of (gateway, stream), from 1; decimal string (uint64). */
  batchSeq: string;
  firstFrameTimeMs: number;
  lastFrameTimeMs: number;
  /** The anchoring transaction, block number and block hash, "0x" + 64 lowercase hex. */
  txHash: string;
  blockNumber: number;
  blockHash: string;
}

/** A version-1 proof bundle, exactly as it is serialised. */
export interface ProofBundle {
  format: typeof BUNDLE_FORMAT;
  version: typeof BUNDLE_VERSION;
  frame: BundleFrame;
  device: BundleDevice;
  inclusion: BundleInclusion;
  anchor: BundleAnchor;
  /** The gateway's own label (configuration `gatewayId`); informative only. */
  gatewayId: string;
  /** When the bundle was made, Unix ms; informative only. */
  generatedAtMs: number;
}

/** Many bundles in one document (an export). */
export interface ProofBundles {
  format: typeof BUNDLES_FORMAT;
  version: typeof BUNDLE_VERSION;
  bundles: ProofBundle[];
}

/** What the gateway knows about an accepted, anchored frame; see buildBundle. */
export interface BundleInput {
  /** The exact signed frame bytes (body ‖ signature). */
  raw: Uint8Array;
  /** The device's enrolled 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
  deviceRegistry: { chainId: number; address: string };
  leafIndex: number;
  treeSize: number;
  auditPath: readonly Uint8Array[];
  root: Uint8Array;
  anchor: {
    chainId: number;
    contract: string;
    gateway: string;
    stream: number;
    batchSeq: bigint;
    firstFrameTimeMs: number;
    lastFrameTimeMs: number;
    txHash: string;
    blockNumber: number;
    blockHash: string;
  };
  gatewayId: string;
  /** Default: Date.now(). */
  generatedAtMs?: number;
}

const UINT64_MAX = (1n << 64n) - 1n;
const DEVICE_ID = /^[0-9a-f]{16}$/;
const BYTES8 = /^0x[0-9a-f]{16}$/;
const PUBLIC_KEY = /^[0-9a-f]{64}$/;
const HASH32 = new RegExp(`^0x[0-9a-f]{${2 * HASH_SIZE}}$`);
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const DECIMAL = /^(0|[1-9][0-9]*)$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const SENSOR_NAME = /^[a-z][a-z0-9_]*$/;
const MAX_GATEWAY_ID = 256;

/**
 * Makes the bundle of one accepted frame. Synchronous and cheap (a frame decode, a few hex
 * conversions and the same checks parseBundle runs): the gateway's HTTP API and the export
 * call it per frame. It does not check the signature, the proof or the chain: verifyBundle does.
 * @throws TypeError (a BundleFormatError naming the field) when an input cannot go in a
 *   version-1 bundle: `raw` that does not decode as a v1 frame, a public key that is not 32
 *   bytes, a hash that is not 32 bytes, a malformed address, a number out of range.
 * @example
 * const bundle = buildBundle({ raw, publicKey, deviceRegistry: { chainId, address: record.deviceRegistry.address },
 *   leafIndex: 3, treeSize: tree.size, auditPath: tree.inclusionProof(3), root: tree.root(),
 *   anchor: { chainId, contract, gateway, stream: STREAM.FRAMES, batchSeq: 7n, firstFrameTimeMs,
 *             lastFrameTimeMs, txHash, blockNumber, blockHash }, gatewayId: 'ward-3' });
 * res.end(JSON.stringify(bundle));
 */
export function buildBundle(input: BundleInput): ProofBundle {
  if (typeof input !== 'object' || input === null) throw new BundleFormatError('NOT_AN_OBJECT', '', 'buildBundle needs an input object');
  const raw = bytesArg('raw', input.raw);
  let frame;
  try {
    frame = decodeFrame(raw);
  } catch (e) {
    if (isError(e, ProtocolError)) throw new BundleFormatError('BAD_VALUE', 'frame.raw', `the bytes are not a v1 frame (${e.message})`);
    throw e;
  }
  if (frame.timestampMs > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new BundleFormatError('BAD_VALUE', 'frame.timestampMs', `frame timestamp ${frame.timestampMs} ms is above 2^53 - 1 and cannot be a JSON number`);
  }
  const publicKey = bytesArg('device.publicKey', input.publicKey, 32);
  const root = bytesArg('inclusion.root', input.root, HASH_SIZE);
  if (!Array.isArray(input.auditPath)) throw new BundleFormatError('WRONG_TYPE', 'inclusion.auditPath', 'must be an array of 32-byte Uint8Array');
  const auditPath = input.auditPath.map((h, i) => hex0x(bytesArg(`inclusion.auditPath[${i}]`, h, HASH_SIZE)));
  const a = input.anchor;
  if (typeof a !== 'object' || a === null) throw new BundleFormatError('WRONG_TYPE', 'anchor', 'must be an object');
  if (typeof a.batchSeq !== 'bigint') throw new BundleFormatError('WRONG_TYPE', 'anchor.batchSeq', 'must be a bigint');
  const reg = input.deviceRegistry;
  if (typeof reg !== 'object' || reg === null) throw new BundleFormatError('WRONG_TYPE', 'deviceRegistry', 'must be an object');
  const bundle: ProofBundle = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    frame: {
      raw: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64'),
      deviceId: frame.deviceId,
      seq: frame.seq.toString(),
      timestampMs: Number(frame.timestampMs),
      sensor: frame.spec.name,
    },
    device: {
      publicKey: Buffer.from(publicKey).toString('hex'),
      registry: { chainId: reg.chainId, address: reg.address, deviceId: `0x${frame.deviceId}` },
    },
    inclusion: { leafIndex: input.leafIndex, treeSize: input.treeSize, auditPath, root: hex0x(root) },
    anchor: {
      chainId: a.chainId,
      contract: a.contract,
      gateway: a.gateway,
      stream: a.stream,
      batchSeq: a.batchSeq.toString(),
      firstFrameTimeMs: a.firstFrameTimeMs,
      lastFrameTimeMs: a.lastFrameTimeMs,
      // Ethers and JSON-RPC give lowercase hashes; accept a caller's uppercase ones too.
      txHash: typeof a.txHash === 'string' ? a.txHash.toLowerCase() : a.txHash,
      blockNumber: a.blockNumber,
      blockHash: typeof a.blockHash === 'string' ? a.blockHash.toLowerCase() : a.blockHash,
    },
    gatewayId: input.gatewayId,
    generatedAtMs: input.generatedAtMs ?? Date.now(),
  };
  // The same rules as for a received bundle: never hand out what a verifier would refuse.
  return parseBundle(bundle);
}

/**
 * A collection document for many bundles (an export).
 * @example writeFileSync('export.json', JSON.stringify(bundleCollection(bundles), null, 2));
 */
export function bundleCollection(bundles: readonly ProofBundle[]): ProofBundles {
  return { format: BUNDLES_FORMAT, version: BUNDLE_VERSION, bundles: [...bundles] };
}

/**
 * Reads one version-1 bundle from a parsed JSON value, strictly: every field present with its
 * type and pattern, no other field. Returns a fresh, normalised copy (addresses EIP-55
 * checksummed; they are accepted in any letter case, since the checksum carries no
 * meaning for the proof).
 * @throws BundleFormatError (a TypeError) with the code and the path of the first wrong field.
 * @example
 * const bundle = parseBundle(JSON.parse(readFileSync('bundle.json', 'utf8')));
 */
export function parseBundle(json: unknown): ProofBundle {
  return readBundle(json, '');
}

/**
 * Reads either a single bundle or a collection (`"format": "vitalproof.proof-bundles"`) and
 * returns its bundles in order. A collection may be empty.
 * @throws BundleFormatError naming the field, e.g. `bundles[3].inclusion.root`.
 * @example
 * for (const b of parseBundles(JSON.parse(text))) console.log((await verifyBundle(b, { provider })).ok);
 */
export function parseBundles(json: unknown): ProofBundle[] {
  const o = object(json, '');
  if (o['format'] === BUNDLE_FORMAT) return [readBundle(json, '')];
  if (o['format'] !== BUNDLES_FORMAT) {
    throw new BundleFormatError('UNKNOWN_FORMAT', 'format', `expected "${BUNDLE_FORMAT}" or "${BUNDLES_FORMAT}", got ${show(o['format'])}`);
  }
  onlyFields(o, '', ['format', 'version', 'bundles']);
  version(o, '');
  const list = field(o, '', 'bundles');
  if (!Array.isArray(list)) throw new BundleFormatError('WRONG_TYPE', 'bundles', `must be an array, got ${show(list)}`);
  return list.map((b, i) => readBundle(b, `bundles[${i}]`));
}

function readBundle(json: unknown, at: string): ProofBundle {
  const o = object(json, at);
  if (o['format'] !== BUNDLE_FORMAT) {
    throw new BundleFormatError('UNKNOWN_FORMAT', join(at, 'format'), `expected "${BUNDLE_FORMAT}", got ${show(o['format'])}`);
  }
  onlyFields(o, at, ['format', 'version', 'frame', 'device', 'inclusion', 'anchor', 'gatewayId', 'generatedAtMs']);
  version(o, at);

  const fAt = join(at, 'frame');
  const f = object(field(o, at, 'frame'), fAt);
  onlyFields(f, fAt, ['raw', 'deviceId', 'seq', 'timestampMs', 'sensor']);
  const frame: BundleFrame = {
    raw: base64(f, fAt, 'raw'),
    deviceId: pattern(f, fAt, 'deviceId', DEVICE_ID, '16 lowercase hex digits'),
    seq: uint64String(f, fAt, 'seq'),
    timestampMs: safeUint(f, fAt, 'timestampMs'),
    sensor: pattern(f, fAt, 'sensor', SENSOR_NAME, 'a sensor catalogue name such as "heart_rate"'),
  };

  const dAt = join(at, 'device');
  const d = object(field(o, at, 'device'), dAt);
  onlyFields(d, dAt, ['publicKey', 'registry']);
  const rAt = join(dAt, 'registry');
  const r = object(field(d, dAt, 'registry'), rAt);
  onlyFields(r, rAt, ['chainId', 'address', 'deviceId']);
  const device: BundleDevice = {
    publicKey: pattern(d, dAt, 'publicKey', PUBLIC_KEY, '64 lowercase hex digits (32 bytes, no 0x)'),
    registry: {
      chainId: chainId(r, rAt),
      address: address(r, rAt, 'address'),
      deviceId: pattern(r, rAt, 'deviceId', BYTES8, '"0x" and 16 lowercase hex digits (bytes8)'),
    },
  };

  const iAt = join(at, 'inclusion');
  const inc = object(field(o, at, 'inclusion'), iAt);
  onlyFields(inc, iAt, ['leafIndex', 'treeSize', 'auditPath', 'root']);
  const pathValue = field(inc, iAt, 'auditPath');
  if (!Array.isArray(pathValue)) throw new BundleFormatError('WRONG_TYPE', join(iAt, 'auditPath'), `must be an array of hashes, got ${show(pathValue)}`);
  // 64 levels hold 2^64 leaves; RFC 9162 proofs are never longer.
  if (pathValue.length > 64)
    throw new BundleFormatError('BAD_VALUE', join(iAt, 'auditPath'), `has ${pathValue.length} hashes; no RFC 9162 proof has more than 64`);
  const inclusion: BundleInclusion = {
    leafIndex: safeUint(inc, iAt, 'leafIndex'),
    treeSize: safeUint(inc, iAt, 'treeSize'),
    auditPath: pathValue.map((h: unknown, i) => hash32Value(h, `${join(iAt, 'auditPath')}[${i}]`)),
    root: hash32(inc, iAt, 'root'),
  };

  const aAt = join(at, 'anchor');
  const a = object(field(o, at, 'anchor'), aAt);
  onlyFields(a, aAt, ['chainId', 'contract', 'gateway', 'stream', 'batchSeq', 'firstFrameTimeMs', 'lastFrameTimeMs', 'txHash', 'blockNumber', 'blockHash']);
  const stream = safeUint(a, aAt, 'stream');
  if (stream !== STREAM.FRAMES) {
    throw new BundleFormatError('BAD_VALUE', join(aAt, 'stream'), `a frame is anchored in stream ${STREAM.FRAMES} (STREAM.FRAMES), got ${stream}`);
  }
  const anchor: BundleAnchor = {
    chainId: chainId(a, aAt),
    contract: address(a, aAt, 'contract'),
    gateway: address(a, aAt, 'gateway'),
    stream,
    batchSeq: uint64String(a, aAt, 'batchSeq'),
    firstFrameTimeMs: safeUint(a, aAt, 'firstFrameTimeMs'),
    lastFrameTimeMs: safeUint(a, aAt, 'lastFrameTimeMs'),
    txHash: hash32(a, aAt, 'txHash'),
    blockNumber: safeUint(a, aAt, 'blockNumber'),
    blockHash: hash32(a, aAt, 'blockHash'),
  };

  const gatewayId = field(o, at, 'gatewayId');
  if (typeof gatewayId !== 'string') throw new BundleFormatError('WRONG_TYPE', join(at, 'gatewayId'), `must be a string, got ${show(gatewayId)}`);
  if (gatewayId.length === 0 || gatewayId.length > MAX_GATEWAY_ID) {
    throw new BundleFormatError('BAD_VALUE', join(at, 'gatewayId'), `must be 1 to ${MAX_GATEWAY_ID} characters, got ${gatewayId.length}`);
  }
  return {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    frame,
    device,
    inclusion,
    anchor,
    gatewayId,
    generatedAtMs: safeUint(o, at, 'generatedAtMs'),
  };
}

// ---- field readers: each names the path of what it refuses ----

function join(at: string, name: string): string {
  return at ? `${at}.${name}` : name;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  return `${typeof v} ${textOf(v)}`;
}

function object(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    if (at === '') throw new BundleFormatError('NOT_AN_OBJECT', at, `expected a JSON object, got ${show(v)}`);
    throw new BundleFormatError('WRONG_TYPE', at, `must be an object, got ${show(v)}`);
  }
  return v as Record<string, unknown>;
}

function onlyFields(o: Record<string, unknown>, at: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k))
      throw new BundleFormatError('UNKNOWN_FIELD', join(at, k), `version ${BUNDLE_VERSION} has no such field (allowed here: ${allowed.join(', ')})`);
  }
}

function version(o: Record<string, unknown>, at: string): void {
  const v = field(o, at, 'version');
  if (v !== BUNDLE_VERSION) throw new BundleFormatError('UNSUPPORTED_VERSION', join(at, 'version'), `expected ${BUNDLE_VERSION}, got ${show(v)}`);
}

function field(o: Record<string, unknown>, at: string, name: string): unknown {
  if (!Object.prototype.hasOwnProperty.call(o, name) || o[name] === undefined) {
    throw new BundleFormatError('MISSING_FIELD', join(at, name), 'is required');
  }
  return o[name];
}

function string(o: Record<string, unknown>, at: string, name: string): string {
  const v = field(o, at, name);
  if (typeof v !== 'string') throw new BundleFormatError('WRONG_TYPE', join(at, name), `must be a string, got ${show(v)}`);
  return v;
}

function pattern(o: Record<string, unknown>, at: string, name: string, re: RegExp, what: string): string {
  const v = string(o, at, name);
  if (!re.test(v)) throw new BundleFormatError('BAD_VALUE', join(at, name), `must be ${what}, got ${show(v)}`);
  return v;
}

function hash32Value(v: unknown, path: string): string {
  if (typeof v !== 'string') throw new BundleFormatError('WRONG_TYPE', path, `must be a string, got ${show(v)}`);
  if (!HASH32.test(v))
    throw new BundleFormatError('BAD_VALUE', path, `must be "0x" and ${2 * HASH_SIZE} lowercase hex digits (${HASH_SIZE} bytes), got ${show(v)}`);
  return v;
}

function hash32(o: Record<string, unknown>, at: string, name: string): string {
  return hash32Value(field(o, at, name), join(at, name));
}

function address(o: Record<string, unknown>, at: string, name: string): string {
  const v = pattern(o, at, name, ADDRESS, '"0x" and 40 hex digits (an EVM address)');
  return checksummed(v.toLowerCase());
}

/**
 * EIP-55 form of a lowercase address. Any letter case is accepted: lowercasing first makes
 * getAddress skip the checksum test. Memoised (a keccak256 each; a few addresses recur in
 * every bundle of a gateway), bounded so that it cannot grow without limit.
 */
const CHECKSUMMED = new Map<string, string>();
function checksummed(lower: string): string {
  let c = CHECKSUMMED.get(lower);
  if (c === undefined) {
    c = getAddress(lower);
    if (CHECKSUMMED.size >= 1024) CHECKSUMMED.clear();
    CHECKSUMMED.set(lower, c);
  }
  return c;
}

function safeUint(o: Record<string, unknown>, at: string, name: string): number {
  const v = field(o, at, name);
  if (typeof v !== 'number') throw new BundleFormatError('WRONG_TYPE', join(at, name), `must be a number, got ${show(v)}`);
  if (!Number.isSafeInteger(v) || v < 0) throw new BundleFormatError('BAD_VALUE', join(at, name), `must be an integer from 0 to 2^53 - 1, got ${v}`);
  return v;
}

function chainId(o: Record<string, unknown>, at: string): number {
  const v = safeUint(o, at, 'chainId');
  if (v === 0) throw new BundleFormatError('BAD_VALUE', join(at, 'chainId'), 'must be a positive chain id, got 0');
  return v;
}

function uint64String(o: Record<string, unknown>, at: string, name: string): string {
  const v = string(o, at, name);
  if (!DECIMAL.test(v) || BigInt(v) > UINT64_MAX) {
    throw new BundleFormatError('BAD_VALUE', join(at, name), `must be a decimal uint64 without leading zeros, as a string, got ${show(v)}`);
  }
  return v;
}

function base64(o: Record<string, unknown>, at: string, name: string): string {
  const v = string(o, at, name);
  // Canonical padded base64 only: one byte string, one spelling (Buffer.from would silently
  // skip stray characters and accept unpadded or URL-safe text).
  if (v.length === 0 || !BASE64.test(v) || Buffer.from(v, 'base64').toString('base64') !== v) {
    throw new BundleFormatError('BAD_VALUE', join(at, name), `must be non-empty canonical base64 (RFC 4648 §4, padded), got ${show(v)}`);
  }
  return v;
}

function bytesArg(path: string, v: unknown, length?: number): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new BundleFormatError('WRONG_TYPE', path, `must be a Uint8Array, got ${show(v)}`);
  if (length !== undefined && v.length !== length) throw new BundleFormatError('BAD_VALUE', path, `must be ${length} bytes, got ${v.length}`);
  return v;
}

function hex0x(b: Uint8Array): string {
  return `0x${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')}`;
}

/**
 * The strict field readers of this module, for sibling formats (gateway/proof/access-bundle.ts):
 * each throws BundleFormatError naming the JSON path of what it refuses.
 * @internal
 */
export const bundleFieldReaders = {
  join,
  show,
  object,
  onlyFields,
  version,
  field,
  string,
  pattern,
  hash32,
  hash32Value,
  address,
  safeUint,
  chainId,
  uint64String,
} as const;
