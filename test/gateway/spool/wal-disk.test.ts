/**
 * The spool when the disk misbehaves (issue #10, A, B, D): a short write or ENOSPC never
 * resolves an append as durable, a failed append consumes no LSN, a torn tail is cut without
 * losing an acknowledged record, and numbering never goes below what consumers recorded.
 * On a real, small tmpfs filled to the last byte.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wal, WalError } from '../../../gateway/spool/wal.js';
import { mountTmpfs, type Tmpfs } from '../../support/tmpfs.js';

const rec = (i: number, size = 1000): Buffer => Buffer.alloc(size, i & 0xff);

async function settle(appends: { lsn: bigint; durable: Promise<bigint> }[]): Promise<{ lsn: bigint; ok: boolean; err?: unknown }[]> {
  return Promise.all(
    appends.map((a) =>
      a.durable.then(
        () => ({ lsn: a.lsn, ok: true }),
        (err: unknown) => ({ lsn: a.lsn, ok: false, err }),
      ),
    ),
  );
}

function readAll(wal: Wal): { lsn: bigint; payload: Buffer }[] {
  const r = wal.reader();
  const out = r.read(1_000_000);
  r.close();
  return out;
}

describe('spool on a full disk (tmpfs)', () => {
  let fs: Tmpfs;
  beforeEach(() => {
    fs = mountTmpfs(256 * 1024);
  });
  afterEach(() => fs.unmount());

  it('never resolves a record that was only partly written: five 1,000-byte appends with 4,096 bytes free', async () => {
    const dir = join(fs.dir, 'spool');
    const wal = await Wal.open(dir);
    const filler = fs.fill(4096);
    expect(fs.free()).toBeLessThanOrEqual(4096);
    // The same group: one writev of 5 × 1,016 bytes, of which at most 4,096 fit.
    const outcomes = await settle(Array.from({ length: 5 }, (_, i) => wal.append(rec(i))));
    const acked = outcomes.filter((o) => o.ok).map((o) => o.lsn);
    const failed = outcomes.filter((o) => !o.ok);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect((f.err as WalError).code).toBe('WAL_DISK_FULL');
    // Nothing acknowledged was cut, nothing unacknowledged stays behind in the file.
    expect(readAll(wal).map((r) => r.lsn)).toEqual(acked);
    await wal.close();
    const again = await Wal.open(dir);
    expect(again.recovered.truncatedBytes).toBe(0);
    expect(readAll(again).map((r) => r.lsn)).toEqual(acked);
    await again.close();
    rmSync(filler);
  });

  it('a failed append consumes no LSN: the next one, once space is back, follows the last durable record', async () => {
    const dir = join(fs.dir, 'spool');
    const wal = await Wal.open(dir);
    await wal.append(rec(1)).durable;
    await wal.append(rec(2)).durable;
    const filler = fs.fill(0);
    // Larger than the slack left in the segment's last page (tmpfs allocates whole pages).
    const failed = await settle([wal.append(rec(3, 5000)), wal.append(rec(4, 5000))]);
    expect(failed.every((o) => !o.ok)).toBe(true);
    expect(wal.durableLsn).toBe(2n);
    expect(wal.lastWriteError?.code).toBe('WAL_DISK_FULL');
    rmSync(filler);
    const next = wal.append(rec(5));
    expect(next.lsn).toBe(3n);
    await next.durable;
    expect(wal.lastWriteError).toBeUndefined();
    expect(readAll(wal).map((r) => [r.lsn, r.payload[0]])).toEqual([
      [1n, 1],
      [2n, 2],
      [3n, 5],
    ]);
    await wal.close();
    const again = await Wal.open(dir);
    expect(again.recovered.truncatedBytes).toBe(0);
    expect(again.recovered.lost).toEqual([]);
    expect(readAll(again).map((r) => r.lsn)).toEqual([1n, 2n, 3n]);
    await again.close();
  });

  it('counts the disk as full below minFreeBytes, and wakes waiters when space returns', async () => {
    const wal = await Wal.open(join(fs.dir, 'spool'), { minFreeBytes: 64 * 1024 });
    expect(wal.overQuota).toBe(false);
    const filler = fs.fill(16 * 1024);
    expect(wal.freeBytes(Date.now() + 1000)).toBeLessThan(64 * 1024);
    expect(wal.diskLow).toBe(true);
    expect(wal.overQuota).toBe(true);
    let woke = false;
    const waiting = wal.waitForSpace().then(() => (woke = true));
    expect(woke).toBe(false);
    rmSync(filler);
    await waiting;
    expect(wal.diskLow).toBe(false);
    await wal.close();
  });
});

describe('spool recovery', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-wal-rec-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('cuts a torn last record (power cut mid-write) and keeps every acknowledged one', async () => {
    const wal = await Wal.open(dir);
    await Promise.all(Array.from({ length: 10 }, (_, i) => wal.append(rec(i, 100)).durable));
    await wal.close();
    const seg = join(
      dir,
      readdirSync(dir).find((n) => n.endsWith('.wal'))!,
    );
    const size = statSync(seg).size;
    // Half a record more: the header and part of a payload of a record that never synced.
    const torn = Buffer.alloc(60);
    torn.writeUInt32BE(100, 0);
    torn.writeBigUInt64BE(11n, 8);
    appendFileSync(seg, torn);
    const again = await Wal.open(dir);
    expect(again.recovered.truncatedBytes).toBe(60);
    expect(statSync(seg).size).toBe(size);
    expect(readAll(again).map((r) => r.lsn)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i + 1)));
    const next = again.append(rec(11, 100));
    expect(next.lsn).toBe(11n);
    await next.durable;
    await again.close();
  });

  it('a tail shorter than the checkpoint is reported as lost and its LSNs are never handed out again', async () => {
    const wal = await Wal.open(dir);
    await Promise.all(Array.from({ length: 10 }, (_, i) => wal.append(rec(i, 100)).durable));
    await wal.close();
    // The last four records vanish (a disk that lied about its sync), while storage's
    // checkpoint already says it stored up to LSN 10.
    const seg = join(
      dir,
      readdirSync(dir).find((n) => n.endsWith('.wal'))!,
    );
    truncateSync(seg, 6 * 116);
    const again = await Wal.open(dir, { minNextLsn: 11n });
    expect(again.recovered.lost).toEqual([{ from: 7n, to: 10n, why: 'TAIL_BELOW_CHECKPOINT' }]);
    expect(again.durableLsn).toBe(10n);
    const next = again.append(rec(11, 100));
    expect(next.lsn).toBe(11n);
    await next.durable;
    // A reader from before the loss steps over it; one from the checkpoint sees only the new record.
    expect(readAll(again).map((r) => r.lsn)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 11n]);
    const fromCk = new (again.reader().constructor as new (w: Wal, n: bigint) => ReturnType<Wal['reader']>)(again, 11n);
    expect(fromCk.read(100).map((r) => r.lsn)).toEqual([11n]);
    fromCk.close();
    await again.close();
    // The gap stays a gap across reopen; numbering goes on above it.
    const third = await Wal.open(dir, { minNextLsn: 11n });
    expect(third.recovered.lost).toEqual([{ from: 7n, to: 10n, why: 'CORRUPT_SEGMENT' }]);
    expect(third.append(rec(12, 100)).lsn).toBe(12n);
    await third.close();
  });

  it('a reader that cannot find a durable record throws instead of spinning', async () => {
    const wal = await Wal.open(dir);
    await Promise.all(Array.from({ length: 5 }, (_, i) => wal.append(rec(i, 100)).durable));
    const r = wal.reader();
    const seg = join(
      dir,
      readdirSync(dir).find((n) => n.endsWith('.wal'))!,
    );
    truncateSync(seg, 0);
    // The in-memory view says 5 durable records; the file (truncated behind its back) has none.
    (wal as unknown as { segments: { bytes: number }[] }).segments[0]!.bytes = 0;
    expect(() => r.read(10)).toThrow(WalError);
    r.close();
    await wal.close();
  });
});
