/**
 * Anchors sealed batches on the chain, one transaction per batch, strictly in batch order, in
 * one AnchorRegistry stream (`stream`: STREAM.FRAMES by default, STREAM.ACCESS_LOG for the
 * access log; each (gateway, stream) has its own batch sequence).
 *
 * The contract's own sequence decides what happens next, so no batch is skipped and none is
 * anchored twice, whatever happened before a crash or a timeout:
 *
 *   chain's next = batch     send anchor(FRAMES, batch, root, leafCount, first, last),
 *                            wait for `confirmations`, record it
 *   chain's next > batch     an earlier attempt went through (outcome was unknown): read the
 *                            anchor back, check it is ours (same root, count, times), find its
 *                            transaction from the Anchored event, record it
 *   chain's next < batch     the chain lost anchors we recorded: stop and say so
 *
 * While the chain is unreachable the loop retries with backoff; sealed batches wait in the
 * batch store, in order, and are anchored one after another when it returns. A transaction
 * that is not mined in `txTimeoutMs` is replaced (same nonce, higher fee) rather than
 * followed by a second one.
 *
 * Every call to the chain has a deadline: the provider's (chain.rpcTimeoutMs, see
 * ../chain/rpc-deadline.ts) on each request, `txTimeoutMs` on a transaction's mining. A node
 * that accepts connections and stops answering (a SIGSTOPped anvil) fails the round with
 * CHAIN_TIMEOUT within the deadline: the anchorer reports itself down with that error and
 * retries with backoff, instead of waiting for minutes while looking up. status() also tells
 * how old the oldest unanchored batch is and how long a transaction has waited to be mined,
 * for the ANCHORS_BEHIND and CHAIN_HUNG alarms (../status/health-monitor.ts).
 *
 * Anchorers of several streams send from the same account: they take turns on the account's
 * transaction lane (./tx-lane.ts), held from reading the chain's sequence until the
 * transaction is confirmed (across a replacement when it is stuck), so that only one
 * transaction of the account is ever in flight and no two race for a nonce.
 */
import { retryDelayMs } from '../util/backoff.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { id, zeroPadValue, toBeHex, type Provider, type Signer, type TransactionReceipt } from 'ethers';
import { CodedError, type ErrorDetail, type Remedies } from '../../firmware-proto/coded-error.js';
import type { Logger } from '../log.js';
import { STREAM, type AnchorRegistryContract, type StreamId } from '../chain/contracts.js';
import type { AnchorRecord, BatchStore, SealedBatch } from './batch-store.js';
import { txLaneOf, type LaneRelease, type TxLane } from './tx-lane.js';

export const ANCHOR_ERRORS = {
  ANCHOR_CONFLICT:
    'the chain holds a different anchor for this batch sequence of this gateway: another process anchors with this key, or the local batch store was replaced',
  CHAIN_BEHIND: 'the chain has fewer anchors of this gateway than the batch store recorded as confirmed: the chain was reset or is another chain',
  TX_REVERTED: 'the anchoring transaction was mined but reverted',
} as const;
export type AnchorErrorCode = keyof typeof ANCHOR_ERRORS;

/** What to do about each code: docs/anchoring.md. */
export const ANCHOR_ERROR_REMEDIES: Remedies<AnchorErrorCode> = {
  ANCHOR_CONFLICT:
    'An operator must look (alarm ANCHOR_HALTED): stop the other process that anchors with this key, or restore the batch store that belongs to this chain.',
  CHAIN_BEHIND:
    'An operator must look (alarm ANCHOR_HALTED): the chain was reset or is another chain; restore its state, or point the gateway at the right one.',
  TX_REVERTED: "Read the transaction's revert (`detail.txHash`): usually the gateway account lost its role on AnchorRegistry; the batch is retried.",
};

/** A coded anchoring failure; `detail` carries what was expected and what was found. */
export class AnchorError extends CodedError<AnchorErrorCode> {
  constructor(code: AnchorErrorCode, detail: ErrorDetail = {}) {
    super(ANCHOR_ERRORS, code, detail);
  }
}

export interface AnchorTarget {
  provider: Provider;
  signer: Signer;
  /** Connected to `signer`. */
  anchorRegistry: AnchorRegistryContract;
  chainId: number;
  /** The AnchorRegistry address. */
  contract: string;
  /** The signer's address: the gateway on chain. */
  gateway: string;
  /** Blocks a transaction needs (its own included) before a batch counts as anchored. */
  confirmations: number;
  /** Runs after a confirmed anchor and before it is recorded (embedded chain: persist the chain's state). */
  makeDurable?: () => Promise<unknown>;
  /** Resolves once the deployment is known good (external chain: checked on first contact). */
  ready?: () => Promise<void>;
  /** The account's transaction lane; default txLaneOf(signer), shared by anchorers of the same signer object. */
  lane?: TxLane;
}

export interface AnchorerOptions {
  /** The AnchorRegistry stream this anchorer's batches go to. Default STREAM.FRAMES. */
  stream?: StreamId;
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Replace a transaction that is not mined within this long. Default 60 s. */
  txTimeoutMs?: number;
  log?: Logger;
  onAnchored?: (a: AnchorRecord, b: SealedBatch) => void;
}

export interface AnchorerStatus {
  up: boolean;
  /** Since when `up` has held its value (Unix ms). */
  sinceMs: number;
  lastError?: string;
  /** Set when anchoring stopped on a fault it must not paper over (ANCHOR_CONFLICT, CHAIN_BEHIND). */
  halted?: string;
  /** The last confirmed anchor, with its batch's root. */
  lastAnchor?: AnchorRecord & { root: string };
  /** The oldest sealed batch without its anchor, and when it was sealed (ANCHORS_BEHIND). */
  oldestPending?: { batch: bigint; sealedAtMs: number };
  /** The anchoring transaction sent and not yet mined, and since when its batch has waited on one (CHAIN_HUNG when too long). */
  pendingTx?: { batch: bigint; txHash: string; sinceMs: number };
}

const ANCHORED_TOPIC = id('Anchored(address,uint8,uint64,bytes32,uint32,uint64,uint64)');

export class Anchorer {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private wakeup: (() => void) | undefined;
  private up = true;
  private upSinceMs = Date.now();
  private lastError: string | undefined;
  private halted: string | undefined;
  private lastAnchor: (AnchorRecord & { root: string }) | undefined;
  /** A sent transaction not yet seen mined: replaced, never doubled. */
  private inFlight:
    | {
        seq: bigint;
        nonce: number;
        hash: string;
        gasLimit: bigint;
        firstSentMs: number;
        maxFeePerGas?: bigint;
        maxPriorityFeePerGas?: bigint;
        gasPrice?: bigint;
      }
    | undefined;
  /** sealedAtMs of the oldest unanchored batch, read once per batch (the file is not re-read every status). */
  private pendingHead: { seq: bigint; sealedAtMs: number } | undefined;
  readonly stream: StreamId;
  private readonly lane: TxLane;
  /** Set while this anchorer holds the account's transaction lane. */
  private releaseLane: LaneRelease | undefined;

  constructor(
    private readonly store: BatchStore,
    private readonly target: AnchorTarget,
    private readonly opts: AnchorerOptions = {},
  ) {
    this.stream = opts.stream ?? STREAM.FRAMES;
    this.lane = target.lane ?? txLaneOf(target.signer);
    const last = store.lastAnchored > 0n ? store.anchorOf(store.lastAnchored) : undefined;
    this.lastAnchor = last ? { ...last, root: store.get(last.seq)?.root ?? '' } : undefined;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** A batch was sealed: look at the queue now. */
  wake(): void {
    this.wakeup?.();
  }

  status(): AnchorerStatus {
    const oldest = this.oldestPending();
    return {
      up: this.up,
      sinceMs: this.upSinceMs,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(this.halted ? { halted: this.halted } : {}),
      ...(this.lastAnchor ? { lastAnchor: this.lastAnchor } : {}),
      ...(oldest ? { oldestPending: oldest } : {}),
      ...(this.inFlight ? { pendingTx: { batch: this.inFlight.seq, txHash: this.inFlight.hash, sinceMs: this.inFlight.firstSentMs } } : {}),
    };
  }

  private oldestPending(): { batch: bigint; sealedAtMs: number } | undefined {
    const seq = this.store.lastAnchored + 1n;
    if (seq > this.store.lastSealed) return undefined;
    if (this.pendingHead?.seq !== seq) {
      const b = this.store.get(seq);
      if (!b) return undefined;
      this.pendingHead = { seq, sealedAtMs: b.sealedAtMs };
    }
    return { batch: seq, sealedAtMs: this.pendingHead.sealedAtMs };
  }

  private setUp(up: boolean): void {
    if (up !== this.up) this.upSinceMs = Date.now();
    this.up = up;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.wakeup?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const log = this.opts.log;
    let attempt = 0;
    while (!signal.aborted) {
      const seq = this.store.lastAnchored + 1n;
      if (seq > this.store.lastSealed) {
        await new Promise<void>((res) => {
          this.wakeup = res;
          if (this.store.lastAnchored + 1n <= this.store.lastSealed || signal.aborted) res();
        });
        this.wakeup = undefined;
        continue;
      }
      try {
        this.releaseLane ??= await this.lane.acquire(`stream ${this.stream}`, signal);
        await this.anchorOne(seq);
        this.leaveLane();
        if (!this.up) log?.info({ event: 'chain_recovered', attempts: attempt }, 'chain reachable again; anchoring the queued batches');
        this.setUp(true);
        this.lastError = undefined;
        this.halted = undefined;
        attempt = 0;
      } catch (e) {
        // A sent transaction that is not mined keeps the lane: its nonce is the account's next.
        if (!this.inFlight || signal.aborted) this.leaveLane();
        if (signal.aborted) break;
        attempt++;
        const err = e as Error;
        this.lastError = err.message.slice(0, 500);
        if (e instanceof AnchorError && e.code !== 'TX_REVERTED') {
          if (!this.halted)
            log?.error(
              { event: 'anchor_halted', stream: this.stream, code: e.code, batch: seq.toString(), detail: e.detail },
              'anchoring stopped: needs an operator',
            );
          this.halted = e.code;
        } else if ((e as { code?: string }).code === 'TIMEOUT' && this.inFlight) {
          log?.warn(
            { event: 'anchor_tx_slow', stream: this.stream, batch: seq.toString(), txHash: this.inFlight.hash, nonce: this.inFlight.nonce },
            'anchor transaction not mined in time; it will be replaced',
          );
        } else {
          if (this.up || attempt % 10 === 0)
            log?.warn(
              { event: 'chain_down', stream: this.stream, attempt, batch: seq.toString(), pending: this.store.pendingAnchors, err: this.lastError },
              'anchoring failed; batches stay queued in order',
            );
          this.setUp(false);
        }
        await sleep(retryDelayMs(attempt, this.opts.retryMinMs ?? 500, this.opts.retryMaxMs ?? 15_000), undefined, { signal }).catch(() => undefined);
      }
    }
    this.leaveLane();
  }

  private leaveLane(): void {
    const release = this.releaseLane;
    this.releaseLane = undefined;
    release?.();
  }

  private async anchorOne(seq: bigint): Promise<void> {
    const b = this.store.get(seq);
    if (!b) throw new Error(`sealed batch ${seq} is missing from the batch store`);
    await this.target.ready?.();
    const { anchorRegistry: reg, gateway } = this.target;
    const next = await reg.nextBatchSeq(gateway, this.stream);
    if (next < seq) throw new AnchorError('CHAIN_BEHIND', { batch: seq, chainNext: next });
    if (next > seq) {
      await this.adopt(b);
      return;
    }
    const receipt = await this.send(b);
    await this.record(b, receipt);
  }

  /** Sends (or replaces) the anchoring transaction of `b` and waits for its confirmations. */
  private async send(b: SealedBatch): Promise<TransactionReceipt> {
    const { anchorRegistry: reg, provider, gateway, confirmations } = this.target;
    const args = [this.stream, b.seq, b.root, b.leafCount, b.firstFrameTimeMs, b.lastFrameTimeMs] as const;
    let overrides: Record<string, unknown> = {};
    const prev = this.inFlight?.seq === b.seq ? this.inFlight : undefined;
    if (prev) {
      // Our earlier transaction was not mined in time. If its nonce is still free, replace it
      // with a higher fee; if it was taken, the sequence check above has already decided.
      const mined = await provider.getTransactionCount(gateway, 'latest');
      if (mined <= prev.nonce) {
        const bump = (v: bigint | undefined): bigint | undefined => (v === undefined ? undefined : (v * 13n) / 10n + 1n);
        // The same gas limit: estimating again would run against the pending state, where
        // the batch is already anchored by the transaction being replaced.
        overrides = {
          nonce: prev.nonce,
          gasLimit: prev.gasLimit,
          ...(prev.gasPrice !== undefined
            ? { gasPrice: bump(prev.gasPrice) }
            : { maxFeePerGas: bump(prev.maxFeePerGas), maxPriorityFeePerGas: bump(prev.maxPriorityFeePerGas) }),
        };
      }
    }
    const tx = await reg.anchor(...args, overrides);
    this.inFlight = {
      seq: b.seq,
      nonce: tx.nonce,
      hash: tx.hash,
      gasLimit: tx.gasLimit,
      firstSentMs: prev?.firstSentMs ?? Date.now(),
      ...(tx.gasPrice !== null && tx.maxFeePerGas === null ? { gasPrice: tx.gasPrice } : {}),
      ...(tx.maxFeePerGas !== null ? { maxFeePerGas: tx.maxFeePerGas } : {}),
      ...(tx.maxPriorityFeePerGas !== null ? { maxPriorityFeePerGas: tx.maxPriorityFeePerGas } : {}),
    };
    this.opts.log?.info(
      {
        event: 'anchor_sent',
        stream: this.stream,
        batch: b.seq.toString(),
        txHash: tx.hash,
        nonce: tx.nonce,
        replaced: prev !== undefined && overrides['nonce'] !== undefined,
      },
      'anchor transaction sent',
    );
    let receipt: TransactionReceipt | null;
    try {
      receipt = await tx.wait(confirmations, this.opts.txTimeoutMs ?? 60_000);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'CALL_EXCEPTION') {
        this.inFlight = undefined;
        throw new AnchorError('TX_REVERTED', { stream: this.stream, batch: b.seq, txHash: tx.hash });
      }
      throw e; // timeout or network: the next round re-reads the chain's sequence first
    }
    if (!receipt) throw new Error(`no receipt for ${tx.hash}`);
    this.inFlight = undefined;
    return receipt;
  }

  /** The chain already holds batch `b`: check that it is this batch, then find its transaction. */
  private async adopt(b: SealedBatch): Promise<void> {
    const { anchorRegistry: reg, provider, gateway, confirmations } = this.target;
    const a = await reg.anchorOf(gateway, this.stream, b.seq);
    if (
      a.root.toLowerCase() !== b.root.toLowerCase() ||
      Number(a.leafCount) !== b.leafCount ||
      Number(a.firstFrameTimeMs) !== b.firstFrameTimeMs ||
      Number(a.lastFrameTimeMs) !== b.lastFrameTimeMs
    ) {
      throw new AnchorError('ANCHOR_CONFLICT', {
        stream: this.stream,
        batch: b.seq,
        onChainRoot: a.root,
        localRoot: b.root,
        onChainLeaves: Number(a.leafCount),
        localLeaves: b.leafCount,
      });
    }
    const block = Number(a.blockNumber);
    const logs = await provider.getLogs({
      address: this.target.contract,
      fromBlock: block,
      toBlock: block,
      topics: [ANCHORED_TOPIC, zeroPadValue(gateway, 32), zeroPadValue(toBeHex(this.stream), 32), zeroPadValue(toBeHex(b.seq), 32)],
    });
    const log = logs[0];
    if (!log) throw new Error(`batch ${b.seq} is anchored in block ${block} but its Anchored event was not found there`);
    const head = await provider.getBlockNumber();
    if (head - block + 1 < confirmations) {
      await waitForBlock(provider, block + confirmations - 1, this.abort.signal);
    }
    const receipt = await provider.getTransactionReceipt(log.transactionHash);
    if (!receipt) throw new Error(`receipt of ${log.transactionHash} not found`);
    this.inFlight = undefined;
    this.opts.log?.info(
      { event: 'anchor_adopted', stream: this.stream, batch: b.seq.toString(), txHash: receipt.hash },
      'batch was already anchored by an earlier attempt',
    );
    await this.record(b, receipt);
  }

  private async record(b: SealedBatch, receipt: TransactionReceipt): Promise<void> {
    await this.target.makeDurable?.();
    const a: AnchorRecord = {
      seq: b.seq,
      chainId: this.target.chainId,
      contract: this.target.contract,
      gateway: this.target.gateway,
      stream: this.stream,
      txHash: receipt.hash,
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash,
      gasUsed: receipt.gasUsed.toString(),
      confirmedAtMs: Date.now(),
    };
    this.store.recordAnchor(a);
    this.lastAnchor = { ...a, root: b.root };
    this.opts.log?.info(
      {
        event: 'anchored',
        stream: this.stream,
        batch: b.seq.toString(),
        leaves: b.leafCount,
        root: b.root,
        txHash: a.txHash,
        block: a.blockNumber,
        gasUsed: a.gasUsed,
        pending: this.store.pendingAnchors,
      },
      'batch anchored',
    );
    this.opts.onAnchored?.(a, b);
  }
}

async function waitForBlock(provider: Provider, n: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && (await provider.getBlockNumber()) < n) await sleep(500, undefined, { signal }).catch(() => undefined);
}
