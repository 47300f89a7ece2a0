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
  private chain: Promise<void> = Promise.resolve();
  private ready: Promise<void>;
  constructor(
    readonly dir: string,
    private readonly maxFileBytes = 16 * 1024 * 1024,
    private readonly keepFiles = 8,
  ) {
    this.ready = mkdir(dir, { recursive: true }).then(() => undefined);
  }

  add(e: Omit<QuarantineEntry, 'at' | 'raw' | 'bytes'>, raw: Uint8Array): Promise<void> {
    const entry: QuarantineEntry = {
      at: new Date().toISOString(),
      ...e,
      bytes: raw.length,
      raw: Buffer.from(raw.subarray(0, MAX_KEPT_BYTES)).toString('base64'),
    };
    const line = `${JSON.stringify(entry, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`;
    this.chain = this.chain.then(() => this.write(line)).catch(() => undefined);
    return this.chain;
  }

  private async write(line: string): Promise<void> {
    await this.ready;
    const current = join(this.dir, 'quarantine.jsonl');
    const size = await stat(current).then((s) => s.size, () => 0);
    if (size + line.length > this.maxFileBytes) {
      await rename(current, join(this.dir, `quarantine-${Date.now()}.jsonl`));
      const old = (await readdir(this.dir)).filter((n) => /^quarantine-\d+\.jsonl$/.test(n)).sort();
      for (const n of old.slice(0, Math.max(0, old.length - this.keepFiles))) await unlink(join(this.dir, n));
    }
    await appendFile(current, line);
  }

  /** Resolves when every entry added so far is written. */
  flush(): Promise<void> {
    return this.chain;
  }
}
