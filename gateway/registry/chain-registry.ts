/**
 * The device registry backed by the on-chain DeviceRegistry contract (docs/contracts.md,
 * "On-chain registry").
 *
 * Ingest reads it synchronously from memory, like the file registry, and never waits on the
 * chain. The memory view is the contract's DeviceEnrolled / DeviceRevoked events, followed by
 * gateway/chain/log-follower.ts (polling eth_getLogs, confirmations, reorganisation rescans,
 * the cache served while the chain is down), joined with the local pseudonym directory
 * (./directory.ts), which is re-read before each round:
 *
 *   start        load registry-cache.json (this chain, this contract) and serve it at once
 *   every poll   the events after the cached lastBlock, up to head-confirmations+1; a
 *                reorganisation under the view rebuilds it from deployBlock (registry_reorg)
 *   chain down   keep serving the view; log the first failure and every 10th; back off
 *
 * registry-cache.json keeps the format it had before the follower existed (the devices at top
 * level, indented), so caches written by earlier gateways load without a rescan.
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
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { getAddress, isError, type Provider, type Signer, type TransactionReceipt } from 'ethers';
import { CodedError, type ErrorDetail, type Remedies } from '../../firmware-proto/coded-error.js';
import { decodeRevert, deviceRegistryAt, deviceRegistryInterface, ROLES, type DeviceRegistryErrors } from '../chain/contracts.js';
import { deviceIdToBytes8, patientRefOf, siteIdOf } from '../chain/ids.js';
import { FollowerClosedError, LogFollower, type FollowerLog } from '../chain/log-follower.js';
import { applyLogs, DEVICE_REGISTRY_TOPICS, emptyView, loadDevices, type ChainDevice, type Changes, type View } from './chain-view.js';
import { DIRECTORY_FILE, fallbackPseudonym, loadOrCreatePatientRefKey, PseudonymDirectory, type DirectoryEntry } from './directory.js';
import type { KeyProblem } from '../../firmware-proto/signing.js';
import {
  checkEnrolment,
  KeyRuleCache,
  refusedKeysBy,
  type DeviceRecord,
  type DeviceRegistry,
  type EnrolResult,
  type EnrolmentEntry,
  type RefusedKey,
} from './registry.js';

export const CACHE_FILE = 'registry-cache.json';
export { MAX_LOG_RANGE } from '../chain/log-follower.js';

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

/** What to do about each code (docs/errors.md). */
export const CHAIN_REGISTRY_ERROR_REMEDIES: Remedies<ChainRegistryErrorCode> = {
  REGISTRY_NO_SIGNER: "Give the command the hospital admin key (--admin-key-file F, or the embedded chain's admin account).",
  REGISTRY_NOT_AUTHORIZED: 'Use a key that holds HOSPITAL_ADMIN_ROLE, or have the DeviceRegistry admin grant it.',
  REGISTRY_UNKNOWN_DEVICE: 'Check the device id; enrol the device first.',
  REGISTRY_REVOCATION_BEFORE_ENROLMENT: 'Give the revocation time in milliseconds, at or after the enrolment.',
  REGISTRY_TX_FAILED: 'Check the chain (CHAIN_DOWN, CHAIN_HUNG) and run the enrolment again: it is idempotent.',
  REGISTRY_CLOSED: 'Nothing: the gateway is stopping.',
};

export class ChainRegistryError extends CodedError<ChainRegistryErrorCode> {
  constructor(code: ChainRegistryErrorCode, detail: ErrorDetail = {}, options?: ErrorOptions) {
    super(CHAIN_REGISTRY_ERRORS, code, detail, options);
  }
}

export function isChainRegistryError(e: unknown, code?: ChainRegistryErrorCode): e is ChainRegistryError {
  return e instanceof ChainRegistryError && (code === undefined || e.code === code);
}

/** The log methods used (a pino Logger fits). */
export type RegistryLog = FollowerLog;

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

export class ChainRegistry extends EventEmitter<{ revoked: [DeviceRecord]; changed: [] }> implements DeviceRegistry {
  readonly contract: string;
  private readonly o: Required<Pick<ChainRegistryOptions, 'confirmations' | 'site'>> & ChainRegistryOptions;
  private readonly follower: LogFollower<View, Changes>;
  private readonly directory: PseudonymDirectory;
  private records = new Map<string, DeviceRecord>();
  private closed = false;
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
    this.o = { confirmations: 1, site: 'default', ...stripUndefined(opts) };
    siteIdOf(this.o.site); // TypeError for an empty label, now rather than at the first enrol
    getAddress(opts.deviceRegistryAddress); // an invalid address throws before anything is created on disk
    mkdirSync(opts.dataDir, { recursive: true });
    this.directory = new PseudonymDirectory(join(opts.dataDir, DIRECTORY_FILE));
    // Options left undefined take the follower's defaults (it drops undefined values).
    const { provider, deployBlock, confirmations, pollIntervalMs, maxBackoffMs, rpcTimeoutMs, follow, chainId, log } = opts;
    this.follower = new LogFollower<View, Changes>({
      provider,
      deployBlock,
      confirmations,
      pollIntervalMs,
      maxBackoffMs,
      rpcTimeoutMs,
      follow,
      chainId,
      log,
      address: opts.deviceRegistryAddress,
      topics: DEVICE_REGISTRY_TOPICS,
      cachePath: join(opts.dataDir, CACHE_FILE),
      cacheField: 'devices',
      cacheIndent: 2,
      logPrefix: 'registry',
      hooks: {
        empty: emptyView,
        apply: applyLogs,
        published: (c) => this.published(c),
        swapped: (before) => this.swapped(before),
        rescanned: (before, after) => ({ devices: after.devices.size, dropped: [...before.devices.keys()].filter((id) => !after.devices.has(id)).length }),
        beforeRound: () => this.refreshDirectory(),
        save: (v) => [...v.devices.values()],
        load: loadDevices,
      },
    });
    this.contract = this.follower.address;
    this.rebuildRecords();
    this.follower.start();
  }

  /** The live view (the follower's state). */
  private get view(): View {
    return this.follower.state;
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
    const f = this.follower.status();
    return {
      following: f.following,
      lastBlock: f.lastBlock,
      ...(f.lastError !== undefined ? { lastError: f.lastError } : {}),
      devices: this.view.devices.size,
      revoked,
      refusedKeys: this.refused.size,
      refusedKeysBy: refusedKeysBy([...this.refused.values()]),
      ...(f.chainId !== undefined ? { chainId: f.chainId } : {}),
      failures: f.failures,
      ...(f.lastSyncAtMs !== undefined ? { lastSyncAtMs: f.lastSyncAtMs } : {}),
    };
  }

  /**
   * Resolves after the first catch-up round that reached the chain head. While following,
   * it waits across failed rounds, and rejects only when the registry is closed first; with
   * `follow: false` it runs sync() and rejects when that fails.
   */
  ready(): Promise<void> {
    return this.follower.ready().catch((e: unknown) => {
      throw e instanceof FollowerClosedError ? new ChainRegistryError('REGISTRY_CLOSED', { reason: 'closed before the first catch-up' }) : e;
    });
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
    return this.follower.sync();
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
      throw new ChainRegistryError(
        'REGISTRY_TX_FAILED',
        { enrolled: result.enrolled, unchanged: result.unchanged, refused: result.refused.map((r) => r.deviceId), reason: (failure as Error).message },
        { cause: failure },
      );
    }
    this.o.log?.info(
      { event: 'registry_enrolled', enrolled: result.enrolled.length, unchanged: result.unchanged.length, refused: result.refused.length },
      'devices enrolled on chain',
    );
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
    if (rec?.revokedAtMs === undefined)
      throw new ChainRegistryError('REGISTRY_TX_FAILED', { deviceId, reason: 'the revocation was mined, but the local view does not show it' });
    return rec;
  }

  /** Stops following, waits for a round in progress, and writes the cache. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.follower.close();
  }

  // ---- following the chain (the follower's hooks) ----------------------------------------

  /** Syncs until every event up to `block` (which holds our transaction) is applied. */
  private syncTo(block: number): Promise<void> {
    return this.follower.syncTo(block, (reason) => new ChainRegistryError('REGISTRY_TX_FAILED', { reason: `${reason}, which holds our transaction` }));
  }

  /** Before each round: another process may have enrolled, and written the directory. */
  private refreshDirectory(): void {
    try {
      if (this.directory.refresh()) this.refreshRecords();
    } catch (e) {
      this.o.log?.warn(
        { event: 'registry_directory_unreadable', err: (e as Error).message },
        'pseudonym directory unreadable; keeping the entries read before',
      );
    }
  }

  /** After a rescanned view replaced `before`: new records, 'revoked' for revocations new to us, 'changed'. */
  private swapped(before: View): void {
    this.rebuildRecords();
    for (const [id, d] of this.view.devices) {
      const rec = this.records.get(id);
      if (rec && d.revokedAtMs !== undefined && before.devices.get(id)?.revokedAtMs === undefined) this.emit('revoked', rec);
    }
    this.emit('changed');
  }

  /** After a chunk was applied to the live view; true when it changed something (the follower writes the cache). */
  private published({ enrolled, revoked }: Changes): boolean {
    if (!enrolled.length && !revoked.length) return false;
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
    this.emit('changed');
    return true;
  }

  // ---- records and directory ------------------------------------------------------------

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
      this.o.log?.warn(
        { event: 'registry_directory_mismatch', device: d.deviceId, chainPatientRef: d.patientRef },
        'directory entry names another patientRef than the chain: using the ref- pseudonym',
      );
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

  // ---- helpers --------------------------------------------------------------------------

  private requireSigner(): Signer {
    if (this.closed) throw new ChainRegistryError('REGISTRY_CLOSED');
    if (!this.o.signer) throw new ChainRegistryError('REGISTRY_NO_SIGNER', { contract: this.contract });
    return this.o.signer;
  }

  private patientRefKey(): Uint8Array {
    if (this.o.patientRefKey) return this.o.patientRefKey;
    const k = loadOrCreatePatientRefKey(this.o.dataDir);
    if (k.created)
      this.o.log?.info(
        { event: 'patient_ref_key_created', path: k.path },
        'new patient-ref key created: back it up with the pseudonym list, and give it to every gateway of the hospital',
      );
    if (k.insecureMode !== undefined)
      this.o.log?.warn(
        { event: 'patient_ref_key_insecure', path: k.path, mode: k.insecureMode.toString(8) },
        'patient-ref key file is readable by others: chmod 600 it',
      );
    return k.key;
  }

  private txFailure(e: unknown): Error {
    const r = decodeRevert<DeviceRegistryErrors>(e, deviceRegistryInterface);
    if (r?.name === 'AccessControlUnauthorizedAccount')
      return new ChainRegistryError('REGISTRY_NOT_AUTHORIZED', { account: r.args[0], neededRole: r.args[1], hospitalAdminRole: ROLES.HOSPITAL_ADMIN });
    return e instanceof Error ? e : new Error(String(e));
  }
}

function entryOf(e: EnrolmentEntry, patientRef: string): DirectoryEntry {
  return { patient: e.patient, patientRef, sensors: e.sensors ?? [], ...(e.firmware ? { firmware: e.firmware } : {}) };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
