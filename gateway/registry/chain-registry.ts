/**
 * The device registry backed by the on-chain DeviceRegistry contract (docs/contracts.md,
 * "On-chain registry").
 *
 * Ingest reads it synchronously from memory, like the file registry, and never waits on the
 * chain. The memory view is the contract's DeviceEnrolled / DeviceRevoked events, followed by
 * polling eth_getLogs, joined with the local pseudonym directory (./directory.ts):
 *
 *   start        load registry-cache.json (this chain, this contract) and serve it at once
 *   every poll   head = latest block; the block at lastBlock must still have lastBlockHash,
 *                else the chain reorganised under us: rescan from deployBlock into a fresh
 *                view and swap it in; then getLogs(lastBlock+1 .. head-confirmations+1) in
 *                ranges of at most 2,000 blocks, applied in (block, log index) order
 *   chain down   keep serving the view; log the first failure and every 10th; back off
 *
 * enrol() and revoke() send the transactions (a signer with HOSPITAL_ADMIN_ROLE is needed),
 * then sync, so the local view shows their effect when they resolve.
 *
 * The key rule (PROTOCOL.md §2.2) is the gateway's, not the contract's (docs/contracts.md,
 * "The key rule"): any HOSPITAL_ADMIN_ROLE account can call DeviceRegistry.enrol directly with
 * a small-order, mixed-order or non-canonical key. Every key of the view is checked when it
 * becomes a record (an event, the cache at start, a rescan); a device whose key breaks the
 * rule stays in the view (it is on chain) but never becomes a record: get() and list() do not
 * serve it, so CONNECT and ingest treat it as unknown. It is listed by refusedKeys(), counted
 * in status().refusedKeys, and logged once at error level (`registry_key_refused`).
 *
 * @example
 *   const registry = new ChainRegistry({
 *     provider, deviceRegistryAddress: record.deviceRegistry.address, deployBlock: record.deployBlock,
 *     dataDir: join(dataDir, 'registry'), signer, site: 'icu-north', log,
 *   });
 *   await registry.ready();          // optional: the view is served from the cache meanwhile
 *   registry.get('3f2a9c0d4e5b6a71'); // DeviceRecord | undefined
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { getAddress, isError, type Log, type Provider, type Signer, type TransactionReceipt } from 'ethers';
import { decodeRevert, deviceRegistryAt, deviceRegistryInterface, ROLES, type DeviceRegistryErrors } from '../chain/contracts.js';
import { deviceIdFromBytes8, deviceIdToBytes8, patientRefOf, siteIdOf } from '../chain/ids.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { DIRECTORY_FILE, fallbackPseudonym, loadOrCreatePatientRefKey, PseudonymDirectory, type DirectoryEntry } from './directory.js';
import type { KeyProblem } from '../../firmware-proto/signing.js';
import { checkEnrolment, KeyRuleCache, refusedKeysBy, type DeviceRecord, type DeviceRegistry, type EnrolResult, type EnrolmentEntry, type RefusedKey } from './registry.js';

export const CACHE_FILE = 'registry-cache.json';
/** Blocks per eth_getLogs request: public endpoints commonly refuse wider ranges. */
export const MAX_LOG_RANGE = 2000;

/** The closed set of ChainRegistry failures; callers branch on `code`, never on the message. */
export const CHAIN_REGISTRY_ERRORS = {
  REGISTRY_NO_SIGNER: 'enrol and revoke send transactions: the registry needs a signer holding HOSPITAL_ADMIN_ROLE',
  REGISTRY_NOT_AUTHORIZED: 'the signer does not hold HOSPITAL_ADMIN_ROLE on the DeviceRegistry contract',
  REGISTRY_UNKNOWN_DEVICE: 'the device is not enrolled on chain',
  REGISTRY_REVOCATION_BEFORE_ENROLMENT: 'the effective time of the revocation lies before the device was enrolled (seconds given for milliseconds?)',
  REGISTRY_TX_FAILED: 'a transaction could not be sent or was not mined; what went through is in detail, and enrol can be run again (it is idempotent)',
  REGISTRY_CLOSED: 'the registry was closed',
} as const;
export type ChainRegistryErrorCode = keyof typeof CHAIN_REGISTRY_ERRORS;

export class ChainRegistryError extends Error {
  readonly code: ChainRegistryErrorCode;
  readonly detail: Readonly<Record<string, unknown>>;
  constructor(code: ChainRegistryErrorCode, detail: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    const extra = Object.keys(detail).length ? ` ${JSON.stringify(detail, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}` : '';
    super(`${code}: ${CHAIN_REGISTRY_ERRORS[code]}${extra}`, options);
    this.name = 'ChainRegistryError';
    this.code = code;
    this.detail = detail;
  }
}

export function isChainRegistryError(e: unknown, code?: ChainRegistryErrorCode): e is ChainRegistryError {
  return e instanceof ChainRegistryError && (code === undefined || e.code === code);
}

/** The log methods used (a pino Logger fits). */
export interface RegistryLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ChainRegistryOptions {
  provider: Provider;
  /** The DeviceRegistry contract (deployment record: deviceRegistry.address). */
  deviceRegistryAddress: string;
  /** Where scanning starts: the contract's deployment block (deployment record: deployBlock). */
  deployBlock: number;
  /** The registry's own directory: registry-cache.json, directory.json, patient-ref.key. */
  dataDir: string;
  /** Needed only by enrol and revoke: an account with HOSPITAL_ADMIN_ROLE, connected to a provider. */
  signer?: Signer;
  /** Site label of devices this registry enrols (on chain only as siteIdOf(label)). Default 'default'. */
  site?: string;
  /** Blocks an event needs (its own included) before it is applied, and a transaction before enrol/revoke return. Default 1. */
  confirmations?: number;
  /** Polling period while the chain answers. Default 1000. */
  pollIntervalMs?: number;
  /** Longest wait between retries while the chain is unreachable. Default 30,000. */
  maxBackoffMs?: number;
  /** Deadline of each RPC call of a catch-up round (a black-holed endpoint must not stall it). Default 15,000. */
  rpcTimeoutMs?: number;
  /** Follow the chain in the background (a gateway). false: only sync(), enrol() and revoke() talk to it (a CLI). Default true. */
  follow?: boolean;
  /** The expected chain id: a cache of another chain is then dropped at load, not at first contact. */
  chainId?: number;
  /** The hospital's patient-ref key; default: dataDir/patient-ref.key, created on the first enrol. */
  patientRefKey?: Uint8Array;
  log?: RegistryLog;
}

export interface ChainRegistryStatus {
  /** The last catch-up round reached the chain head. */
  following: boolean;
  /** Every event up to this block is applied. */
  lastBlock: number;
  /** Why the last round failed, while the chain is unreachable. */
  lastError?: string;
  /** Devices enrolled on chain in the local view, revoked ones and refused keys included. */
  devices: number;
  revoked: number;
  /** Devices on chain whose key breaks the rule of PROTOCOL.md §2.2, never trusted: an alarm when non-zero. */
  refusedKeys: number;
  refusedKeysBy: Partial<Record<KeyProblem, number>>;
  chainId?: number;
  /** Consecutive failed rounds. */
  failures: number;
  lastSyncAtMs?: number;
}

/** One device as the chain has it (cached; no pseudonym). */
interface ChainDevice {
  deviceId: string;
  /** 64 lowercase hex digits. */
  publicKey: string;
  /** 0x + 64 lowercase hex digits. */
  patientRef: string;
  site: string;
  enrolledAtMs: number;
  revokedAtMs?: number;
  block: number;
}

/** Everything applied up to and including `lastBlock`, whose hash was `lastBlockHash`. */
interface View {
  lastBlock: number;
  lastBlockHash: string | undefined;
  devices: Map<string, ChainDevice>;
}

interface CacheFile {
  version: 1;
  chainId: number;
  contract: string;
  deployBlock: number;
  lastBlock: number;
  lastBlockHash: string | null;
  devices: ChainDevice[];
}

/** Thrown inside a scan when the block the view ends at is no longer on the chain. */
class ReorgDetected extends Error {}

const LOG_EVERY_NTH_FAILURE = 10;
const CACHE_FLUSH_MS = 60_000;
const CHUNK_ATTEMPTS = 3;
const RESCAN_ATTEMPTS = 3;
const [ENROLLED_TOPIC, REVOKED_TOPIC] = [deviceRegistryInterface.getEvent('DeviceEnrolled')!.topicHash, deviceRegistryInterface.getEvent('DeviceRevoked')!.topicHash];

export class ChainRegistry extends EventEmitter<{ revoked: [DeviceRecord]; changed: [] }> implements DeviceRegistry {
  readonly contract: string;
  private readonly o: Required<Pick<ChainRegistryOptions, 'confirmations' | 'pollIntervalMs' | 'maxBackoffMs' | 'rpcTimeoutMs' | 'site'>> & ChainRegistryOptions;
  private readonly directory: PseudonymDirectory;
  private readonly cachePath: string;
  private view: View;
  private records = new Map<string, DeviceRecord>();
  private chainId: number | undefined;
  private chainChecked = false;
  private following = false;
  private failures = 0;
  private lastError: string | undefined;
  private lastSyncAtMs: number | undefined;
  private lastCacheWrite = 0;
  private cacheDirty = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private rounds: Promise<void> = Promise.resolve();
  private readonly firstSync: Promise<void>;
  private resolveFirstSync!: () => void;
  private rejectFirstSync!: (e: Error) => void;
  private synced = false;
  /** Devices whose directory entry names another patientRef than the chain: warned once each. */
  private readonly mismatchWarned = new Set<string>();
  /** Devices of the view whose key breaks the rule (§2.2): not records. */
  private refused = new Map<string, RefusedKey>();
  /** device id ‖ key of refusals already logged: one error line each, not one per rebuild. */
  private readonly alarmed = new Set<string>();
  private readonly keyRule = new KeyRuleCache();

  /**
   * Loads the cache and the directory and, unless `follow: false`, starts following the
   * chain in the background. Never waits on the chain.
   * @throws TypeError for bad options; Error for an unreadable pseudonym directory.
   */
  constructor(opts: ChainRegistryOptions) {
    super();
    if (!Number.isSafeInteger(opts.deployBlock) || opts.deployBlock < 0) throw new TypeError(`deployBlock must be a block number, got ${opts.deployBlock}`);
    const confirmations = opts.confirmations ?? 1;
    if (!Number.isSafeInteger(confirmations) || confirmations < 1) throw new TypeError(`confirmations must be at least 1, got ${confirmations}`);
    this.o = { confirmations, pollIntervalMs: 1000, maxBackoffMs: 30_000, rpcTimeoutMs: 15_000, site: 'default', ...stripUndefined(opts) };
    siteIdOf(this.o.site); // TypeError for an empty label, now rather than at the first enrol
    this.contract = getAddress(opts.deviceRegistryAddress);
    mkdirSync(opts.dataDir, { recursive: true });
    this.directory = new PseudonymDirectory(join(opts.dataDir, DIRECTORY_FILE));
    this.cachePath = join(opts.dataDir, CACHE_FILE);
    this.view = this.loadCache() ?? this.emptyView();
    this.rebuildRecords();
    this.firstSync = new Promise((res, rej) => {
      this.resolveFirstSync = res;
      this.rejectFirstSync = rej;
    });
    this.firstSync.catch(() => undefined); // rejected by close(): only for whoever waits on ready()
    if (opts.follow !== false) this.schedule(0);
  }

  get(deviceId: string): DeviceRecord | undefined {
    return this.records.get(deviceId);
  }

  list(): DeviceRecord[] {
    return [...this.records.values()];
  }

  refusedKeys(): RefusedKey[] {
    return [...this.refused.values()];
  }

  status(): ChainRegistryStatus {
    let revoked = 0;
    for (const d of this.view.devices.values()) if (d.revokedAtMs !== undefined) revoked++;
    return {
      following: this.following,
      lastBlock: this.view.lastBlock,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      devices: this.view.devices.size,
      revoked,
      refusedKeys: this.refused.size,
      refusedKeysBy: refusedKeysBy([...this.refused.values()]),
      ...(this.chainId !== undefined ? { chainId: this.chainId } : {}),
      failures: this.failures,
      ...(this.lastSyncAtMs !== undefined ? { lastSyncAtMs: this.lastSyncAtMs } : {}),
    };
  }

  /**
   * Resolves after the first catch-up round that reached the chain head. While following,
   * it waits across failed rounds, and rejects only when the registry is closed first; with
   * `follow: false` it runs sync() and rejects when that fails.
   */
  ready(): Promise<void> {
    if (this.synced || this.o.follow !== false) return this.firstSync;
    return this.sync();
  }

  /**
   * One catch-up round now, after any round in progress: resolves when the local view holds
   * every event up to the head the round saw (minus confirmations), and 'changed' / 'revoked'
   * have been emitted for them.
   * @throws the RPC failure when the chain is unreachable (the view keeps being served);
   *   ChainRegistryError REGISTRY_CLOSED after close().
   */
  sync(): Promise<void> {
    if (this.closed) return Promise.reject(new ChainRegistryError('REGISTRY_CLOSED'));
    const r = this.rounds.then(() => this.guardedRound());
    this.rounds = r.catch(() => undefined);
    return r;
  }

  /**
   * Enrols devices on chain. Each entry is checked first (checkEnrolment: refusals as in the
   * file registry, and no transaction); a device already on chain for the same patientRef is
   * `unchanged` (its missing directory entry is written back), for another patientRef it is
   * refused as KEY_CONFLICT. The directory entries are written before any transaction is
   * sent, so a gateway that sees the event finds the pseudonym. Transactions go out with
   * consecutive nonces and are waited for; when enrol resolves, get() returns the devices.
   * @throws ChainRegistryError REGISTRY_NO_SIGNER, REGISTRY_NOT_AUTHORIZED, REGISTRY_TX_FAILED
   *   (detail.enrolled: what went through); the RPC failure when the chain is unreachable.
   */
  async enrol(entries: EnrolmentEntry[]): Promise<EnrolResult> {
    const signer = this.requireSigner();
    await this.sync(); // what is on chain already decides unchanged / conflict
    const key = this.patientRefKey();
    const site = siteIdOf(this.o.site);
    const result: EnrolResult = { enrolled: [], unchanged: [], refused: [] };
    const toSend: { entry: EnrolmentEntry; ref: string }[] = [];
    const planned = new Map<string, string>();
    const directoryUpdates = new Map<string, DirectoryEntry>();
    const conflict = (id: string, ref: string): { deviceId: string; reason: 'KEY_CONFLICT'; detail: string } => ({
      deviceId: id,
      reason: 'KEY_CONFLICT',
      detail: `device is already enrolled on chain for another patient (patientRef ${ref}); a device is enrolled once: revoke it and enrol a new device`,
    });
    for (const e of entries) {
      const bad = checkEnrolment(e);
      if (bad) {
        result.refused.push({ deviceId: e.deviceId, ...bad });
        continue;
      }
      const ref = patientRefOf(e.patient, key);
      const onChain = this.view.devices.get(e.deviceId);
      if (onChain && onChain.publicKey !== e.publicKey) {
        // The id is derived from the key (checked above), so only a SHA-256 prefix collision gets here.
        result.refused.push({ deviceId: e.deviceId, reason: 'KEY_CONFLICT', detail: 'device id already enrolled on chain with another key' });
        continue;
      }
      const prior = onChain?.patientRef ?? planned.get(e.deviceId);
      if (prior !== undefined) {
        if (prior !== ref) result.refused.push(conflict(e.deviceId, prior));
        else {
          result.unchanged.push(e.deviceId);
          if (onChain && this.directory.get(e.deviceId)?.patientRef !== ref) directoryUpdates.set(e.deviceId, entryOf(e, ref));
        }
        continue;
      }
      planned.set(e.deviceId, ref);
      directoryUpdates.set(e.deviceId, entryOf(e, ref));
      toSend.push({ entry: e, ref });
    }
    // Before any transaction: a gateway that sees the event must find the pseudonym here.
    // An entry whose transaction then fails is inert (it names a patientRef no event carries).
    if (directoryUpdates.size) this.directory.put(directoryUpdates);

    const contract = deviceRegistryAt(this.contract, signer);
    const sent: { id: string; ref: string; wait: Promise<TransactionReceipt | null> }[] = [];
    const raced: { id: string; ref: string }[] = [];
    let failure: unknown;
    let nonce = toSend.length ? await signer.getNonce('pending') : 0;
    for (const { entry, ref } of toSend) {
      try {
        // Entries are independent, so each estimate against the latest block holds and the
        // transactions can be pipelined; the nonce only advances for a transaction sent.
        const tx = await contract.enrol(deviceIdToBytes8(entry.deviceId), `0x${entry.publicKey}`, ref, site, { nonce });
        nonce++;
        const wait = tx.wait(this.o.confirmations);
        wait.catch(() => undefined); // awaited below, in order
        sent.push({ id: entry.deviceId, ref, wait });
      } catch (e) {
        const r = decodeRevert<DeviceRegistryErrors>(e, deviceRegistryInterface);
        if (r?.name === 'DeviceRegistryAlreadyEnrolled') {
          raced.push({ id: entry.deviceId, ref }); // enrolled by someone else since our sync
          continue;
        }
        failure = this.txFailure(e);
        break;
      }
    }
    const mined: string[] = [];
    let minBlock = this.view.lastBlock;
    for (const s of sent) {
      try {
        const receipt = await s.wait;
        if (receipt) minBlock = Math.max(minBlock, receipt.blockNumber);
        mined.push(s.id);
      } catch (e) {
        // Mined but reverted: someone enrolled the device between our estimate and the block.
        if (isError(e, 'CALL_EXCEPTION') && e.receipt) {
          minBlock = Math.max(minBlock, e.receipt.blockNumber);
          raced.push({ id: s.id, ref: s.ref });
        } else failure ??= this.txFailure(e);
      }
    }
    if (sent.length || raced.length) await this.syncTo(minBlock);
    for (const id of mined) result.enrolled.push(id);
    for (const { id, ref } of raced) {
      const d = this.view.devices.get(id);
      if (d?.patientRef === ref) result.unchanged.push(id);
      else if (d) result.refused.push(conflict(id, d.patientRef));
      else failure ??= new ChainRegistryError('REGISTRY_TX_FAILED', { deviceId: id, reason: 'the enrolment reverted, yet the device is not on chain' });
    }
    if (directoryUpdates.size) this.refreshRecords(); // write-backs of unchanged devices
    if (failure) {
      if (isChainRegistryError(failure, 'REGISTRY_NOT_AUTHORIZED') && !mined.length) throw failure;
      throw new ChainRegistryError('REGISTRY_TX_FAILED', { enrolled: result.enrolled, unchanged: result.unchanged, refused: result.refused.map((r) => r.deviceId), reason: (failure as Error).message }, { cause: failure });
    }
    this.o.log?.info({ event: 'registry_enrolled', enrolled: result.enrolled.length, unchanged: result.unchanged.length, refused: result.refused.length }, 'devices enrolled on chain');
    return result;
  }

  /**
   * Revokes a device on chain from `atMs` on (frames timestamped at or after it are refused),
   * waits for the transaction and syncs, so the returned record and get() carry revokedAtMs.
   * A device revoked already is returned as it is (revocation is final, with its first time).
   * @throws TypeError for a malformed id or time; ChainRegistryError REGISTRY_UNKNOWN_DEVICE,
   *   REGISTRY_REVOCATION_BEFORE_ENROLMENT (detail: enrolledAtMs, effectiveTimeMs),
   *   REGISTRY_NO_SIGNER, REGISTRY_NOT_AUTHORIZED, REGISTRY_TX_FAILED.
   */
  async revoke(deviceId: string, atMs: number): Promise<DeviceRecord> {
    const signer = this.requireSigner();
    const id8 = deviceIdToBytes8(deviceId);
    if (!Number.isSafeInteger(atMs) || atMs < 0) throw new TypeError(`revocation time must be Unix milliseconds, got ${atMs}`);
    const contract = deviceRegistryAt(this.contract, signer);
    let minBlock = this.view.lastBlock;
    try {
      const receipt = await (await contract.revoke(id8, BigInt(atMs))).wait(this.o.confirmations);
      if (receipt) minBlock = receipt.blockNumber;
    } catch (e) {
      const r = decodeRevert<DeviceRegistryErrors>(e, deviceRegistryInterface);
      if (r?.name === 'DeviceRegistryUnknownDevice') throw new ChainRegistryError('REGISTRY_UNKNOWN_DEVICE', { deviceId, contract: this.contract });
      if (r?.name === 'DeviceRegistryRevocationBeforeEnrolment') {
        throw new ChainRegistryError('REGISTRY_REVOCATION_BEFORE_ENROLMENT', { deviceId, enrolledAtMs: Number(r.args[1]), effectiveTimeMs: Number(r.args[2]) });
      }
      if (r?.name === 'DeviceRegistryAlreadyRevoked') {
        await this.sync();
        const onChain = this.view.devices.get(deviceId);
        const rec = this.get(deviceId) ?? (onChain ? this.recordOf(onChain) : undefined);
        if (rec?.revokedAtMs !== undefined) return rec;
        // The local view lags behind the node that answered: report what the chain said.
        if (rec) return { ...rec, revokedAtMs: Number(r.args[1]) };
        throw new ChainRegistryError('REGISTRY_TX_FAILED', { deviceId, reason: `revoked on chain from ${Number(r.args[1])}, but not in the local view` });
      }
      if (!(isError(e, 'CALL_EXCEPTION') && e.receipt)) throw this.txFailure(e);
      minBlock = e.receipt.blockNumber; // mined but reverted: another admin revoked it first
    }
    await this.syncTo(minBlock);
    // A device with a refused key is revoked like any other (the operator cleans the chain up); its record is not served.
    const d = this.view.devices.get(deviceId);
    const rec = this.get(deviceId) ?? (d ? this.recordOf(d) : undefined);
    if (rec?.revokedAtMs === undefined) throw new ChainRegistryError('REGISTRY_TX_FAILED', { deviceId, reason: 'the revocation was mined, but the local view does not show it' });
    return rec;
  }

  /** Stops following, waits for a round in progress, and writes the cache. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.rounds;
    this.following = false;
    if (!this.synced) this.rejectFirstSync(new ChainRegistryError('REGISTRY_CLOSED', { reason: 'closed before the first catch-up' }));
    this.writeCache();
  }

  // ---- following the chain -------------------------------------------------------------

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sync().then(
        () => this.schedule(this.o.pollIntervalMs),
        () => this.schedule(Math.min(this.o.maxBackoffMs, this.o.pollIntervalMs * 2 ** Math.min(this.failures, 16))),
      );
    }, delayMs);
    this.timer.unref();
  }

  private async guardedRound(): Promise<void> {
    try {
      await this.round();
    } catch (e) {
      this.following = false;
      this.failures++;
      this.lastError = (e as Error).message;
      if (this.failures === 1 || this.failures % LOG_EVERY_NTH_FAILURE === 0) {
        this.o.log?.warn({ event: 'registry_chain_unreachable', failures: this.failures, lastBlock: this.view.lastBlock, err: this.lastError }, 'chain unreachable: serving the cached registry');
      }
      throw e;
    }
    if (this.failures > 0) this.o.log?.info({ event: 'registry_chain_reachable', after: this.failures, lastBlock: this.view.lastBlock }, 'chain reachable again: registry following');
    this.failures = 0;
    this.lastError = undefined;
    this.following = true;
    this.lastSyncAtMs = Date.now();
    if (!this.synced) {
      this.synced = true;
      this.resolveFirstSync();
    }
    if (this.cacheDirty && Date.now() - this.lastCacheWrite >= CACHE_FLUSH_MS) this.writeCache();
  }

  /** Syncs until every event up to `block` is applied (a provider may answer a cached head for a moment). */
  private async syncTo(block: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await this.sync();
      if (this.view.lastBlock >= block) return;
      if (attempt >= 100) throw new ChainRegistryError('REGISTRY_TX_FAILED', { reason: `the node keeps reporting a head below block ${block}, which holds our transaction` });
      await sleep(Math.min(100, this.o.pollIntervalMs));
    }
  }

  private async round(): Promise<void> {
    if (!this.chainChecked) await this.checkChain();
    try {
      if (this.directory.refresh()) this.refreshRecords();
    } catch (e) {
      this.o.log?.warn({ event: 'registry_directory_unreadable', err: (e as Error).message }, 'pseudonym directory unreadable; keeping the entries read before');
    }
    const head = await this.rpc(this.o.provider.getBlockNumber(), 'eth_blockNumber');
    const target = head - (this.o.confirmations - 1);
    const v = this.view;
    if (v.lastBlockHash !== undefined) {
      // The block the view ends at must still be on the chain (gone or replaced: reorg, or a
      // reverted dev chain). The scan checks it again after reading each range of logs.
      const b = await this.blockHash(v.lastBlock);
      if (b !== v.lastBlockHash) return this.rescan(target, { block: v.lastBlock, expected: v.lastBlockHash, got: b ?? null });
    }
    if (target <= v.lastBlock) return;
    try {
      await this.scan(v, target, (changes) => this.publish(changes.enrolled, changes.revoked));
    } catch (e) {
      if (e instanceof ReorgDetected) return this.rescan(target, { block: v.lastBlock, reason: e.message });
      throw e;
    }
  }

  /** First contact: a cache of another chain is dropped (the contract address was checked at load). */
  private async checkChain(): Promise<void> {
    const p = this.o.provider as Provider & { send?: (method: string, params: unknown[]) => Promise<unknown> };
    // A JSON-RPC provider with a static network answers getNetwork() without asking the node.
    const id = typeof p.send === 'function' ? Number(await this.rpc(p.send('eth_chainId', []), 'eth_chainId')) : Number((await this.rpc(p.getNetwork(), 'getNetwork')).chainId);
    const cached = this.chainId;
    this.chainId = id;
    this.chainChecked = true;
    if (cached !== undefined && cached !== id) {
      this.o.log?.warn({ event: 'registry_cache_ignored', reason: 'another chain id', cached, chainId: id }, 'registry cache is for another chain: rebuilding it');
      const before = this.view;
      this.view = this.emptyView();
      this.swapped(before);
    }
  }

  /**
   * Scans getLogs from view.lastBlock+1 to `to` into `view`, chunk by chunk; after each chunk
   * the view ends at the chunk's last block and `onChunk` gets what changed.
   * @throws ReorgDetected when the view's last block is replaced while scanning.
   */
  private async scan(view: View, to: number, onChunk?: (c: { enrolled: string[]; revoked: string[] }) => void): Promise<void> {
    while (view.lastBlock < to) {
      const from = view.lastBlock + 1;
      const end = Math.min(to, from + MAX_LOG_RANGE - 1);
      let logs: Log[] | undefined;
      let endHash: string | undefined;
      for (let attempt = 1; !logs; attempt++) {
        // The hash of `end` read before and after the logs: unchanged, the logs are of that
        // chain (a change below `end` changes its hash). The view's own last block is checked
        // in between, so logs of a new branch are never appended to a view of the old one.
        const before = await this.blockHash(end);
        const got = await this.rpc(this.o.provider.getLogs({ address: this.contract, topics: [[ENROLLED_TOPIC, REVOKED_TOPIC]], fromBlock: from, toBlock: end }), 'eth_getLogs');
        if (view.lastBlockHash !== undefined && (await this.blockHash(view.lastBlock)) !== view.lastBlockHash) throw new ReorgDetected(`block ${view.lastBlock} was replaced`);
        const after = await this.blockHash(end);
        if (before !== undefined && before === after && got.every((l) => !l.removed && (l.blockNumber !== end || l.blockHash === before))) {
          logs = got;
          endHash = before;
        } else if (attempt >= CHUNK_ATTEMPTS) throw new Error(`blocks ${from}-${end} kept changing while their logs were read (reorganisation in progress)`);
      }
      const changes = applyLogs(view, logs);
      view.lastBlock = end;
      view.lastBlockHash = endHash;
      onChunk?.(changes);
    }
  }

  /** Rebuilds the view from deployBlock (the chain reorganised), then swaps it in. */
  private async rescan(target: number, why: Record<string, unknown>): Promise<void> {
    this.o.log?.warn({ event: 'registry_reorg', ...why, deployBlock: this.o.deployBlock }, 'chain reorganised under the registry: rescanning from the deploy block');
    for (let attempt = 1; ; attempt++) {
      const fresh = this.emptyView();
      try {
        await this.scan(fresh, target);
      } catch (e) {
        if (e instanceof ReorgDetected && attempt < RESCAN_ATTEMPTS) continue;
        throw e;
      }
      const before = this.view;
      this.view = fresh;
      const dropped = [...before.devices.keys()].filter((id) => !fresh.devices.has(id));
      this.o.log?.info({ event: 'registry_rescanned', lastBlock: fresh.lastBlock, devices: fresh.devices.size, dropped: dropped.length }, 'registry rebuilt from the chain');
      this.swapped(before);
      return;
    }
  }

  /** After the view was replaced: new records, 'revoked' for revocations new to us, 'changed'. */
  private swapped(before: View): void {
    this.rebuildRecords();
    for (const [id, d] of this.view.devices) {
      const rec = this.records.get(id);
      if (rec && d.revokedAtMs !== undefined && before.devices.get(id)?.revokedAtMs === undefined) this.emit('revoked', rec);
    }
    this.cacheDirty = true;
    this.writeCache();
    this.emit('changed');
  }

  /** Applies the outcome of a chunk scanned into the live view. */
  private publish(enrolled: string[], revoked: string[]): void {
    this.cacheDirty = true;
    if (!enrolled.length && !revoked.length) return;
    if (enrolled.some((id) => !this.directory.get(id))) {
      // Written by another process just before its transaction: re-read before falling back.
      try {
        this.directory.refresh(true);
      } catch (e) {
        this.o.log?.warn({ event: 'registry_directory_unreadable', err: (e as Error).message }, 'pseudonym directory unreadable');
      }
    }
    for (const id of new Set([...enrolled, ...revoked])) this.setRecord(id);
    for (const id of revoked) {
      const rec = this.records.get(id);
      if (rec) this.emit('revoked', rec); // a refused device was never served: nothing to cut
    }
    this.writeCache();
    this.emit('changed');
  }

  // ---- records, directory, cache --------------------------------------------------------

  private rebuildRecords(): void {
    this.records = new Map();
    this.refused = new Map();
    for (const id of this.view.devices.keys()) this.setRecord(id);
  }

  /** Re-joins records whose directory entry changed (another process enrolled); 'changed' if any did. */
  private refreshRecords(): void {
    let changed = false;
    for (const [id, d] of this.view.devices) {
      if (this.refused.has(id)) continue;
      const old = this.records.get(id);
      const next = this.recordOf(d);
      if (!old || old.patient !== next.patient || old.sensors.join() !== next.sensors.join() || old.firmware !== next.firmware) {
        this.records.set(id, next);
        changed = true;
      }
    }
    if (changed) this.emit('changed');
  }

  /** Makes the view's device a record, if its key passes the rule (§2.2); else lists it as refused. */
  private setRecord(id: string): void {
    const d = this.view.devices.get(id);
    this.records.delete(id);
    this.refused.delete(id);
    if (!d) return;
    const problem = this.keyRule.check(d.publicKey);
    if (!problem) {
      this.records.set(id, this.recordOf(d));
      return;
    }
    this.refused.set(id, { deviceId: id, reason: problem, publicKey: d.publicKey, block: d.block });
    if (this.alarmed.has(`${id}:${d.publicKey}`)) return;
    this.alarmed.add(`${id}:${d.publicKey}`);
    this.o.log?.error(
      { event: 'registry_key_refused', device: id, reason: problem, block: d.block, source: 'chain', contract: this.contract },
      'a device enrolled on chain has a key that breaks the key rule (PROTOCOL.md §2.2): refused, never trusted; revoke it on chain',
    );
  }

  private recordOf(d: ChainDevice): DeviceRecord {
    const entry = this.directory.get(d.deviceId);
    const own = entry?.patientRef === d.patientRef ? entry : undefined;
    if (entry && !own && !this.mismatchWarned.has(d.deviceId)) {
      this.mismatchWarned.add(d.deviceId);
      this.o.log?.warn({ event: 'registry_directory_mismatch', device: d.deviceId, chainPatientRef: d.patientRef }, 'directory entry names another patientRef than the chain: using the ref- pseudonym');
    }
    return {
      deviceId: d.deviceId,
      publicKey: Buffer.from(d.publicKey, 'hex'),
      patient: own ? own.patient : fallbackPseudonym(d.patientRef),
      sensors: own ? [...own.sensors] : [],
      ...(own?.firmware ? { firmware: own.firmware } : {}),
      enrolledAtMs: d.enrolledAtMs,
      ...(d.revokedAtMs !== undefined ? { revokedAtMs: d.revokedAtMs } : {}),
    };
  }

  private emptyView(): View {
    return { lastBlock: this.o.deployBlock - 1, lastBlockHash: undefined, devices: new Map() };
  }

  private loadCache(): View | undefined {
    if (!existsSync(this.cachePath)) return undefined;
    const ignore = (reason: string, extra: Record<string, unknown> = {}): undefined => {
      this.o.log?.warn({ event: 'registry_cache_ignored', reason, path: this.cachePath, ...extra }, 'registry cache ignored: rebuilding it from the chain');
      return undefined;
    };
    let c: Partial<CacheFile>;
    try {
      c = JSON.parse(readFileSync(this.cachePath, 'utf8')) as Partial<CacheFile>;
    } catch (e) {
      return ignore(`unreadable: ${(e as Error).message}`);
    }
    if (c.version !== 1 || typeof c.chainId !== 'number' || typeof c.contract !== 'string' || typeof c.lastBlock !== 'number' || !Array.isArray(c.devices)) return ignore('not a version 1 registry cache');
    if (c.contract.toLowerCase() !== this.contract.toLowerCase()) return ignore('another contract', { cached: c.contract, contract: this.contract });
    if (this.o.chainId !== undefined && c.chainId !== this.o.chainId) return ignore('another chain id', { cached: c.chainId, chainId: this.o.chainId });
    if (c.deployBlock !== this.o.deployBlock) return ignore('another deploy block', { cached: c.deployBlock, deployBlock: this.o.deployBlock });
    const devices = new Map<string, ChainDevice>();
    for (const d of c.devices) {
      if (!validCachedDevice(d)) return ignore('malformed device entry');
      devices.set(d.deviceId, d);
    }
    this.chainId = c.chainId;
    this.lastCacheWrite = Date.now();
    return { lastBlock: c.lastBlock, lastBlockHash: c.lastBlockHash ?? undefined, devices };
  }

  private writeCache(): void {
    if (this.chainId === undefined) return; // never reached the chain and no cache: nothing known to keep
    const doc: CacheFile = {
      version: 1,
      chainId: this.chainId,
      contract: this.contract,
      deployBlock: this.o.deployBlock,
      lastBlock: this.view.lastBlock,
      lastBlockHash: this.view.lastBlockHash ?? null,
      devices: [...this.view.devices.values()],
    };
    try {
      writeFileAtomic(this.cachePath, `${JSON.stringify(doc, null, 2)}\n`);
      this.cacheDirty = false;
      this.lastCacheWrite = Date.now();
    } catch (e) {
      // The cache only spares a rescan at the next start; the view in memory is unaffected.
      this.o.log?.error({ event: 'registry_cache_write_failed', path: this.cachePath, err: (e as Error).message }, 'registry cache not written');
    }
  }

  // ---- helpers --------------------------------------------------------------------------

  private requireSigner(): Signer {
    if (this.closed) throw new ChainRegistryError('REGISTRY_CLOSED');
    if (!this.o.signer) throw new ChainRegistryError('REGISTRY_NO_SIGNER', { contract: this.contract });
    return this.o.signer;
  }

  private patientRefKey(): Uint8Array {
    if (this.o.patientRefKey) return this.o.patientRefKey;
    const k = loadOrCreatePatientRefKey(this.o.dataDir);
    if (k.created) this.o.log?.info({ event: 'patient_ref_key_created', path: k.path }, 'new patient-ref key created: back it up with the pseudonym list, and give it to every gateway of the hospital');
    if (k.insecureMode !== undefined) this.o.log?.warn({ event: 'patient_ref_key_insecure', path: k.path, mode: k.insecureMode.toString(8) }, 'patient-ref key file is readable by others: chmod 600 it');
    return k.key;
  }

  private txFailure(e: unknown): Error {
    const r = decodeRevert<DeviceRegistryErrors>(e, deviceRegistryInterface);
    if (r?.name === 'AccessControlUnauthorizedAccount') return new ChainRegistryError('REGISTRY_NOT_AUTHORIZED', { account: r.args[0], neededRole: r.args[1], hospitalAdminRole: ROLES.HOSPITAL_ADMIN });
    return e instanceof Error ? e : new Error(String(e));
  }

  private async blockHash(n: number): Promise<string | undefined> {
    const b = await this.rpc(this.o.provider.getBlock(n), 'eth_getBlockByNumber');
    return b?.hash ?? undefined;
  }

  /** An RPC call with a deadline: a black-holed endpoint must fail the round, not stall it. */
  private async rpc<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_res, rej) => {
      timer = setTimeout(() => rej(new Error(`${what}: no answer within ${this.o.rpcTimeoutMs} ms`)), this.o.rpcTimeoutMs);
    });
    p.catch(() => undefined); // a late failure after the deadline is not an unhandled rejection
    try {
      return await Promise.race([p, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Applies logs to `view` in (block, log index) order; returns the devices enrolled and revoked. */
function applyLogs(view: View, logs: readonly Log[]): { enrolled: string[]; revoked: string[] } {
  const enrolled: string[] = [];
  const revoked: string[] = [];
  const sorted = [...logs].sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
  for (const log of sorted) {
    const parsed = deviceRegistryInterface.parseLog({ topics: [...log.topics], data: log.data });
    if (!parsed) continue;
    if (parsed.name === 'DeviceEnrolled') {
      const [deviceId, patientRef, site, publicKey, enrolledAtMs] = parsed.args.toArray() as [string, string, string, string, bigint];
      const id = deviceIdFromBytes8(deviceId);
      view.devices.set(id, {
        deviceId: id,
        publicKey: publicKey.toLowerCase().replace(/^0x/, ''),
        patientRef: patientRef.toLowerCase(),
        site: site.toLowerCase(),
        enrolledAtMs: Number(enrolledAtMs),
        block: log.blockNumber,
      });
      enrolled.push(id);
    } else if (parsed.name === 'DeviceRevoked') {
      const [deviceId, effectiveTimeMs] = parsed.args.toArray() as [string, bigint];
      const d = view.devices.get(deviceIdFromBytes8(deviceId));
      // The contract revokes only enrolled devices, once: anything else is not this contract's log.
      if (!d || d.revokedAtMs !== undefined) continue;
      d.revokedAtMs = Number(effectiveTimeMs);
      revoked.push(d.deviceId);
    }
  }
  return { enrolled, revoked };
}

function validCachedDevice(d: unknown): d is ChainDevice {
  const x = d as Partial<ChainDevice> | null;
  return (
    !!x &&
    typeof x.deviceId === 'string' &&
    /^[0-9a-f]{16}$/.test(x.deviceId) &&
    typeof x.publicKey === 'string' &&
    /^[0-9a-f]{64}$/.test(x.publicKey) &&
    typeof x.patientRef === 'string' &&
    /^0x[0-9a-f]{64}$/.test(x.patientRef) &&
    typeof x.site === 'string' &&
    typeof x.enrolledAtMs === 'number' &&
    (x.revokedAtMs === undefined || typeof x.revokedAtMs === 'number') &&
    typeof x.block === 'number'
  );
}

function entryOf(e: EnrolmentEntry, patientRef: string): DirectoryEntry {
  return { patient: e.patient, patientRef, sensors: e.sensors ?? [], ...(e.firmware ? { firmware: e.firmware } : {}) };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
