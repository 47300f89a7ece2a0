/**
 * One entry of the access log (a disclosure of a patient's data to a researcher), and its
 * canonical encoding: the bytes whose RFC 9162 leaf hash, SHA-256(0x00 ‖ encoding), goes into
 * the access log's Merkle batches (docs/consent.md, "Leaf encoding"). No I/O here.
 *
 * Encoding, version 1 (all integers unsigned big-endian):
 *
 *   tag         24 bytes   ASCII "VitalProof/access-log/v1" (domain separation from frames)
 *   seq         u64        the entry's sequence number in the log, from 1
 *   kind        u8         1 live, 2 export
 *   researcher  20 bytes   the researcher's address
 *   pseudonym   u8 n, n bytes ASCII (3..64 of [A-Za-z0-9._-])
 *   patientRef  32 bytes
 *   grantId     u64
 *   metrics     u8 m (1..16), then m × (u8 n, n bytes ASCII), names strictly ascending
 *   fromMs      u64        first reading's device time, Unix ms
 *   toMs        u64        last reading's device time, Unix ms (≥ fromMs)
 *   count       u64        readings (samples) disclosed, ≥ 1
 *   firstAtMs   u64        gateway time of the first delivery, Unix ms
 *   atMs        u64        gateway time of the last delivery (export: its end), ≥ firstAtMs
 *   salt        16 bytes   random, per entry
 *
 * WARNING: the salt is what keeps a bundle from leaking other patients' entries. A bundle
 * carries the hashes of neighbouring leaves (its audit path); without a secret salt per entry,
 * anyone could confirm a guess about a neighbour (researcher, patientRef, grant and times are
 * all public or guessable) by hashing it. Never drop it, never derive it from the entry.
 */
import { getAddress, isAddress } from 'ethers';
import { hashLeaf } from '../merkle/rfc6962.js';
import { PSEUDONYM } from '../registry/registry.js';

export const ACCESS_LEAF_TAG = 'VitalProof/access-log/v1';
export type AccessKind = 'live' | 'export';
export const ACCESS_KIND_CODES: Readonly<Record<AccessKind, number>> = { live: 1, export: 2 };
export const MAX_METRICS = 16;
/** A metric (sensor) name as the catalogue spells them. */
export const METRIC_NAME = /^[a-z][a-z0-9_]{0,31}$/;
const UINT64_MAX = (1n << 64n) - 1n;
const PATIENT_REF = /^0x[0-9a-f]{64}$/;
const SALT = /^[0-9a-f]{32}$/;

/** What a transport reports: one disclosure, before the log gives it a sequence number and a salt. */
export interface AccessRecord {
  kind: AccessKind;
  /** The researcher's address (any letter case; stored checksummed). */
  researcher: string;
  /** The patient's pseudonym (stays on the gateway: only Merkle roots go on chain). */
  pseudonym: string;
  /** 0x + 64 hex digits: the patientRef the grant names. */
  patientRef: string;
  /** The grant that allowed the disclosure (ConsentView.decide's grantId). */
  grantId: bigint;
  /** Sensor names disclosed, e.g. ['heart_rate']; any order here, stored sorted and unique. */
  metrics: readonly string[];
  /** Device times of the first and last reading disclosed, Unix ms, inclusive. */
  fromMs: number;
  toMs: number;
  /** Readings (samples) disclosed. */
  count: number;
  /** Gateway times of the first and last delivery (an export: its start and end), Unix ms. */
  firstAtMs: number;
  atMs: number;
}

/** An entry of the log. */
export interface AccessEntry extends AccessRecord {
  seq: bigint;
  researcher: string;
  patientRef: string;
  metrics: string[];
  /** 32 lowercase hex digits (16 random bytes). */
  salt: string;
}

/**
 * The record in canonical form (researcher checksummed, patientRef lowercase, metrics sorted
 * and unique), or a TypeError naming what is wrong.
 * @throws TypeError
 */
export function normaliseAccessRecord(r: AccessRecord): AccessRecord & { researcher: string; patientRef: string; metrics: string[] } {
  if (typeof r !== 'object' || r === null) throw new TypeError('access record must be an object');
  if (r.kind !== 'live' && r.kind !== 'export') throw new TypeError(`kind must be live or export, got ${String(r.kind)}`);
  if (typeof r.researcher !== 'string' || !isAddress(r.researcher)) throw new TypeError(`researcher must be an Ethereum address, got ${String(r.researcher)}`);
  if (typeof r.pseudonym !== 'string' || !PSEUDONYM.test(r.pseudonym))
    throw new TypeError(`pseudonym must be 3-64 characters [A-Za-z0-9._-], got ${String(r.pseudonym)}`);
  const ref = typeof r.patientRef === 'string' ? r.patientRef.toLowerCase() : '';
  if (!PATIENT_REF.test(ref)) throw new TypeError(`patientRef must be 0x and 64 hex digits, got ${String(r.patientRef)}`);
  if (typeof r.grantId !== 'bigint' || r.grantId < 1n || r.grantId > UINT64_MAX)
    throw new TypeError(`grantId must be a uint64 bigint ≥ 1, got ${String(r.grantId)}`);
  if (!Array.isArray(r.metrics)) throw new TypeError('metrics must be an array of sensor names');
  const metrics = [...new Set(r.metrics)].sort();
  if (metrics.length < 1 || metrics.length > MAX_METRICS || !metrics.every((m) => typeof m === 'string' && METRIC_NAME.test(m))) {
    throw new TypeError(`metrics must be 1-${MAX_METRICS} sensor names [a-z][a-z0-9_]*, got ${JSON.stringify(r.metrics)}`);
  }
  for (const k of ['fromMs', 'toMs', 'firstAtMs', 'atMs', 'count'] as const) {
    if (!Number.isSafeInteger(r[k]) || r[k] < 0) throw new TypeError(`${k} must be a non-negative safe integer, got ${r[k]}`);
  }
  if (r.fromMs > r.toMs) throw new TypeError(`fromMs ${r.fromMs} is after toMs ${r.toMs}`);
  if (r.firstAtMs > r.atMs) throw new TypeError(`firstAtMs ${r.firstAtMs} is after atMs ${r.atMs}`);
  if (r.count < 1) throw new TypeError('count must be at least 1: a disclosure of nothing is not logged');
  return {
    kind: r.kind,
    researcher: getAddress(r.researcher),
    pseudonym: r.pseudonym,
    patientRef: ref,
    grantId: r.grantId,
    metrics,
    fromMs: r.fromMs,
    toMs: r.toMs,
    count: r.count,
    firstAtMs: r.firstAtMs,
    atMs: r.atMs,
  };
}

/**
 * Checks a whole entry (a normalised record, seq ≥ 1, a 16-byte hex salt).
 * @throws TypeError naming the first wrong field.
 */
export function checkAccessEntry(e: AccessEntry): AccessEntry {
  const n = normaliseAccessRecord(e);
  if (n.researcher !== e.researcher) throw new TypeError(`researcher must be EIP-55 checksummed (${n.researcher})`);
  if (n.patientRef !== e.patientRef) throw new TypeError('patientRef must be lowercase hex');
  if (n.metrics.join(',') !== e.metrics.join(',')) throw new TypeError('metrics must be sorted ascending and unique');
  if (typeof e.seq !== 'bigint' || e.seq < 1n || e.seq > UINT64_MAX) throw new TypeError(`seq must be a uint64 bigint ≥ 1, got ${String(e.seq)}`);
  if (typeof e.salt !== 'string' || !SALT.test(e.salt)) throw new TypeError('salt must be 32 lowercase hex digits');
  return e;
}

/**
 * The canonical encoding of an entry (the module comment has the layout).
 * @throws TypeError for an entry that is not valid (checkAccessEntry).
 */
export function encodeAccessEntry(e: AccessEntry): Buffer {
  checkAccessEntry(e);
  const parts: Buffer[] = [
    Buffer.from(ACCESS_LEAF_TAG, 'ascii'),
    u64(e.seq),
    Buffer.from([ACCESS_KIND_CODES[e.kind]]),
    Buffer.from(e.researcher.slice(2), 'hex'),
    str(e.pseudonym),
    Buffer.from(e.patientRef.slice(2), 'hex'),
    u64(e.grantId),
    Buffer.from([e.metrics.length]),
  ];
  for (const m of e.metrics) parts.push(str(m));
  parts.push(u64(e.fromMs), u64(e.toMs), u64(e.count), u64(e.firstAtMs), u64(e.atMs), Buffer.from(e.salt, 'hex'));
  return Buffer.concat(parts);
}

/** SHA-256(0x00 ‖ encodeAccessEntry(e)): the entry's RFC 9162 leaf hash. @throws TypeError for an invalid entry. */
export function accessLeafHash(e: AccessEntry): Buffer {
  return hashLeaf(encodeAccessEntry(e));
}

/** The JSON form of an entry (bundles, reports): uint64 values as decimal strings. */
export interface AccessEntryJson {
  seq: string;
  kind: AccessKind;
  researcher: string;
  pseudonym: string;
  patientRef: string;
  grantId: string;
  metrics: string[];
  fromMs: number;
  toMs: number;
  count: number;
  firstAtMs: number;
  atMs: number;
  salt: string;
}

export function accessEntryToJson(e: AccessEntry): AccessEntryJson {
  return {
    seq: e.seq.toString(),
    kind: e.kind,
    researcher: e.researcher,
    pseudonym: e.pseudonym,
    patientRef: e.patientRef,
    grantId: e.grantId.toString(),
    metrics: [...e.metrics],
    fromMs: e.fromMs,
    toMs: e.toMs,
    count: e.count,
    firstAtMs: e.firstAtMs,
    atMs: e.atMs,
    salt: e.salt,
  };
}

/** @throws TypeError when the JSON form is not a valid entry. */
export function accessEntryFromJson(j: AccessEntryJson): AccessEntry {
  const dec = (name: string, v: unknown): bigint => {
    if (typeof v !== 'string' || !/^(0|[1-9][0-9]*)$/.test(v)) throw new TypeError(`${name} must be a decimal string`);
    return BigInt(v);
  };
  return checkAccessEntry({ ...j, seq: dec('seq', j.seq), grantId: dec('grantId', j.grantId), metrics: Array.isArray(j.metrics) ? [...j.metrics] : j.metrics });
}

function u64(v: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'ascii');
  return Buffer.concat([Buffer.from([b.length]), b]);
}
