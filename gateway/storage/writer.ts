/**
 * Moves accepted frames from the spool to storage, in spool order, in batches, retrying
 * with exponential backoff while storage is down. Its spool position ('storage',
 * gateway/spool/positions.ts) advances only after storage confirmed the batch that holds a
 * record, and only after the device-state checkpoint that covers it is on disk; the spool
 * releases a record once every consumer's position is past it. A crash re-sends at most the
 * batches after the checkpoint; storage writes are idempotent (same series, same time, same
 * values), so nothing is stored twice.
 */
import { retryDelayMs } from '../util/backoff.js';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SpoolPosition } from '../spool/positions.js';
import { WalReader, type Wal } from '../spool/wal.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { Metrics } from '../status/metrics.js';
import { DeviceStates, type Checkpoint } from '../ingest/device-state.js';
import { decodeSpoolRecord } from '../ingest/spool-record.js';
import type { FrameSink } from '../ingest/types.js';

export interface StorageWriterOptions {
  /** Frames per storage write. */
  batchFrames?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Write the checkpoint and release the spool at most this often while busy. */
  releaseEveryMs?: number;
  onError?: (e: Error, attempt: number) => void;
  onRecovered?: (afterAttempts: number) => void;
  /** After spool records were released (space freed). */
  onReleased?: () => void;
  /** Where each frame sits in its Merkle batch, stored with it (gateway/anchor/batcher.ts). */
  placementOf?: (lsn: bigint) => { batch: bigint; leaf: number };
}

export function readCheckpoint(path: string): Checkpoint | undefined {
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as Checkpoint;
}

export class StorageWriter {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly ckStates: DeviceStates;
  /** Everything up to here was stored before this start (the checkpoint on disk). */
  private readonly storedThrough: bigint;
  private lastRelease = 0;
  private pendingRelease: bigint | undefined;
  /** Receive time of the oldest record not yet in storage; undefined when caught up. */
  oldestPendingMs: number | undefined;
  storageUp = true;
  lastError: string | undefined;
  private readonly batchFrames: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly releaseEveryMs: number;

  constructor(
    private readonly wal: Wal,
    private readonly sink: FrameSink,
    private readonly checkpointPath: string,
    private readonly metrics: Metrics,
    /** This writer's position among the spool's consumers: the checkpoint's LSN at start. */
    private readonly position: SpoolPosition,
    private readonly opts: StorageWriterOptions = {},
  ) {
    const ck = readCheckpoint(checkpointPath);
    this.ckStates = DeviceStates.fromCheckpoint(ck);
    this.storedThrough = BigInt(ck?.lsn ?? '0');
    this.batchFrames = opts.batchFrames ?? 1000;
    this.retryMinMs = opts.retryMinMs ?? 200;
    this.retryMaxMs = opts.retryMaxMs ?? 10_000;
    this.releaseEveryMs = opts.releaseEveryMs ?? 500;
  }

  /** Starts draining; the promise rejects only on a fault that must stop the gateway (a corrupt spool). */
  start(): Promise<void> {
    this.loop ??= this.run();
    return this.loop;
  }

  /** Storage lag: how long the oldest accepted-but-unstored frame has waited (ms). */
  lagMs(now = Date.now()): number {
    return this.oldestPendingMs === undefined ? 0 : Math.max(0, now - this.oldestPendingMs);
  }

  private async run(): Promise<void> {
    // From after the checkpoint, not from the spool's release point: the spool may still hold
    // stored records that the batcher has not sealed yet.
    const reader = new WalReader(this.wal, this.storedThrough + 1n);
    const signal = this.abort.signal;
    try {
      while (!signal.aborted) {
        const recs = reader.read(this.batchFrames);
        if (recs.length === 0) {
          this.oldestPendingMs = undefined;
          this.releaseNow();
          await this.wal.waitForDurableAfter(reader.position - 1n, signal);
          continue;
        }
        const frames = recs.map((r) => decodeSpoolRecord(r.lsn, r.payload));
        if (this.opts.placementOf) for (const f of frames) f.placement = this.opts.placementOf(f.lsn);
        this.oldestPendingMs = frames[0]!.receivedAtMs;
        let attempt = 0;
        // Frames the sink set aside for good (storage quarantine, docs/storage.md): done with, not written.
        let setAside: ReadonlySet<bigint> | undefined;
        for (;;) {
          try {
            setAside = (await this.sink.write(frames))?.quarantined;
            break;
          } catch (e) {
            attempt++;
            this.storageUp = false;
            this.lastError = (e as Error).message;
            this.metrics.storageErrors++;
            this.opts.onError?.(e as Error, attempt);
            await sleep(retryDelayMs(attempt, this.retryMinMs, this.retryMaxMs), undefined, { signal });
          }
        }
        if (!this.storageUp) this.opts.onRecovered?.(attempt);
        this.storageUp = true;
        this.lastError = undefined;
        for (const f of frames) {
          this.ckStates.apply(f.frame, f.sha256);
          if (setAside?.has(f.lsn)) continue;
          this.metrics.pointsWritten += f.frame.samples.length / f.frame.spec.channels.length;
        }
        this.metrics.framesWritten += frames.length - (setAside?.size ?? 0);
        this.pendingRelease = frames[frames.length - 1]!.lsn;
        if (Date.now() - this.lastRelease >= this.releaseEveryMs) this.releaseNow();
      }
    } catch (e) {
      if (!signal.aborted) throw e;
    } finally {
      reader.close();
    }
  }

  private releaseNow(): void {
    if (this.pendingRelease === undefined) return;
    writeFileAtomic(this.checkpointPath, JSON.stringify(this.ckStates.toCheckpoint(this.pendingRelease)));
    this.position.advance(this.pendingRelease);
    this.pendingRelease = undefined;
    this.lastRelease = Date.now();
    this.opts.onReleased?.();
  }

  /** Stops after the write in flight (if storage is up) and releases what was stored. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop?.catch(() => undefined);
    this.releaseNow();
  }
}
