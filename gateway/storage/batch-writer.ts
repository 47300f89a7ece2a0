/**
 * Writes every anchored batch of one stream (frames or the access log) from the gateway's
 * batch store into the shared InfluxDB's `batches` measurement (./batch-points.ts), so that the
 * hub, which has no batch store, can make proofs for frames any gateway took
 * (docs/proof-format.md, "Proofs across the hospital").
 *
 * It follows the store's `lastAnchored`, in batch order, from a durable cursor (a small JSON file
 * in the data dir, written atomically after InfluxDB confirmed the write): a crash or a restart
 * re-writes at most the batches of the last write, which overwrite their points with the same
 * points (every value is a function of the batch and its anchor). While InfluxDB is down it
 * retries with capped exponential backoff, like the storage writer (./writer.ts); the batch
 * store holds everything meanwhile, so nothing is lost.
 *
 * Woken by the anchorer's onAnchored hook (gateway/parts/anchoring.ts); it also looks every
 * `pollMs`, so a missed wake costs at most that long.
 */
import { retryDelayMs } from '../util/backoff.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { StreamId } from '../chain/contracts.js';
import type { BatchStore, SealedBatch } from '../anchor/batch-store.js';
import type { AccessEntry } from '../consent/access-entry.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { batchToLine, STREAM_TAGS } from './batch-points.js';
import type { InfluxSink } from './influx-sink.js';

export interface BatchWriterOptions {
  /** The `gateway` tag: the gateway's gatewayId. */
  gatewayId: string;
  stream: StreamId;
  /** The cursor file: the last batch InfluxDB confirmed. */
  cursorPath: string;
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Look at the store this often even without a wake. Default 5 s. */
  pollMs?: number;
  /** At most this many leaves per InfluxDB request (a batch's leaves are one field; a batch is never split). Default 200,000. */
  leavesPerWrite?: number;
  onError?: (e: Error, attempt: number) => void;
  onRecovered?: (afterAttempts: number) => void;
  /** The access log's entries of a batch (its stream): they go into the point too (./batch-points.ts). */
  entriesOf?: (b: SealedBatch) => AccessEntry[];
}

export interface BatchWriterStatus {
  stream: string;
  /** The last batch written to InfluxDB. */
  written: string;
  /** Anchored batches not yet in InfluxDB. */
  lag: number;
  up: boolean;
  lastError?: string;
}

interface CursorFile {
  version: 1;
  written: string;
}

export class BatchPointWriter {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private wakeup: (() => void) | undefined;
  private cursor: bigint;
  private up = true;
  private lastError: string | undefined;

  constructor(
    private readonly store: BatchStore,
    private readonly sink: Pick<InfluxSink, 'writeLines'>,
    private readonly opts: BatchWriterOptions,
  ) {
    mkdirSync(dirname(opts.cursorPath), { recursive: true });
    this.cursor = existsSync(opts.cursorPath) ? BigInt((JSON.parse(readFileSync(opts.cursorPath, 'utf8')) as CursorFile).written) : 0n;
  }

  /** The last batch InfluxDB confirmed. */
  get written(): bigint {
    return this.cursor;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** A batch was anchored: write it now. */
  wake(): void {
    this.wakeup?.();
  }

  status(): BatchWriterStatus {
    const lag = this.store.lastAnchored - this.cursor;
    return {
      stream: STREAM_TAGS[this.opts.stream],
      written: this.cursor.toString(),
      lag: Number(lag > 0n ? lag : 0n),
      up: this.up,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Stops after the write in flight. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.wakeup?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let attempt = 0;
    while (!signal.aborted) {
      if (this.cursor >= this.store.lastAnchored) {
        await this.idle(signal);
        continue;
      }
      try {
        const { lines, last } = this.nextLines();
        await this.sink.writeLines(lines);
        this.cursor = last;
        writeFileAtomic(this.opts.cursorPath, `${JSON.stringify({ version: 1, written: last.toString() } satisfies CursorFile)}\n`);
        if (!this.up) this.opts.onRecovered?.(attempt);
        this.up = true;
        this.lastError = undefined;
        attempt = 0;
      } catch (e) {
        if (signal.aborted) break;
        attempt++;
        this.up = false;
        this.lastError = (e as Error).message.slice(0, 500);
        this.opts.onError?.(e as Error, attempt);
        await sleep(retryDelayMs(attempt, this.opts.retryMinMs ?? 200, this.opts.retryMaxMs ?? 10_000), undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** The lines of the anchored batches after the cursor, up to leavesPerWrite leaves (at least one batch). */
  private nextLines(): { lines: string[]; last: bigint } {
    const maxLeaves = this.opts.leavesPerWrite ?? 200_000;
    const lines: string[] = [];
    let leaves = 0;
    let seq = this.cursor;
    while (seq < this.store.lastAnchored && (lines.length === 0 || leaves < maxLeaves)) {
      const next = seq + 1n;
      const b = this.store.get(next);
      const a = this.store.anchorOf(next);
      if (!b || !a) throw new Error(`anchored batch ${next} of stream ${STREAM_TAGS[this.opts.stream]} is missing from the batch store (${this.store.dir})`);
      if (lines.length > 0 && leaves + b.leafCount > maxLeaves) break;
      lines.push(batchToLine(this.opts.gatewayId, b, a, this.opts.entriesOf?.(b)));
      leaves += b.leafCount;
      seq = next;
    }
    return { lines, last: seq };
  }

  private async idle(signal: AbortSignal): Promise<void> {
    const poll = new AbortController();
    const stopPoll = (): void => poll.abort();
    signal.addEventListener('abort', stopPoll, { once: true });
    try {
      await Promise.race([
        new Promise<void>((res) => {
          this.wakeup = res;
          if (this.cursor < this.store.lastAnchored || signal.aborted) res();
        }),
        sleep(this.opts.pollMs ?? 5000, undefined, { signal: poll.signal }).catch(() => undefined),
      ]);
    } finally {
      this.wakeup = undefined;
      poll.abort();
      signal.removeEventListener('abort', stopPoll);
    }
  }
}
