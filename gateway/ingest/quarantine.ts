/**
 * Rejected frames are kept as evidence, never as data: one JSON line each in
 * data/quarantine/, rotated by size, oldest file deleted. Raw bytes are kept up to
 * MAX_KEPT_BYTES (an oversized payload is cut, with its full length noted).
 */
import { appendFile, mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { FrameReason } from '../../firmware-proto/reasons.js';
import type { Transport } from './types.js';

export const MAX_KEPT_BYTES = 20_000;

export interface QuarantineEntry {
  at: string;
  reason: FrameReason;
  transport: Transport;
  /** The authenticated sender, if any; the frame's own claim may differ. */
  sender?: string;
  claimedDevice?: string;
  bytes: number;
  raw: string;
  detail?: Record<string, unknown>;
}

export class Quarantine {
  private pending: { line: string; done: () => void }[] = [];
  private writing: Promise<void> | undefined;
  private size: number | undefined;
  private rotations = 0;
  /** Entries that could not be written (disk full, permissions): evidence lost, so counted. */
  errors = 0;

  constructor(
    readonly dir: string,
    private readonly maxFileBytes = 16 * 1024 * 1024,
    private readonly keepFiles = 8,
    private readonly onError?: (e: Error) => void,
  ) {}

  /** Queues an entry; resolves once it is written (or counted as failed). Never rejects. */
  add(e: Omit<QuarantineEntry, 'at' | 'raw' | 'bytes'>, raw: Uint8Array): Promise<void> {
    const entry: QuarantineEntry = {
      at: new Date().toISOString(),
      ...e,
      bytes: raw.length,
      raw: Buffer.from(raw.subarray(0, MAX_KEPT_BYTES)).toString('base64'),
    };
    const line = `${JSON.stringify(entry, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`;
    return new Promise((done) => {
      this.pending.push({ line, done });
      this.writing ??= this.writeLoop();
    });
  }

  /** Writes everything queued, many lines per append; the file size is tracked in memory. */
  private async writeLoop(): Promise<void> {
    const current = join(this.dir, 'quarantine.jsonl');
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      try {
        if (this.size === undefined) {
          await mkdir(this.dir, { recursive: true });
          this.size = await stat(current).then(
            (st) => st.size,
            () => 0,
          );
        }
        let text = '';
        for (const { line } of batch) {
          if (this.size + text.length + line.length > this.maxFileBytes && this.size + text.length > 0) {
            if (text) await appendFile(current, text);
            await this.rotate(current);
            text = '';
          }
          text += line;
        }
        await appendFile(current, text);
        this.size += Buffer.byteLength(text);
      } catch (e) {
        this.errors += batch.length;
        this.size = undefined;
        this.onError?.(e as Error);
      }
      for (const b of batch) b.done();
    }
    this.writing = undefined;
  }

  private async rotate(current: string): Promise<void> {
    // Time plus a counter: two rotations in one millisecond must not overwrite each other.
    await rename(current, join(this.dir, `quarantine-${Date.now()}-${String(this.rotations++).padStart(6, '0')}.jsonl`));
    this.size = 0;
    const old = (await readdir(this.dir)).filter((n) => /^quarantine-\d+-\d+\.jsonl$/.test(n)).sort();
    for (const n of old.slice(0, Math.max(0, old.length - this.keepFiles))) await unlink(join(this.dir, n));
  }

  /** Resolves when every entry added so far is written. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }
}
