/**
 * Follows the events of one contract by polling eth_getLogs, into a local state that is served
 * from memory and cached on disk, without knowing what the events mean. The device registry
 * (gateway/registry/chain-registry.ts) and ConsentView (gateway/consent/consent-view.ts) are
 * built on it.
 *
 *   start        load the cache file (this chain, this contract, this deploy block) and serve it
 *   every poll   head = latest block; the block the state ends at must still have its hash, else
 *                the chain reorganised under us: rescan from deployBlock into a fresh state and
 *                swap it in; then getLogs(lastBlock+1 .. head-confirmations+1) in ranges of at
 *                most 2,000 blocks, applied in (block, log index) order
 *   chain down   keep serving the state; log the first failure and every 10th; back off
 *
 * The owner supplies the meaning through hooks: an empty state, how logs change a state, what
 * to announce after a live chunk or after a swapped-in rescan, and how its part of the state
 * is written to and read from the cache file.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { getAddress, type Log, type Provider } from 'ethers';
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { ChainError } from './errors.js';

/** Blocks per eth_getLogs request: public endpoints commonly refuse wider ranges. */
export const MAX_LOG_RANGE = 2000;

/** What every followed state has: every event up to and including `lastBlock` (hash `lastBlockHash`) is applied. */
export interface FollowedState {
  lastBlock: number;
  lastBlockHash: string | undefined;
}

/** The log methods used (a pino Logger fits). */
export interface FollowerLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface LogFollowerHooks<S extends FollowedState, C> {
  /** A state that has seen nothing: `lastBlock` deployBlock - 1. */
  empty(lastBlock: number): S;
  /**
   * Applies `logs` (sorted by block, then log index) to `state` and returns what changed.
   * `blockTimesMs` holds the timestamp (ms) of every block a log is in, by block hash.
   */
  apply(state: S, logs: readonly Log[], blockTimesMs: ReadonlyMap<string, number>): C;
  /** After a chunk was applied to the live state; return true when it changed something (the cache is written at once). */
  published?(changes: C): boolean | void;
  /** After a rescanned state replaced `before` (a reorganisation, or a cache of another chain). */
  swapped?(before: S, after: S): void;
  /** Fields the `<prefix>_rescanned` log line adds about a rescan that replaced `before`. */
  rescanned?(before: S, after: S): Record<string, unknown>;
  /** At the start of each round, once the chain id is checked (e.g. re-read a file the state is joined with). */
  beforeRound?(): void;
  /** The owner's part of the state as JSON, for the cache file. */
  save(state: S): unknown;
  /** The owner's part read back from the cache file; undefined (or why, as a string) when it is not valid. */
  load(data: unknown, lastBlock: number, lastBlockHash: string | undefined): S | string | undefined;
}

export interface LogFollowerOptions<S extends FollowedState, C> {
  provider: Provider;
  /** The contract whose logs are followed. */
  address: string;
  /** topic0 values (event signatures) to follow; logs with any of them are read. */
  topics: readonly string[];
  /** Where scanning starts: the contract's deployment block. */
  deployBlock: number;
  /** The cache file (JSON, written atomically). */
  cachePath: string;
  /** The cache file's key for the owner's part of the state. Default 'data'; the registry's cache, older than this engine, has 'devices'. */
  cacheField?: string;
  /** Indentation of the cache file's JSON (the registry's is indented for people to read). Default none. */
  cacheIndent?: number;
  /** Blocks an event needs (its own included) before it is applied. Default 1. */
  confirmations?: number;
  /** Polling period while the chain answers. Default 1000. */
  pollIntervalMs?: number;
  /** Longest wait between retries while the chain is unreachable. Default 30,000. */
  maxBackoffMs?: number;
  /** Deadline of each RPC call of a round. Default 15,000. */
  rpcTimeoutMs?: number;
  /** Poll in the background. false: only sync() talks to the chain. Default true. */
  follow?: boolean;
  /** The expected chain id: a cache of another chain is dropped at load, not at first contact. */
  chainId?: number;
  /** Prefix of the log events (`<prefix>_reorg`, `<prefix>_chain_unreachable`, ...). */
  logPrefix: string;
  /** Fetch the timestamp of every block that holds a log (for the `apply` hook). Default false. */
  blockTimes?: boolean;
  log?: FollowerLog;
  hooks: LogFollowerHooks<S, C>;
}

export interface LogFollowerStatus {
  /** The last round reached the chain head. */
  following: boolean;
  /** Every event up to this block is applied. */
  lastBlock: number;
  /** Why the last round failed, while the chain is unreachable. */
  lastError?: string;
  chainId?: number;
  /** Consecutive failed rounds. */
  failures: number;
  lastSyncAtMs?: number;
}

/** The cache file: these fields, then the owner's part under `cacheField`. */
interface CacheFile {
  version: 1;
  chainId: number;
  contract: string;
  deployBlock: number;
  lastBlock: number;
  lastBlockHash: string | null;
  [cacheField: string]: unknown;
}

/** Thrown inside a scan when the block the state ends at is no longer on the chain. */
class ReorgDetected extends Error {}

export const FOLLOWER_ERRORS = {
  FOLLOWER_CLOSED: 'the follower was closed',
} as const;
export type FollowerErrorCode = keyof typeof FOLLOWER_ERRORS;

/** What to do about each code. */
export const FOLLOWER_ERROR_REMEDIES: Remedies<FollowerErrorCode> = {
  FOLLOWER_CLOSED: 'Nothing: the gateway is stopping; the follower starts again from its cache on the next start.',
};

/** Thrown by sync() after close(). */
export class FollowerClosedError extends CodedError<FollowerErrorCode> {
  constructor() {
    super(FOLLOWER_ERRORS, 'FOLLOWER_CLOSED');
  }
}

const LOG_EVERY_NTH_FAILURE = 10;
const CACHE_FLUSH_MS = 60_000;
const CHUNK_ATTEMPTS = 3;
const RESCAN_ATTEMPTS = 3;

export class LogFollower<S extends FollowedState, C> {
  readonly address: string;
  private readonly o: Required<Pick<LogFollowerOptions<S, C>, 'confirmations' | 'pollIntervalMs' | 'maxBackoffMs' | 'rpcTimeoutMs'>> & LogFollowerOptions<S, C>;
  private live: S;
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

  /**
   * Loads the cache and, unless `follow: false`, starts polling in the background (call
   * start() after the owner is ready to receive hooks; the constructor never calls them but `load`/`empty`).
   * @throws TypeError for bad options.
   */
  constructor(opts: LogFollowerOptions<S, C>) {
    if (!Number.isSafeInteger(opts.deployBlock) || opts.deployBlock < 0) throw new TypeError(`deployBlock must be a block number, got ${opts.deployBlock}`);
    const confirmations = opts.confirmations ?? 1;
    if (!Number.isSafeInteger(confirmations) || confirmations < 1) throw new TypeError(`confirmations must be at least 1, got ${confirmations}`);
    const pollIntervalMs = opts.pollIntervalMs ?? 1000;
    if (!(pollIntervalMs > 0)) throw new TypeError(`pollIntervalMs must be > 0, got ${pollIntervalMs}`);
    this.o = { maxBackoffMs: 30_000, rpcTimeoutMs: 15_000, ...stripUndefined(opts), confirmations, pollIntervalMs };
    this.address = getAddress(opts.address);
    mkdirSync(dirname(opts.cachePath), { recursive: true });
    this.live = this.loadCache() ?? this.o.hooks.empty(this.o.deployBlock - 1);
    this.firstSync = new Promise((res, rej) => {
      this.resolveFirstSync = res;
      this.rejectFirstSync = rej;
    });
    this.firstSync.catch(() => undefined); // rejected by close(): only for whoever waits on ready()
  }

  /** The live state (read it; change it only through the hooks). */
  get state(): S {
    return this.live;
  }

  /** Starts polling in the background, unless `follow: false`. */
  start(): void {
    if (this.o.follow !== false && !this.closed && !this.timer) this.schedule(0);
  }

  status(): LogFollowerStatus {
    return {
      following: this.following,
      lastBlock: this.live.lastBlock,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.chainId !== undefined ? { chainId: this.chainId } : {}),
      failures: this.failures,
      ...(this.lastSyncAtMs !== undefined ? { lastSyncAtMs: this.lastSyncAtMs } : {}),
    };
  }

  /** Resolves after the first round that reached the chain head (following), or runs sync() (not following). */
  ready(): Promise<void> {
    if (this.synced || this.o.follow !== false) return this.firstSync;
    return this.sync();
  }

  /**
   * One catch-up round now, after any round in progress.
   * @throws the RPC failure when the chain is unreachable (the state keeps being served);
   *   FollowerClosedError after close().
   */
  sync(): Promise<void> {
    if (this.closed) return Promise.reject(new FollowerClosedError());
    const r = this.rounds.then(() => this.guardedRound());
    this.rounds = r.catch(() => undefined);
    return r;
  }

  /**
   * Syncs until every event up to `block` is applied (a provider may answer a cached head for a moment).
   * @throws `stuck(reason)` (default an Error of `reason`) when the node keeps reporting a head below `block`.
   */
  async syncTo(block: number, stuck: (reason: string) => Error = (reason) => new Error(reason)): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await this.sync();
      if (this.live.lastBlock >= block) return;
      if (attempt >= 100) throw stuck(`the node keeps reporting a head below block ${block}`);
      await sleep(Math.min(100, this.o.pollIntervalMs));
    }
  }

  /** Stops polling, waits for a round in progress, and writes the cache. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.rounds;
    this.following = false;
    if (!this.synced) this.rejectFirstSync(new FollowerClosedError());
    this.writeCache();
  }

  /** Writes the cache file now (the owner's state changed outside a round). */
  flushCache(): void {
    this.writeCache();
  }

  // ---- rounds --------------------------------------------------------------------------

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
    const p = this.o.logPrefix;
    try {
      await this.round();
    } catch (e) {
      this.following = false;
      this.failures++;
      this.lastError = (e as Error).message;
      if (this.failures === 1 || this.failures % LOG_EVERY_NTH_FAILURE === 0) {
        this.o.log?.warn(
          { event: `${p}_chain_unreachable`, failures: this.failures, lastBlock: this.live.lastBlock, err: this.lastError },
          'chain unreachable: serving the cached state',
        );
      }
      throw e;
    }
    if (this.failures > 0)
      this.o.log?.info({ event: `${p}_chain_reachable`, after: this.failures, lastBlock: this.live.lastBlock }, 'chain reachable again: following');
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

  private async round(): Promise<void> {
    if (!this.chainChecked) await this.checkChain();
    this.o.hooks.beforeRound?.();
    const head = await this.rpc(this.o.provider.getBlockNumber(), 'eth_blockNumber');
    const target = head - (this.o.confirmations - 1);
    const v = this.live;
    if (v.lastBlockHash !== undefined) {
      // The block the state ends at must still be on the chain (gone or replaced: a reorg, or a
      // reverted dev chain). The scan checks it again after reading each range of logs.
      const b = await this.blockHash(v.lastBlock);
      if (b !== v.lastBlockHash) return this.rescan(target, { block: v.lastBlock, expected: v.lastBlockHash, got: b ?? null });
    }
    if (target <= v.lastBlock) return;
    try {
      await this.scan(v, target, (changes) => {
        this.cacheDirty = true;
        if (this.o.hooks.published?.(changes) === true) this.writeCache();
      });
    } catch (e) {
      if (e instanceof ReorgDetected) return this.rescan(target, { block: v.lastBlock, reason: e.message });
      throw e;
    }
  }

  /** First contact: a cache of another chain is dropped (the contract address was checked at load). */
  private async checkChain(): Promise<void> {
    const p = this.o.provider as Provider & { send?: (method: string, params: unknown[]) => Promise<unknown> };
    // A JSON-RPC provider with a static network answers getNetwork() without asking the node.
    const id =
      typeof p.send === 'function'
        ? Number(await this.rpc(p.send('eth_chainId', []), 'eth_chainId'))
        : Number((await this.rpc(p.getNetwork(), 'getNetwork')).chainId);
    const cached = this.chainId;
    this.chainId = id;
    this.chainChecked = true;
    if (cached !== undefined && cached !== id) {
      this.o.log?.warn(
        { event: `${this.o.logPrefix}_cache_ignored`, reason: 'another chain id', cached, chainId: id },
        'cache is for another chain: rebuilding it',
      );
      const before = this.live;
      this.live = this.o.hooks.empty(this.o.deployBlock - 1);
      this.swap(before);
    }
  }

  /**
   * Scans getLogs from state.lastBlock+1 to `to` into `state`, chunk by chunk; after each chunk
   * the state ends at the chunk's last block and `onChunk` gets what changed.
   * @throws ReorgDetected when the state's last block is replaced while scanning.
   */
  private async scan(state: S, to: number, onChunk?: (c: C) => void): Promise<void> {
    while (state.lastBlock < to) {
      const from = state.lastBlock + 1;
      const end = Math.min(to, from + MAX_LOG_RANGE - 1);
      let logs: Log[] | undefined;
      let endHash: string | undefined;
      for (let attempt = 1; !logs; attempt++) {
        // The hash of `end` read before and after the logs: unchanged, the logs are of that
        // chain (a change below `end` changes its hash). The state's own last block is checked
        // in between, so logs of a new branch are never appended to a state of the old one.
        const before = await this.blockHash(end);
        const got = await this.rpc(
          this.o.provider.getLogs({ address: this.address, topics: [[...this.o.topics]], fromBlock: from, toBlock: end }),
          'eth_getLogs',
        );
        if (state.lastBlockHash !== undefined && (await this.blockHash(state.lastBlock)) !== state.lastBlockHash)
          throw new ReorgDetected(`block ${state.lastBlock} was replaced`);
        const after = await this.blockHash(end);
        if (before !== undefined && before === after && got.every((l) => !l.removed && (l.blockNumber !== end || l.blockHash === before))) {
          logs = got;
          endHash = before;
        } else if (attempt >= CHUNK_ATTEMPTS) throw new Error(`blocks ${from}-${end} kept changing while their logs were read (reorganisation in progress)`);
      }
      const sorted = [...logs].sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
      const times = this.o.blockTimes ? await this.blockTimes(sorted) : new Map<string, number>();
      const changes = this.o.hooks.apply(state, sorted, times);
      state.lastBlock = end;
      state.lastBlockHash = endHash;
      onChunk?.(changes);
    }
  }

  /** Timestamps (ms) of the blocks the logs are in, read by block hash (exact even across a reorg). */
  private async blockTimes(logs: readonly Log[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const l of logs) {
      if (out.has(l.blockHash)) continue;
      const b = await this.rpc(this.o.provider.getBlock(l.blockHash), 'eth_getBlockByHash');
      if (!b) throw new ReorgDetected(`block ${l.blockHash} of a log is gone`);
      out.set(l.blockHash, b.timestamp * 1000);
    }
    return out;
  }

  /** Rebuilds the state from deployBlock (the chain reorganised), then swaps it in. */
  private async rescan(target: number, why: Record<string, unknown>): Promise<void> {
    const p = this.o.logPrefix;
    this.o.log?.warn({ event: `${p}_reorg`, ...why, deployBlock: this.o.deployBlock }, 'chain reorganised: rescanning from the deploy block');
    for (let attempt = 1; ; attempt++) {
      const fresh = this.o.hooks.empty(this.o.deployBlock - 1);
      try {
        await this.scan(fresh, target);
      } catch (e) {
        if (e instanceof ReorgDetected && attempt < RESCAN_ATTEMPTS) continue;
        throw e;
      }
      const before = this.live;
      this.live = fresh;
      this.o.log?.info({ event: `${p}_rescanned`, lastBlock: fresh.lastBlock, ...this.o.hooks.rescanned?.(before, fresh) }, 'state rebuilt from the chain');
      this.swap(before);
      return;
    }
  }

  private swap(before: S): void {
    this.cacheDirty = true;
    this.writeCache();
    this.o.hooks.swapped?.(before, this.live);
  }

  // ---- cache ---------------------------------------------------------------------------

  private loadCache(): S | undefined {
    const path = this.o.cachePath;
    if (!existsSync(path)) return undefined;
    const ignore = (reason: string, extra: Record<string, unknown> = {}): undefined => {
      this.o.log?.warn({ event: `${this.o.logPrefix}_cache_ignored`, reason, path, ...extra }, 'cache ignored: rebuilding it from the chain');
      return undefined;
    };
    let c: Partial<CacheFile>;
    try {
      c = JSON.parse(readFileSync(path, 'utf8')) as Partial<CacheFile>;
    } catch (e) {
      return ignore(`unreadable: ${(e as Error).message}`);
    }
    if (c.version !== 1 || typeof c.chainId !== 'number' || typeof c.contract !== 'string' || typeof c.lastBlock !== 'number')
      return ignore('not a version 1 cache');
    if (c.contract.toLowerCase() !== this.address.toLowerCase()) return ignore('another contract', { cached: c.contract, contract: this.address });
    if (this.o.chainId !== undefined && c.chainId !== this.o.chainId) return ignore('another chain id', { cached: c.chainId, chainId: this.o.chainId });
    if (c.deployBlock !== this.o.deployBlock) return ignore('another deploy block', { cached: c.deployBlock, deployBlock: this.o.deployBlock });
    const state = this.o.hooks.load(c[this.o.cacheField ?? 'data'], c.lastBlock, c.lastBlockHash ?? undefined);
    if (state === undefined || typeof state === 'string') return ignore(state ?? 'malformed entries');
    this.chainId = c.chainId;
    this.lastCacheWrite = Date.now();
    return state;
  }

  private writeCache(): void {
    if (this.chainId === undefined) return; // never reached the chain and no cache: nothing known to keep
    const doc: CacheFile = {
      version: 1,
      chainId: this.chainId,
      contract: this.address,
      deployBlock: this.o.deployBlock,
      lastBlock: this.live.lastBlock,
      lastBlockHash: this.live.lastBlockHash ?? null,
      [this.o.cacheField ?? 'data']: this.o.hooks.save(this.live),
    };
    try {
      writeFileAtomic(this.o.cachePath, `${JSON.stringify(doc, null, this.o.cacheIndent)}\n`);
      this.cacheDirty = false;
      this.lastCacheWrite = Date.now();
    } catch (e) {
      // The cache only spares a rescan at the next start; the state in memory is unaffected.
      this.o.log?.error({ event: `${this.o.logPrefix}_cache_write_failed`, path: this.o.cachePath, err: (e as Error).message }, 'cache not written');
    }
  }

  // ---- helpers --------------------------------------------------------------------------

  private async blockHash(n: number): Promise<string | undefined> {
    const b = await this.rpc(this.o.provider.getBlock(n), 'eth_getBlockByNumber');
    return b?.hash ?? undefined;
  }

  /**
   * An RPC call with a deadline: a black-holed endpoint must fail the round, not stall it. The
   * gateway's provider has a deadline of its own on each request (../chain/rpc-deadline.ts); this
   * one also bounds a provider without it.
   * @throws ChainError CHAIN_TIMEOUT at the deadline; the call's own failure before it.
   */
  private async rpc<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_res, rej) => {
      timer = setTimeout(() => rej(new ChainError('CHAIN_TIMEOUT', { method: what, timeoutMs: this.o.rpcTimeoutMs })), this.o.rpcTimeoutMs);
    });
    p.catch(() => undefined); // a late failure after the deadline is not an unhandled rejection
    try {
      return await Promise.race([p, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
