import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wal } from '../../../gateway/spool/wal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-wal-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const payload = (i: number): Buffer => Buffer.from(`record-${i}-${'x'.repeat(i % 50)}`);

describe('Wal', () => {
  it('assigns LSNs in call order and resolves each append once durable', async () => {
    const wal = await Wal.open(dir);
    const appends = Array.from({ length: 200 }, (_, i) => wal.append(payload(i)));
    expect(appends.map((a) => a.lsn)).toEqual(Array.from({ length: 200 }, (_, i) => BigInt(i + 1)));
    const durable = await Promise.all(appends.map((a) => a.durable));
    expect(durable).toEqual(appends.map((a) => a.lsn));
    expect(wal.durableLsn).toBe(200n);
    const r = wal.reader();
    const recs = r.read(1000);
    expect(recs.map((x) => x.payload.toString())).toEqual(Array.from({ length: 200 }, (_, i) => payload(i).toString()));
    r.close();
    await wal.close();
  });

  it('keeps unreleased records across a reopen and continues numbering', async () => {
    let wal = await Wal.open(dir, { segmentBytes: 1024 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => wal.append(payload(i)).durable));
    wal.release(40n);
    await wal.close();
    wal = await Wal.open(dir, { segmentBytes: 1024 });
    expect(wal.releasedLsn).toBe(40n);
    expect(wal.recovered.records).toBe(60);
    const recs = wal.reader().read(1000);
    expect(recs[0]!.lsn).toBe(41n);
    expect(recs.length).toBe(60);
    expect(wal.append(payload(100)).lsn).toBe(101n);
    await wal.close();
  });

  it('deletes whole segments once everything in them is released', async () => {
    const wal = await Wal.open(dir, { segmentBytes: 512 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => wal.append(payload(i)).durable));
    const before = readdirSync(dir).filter((n) => n.endsWith('.wal')).length;
    expect(before).toBeGreaterThan(3);
    wal.release(100n);
    const after = readdirSync(dir).filter((n) => n.endsWith('.wal')).length;
    expect(after).toBe(1);
    await wal.close();
  });

  it('cuts a torn tail at open and keeps every record before it', async () => {
    let wal = await Wal.open(dir);
    await Promise.all(Array.from({ length: 10 }, (_, i) => wal.append(payload(i)).durable));
    await wal.close();
    const seg = readdirSync(dir).find((n) => n.endsWith('.wal'))!;
    // half a record: a header promising 100 bytes followed by 3
    appendFileSync(join(dir, seg), Buffer.from([0, 0, 0, 100, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 11, 9, 9, 9]));
    wal = await Wal.open(dir);
    expect(wal.recovered.truncatedBytes).toBe(19);
    expect(wal.durableLsn).toBe(10n);
    expect(
      wal
        .reader()
        .read(100)
        .map((r) => r.lsn),
    ).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i + 1)));
    await wal.append(payload(10)).durable;
    await wal.close();
    wal = await Wal.open(dir);
    expect(wal.durableLsn).toBe(11n);
    expect(wal.recovered.truncatedBytes).toBe(0);
    await wal.close();
  });

  it('rejects a record whose CRC does not match (bit rot) as the end of the log', async () => {
    let wal = await Wal.open(dir);
    await Promise.all(Array.from({ length: 3 }, (_, i) => wal.append(payload(i)).durable));
    await wal.close();
    const seg = join(
      dir,
      readdirSync(dir).find((n) => n.endsWith('.wal'))!,
    );
    const { readFileSync, writeFileSync } = await import('node:fs');
    const data = readFileSync(seg);
    data[data.length - 1] = data[data.length - 1]! ^ 0xff; // corrupt the last record's payload
    writeFileSync(seg, data);
    wal = await Wal.open(dir);
    expect(wal.durableLsn).toBe(2n);
    await wal.close();
  });

  it('applies back-pressure over quota and lets appends go on after a release', async () => {
    const wal = await Wal.open(dir, { quotaBytes: 2000, segmentBytes: 600 });
    await Promise.all(Array.from({ length: 80 }, (_, i) => wal.append(payload(i)).durable));
    expect(wal.overQuota).toBe(true);
    let freed = false;
    const waiting = wal.waitForSpace().then(() => {
      freed = true;
    });
    await Promise.resolve();
    expect(freed).toBe(false);
    wal.release(80n);
    await waiting;
    expect(freed).toBe(true);
    expect(wal.overQuota).toBe(false);
    await wal.close();
  });

  it('reader waits for durability and follows new segments', async () => {
    const wal = await Wal.open(dir, { segmentBytes: 300 });
    const r = wal.reader();
    expect(r.read(10)).toEqual([]);
    const seen: bigint[] = [];
    for (let round = 0; round < 5; round++) {
      const last = Array.from({ length: 7 }, (_, i) => wal.append(payload(round * 7 + i))).at(-1)!;
      await wal.waitForDurableAfter(last.lsn - 1n);
      seen.push(...r.read(100).map((x) => x.lsn));
    }
    expect(seen).toEqual(Array.from({ length: 35 }, (_, i) => BigInt(i + 1)));
    r.close();
    await wal.close();
  });
});
