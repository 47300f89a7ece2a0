/**
 * The access proof bundle (docs/proof-format.md, "Access proof bundle"; docs/consent.md): the
 * sibling of the frame proof bundle for one entry of the access log. Everything a patient (or
 * an auditor) needs to check, without trusting the gateway, that a disclosure was logged in a
 * batch the gateway anchored on chain as AnchorRegistry stream 1, and under which grant:
 *
 *   { "format": "vitalproof.access-proof", "version": 1,
 *     "entry":     { seq, kind, researcher, pseudonym, patientRef, grantId, metrics, fromMs, toMs,
 *                    count, firstAtMs, atMs, salt },
 *     "inclusion": { leafIndex, treeSize, auditPath, root },
 *     "anchor":    { chainId, contract, gateway, stream: 1, batchSeq, firstFrameTimeMs,
 *                    lastFrameTimeMs, txHash, blockNumber, blockHash },
 *     "consentRegistry": { chainId, address },
 *     "gatewayId", "generatedAtMs" }
 *
 * The leaf hash is absent on purpose: a verifier recomputes it from the entry
 * (SHA-256(0x00 ‖ encodeAccessEntry(entry)), gateway/consent/access-entry.ts). In the anchor,
 * first/lastFrameTimeMs keep the contract's names; for stream 1 they hold the earliest and
 * latest `atMs` of the batch's entries.
 *
 * Parsing is strict, as for frame bundles, and throws BundleFormatError with the field's path.
 */
import { STREAM } from '../chain/contracts.js';
import { accessEntryFromJson, accessEntryToJson, MAX_METRICS, type AccessEntry, type AccessEntryJson } from '../consent/access-entry.js';
import { HASH_SIZE } from '../merkle/rfc6962.js';
import { BUNDLE_VERSION, BundleFormatError, bundleFieldReaders as R, type BundleAnchor, type BundleInclusion } from './bundle.js';

export const ACCESS_BUNDLE_FORMAT = 'vitalproof.access-proof';

/** A version-1 access proof bundle, exactly as it is serialised. */
export interface AccessProofBundle {
  format: typeof ACCESS_BUNDLE_FORMAT;
  version: typeof BUNDLE_VERSION;
  entry: AccessEntryJson;
  inclusion: BundleInclusion;
  /** As in a frame bundle, with stream 1 (STREAM.ACCESS_LOG). */
  anchor: BundleAnchor;
  /** The ConsentRegistry that holds the entry's grant. */
  consentRegistry: { chainId: number; address: string };
  gatewayId: string;
  generatedAtMs: number;
}

export interface AccessBundleInput {
  entry: AccessEntry;
  leafIndex: number;
  treeSize: number;
  auditPath: readonly Uint8Array[];
  root: Uint8Array;
  anchor: {
    chainId: number;
    contract: string;
    gateway: string;
    batchSeq: bigint;
    firstFrameTimeMs: number;
    lastFrameTimeMs: number;
    txHash: string;
    blockNumber: number;
    blockHash: string;
  };
  consentRegistry: { chainId: number; address: string };
  gatewayId: string;
  generatedAtMs?: number;
}

const PSEUDONYM = /^[A-Za-z0-9._-]{3,64}$/;
const METRIC = /^[a-z][a-z0-9_]{0,31}$/;
const PATIENT_REF = /^0x[0-9a-f]{64}$/;
const SALT = /^[0-9a-f]{32}$/;
const MAX_GATEWAY_ID = 256;

/**
 * The bundle of one anchored access-log entry. Cheap and synchronous; it checks nothing on chain.
 * @throws BundleFormatError when an input cannot go in a version-1 bundle.
 */
export function buildAccessBundle(input: AccessBundleInput): AccessProofBundle {
  const hex = (b: Uint8Array, at: string): string => {
    if (!(b instanceof Uint8Array) || b.length !== HASH_SIZE) throw new BundleFormatError('BAD_VALUE', at, `must be ${HASH_SIZE} bytes`);
    return `0x${Buffer.from(b).toString('hex')}`;
  };
  let entry: AccessEntryJson;
  try {
    entry = accessEntryToJson(input.entry);
    accessEntryFromJson(entry);
  } catch (e) {
    throw new BundleFormatError('BAD_VALUE', 'entry', (e as Error).message);
  }
  const a = input.anchor;
  const bundle: AccessProofBundle = {
    format: ACCESS_BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    entry,
    inclusion: {
      leafIndex: input.leafIndex,
      treeSize: input.treeSize,
      auditPath: input.auditPath.map((h, i) => hex(h, `inclusion.auditPath[${i}]`)),
      root: hex(input.root, 'inclusion.root'),
    },
    anchor: {
      chainId: a.chainId,
      contract: a.contract,
      gateway: a.gateway,
      stream: STREAM.ACCESS_LOG,
      batchSeq: a.batchSeq.toString(),
      firstFrameTimeMs: a.firstFrameTimeMs,
      lastFrameTimeMs: a.lastFrameTimeMs,
      txHash: a.txHash.toLowerCase(),
      blockNumber: a.blockNumber,
      blockHash: a.blockHash.toLowerCase(),
    },
    consentRegistry: { chainId: input.consentRegistry.chainId, address: input.consentRegistry.address },
    gatewayId: input.gatewayId,
    generatedAtMs: input.generatedAtMs ?? Date.now(),
  };
  return parseAccessBundle(bundle);
}

/**
 * Reads one version-1 access proof bundle from a parsed JSON value, strictly; returns a fresh,
 * normalised copy (addresses checksummed).
 * @throws BundleFormatError with the code and path of the first wrong field.
 */
export function parseAccessBundle(json: unknown, at = ''): AccessProofBundle {
  const o = R.object(json, at);
  if (o['format'] !== ACCESS_BUNDLE_FORMAT)
    throw new BundleFormatError('UNKNOWN_FORMAT', R.join(at, 'format'), `expected "${ACCESS_BUNDLE_FORMAT}", got ${R.show(o['format'])}`);
  R.onlyFields(o, at, ['format', 'version', 'entry', 'inclusion', 'anchor', 'consentRegistry', 'gatewayId', 'generatedAtMs']);
  R.version(o, at);

  const eAt = R.join(at, 'entry');
  const e = R.object(R.field(o, at, 'entry'), eAt);
  R.onlyFields(e, eAt, ['seq', 'kind', 'researcher', 'pseudonym', 'patientRef', 'grantId', 'metrics', 'fromMs', 'toMs', 'count', 'firstAtMs', 'atMs', 'salt']);
  const kind = R.string(e, eAt, 'kind');
  if (kind !== 'live' && kind !== 'export') throw new BundleFormatError('BAD_VALUE', R.join(eAt, 'kind'), `must be "live" or "export", got ${R.show(kind)}`);
  const metricsValue = R.field(e, eAt, 'metrics');
  if (!Array.isArray(metricsValue))
    throw new BundleFormatError('WRONG_TYPE', R.join(eAt, 'metrics'), `must be an array of sensor names, got ${R.show(metricsValue)}`);
  if (metricsValue.length < 1 || metricsValue.length > MAX_METRICS)
    throw new BundleFormatError('BAD_VALUE', R.join(eAt, 'metrics'), `must hold 1 to ${MAX_METRICS} names, got ${metricsValue.length}`);
  const metrics = metricsValue.map((m: unknown, i) => {
    if (typeof m !== 'string' || !METRIC.test(m))
      throw new BundleFormatError('BAD_VALUE', `${R.join(eAt, 'metrics')}[${i}]`, `must be a sensor name [a-z][a-z0-9_]*, got ${R.show(m)}`);
    return m;
  });
  const entry: AccessEntryJson = {
    seq: R.uint64String(e, eAt, 'seq'),
    kind,
    researcher: R.address(e, eAt, 'researcher'),
    pseudonym: R.pattern(e, eAt, 'pseudonym', PSEUDONYM, 'a pseudonym of 3-64 characters [A-Za-z0-9._-]'),
    patientRef: R.pattern(e, eAt, 'patientRef', PATIENT_REF, '"0x" and 64 lowercase hex digits'),
    grantId: R.uint64String(e, eAt, 'grantId'),
    metrics,
    fromMs: R.safeUint(e, eAt, 'fromMs'),
    toMs: R.safeUint(e, eAt, 'toMs'),
    count: R.safeUint(e, eAt, 'count'),
    firstAtMs: R.safeUint(e, eAt, 'firstAtMs'),
    atMs: R.safeUint(e, eAt, 'atMs'),
    salt: R.pattern(e, eAt, 'salt', SALT, '32 lowercase hex digits (16 bytes)'),
  };
  try {
    accessEntryFromJson(entry); // the rules of the encoding: order, ranges, sorted metrics
  } catch (err) {
    throw new BundleFormatError('BAD_VALUE', eAt, (err as Error).message);
  }

  const iAt = R.join(at, 'inclusion');
  const inc = R.object(R.field(o, at, 'inclusion'), iAt);
  R.onlyFields(inc, iAt, ['leafIndex', 'treeSize', 'auditPath', 'root']);
  const pathValue = R.field(inc, iAt, 'auditPath');
  if (!Array.isArray(pathValue)) throw new BundleFormatError('WRONG_TYPE', R.join(iAt, 'auditPath'), `must be an array of hashes, got ${R.show(pathValue)}`);
  if (pathValue.length > 64)
    throw new BundleFormatError('BAD_VALUE', R.join(iAt, 'auditPath'), `has ${pathValue.length} hashes; no RFC 9162 proof has more than 64`);
  const inclusion: BundleInclusion = {
    leafIndex: R.safeUint(inc, iAt, 'leafIndex'),
    treeSize: R.safeUint(inc, iAt, 'treeSize'),
    auditPath: pathValue.map((h: unknown, i) => R.hash32Value(h, `${R.join(iAt, 'auditPath')}[${i}]`)),
    root: R.hash32(inc, iAt, 'root'),
  };

  const aAt = R.join(at, 'anchor');
  const a = R.object(R.field(o, at, 'anchor'), aAt);
  R.onlyFields(a, aAt, ['chainId', 'contract', 'gateway', 'stream', 'batchSeq', 'firstFrameTimeMs', 'lastFrameTimeMs', 'txHash', 'blockNumber', 'blockHash']);
  const stream = R.safeUint(a, aAt, 'stream');
  if (stream !== STREAM.ACCESS_LOG)
    throw new BundleFormatError(
      'BAD_VALUE',
      R.join(aAt, 'stream'),
      `an access-log entry is anchored in stream ${STREAM.ACCESS_LOG} (STREAM.ACCESS_LOG), got ${stream}`,
    );
  const anchor: BundleAnchor = {
    chainId: R.chainId(a, aAt),
    contract: R.address(a, aAt, 'contract'),
    gateway: R.address(a, aAt, 'gateway'),
    stream,
    batchSeq: R.uint64String(a, aAt, 'batchSeq'),
    firstFrameTimeMs: R.safeUint(a, aAt, 'firstFrameTimeMs'),
    lastFrameTimeMs: R.safeUint(a, aAt, 'lastFrameTimeMs'),
    txHash: R.hash32(a, aAt, 'txHash'),
    blockNumber: R.safeUint(a, aAt, 'blockNumber'),
    blockHash: R.hash32(a, aAt, 'blockHash'),
  };

  const cAt = R.join(at, 'consentRegistry');
  const c = R.object(R.field(o, at, 'consentRegistry'), cAt);
  R.onlyFields(c, cAt, ['chainId', 'address']);
  const consentRegistry = { chainId: R.chainId(c, cAt), address: R.address(c, cAt, 'address') };

  const gatewayId = R.string(o, at, 'gatewayId');
  if (gatewayId.length === 0 || gatewayId.length > MAX_GATEWAY_ID)
    throw new BundleFormatError('BAD_VALUE', R.join(at, 'gatewayId'), `must be 1 to ${MAX_GATEWAY_ID} characters, got ${gatewayId.length}`);
  return {
    format: ACCESS_BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    entry,
    inclusion,
    anchor,
    consentRegistry,
    gatewayId,
    generatedAtMs: R.safeUint(o, at, 'generatedAtMs'),
  };
}
