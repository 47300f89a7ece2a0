/**
 * Verifies a proof bundle (gateway/proof/bundle.ts) without trusting the gateway that made it.
 * Five checks, in this order (docs/proof-format.md, "Verifying a bundle"):
 *
 *   frame      the raw bytes decode strictly as a v1 frame, and the bundle's copies agree
 *   signature  the public key passes the enrolment rule, derives the frame's device id, and
 *              the Ed25519 signature verifies under it (PROTOCOL.md §5.2: the gateway's rule)
 *   inclusion  SHA-256(0x00 ‖ raw) is leaf `leafIndex` of the `treeSize`-leaf tree with `root`
 *              (RFC 9162 §2.1.3.2), and the frame's time lies in the batch's time window
 *   anchor     (chain) the batch is anchored with that root, THAT tree size and that window,
 *              by the transaction, block and block hash the bundle names, on the canonical chain
 *   device     (chain) the key is the one enrolled for the device, which was not revoked at
 *              the frame's time
 *
 * Verdicts, not exceptions: every property of the bundle's content, and an unreachable chain,
 * is a check result with a code from VERDICT_CODES. Only arguments of the wrong shape throw:
 * a bundle that does not parse (BundleFormatError) or bad options (TypeError).
 */
import { isError, type Provider, type TransactionReceipt } from 'ethers';
import { decodeFrame, type Frame } from '../../firmware-proto/frame.js';
import { ProtocolError } from '../../firmware-proto/reasons.js';
import { checkPublicKey, deviceIdFromKey, frameSigningMessage, type KeyProblem } from '../../firmware-proto/signing.js';
import {
  anchorRegistryAt,
  anchorRegistryInterface,
  decodeRevert,
  deviceRegistryAt,
  deviceRegistryInterface,
  type Anchor,
  type AnchorRegistryErrors,
  type Device,
  type DeviceRegistryErrors,
} from '../chain/contracts.js';
import { deviceIdToBytes8 } from '../chain/ids.js';
import { hashLeaf } from '../merkle/rfc6962.js';
import { verifyInclusion } from '../merkle/verify.js';
import { KeyCache, verifyEd25519 } from '../verify/ed25519.js';
import { parseBundle, type BundleAnchor, type BundleInclusion, type ProofBundle } from './bundle.js';

/** The checks of a verdict, always all five, in this order. */
export const CHECK_NAMES = ['frame', 'signature', 'inclusion', 'anchor', 'device'] as const;
export type CheckName = (typeof CHECK_NAMES)[number];
/** The checks that need the chain; `skip` when verifying offline. */
export const ONLINE_CHECKS: readonly CheckName[] = ['anchor', 'device'];

export type CheckStatus = 'pass' | 'fail' | 'skip';

/**
 * The closed set of reasons a check fails, with what each one means. docs/proof-format.md has
 * the table with the likely cause of each. Callers branch on the code, never on the message.
 */
export const VERDICT_CODES = {
  // frame
  FRAME_MALFORMED: "the raw bytes are not a v1 frame (PROTOCOL.md §3.2); `detail.reason` is the decoder's code",
  COPY_MISMATCH: 'a convenience copy in the bundle (frame.deviceId, seq, timestampMs, sensor, device.registry.deviceId) differs from the signed frame',
  // signature
  BAD_PUBLIC_KEY: 'the public key fails the enrolment rule (PROTOCOL.md §2.2: 32 bytes, canonical, on the curve, prime order)',
  DEVICE_ID_MISMATCH: "the public key does not derive the frame's device id (PROTOCOL.md §2.1): it is another device's key",
  BAD_SIGNATURE: 'the Ed25519 signature does not verify over FRAME_TAG ‖ body under the public key (PROTOCOL.md §5.2)',
  // inclusion (the first four are RFC 9162 §2.1.3.2 verdicts of gateway/merkle/verify.ts)
  INDEX_OUT_OF_RANGE: 'the leaf index is not below the tree size',
  PROOF_TOO_LONG: 'the audit path has more hashes than the leaf index and tree size call for',
  PROOF_TOO_SHORT: 'the audit path has fewer hashes than the leaf index and tree size call for',
  ROOT_MISMATCH: "the root recomputed from SHA-256(0x00 ‖ raw) and the audit path is not the bundle's root",
  TIME_OUTSIDE_BATCH: "the frame's timestamp lies outside the batch's [firstFrameTimeMs, lastFrameTimeMs]",
  // anchor and device
  WRONG_CHAIN: 'the node (or the trusted deployment) is on another chain than the bundle names',
  UNTRUSTED_CONTRACT: 'the bundle names another contract than the trusted deployment',
  NO_CONTRACT: 'no AnchorRegistry / DeviceRegistry answers at the address the bundle names',
  NOT_ANCHORED: 'the registry has no anchor for this gateway, stream and batch sequence',
  ANCHOR_MISMATCH: 'the anchor on chain has another root, leaf count (tree size) or time window than the bundle',
  TX_NOT_FOUND: "the node has no receipt for the bundle's transaction hash",
  TX_FAILED: "the bundle's transaction reverted",
  TX_NOT_ANCHORING: "the bundle's transaction did not emit Anchored for this gateway, stream, batch and root",
  BLOCK_MISMATCH: 'the transaction or anchor is in another block than the bundle names, or that block is not on the canonical chain',
  NOT_ENROLLED: 'the device id was never enrolled in the DeviceRegistry',
  KEY_MISMATCH: "the key enrolled for the device is not the bundle's public key",
  REVOKED: "the device was revoked at or before the frame's timestamp",
  CHAIN_UNREACHABLE: 'the chain did not answer (connection refused, timeout, server error)',
} as const;

export type VerdictCode = keyof typeof VERDICT_CODES;

/** One check. `message` says what was expected and what was found; `detail` holds it as JSON values. */
export interface CheckResult {
  check: CheckName;
  status: CheckStatus;
  /** Set when status is 'fail'. */
  code?: VerdictCode;
  message: string;
  detail?: Record<string, unknown>;
}

/** What the bundle is about, as it claims it (for display; the checks say whether it holds). */
export interface BundleSubject {
  deviceId: string;
  seq: string;
  sensor: string;
  timestampMs: number;
  chainId: number;
  gateway: string;
  batchSeq: string;
  leafIndex: number;
  treeSize: number;
  root: string;
}

export interface BundleVerdict {
  /** No check failed, and none was skipped unless offline verification was asked for. */
  ok: boolean;
  /** The chain was not consulted (offline asked, or no provider): anchor and device are skipped. */
  offline: boolean;
  subject: BundleSubject;
  /** Always the five checks, in CHECK_NAMES order. */
  checks: CheckResult[];
}

/**
 * The contracts a verifier trusts, e.g. from the hospital's published deployment record. Without
 * them the addresses come from the bundle itself, and a forger could point a bundle at
 * registries of their own (docs/proof-format.md, "What to trust").
 */
export interface TrustedDeployment {
  chainId?: number;
  anchorRegistry?: string;
  deviceRegistry?: string;
}

export interface VerifyOptions {
  /** The chain to check the anchor and the device against. Without one, verification is offline. */
  provider?: Provider;
  /** Do not touch the network even with a provider: anchor and device are `skip`. */
  offline?: boolean;
  /** Contract addresses and chain to hold the bundle to (UNTRUSTED_CONTRACT / WRONG_CHAIN). */
  trusted?: TrustedDeployment;
  /** Deadline for each online check; past it, the check fails CHAIN_UNREACHABLE. Default 15 s. */
  timeoutMs?: number;
  /**
   * Shares chain reads and key checks between bundles (batch, receipt, block, device, chain id):
   * pass one cache, tied to one provider, when verifying many bundles. Default: one per call.
   */
  cache?: VerifyCache;
}

export const DEFAULT_TIMEOUT_MS = 15_000;

/**
 * Memoises what many bundles of one run share: chain reads (the chain id, the latest block,
 * anchors, receipts, blocks, devices), public-key checks and parsed keys. Use one per provider: the keys
 * do not name the chain. Failed reads stay failed for the cache's life, so a chain that went
 * away is reported the same for every bundle.
 * @example
 * const cache = new VerifyCache();
 * for (const b of bundles) verdicts.push(await verifyBundle(b, { provider, cache }));
 */
export class VerifyCache {
  readonly #reads = new Map<string, Promise<unknown>>();
  readonly #keys = new Map<string, KeyProblem | null>();
  /** Parsed node:crypto keys: parsing one costs about as much as verifying a signature. */
  readonly keyObjects = new KeyCache(10_000);

  /**
   * @param known.chainId the node's chain id when the caller already asked for it (to build a
   *   staticNetwork provider, say), or the failure of that request.
   */
  constructor(known: { chainId?: Promise<number> } = {}) {
    if (known.chainId) void this.read('chainId', () => known.chainId as Promise<number>);
  }

  /** The memoised result of `load` under `key`. */
  read<T>(key: string, load: () => Promise<T>): Promise<T> {
    let p = this.#reads.get(key) as Promise<T> | undefined;
    if (!p) {
      p = load();
      p.catch(() => undefined); // held for later callers; not an unhandled rejection
      this.#reads.set(key, p);
    }
    return p;
  }

  /** checkPublicKey, memoised: the torsion check costs a scalar multiplication (about 1 ms). */
  keyProblem(publicKeyHex: string): KeyProblem | null {
    let problem = this.#keys.get(publicKeyHex);
    if (problem === undefined) {
      problem = checkPublicKey(Buffer.from(publicKeyHex, 'hex'));
      if (this.#keys.size >= 10_000) this.#keys.clear();
      this.#keys.set(publicKeyHex, problem);
    }
    return problem;
  }
}

/**
 * Verifies one proof bundle: the five checks of the module comment, the chain ones only with a
 * provider and without `offline`.
 * @returns the verdict: every check with its status and, for a failure, its code and what was
 *   expected and found. `ok` is true when nothing failed and nothing was skipped, or only the
 *   online checks were skipped because offline verification was asked for.
 * @throws BundleFormatError (a TypeError) when `bundle` is not a version-1 bundle (run it
 *   through parseBundle first for untrusted JSON); TypeError for bad options. Never for the
 *   bundle's content, nor for an unreachable chain (CHAIN_UNREACHABLE).
 * @example
 * const verdict = await verifyBundle(parseBundle(JSON.parse(text)), { provider });
 * for (const c of verdict.checks) if (c.status === 'fail') console.log(c.check, c.code, c.message);
 */
export async function verifyBundle(bundle: ProofBundle, opts: VerifyOptions = {}): Promise<BundleVerdict> {
  const b = parseBundle(bundle);
  if (typeof opts !== 'object' || opts === null) throw new TypeError('verifyBundle: options must be an object');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0)
    throw new TypeError(`verifyBundle: timeoutMs must be a positive integer, got ${String(opts.timeoutMs)}`);
  const cache = opts.cache ?? new VerifyCache();
  const provider = opts.offline ? undefined : opts.provider;
  const offline = provider === undefined;

  const raw = Buffer.from(b.frame.raw, 'base64');
  const { result: frameResult, frame } = frameCheck(b, raw);
  const checks: CheckResult[] = [frameResult, signatureCheck(b, frame, cache), inclusionCheck(b, raw, frame)];
  if (provider) {
    const reader = new ChainReader(provider, cache);
    checks.push(
      ...(await Promise.all([
        online('anchor', timeoutMs, () => anchorCheck(b, reader, opts.trusted)),
        online('device', timeoutMs, () => deviceCheck(b, frame, reader, opts.trusted)),
      ])),
    );
  } else {
    const why = opts.offline ? 'offline verification asked for' : 'no chain provider given';
    checks.push(
      skip(
        'anchor',
        `not checked (${why}): that batch ${b.anchor.batchSeq} of gateway ${b.anchor.gateway} is anchored on chain ${b.anchor.chainId} with this root and a tree size of ${b.inclusion.treeSize}, by transaction ${b.anchor.txHash}`,
      ),
      skip(
        'device',
        `not checked (${why}): that device ${b.frame.deviceId} is enrolled on chain ${b.device.registry.chainId} with this public key and was not revoked at the frame's time`,
      ),
    );
  }
  const failed = checks.some((c) => c.status === 'fail');
  const skipped = checks.filter((c) => c.status === 'skip');
  const onlyOfflineSkips = opts.offline === true && skipped.every((c) => ONLINE_CHECKS.includes(c.check));
  return {
    ok: !failed && (skipped.length === 0 || onlyOfflineSkips),
    offline,
    subject: {
      deviceId: b.frame.deviceId,
      seq: b.frame.seq,
      sensor: b.frame.sensor,
      timestampMs: b.frame.timestampMs,
      chainId: b.anchor.chainId,
      gateway: b.anchor.gateway,
      batchSeq: b.anchor.batchSeq,
      leafIndex: b.inclusion.leafIndex,
      treeSize: b.inclusion.treeSize,
      root: b.inclusion.root,
    },
    checks,
  };
}

// ---- offline checks ----

function frameCheck(b: ProofBundle, raw: Buffer): { result: CheckResult; frame?: Frame } {
  let frame: Frame;
  try {
    frame = decodeFrame(raw);
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    return {
      result: fail('frame', 'FRAME_MALFORMED', `the ${raw.length} raw bytes are not a v1 frame: ${e.code} (${e.message})`, {
        reason: e.code,
        ...jsonSafe(e.detail),
      }),
    };
  }
  // The copies are for people and indexes; the signed bytes are what counts.
  const copies: [string, string, string][] = [
    ['frame.deviceId', frame.deviceId, b.frame.deviceId],
    ['frame.seq', frame.seq.toString(), b.frame.seq],
    ['frame.timestampMs', frame.timestampMs.toString(), String(b.frame.timestampMs)],
    ['frame.sensor', frame.spec.name, b.frame.sensor],
    ['device.registry.deviceId', deviceIdToBytes8(frame.deviceId), b.device.registry.deviceId],
  ];
  const mismatches = copies.filter(([, signed, copy]) => signed !== copy).map(([field, signed, copy]) => ({ field, signed, bundle: copy }));
  if (mismatches.length > 0) {
    const list = mismatches.map((m) => `${m.field} is ${JSON.stringify(m.bundle)} but the signed frame says ${JSON.stringify(m.signed)}`).join('; ');
    return { result: fail('frame', 'COPY_MISMATCH', `the bundle's copies disagree with the signed frame: ${list}`, { mismatches }), frame };
  }
  return {
    result: pass(
      'frame',
      `${frame.raw.length}-byte v1 ${frame.spec.name} frame of device ${frame.deviceId}, seq ${frame.seq}, ${frame.count} sample${frame.count === 1 ? '' : 's'} from ${time(frame.timestampMs)}, decodes strictly; the bundle's copies agree with it`,
    ),
    frame,
  };
}

function signatureCheck(b: ProofBundle, frame: Frame | undefined, cache: VerifyCache): CheckResult {
  if (!frame) return skip('signature', 'not checked: the raw bytes do not decode as a frame, so there is no body or signature to check');
  const problem = cache.keyProblem(b.device.publicKey);
  if (problem) {
    return fail('signature', 'BAD_PUBLIC_KEY', `public key ${b.device.publicKey} fails the enrolment rule of PROTOCOL.md §2.2: ${problem}`, {
      problem,
      publicKey: b.device.publicKey,
    });
  }
  const publicKey = Buffer.from(b.device.publicKey, 'hex');
  const derived = deviceIdFromKey(publicKey);
  if (derived !== frame.deviceId) {
    return fail(
      'signature',
      'DEVICE_ID_MISMATCH',
      `public key ${b.device.publicKey} is the key of device ${derived}, but the frame is from device ${frame.deviceId}`,
      { expected: frame.deviceId, derived },
    );
  }
  // PROTOCOL.md §5.2: RFC 8032 cofactorless, as OpenSSL implements it, over FRAME_TAG ‖ body.
  if (!verifyEd25519(cache.keyObjects.get(publicKey), frameSigningMessage(frame.body), frame.signature)) {
    return fail(
      'signature',
      'BAD_SIGNATURE',
      `the Ed25519 signature does not verify over FRAME_TAG ‖ the ${frame.body.length}-byte body under the public key of device ${frame.deviceId}: the frame was altered after signing, or signed by another key`,
      { deviceId: frame.deviceId },
    );
  }
  return pass(
    'signature',
    `Ed25519 signature valid under public key ${b.device.publicKey.slice(0, 16)}…, which is device ${frame.deviceId}'s key (PROTOCOL.md §2.1) and passes the enrolment rule (§2.2)`,
  );
}

function inclusionCheck(b: ProofBundle, raw: Buffer, frame: Frame | undefined): CheckResult {
  const { leafIndex, treeSize, auditPath, root } = b.inclusion;
  const leafHash = hashLeaf(raw);
  const v = verifyInclusion({ leafIndex, treeSize, leafHash, proof: auditPath.map(fromHex), root: fromHex(root) });
  if (!v.ok) {
    if (v.code === 'BAD_HASH_LENGTH') throw new Error(`bug: parseBundle let a hash of ${v.actualLength} bytes through (${v.field})`);
    const detail: Record<string, unknown> = { leafIndex, treeSize, leafHash: hex0x(leafHash) };
    if (v.code === 'ROOT_MISMATCH') Object.assign(detail, { expected: hex0x(v.expected), calculated: hex0x(v.calculated) });
    if (v.code === 'PROOF_TOO_LONG' || v.code === 'PROOF_TOO_SHORT') Object.assign(detail, { expectedLength: v.expectedLength, actualLength: v.actualLength });
    const what =
      v.code === 'ROOT_MISMATCH'
        ? `leaf ${leafIndex} of ${treeSize} with this audit path leads to root ${hex0x(v.calculated)}, not the bundle's root ${root}`
        : v.code === 'INDEX_OUT_OF_RANGE'
          ? `leaf index ${leafIndex} is not below the tree size ${treeSize}`
          : `leaf ${leafIndex} of a tree of ${treeSize} leaves needs ${v.expectedLength} audit-path hashes, the bundle has ${v.actualLength}`;
    return fail('inclusion', v.code, `${what} (RFC 9162 §2.1.3.2; leaf hash SHA-256(0x00 ‖ raw) = ${hex0x(leafHash)})`, detail);
  }
  const proven = `SHA-256(0x00 ‖ raw) = ${hex0x(leafHash).slice(0, 18)}… is leaf ${leafIndex} of the tree of ${treeSize} leaves with root ${root.slice(0, 18)}… (${auditPath.length} audit-path hash${auditPath.length === 1 ? '' : 'es'}; the anchor check takes root and size from the chain)`;
  if (!frame) return pass('inclusion', `${proven}; the time window is not checked, the frame does not decode`);
  const { firstFrameTimeMs: first, lastFrameTimeMs: last } = b.anchor;
  const t = frame.timestampMs;
  if (t < BigInt(first) || t > BigInt(last)) {
    return fail('inclusion', 'TIME_OUTSIDE_BATCH', `the frame's timestamp ${time(t)} is outside the batch's window [${time(first)}, ${time(last)}]`, {
      timestampMs: t.toString(),
      firstFrameTimeMs: first,
      lastFrameTimeMs: last,
    });
  }
  return pass('inclusion', `${proven}; frame time within the batch window [${time(first)}, ${time(last)}]`);
}

// ---- online checks ----

/** Reads the chain through a VerifyCache; errors propagate to the check, which classifies them. */
class ChainReader {
  constructor(
    private readonly provider: Provider,
    private readonly cache: VerifyCache,
  ) {}

  /**
   * The node's chain id, asked of the node itself (eth_chainId) when the provider speaks
   * JSON-RPC: a provider built with a wrong static network must not hide a wrong chain.
   */
  chainId(): Promise<number> {
    return this.cache.read('chainId', async () => {
      const p = this.provider as Provider & { send?: (method: string, params: unknown[]) => Promise<unknown> };
      if (typeof p.send === 'function') return Number(BigInt((await p.send('eth_chainId', [])) as string));
      return Number((await this.provider.getNetwork()).chainId);
    });
  }

  latest(): Promise<number> {
    return this.cache.read('latest', () => this.provider.getBlockNumber());
  }

  anchorOf(contract: string, gateway: string, stream: number, batchSeq: string): Promise<Anchor> {
    return this.cache.read(`anchor:${contract}:${gateway}:${stream}:${batchSeq}`, async () => {
      const a = await anchorRegistryAt(contract, this.provider).anchorOf(gateway, stream, BigInt(batchSeq));
      // Copy out of the ethers Result so the cached value is plain.
      return { root: a.root, leafCount: a.leafCount, firstFrameTimeMs: a.firstFrameTimeMs, lastFrameTimeMs: a.lastFrameTimeMs, blockNumber: a.blockNumber };
    });
  }

  receipt(txHash: string): Promise<TransactionReceipt | null> {
    return this.cache.read(`receipt:${txHash}`, () => this.provider.getTransactionReceipt(txHash));
  }

  blockHash(blockNumber: number): Promise<string | null> {
    return this.cache.read(`block:${blockNumber}`, async () => (await this.provider.getBlock(blockNumber))?.hash ?? null);
  }

  device(registry: string, deviceIdBytes8: string): Promise<Device> {
    return this.cache.read(`device:${registry}:${deviceIdBytes8}`, async () => {
      const d = await deviceRegistryAt(registry, this.provider).device(deviceIdBytes8);
      return {
        publicKey: d.publicKey,
        patientRef: d.patientRef,
        site: d.site,
        enrolledAtMs: d.enrolledAtMs,
        revokedAtMs: d.revokedAtMs,
        enrolledBy: d.enrolledBy,
      };
    });
  }
}

/** What the anchor check reads of a bundle: its anchor, and the root and tree size it claims. */
export interface AnchoredClaim {
  anchor: BundleAnchor;
  inclusion: Pick<BundleInclusion, 'root' | 'treeSize'>;
}

/**
 * The anchor check of verifyBundle on its own, for any stream (the access log's bundles,
 * gateway/proof/access-verify.ts): the batch is anchored with that root, tree size and window,
 * by the transaction, block and block hash named, on the canonical chain.
 * @returns a CheckResult with check 'anchor' (never throws for the claim's content or an unreachable chain).
 */
export function verifyAnchorClaim(
  claim: AnchoredClaim,
  opts: { provider: Provider; trusted?: { chainId?: number; anchorRegistry?: string }; timeoutMs?: number; cache?: VerifyCache },
): Promise<CheckResult> {
  const reader = new ChainReader(opts.provider, opts.cache ?? new VerifyCache());
  return online('anchor', opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, () => anchorCheck(claim, reader, opts.trusted));
}

async function anchorCheck(
  b: AnchoredClaim,
  chain: ChainReader,
  trusted: Pick<TrustedDeployment, 'chainId' | 'anchorRegistry'> | undefined,
): Promise<CheckResult> {
  const a = b.anchor;
  const pinned = pinnedProblem('anchor', a.chainId, a.contract, trusted?.chainId, trusted?.anchorRegistry, 'AnchorRegistry');
  if (pinned) return pinned;
  const [chainId, anchor, receipt, blockHash, latest] = await Promise.allSettled([
    chain.chainId(),
    chain.anchorOf(a.contract, a.gateway, a.stream, a.batchSeq),
    chain.receipt(a.txHash),
    chain.blockHash(a.blockNumber),
    chain.latest(),
  ]);
  if (chainId.status === 'rejected') return unreachable('anchor', chainId.reason);
  if (chainId.value !== a.chainId)
    return fail('anchor', 'WRONG_CHAIN', `the bundle's anchor is on chain ${a.chainId}, the node serves chain ${chainId.value}`, {
      expected: a.chainId,
      found: chainId.value,
    });
  const batch = `batch ${a.batchSeq} of gateway ${a.gateway} (stream ${a.stream})`;

  if (anchor.status === 'rejected') {
    const revert = decodeRevert<AnchorRegistryErrors>(anchor.reason, anchorRegistryInterface);
    if (revert?.name === 'AnchorRegistryUnknownAnchor') {
      return fail('anchor', 'NOT_ANCHORED', `AnchorRegistry ${a.contract} on chain ${a.chainId} has no anchor for ${batch}`, {
        contract: a.contract,
        gateway: a.gateway,
        stream: a.stream,
        batchSeq: a.batchSeq,
      });
    }
    return notContractOrUnreachable('anchor', anchor.reason, a.contract, 'AnchorRegistry');
  }
  const on = anchor.value;
  const mismatches: { field: string; bundle: string | number; chain: string | number }[] = [];
  if (on.root.toLowerCase() !== b.inclusion.root) mismatches.push({ field: 'root', bundle: b.inclusion.root, chain: on.root.toLowerCase() });
  // An inclusion proof authenticates the tree size only through its length; the size that
  // counts is the one anchored with the root (docs/proof-format.md, "What a proof is").
  if (on.leafCount !== BigInt(b.inclusion.treeSize)) mismatches.push({ field: 'treeSize', bundle: b.inclusion.treeSize, chain: Number(on.leafCount) });
  if (on.firstFrameTimeMs !== BigInt(a.firstFrameTimeMs))
    mismatches.push({ field: 'firstFrameTimeMs', bundle: a.firstFrameTimeMs, chain: on.firstFrameTimeMs.toString() });
  if (on.lastFrameTimeMs !== BigInt(a.lastFrameTimeMs))
    mismatches.push({ field: 'lastFrameTimeMs', bundle: a.lastFrameTimeMs, chain: on.lastFrameTimeMs.toString() });
  if (mismatches.length > 0) {
    const list = mismatches
      .map((m) => `${m.field === 'treeSize' ? 'tree size (leafCount)' : m.field} ${m.chain} on chain, ${m.bundle} in the bundle`)
      .join('; ');
    return fail('anchor', 'ANCHOR_MISMATCH', `${batch} is anchored, but not as the bundle says: ${list}`, { mismatches });
  }

  if (receipt.status === 'rejected') return unreachable('anchor', receipt.reason);
  const r = receipt.value;
  if (!r)
    return fail(
      'anchor',
      'TX_NOT_FOUND',
      `the node has no receipt for transaction ${a.txHash} (expected the anchoring of ${batch} in block ${a.blockNumber})`,
      { txHash: a.txHash },
    );
  if (r.status !== 1)
    return fail('anchor', 'TX_FAILED', `transaction ${a.txHash} reverted (status ${String(r.status)}) in block ${r.blockNumber}`, {
      txHash: a.txHash,
      status: r.status,
    });
  if (!emitsAnchored(r, a.contract, a.gateway, a.stream, a.batchSeq, b.inclusion.root)) {
    return fail(
      'anchor',
      'TX_NOT_ANCHORING',
      `transaction ${a.txHash} (block ${r.blockNumber}) did not emit Anchored(${a.gateway}, ${a.stream}, ${a.batchSeq}, ${b.inclusion.root}) from ${a.contract}: it is another transaction`,
      { txHash: a.txHash, blockNumber: r.blockNumber },
    );
  }
  if (blockHash.status === 'rejected') return unreachable('anchor', blockHash.reason);
  const places: string[] = [];
  if (r.blockNumber !== a.blockNumber || r.blockHash.toLowerCase() !== a.blockHash)
    places.push(`the transaction is in block ${r.blockNumber} (${r.blockHash}), the bundle says ${a.blockNumber} (${a.blockHash})`);
  if (on.blockNumber !== BigInt(a.blockNumber)) places.push(`the registry records block ${on.blockNumber} for the anchor, the bundle says ${a.blockNumber}`);
  if (blockHash.value?.toLowerCase() !== a.blockHash)
    places.push(`block ${a.blockNumber} of the canonical chain is ${blockHash.value ?? 'not there'}, the bundle says ${a.blockHash}`);
  if (places.length > 0) {
    return fail('anchor', 'BLOCK_MISMATCH', `${places.join('; ')}`, {
      blockNumber: a.blockNumber,
      blockHash: a.blockHash,
      receiptBlockNumber: r.blockNumber,
      receiptBlockHash: r.blockHash,
      canonicalBlockHash: blockHash.value,
      anchorBlockNumber: on.blockNumber.toString(),
    });
  }
  if (latest.status === 'rejected') return unreachable('anchor', latest.reason);
  const confirmations = latest.value - a.blockNumber + 1;
  return pass(
    'anchor',
    `${batch} is anchored on chain ${a.chainId} in AnchorRegistry ${a.contract} with this root, ${b.inclusion.treeSize} leaves and window [${time(a.firstFrameTimeMs)}, ${time(a.lastFrameTimeMs)}]; transaction ${a.txHash.slice(0, 18)}… succeeded in block ${a.blockNumber} (${a.blockHash.slice(0, 18)}…, canonical), ${confirmations} confirmation${confirmations === 1 ? '' : 's'}`,
    { confirmations, latestBlock: latest.value },
  );
}

async function deviceCheck(b: ProofBundle, frame: Frame | undefined, chain: ChainReader, trusted: TrustedDeployment | undefined): Promise<CheckResult> {
  if (!frame) return skip('device', 'not checked: the raw bytes do not decode, so the device and the frame time are unknown');
  const reg = b.device.registry;
  const pinned = pinnedProblem('device', reg.chainId, reg.address, trusted?.chainId, trusted?.deviceRegistry, 'DeviceRegistry');
  if (pinned) return pinned;
  const id = deviceIdToBytes8(frame.deviceId);
  const [chainId, device] = await Promise.allSettled([chain.chainId(), chain.device(reg.address, id)]);
  if (chainId.status === 'rejected') return unreachable('device', chainId.reason);
  if (chainId.value !== reg.chainId)
    return fail('device', 'WRONG_CHAIN', `the bundle's DeviceRegistry is on chain ${reg.chainId}, the node serves chain ${chainId.value}`, {
      expected: reg.chainId,
      found: chainId.value,
    });
  if (device.status === 'rejected') {
    const revert = decodeRevert<DeviceRegistryErrors>(device.reason, deviceRegistryInterface);
    if (revert?.name === 'DeviceRegistryUnknownDevice') {
      return fail('device', 'NOT_ENROLLED', `device ${frame.deviceId} was never enrolled in DeviceRegistry ${reg.address} on chain ${reg.chainId}`, {
        deviceId: frame.deviceId,
        registry: reg.address,
      });
    }
    return notContractOrUnreachable('device', device.reason, reg.address, 'DeviceRegistry');
  }
  const d = device.value;
  const enrolledKey = d.publicKey.toLowerCase().replace(/^0x/, '');
  if (enrolledKey !== b.device.publicKey) {
    return fail('device', 'KEY_MISMATCH', `device ${frame.deviceId} is enrolled with public key ${enrolledKey}, the bundle carries ${b.device.publicKey}`, {
      enrolled: enrolledKey,
      bundle: b.device.publicKey,
    });
  }
  const t = frame.timestampMs;
  // PROTOCOL.md §5.3 step 4: refused if revokedAt ≤ timestamp; 0 means not revoked.
  if (d.revokedAtMs !== 0n && t >= d.revokedAtMs) {
    return fail('device', 'REVOKED', `device ${frame.deviceId} is revoked from ${time(d.revokedAtMs)}; the frame is timestamped ${time(t)}, at or after that`, {
      revokedAtMs: d.revokedAtMs.toString(),
      timestampMs: t.toString(),
    });
  }
  const revocation = d.revokedAtMs === 0n ? 'not revoked' : `revoked only from ${time(d.revokedAtMs)}, after the frame`;
  // The enrolment time is no lower bound (IDeviceRegistry.isActiveAt): a device may sign and
  // buffer frames before the transaction that enrols it is mined.
  const enrolment =
    t < d.enrolledAtMs
      ? `enrolled at ${time(d.enrolledAtMs)}, after the frame's ${time(t)}: the frame predates the on-chain enrolment (a device may buffer frames before its enrolment is mined), which is allowed`
      : `enrolled at ${time(d.enrolledAtMs)}`;
  return pass('device', `device ${frame.deviceId} is enrolled in DeviceRegistry ${reg.address} with this public key, ${enrolment}, ${revocation}`, {
    enrolledAtMs: d.enrolledAtMs.toString(),
    revokedAtMs: d.revokedAtMs.toString(),
    predatesEnrolment: t < d.enrolledAtMs,
  });
}

function pinnedProblem(
  check: CheckName,
  chainId: number,
  address: string,
  trustedChain: number | undefined,
  trustedAddress: string | undefined,
  what: string,
): CheckResult | undefined {
  if (trustedChain !== undefined && chainId !== trustedChain) {
    return fail(check, 'WRONG_CHAIN', `the bundle's ${what} is on chain ${chainId}, the trusted deployment is on chain ${trustedChain}`, {
      expected: trustedChain,
      found: chainId,
    });
  }
  if (trustedAddress !== undefined && address.toLowerCase() !== trustedAddress.toLowerCase()) {
    return fail(check, 'UNTRUSTED_CONTRACT', `the bundle names ${what} ${address}, the trusted deployment's is ${trustedAddress}`, {
      expected: trustedAddress,
      found: address,
    });
  }
  return undefined;
}

/** Whether the receipt holds Anchored(gateway, stream, batchSeq, root, …) emitted by `contract`. */
function emitsAnchored(r: TransactionReceipt, contract: string, gateway: string, stream: number, batchSeq: string, root: string): boolean {
  for (const log of r.logs) {
    if (log.address.toLowerCase() !== contract.toLowerCase()) continue;
    let parsed;
    try {
      parsed = anchorRegistryInterface.parseLog(log);
    } catch {
      continue;
    }
    if (parsed?.name !== 'Anchored') continue;
    const [g, s, seq, rt] = parsed.args.toArray() as [string, bigint, bigint, string];
    if (g.toLowerCase() === gateway.toLowerCase() && s === BigInt(stream) && seq === BigInt(batchSeq) && rt.toLowerCase() === root) return true;
  }
  return false;
}

/** A call that did not revert with a known error: no (such) contract there, or no chain at all. */
function notContractOrUnreachable(check: CheckName, e: unknown, address: string, what: string): CheckResult {
  // BAD_DATA: the call returned nothing decodable (no code at the address); CALL_EXCEPTION:
  // it reverted with something this registry never reverts with (another contract).
  if (isError(e, 'BAD_DATA') || isError(e, 'CALL_EXCEPTION')) {
    return fail(check, 'NO_CONTRACT', `no ${what} answers at ${address}: ${shortError(e)}`, { address });
  }
  return unreachable(check, e);
}

function unreachable(check: CheckName, e: unknown): CheckResult {
  return fail(check, 'CHAIN_UNREACHABLE', `the chain did not answer, so this was not verified: ${shortError(e)}`, { error: shortError(e) });
}

class OnlineTimeout extends Error {}

/** Runs an online check under a deadline; anything it throws (a bug aside) is an unreachable chain. */
async function online(check: CheckName, timeoutMs: number, run: () => Promise<CheckResult>): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OnlineTimeout(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([run(), deadline]);
  } catch (e) {
    return unreachable(check, e);
  } finally {
    clearTimeout(timer);
  }
}

// ---- helpers ----

function pass(check: CheckName, message: string, detail?: Record<string, unknown>): CheckResult {
  return detail ? { check, status: 'pass', message, detail } : { check, status: 'pass', message };
}

function fail(check: CheckName, code: VerdictCode, message: string, detail?: Record<string, unknown>): CheckResult {
  return detail ? { check, status: 'fail', code, message, detail } : { check, status: 'fail', code, message };
}

function skip(check: CheckName, message: string): CheckResult {
  return { check, status: 'skip', message };
}

function shortError(e: unknown): string {
  if (e instanceof Error) {
    const x = e as Error & { shortMessage?: string; code?: unknown };
    const msg = x.shortMessage ?? x.message;
    return typeof x.code === 'string' && !msg.includes(x.code) ? `${x.code}: ${msg}` : msg;
  }
  return String(e);
}

/** A Unix-ms time as ISO 8601 with milliseconds (exact), or "N ms" beyond what a Date holds. */
function time(ms: number | bigint): string {
  const n = Number(ms);
  return Math.abs(n) <= 8.64e15 ? new Date(n).toISOString() : `${ms} ms`;
}

function fromHex(h: string): Buffer {
  return Buffer.from(h.slice(2), 'hex');
}

function hex0x(b: Uint8Array): string {
  return `0x${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')}`;
}

function jsonSafe(o: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'bigint' ? v.toString() : v]));
}
