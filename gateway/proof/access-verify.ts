/**
 * Verifies an access proof bundle (./access-bundle.ts) without trusting the gateway. Three
 * checks, in this order (docs/proof-format.md, "Access proof bundle"):
 *
 *   inclusion  SHA-256(0x00 ‖ encodeAccessEntry(entry)) is leaf `leafIndex` of the `treeSize`-leaf
 *              tree with `root` (RFC 9162 §2.1.3.2), and the entry's atMs lies in the batch's window
 *   anchor     (chain) the batch is anchored in AnchorRegistry stream 1 with that root, tree size
 *              and window, by the transaction and block named (verify.ts's anchor check)
 *   grant      (chain) ConsentRegistry.getGrant(grantId) names the entry's patientRef and
 *              researcher, covers its metrics and its data time range, and was in force while
 *              the deliveries happened (within `clockToleranceMs`)
 *
 * Verdicts, not exceptions, as verifyBundle: only a bundle that does not parse throws.
 */
import { isError, type Provider } from 'ethers';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { consentRegistryAt, consentRegistryInterface, decodeRevert, type ConsentRegistryErrors } from '../chain/contracts.js';
import { accessEntryFromJson, accessLeafHash } from '../consent/access-entry.js';
import { verifyInclusion } from '../merkle/verify.js';
import { parseAccessBundle, type AccessProofBundle } from './access-bundle.js';
import { DEFAULT_TIMEOUT_MS, VerifyCache, verifyAnchorClaim, type CheckStatus, type VerdictCode } from './verify.js';

export const ACCESS_CHECK_NAMES = ['inclusion', 'anchor', 'grant'] as const;
export type AccessCheckName = (typeof ACCESS_CHECK_NAMES)[number];
export const ACCESS_ONLINE_CHECKS: readonly AccessCheckName[] = ['anchor', 'grant'];

/** Codes of the grant check, beside verify.ts's VERDICT_CODES (inclusion and anchor use those). */
export const GRANT_VERDICT_CODES = {
  GRANT_UNKNOWN: "the ConsentRegistry has no grant with the entry's grantId",
  GRANT_MISMATCH: 'the grant names another patientRef or researcher, or does not cover a metric or the data time range (detail.mismatches)',
  GRANT_NOT_IN_FORCE: 'the deliveries happened before the grant was made or after it was revoked or expired (beyond the clock tolerance)',
} as const;
export type GrantVerdictCode = keyof typeof GRANT_VERDICT_CODES;
export type AccessVerdictCode = VerdictCode | GrantVerdictCode;

export interface AccessCheckResult {
  check: AccessCheckName;
  status: CheckStatus;
  code?: AccessVerdictCode;
  message: string;
  detail?: Record<string, unknown>;
}

export interface AccessVerdict {
  ok: boolean;
  offline: boolean;
  /** seq, kind, researcher, pseudonym, grantId, batch: what the bundle claims. */
  subject: { seq: string; kind: string; researcher: string; pseudonym: string; grantId: string; batchSeq: string; leafIndex: number; treeSize: number };
  /** Always the three checks, in ACCESS_CHECK_NAMES order. */
  checks: AccessCheckResult[];
}

export interface AccessVerifyOptions {
  provider?: Provider;
  offline?: boolean;
  /** The hospital's deployment: chain id, AnchorRegistry and ConsentRegistry to hold the bundle to. */
  trusted?: { chainId?: number; anchorRegistry?: string; consentRegistry?: string };
  timeoutMs?: number;
  cache?: VerifyCache;
  /**
   * Slack allowed between the gateway's clock (firstAtMs, atMs) and block time (grantedAtMs,
   * revokedAtMs, expiresAtMs). Default 5,000 ms: the gateway cuts live delivery within 2 s of a
   * revoking block or an expiry, plus block-time granularity and clock skew.
   */
  clockToleranceMs?: number;
}

export const DEFAULT_CLOCK_TOLERANCE_MS = 5000;

/**
 * Verifies one access proof bundle.
 * @throws BundleFormatError when `bundle` is not a version-1 access proof bundle; TypeError for bad options.
 */
export async function verifyAccessBundle(bundle: AccessProofBundle, opts: AccessVerifyOptions = {}): Promise<AccessVerdict> {
  const b = parseAccessBundle(bundle);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new TypeError(`timeoutMs must be a positive integer, got ${String(opts.timeoutMs)}`);
  const tolerance = opts.clockToleranceMs ?? DEFAULT_CLOCK_TOLERANCE_MS;
  if (!Number.isSafeInteger(tolerance) || tolerance < 0)
    throw new TypeError(`clockToleranceMs must be a non-negative integer, got ${String(opts.clockToleranceMs)}`);
  const cache = opts.cache ?? new VerifyCache();
  const provider = opts.offline ? undefined : opts.provider;
  const checks: AccessCheckResult[] = [inclusionCheck(b)];
  if (provider) {
    const [anchor, grant] = await Promise.all([
      verifyAnchorClaim(b, { provider, cache, timeoutMs, ...(opts.trusted ? { trusted: opts.trusted } : {}) }),
      deadline(timeoutMs, () => grantCheck(b, provider, cache, opts.trusted, tolerance)),
    ]);
    checks.push(anchor as AccessCheckResult, grant);
  } else {
    const why = opts.offline ? 'offline verification asked for' : 'no chain provider given';
    checks.push(
      {
        check: 'anchor',
        status: 'skip',
        message: `not checked (${why}): that access-log batch ${b.anchor.batchSeq} of gateway ${b.anchor.gateway} is anchored on chain ${b.anchor.chainId} (stream 1) with this root and ${b.inclusion.treeSize} leaves`,
      },
      {
        check: 'grant',
        status: 'skip',
        message: `not checked (${why}): that grant ${b.entry.grantId} of ConsentRegistry ${b.consentRegistry.address} covers this disclosure`,
      },
    );
  }
  const failed = checks.some((c) => c.status === 'fail');
  const skipped = checks.filter((c) => c.status === 'skip');
  return {
    ok: !failed && (skipped.length === 0 || (opts.offline === true && skipped.every((c) => ACCESS_ONLINE_CHECKS.includes(c.check)))),
    offline: provider === undefined,
    subject: {
      seq: b.entry.seq,
      kind: b.entry.kind,
      researcher: b.entry.researcher,
      pseudonym: b.entry.pseudonym,
      grantId: b.entry.grantId,
      batchSeq: b.anchor.batchSeq,
      leafIndex: b.inclusion.leafIndex,
      treeSize: b.inclusion.treeSize,
    },
    checks,
  };
}

function inclusionCheck(b: AccessProofBundle): AccessCheckResult {
  const entry = accessEntryFromJson(b.entry);
  const leafHash = accessLeafHash(entry);
  const { leafIndex, treeSize, auditPath, root } = b.inclusion;
  const v = verifyInclusion({
    leafIndex,
    treeSize,
    leafHash,
    proof: auditPath.map((h) => Buffer.from(h.slice(2), 'hex')),
    root: Buffer.from(root.slice(2), 'hex'),
  });
  const lh = `0x${leafHash.toString('hex')}`;
  if (!v.ok) {
    if (v.code === 'BAD_HASH_LENGTH') throw new Error(`bug: parseAccessBundle let a hash of ${v.actualLength} bytes through (${v.field})`);
    const detail: Record<string, unknown> = { leafIndex, treeSize, leafHash: lh };
    if (v.code === 'ROOT_MISMATCH') Object.assign(detail, { expected: `0x${v.expected.toString('hex')}`, calculated: `0x${v.calculated.toString('hex')}` });
    if (v.code === 'PROOF_TOO_LONG' || v.code === 'PROOF_TOO_SHORT') Object.assign(detail, { expectedLength: v.expectedLength, actualLength: v.actualLength });
    return { check: 'inclusion', status: 'fail', code: v.code, message: `${v.message} (leaf hash of the entry ${lh})`, detail };
  }
  const { firstFrameTimeMs: first, lastFrameTimeMs: last } = b.anchor;
  if (entry.atMs < first || entry.atMs > last) {
    return {
      check: 'inclusion',
      status: 'fail',
      code: 'TIME_OUTSIDE_BATCH',
      message: `the entry's atMs ${iso(entry.atMs)} is outside the batch's window [${iso(first)}, ${iso(last)}]`,
      detail: { atMs: entry.atMs, firstFrameTimeMs: first, lastFrameTimeMs: last },
    };
  }
  return {
    check: 'inclusion',
    status: 'pass',
    message: `entry ${entry.seq} (leaf hash ${lh.slice(0, 18)}…) is leaf ${leafIndex} of the tree of ${treeSize} leaves with root ${root.slice(0, 18)}…; its time ${iso(entry.atMs)} is within the batch window`,
  };
}

async function grantCheck(
  b: AccessProofBundle,
  provider: Provider,
  cache: VerifyCache,
  trusted: AccessVerifyOptions['trusted'],
  tolerance: number,
): Promise<AccessCheckResult> {
  const fail = (code: AccessVerdictCode, message: string, detail?: Record<string, unknown>): AccessCheckResult => ({
    check: 'grant',
    status: 'fail',
    code,
    message,
    ...(detail ? { detail } : {}),
  });
  const reg = b.consentRegistry;
  if (trusted?.chainId !== undefined && reg.chainId !== trusted.chainId)
    return fail('WRONG_CHAIN', `the bundle's ConsentRegistry is on chain ${reg.chainId}, the trusted deployment is on chain ${trusted.chainId}`, {
      expected: trusted.chainId,
      found: reg.chainId,
    });
  if (trusted?.consentRegistry !== undefined && reg.address.toLowerCase() !== trusted.consentRegistry.toLowerCase()) {
    return fail('UNTRUSTED_CONTRACT', `the bundle names ConsentRegistry ${reg.address}, the trusted deployment's is ${trusted.consentRegistry}`, {
      expected: trusted.consentRegistry,
      found: reg.address,
    });
  }
  let chainId: number;
  try {
    chainId = await cache.read('chainId', async () => {
      const p = provider as Provider & { send?: (method: string, params: unknown[]) => Promise<unknown> };
      if (typeof p.send === 'function') return Number(BigInt((await p.send('eth_chainId', [])) as string));
      return Number((await provider.getNetwork()).chainId);
    });
  } catch (e) {
    return unreachable(e);
  }
  if (chainId !== reg.chainId)
    return fail('WRONG_CHAIN', `the bundle's ConsentRegistry is on chain ${reg.chainId}, the node serves chain ${chainId}`, {
      expected: reg.chainId,
      found: chainId,
    });
  const e = b.entry;
  let g;
  try {
    g = await cache.read(`grant:${reg.address}:${e.grantId}`, async () => {
      const x = await consentRegistryAt(reg.address, provider).getGrant(BigInt(e.grantId));
      return {
        patientRef: x.patientRef.toLowerCase(),
        researcher: x.researcher,
        sensorMask: Number(x.sensorMask),
        dataFromMs: x.dataFromMs,
        dataToMs: x.dataToMs,
        expiresAtMs: x.expiresAtMs,
        grantedAtMs: x.grantedAtMs,
        revokedAtMs: x.revokedAtMs,
      };
    });
  } catch (err) {
    const revert = decodeRevert<ConsentRegistryErrors>(err, consentRegistryInterface);
    if (revert?.name === 'ConsentRegistryUnknownGrant')
      return fail('GRANT_UNKNOWN', `ConsentRegistry ${reg.address} on chain ${reg.chainId} has no grant ${e.grantId}`, { grantId: e.grantId });
    if (isError(err, 'BAD_DATA') || isError(err, 'CALL_EXCEPTION'))
      return fail('NO_CONTRACT', `no ConsentRegistry answers at ${reg.address}: ${shortError(err)}`, { address: reg.address });
    return unreachable(err);
  }
  const mismatches: { field: string; entry: unknown; grant: unknown }[] = [];
  if (g.patientRef !== e.patientRef) mismatches.push({ field: 'patientRef', entry: e.patientRef, grant: g.patientRef });
  if (g.researcher.toLowerCase() !== e.researcher.toLowerCase()) mismatches.push({ field: 'researcher', entry: e.researcher, grant: g.researcher });
  for (const m of e.metrics) {
    let code: number | undefined;
    try {
      code = sensorByName(m).code;
    } catch {
      code = undefined;
    }
    if (code === undefined || ((g.sensorMask >> code) & 1) === 0)
      mismatches.push({
        field: `metrics.${m}`,
        entry: code === undefined ? `${m} (not in the sensor catalogue)` : `${m} (code ${code})`,
        grant: `sensor mask ${g.sensorMask}`,
      });
  }
  if (BigInt(e.fromMs) < g.dataFromMs || BigInt(e.toMs) > g.dataToMs)
    mismatches.push({ field: 'data window', entry: `[${e.fromMs}, ${e.toMs}]`, grant: `[${g.dataFromMs}, ${g.dataToMs}]` });
  if (mismatches.length > 0) {
    return fail(
      'GRANT_MISMATCH',
      `grant ${e.grantId} does not cover this disclosure: ${mismatches.map((m) => `${m.field}: entry ${String(m.entry)}, grant ${String(m.grant)}`).join('; ')}`,
      { mismatches },
    );
  }
  const ends =
    g.revokedAtMs !== 0n && g.revokedAtMs < g.expiresAtMs ? { at: Number(g.revokedAtMs), why: 'revoked' } : { at: Number(g.expiresAtMs), why: 'expires' };
  const window = `in force from ${iso(Number(g.grantedAtMs))} until it ${ends.why === 'revoked' ? 'was revoked' : 'expires'} at ${iso(ends.at)}`;
  if (e.firstAtMs + tolerance < Number(g.grantedAtMs) || e.atMs > ends.at + tolerance) {
    return fail(
      'GRANT_NOT_IN_FORCE',
      `the deliveries [${iso(e.firstAtMs)}, ${iso(e.atMs)}] are not within grant ${e.grantId}, ${window} (clock tolerance ${tolerance} ms)`,
      {
        firstAtMs: e.firstAtMs,
        atMs: e.atMs,
        grantedAtMs: g.grantedAtMs.toString(),
        revokedAtMs: g.revokedAtMs.toString(),
        expiresAtMs: g.expiresAtMs.toString(),
        toleranceMs: tolerance,
      },
    );
  }
  return {
    check: 'grant',
    status: 'pass',
    message: `grant ${e.grantId} of ConsentRegistry ${reg.address} names this patientRef and researcher ${e.researcher}, covers ${e.metrics.join(', ')} recorded in [${iso(e.fromMs)}, ${iso(e.toMs)}], and was ${window}`,
  };
}

async function deadline(ms: number, run: () => Promise<AccessCheckResult>): Promise<AccessCheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([run(), late]);
  } catch (e) {
    return unreachable(e);
  } finally {
    clearTimeout(timer);
  }
}

function unreachable(e: unknown): AccessCheckResult {
  return {
    check: 'grant',
    status: 'fail',
    code: 'CHAIN_UNREACHABLE',
    message: `the chain did not answer, so this was not verified: ${shortError(e)}`,
    detail: { error: shortError(e) },
  };
}

function shortError(e: unknown): string {
  if (e instanceof Error) {
    const x = e as Error & { shortMessage?: string };
    return x.shortMessage ?? x.message;
  }
  return String(e);
}

function iso(ms: number): string {
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${ms} ms`;
}
