/**
 * The spool's read positions (gateway/spool/positions.ts) on a real spool in a temporary dir:
 * a record is released only once every consumer's position is past it, numbering resumes
 * above the highest recorded position, and a position never moves back.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpoolPositions } from '../../../gateway/spool/positions.js';
import { Wal } from '../../../gateway/spool/wal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-positions-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function spoolWith(records: number, positions: SpoolPositions<string>): Promise<Wal> {
  const wal = await Wal.open(dir, { minNextLsn: positions.nextLsnFloor });
  await Promise.all(Array.from({ length: records }, (_, i) => wal.append(Buffer.from(`r${i}`)).durable));
  positions.attach(wal);
  return wal;
}

describe('SpoolPositions', () => {
  it('holds the spool for the uplink when it is a consumer, and only then', async () => {
    const p = new SpoolPositions({ storage: 0n, batches: 0n, uplink: 0n });
    const wal = await spoolWith(50, p);
    expect(p.has('uplink')).toBe(true);
    expect(new SpoolPositions<string>({ storage: 0n, batches: 0n }).has('uplink')).toBe(false);
    p.advance('storage', 50n);
    p.advance('batches', 50n);
    expect(wal.releasedLsn).toBe(0n); // the broker has acknowledged nothing yet
    p.advance('uplink', 30n);
    expect(wal.releasedLsn).toBe(30n);
    await wal.close();
  });

  it('releases only what every consumer has made durable', async () => {
    const p = new SpoolPositions({ storage: 0n, batches: 0n });
    const wal = await spoolWith(100, p);
    p.advance('batches', 60n);
    expect(wal.releasedLsn).toBe(0n); // storage has nothing yet
    p.advance('storage', 80n);
    expect(wal.releasedLsn).toBe(60n); // the batches are behind storage now
    p.advance('batches', 100n);
    expect(wal.releasedLsn).toBe(80n);
    expect(wal.backlog).toBe(20n);
    expect([p.lsn('storage'), p.lsn('batches'), p.releasable]).toEqual([80n, 100n, 80n]);
    await wal.close();
  });

  it('resumes numbering above the highest recorded position, even when the spool lost its tail', async () => {
    const p = new SpoolPositions({ storage: 120n, batches: 150n });
    expect(p.nextLsnFloor).toBe(151n);
    const wal = await spoolWith(1, p);
    expect(wal.durableLsn).toBe(151n);
    expect(wal.recovered.lost).toEqual([{ from: 1n, to: 150n, why: 'TAIL_BELOW_CHECKPOINT' }]);
    await wal.close();
  });

  it('never moves a position back, and tells the listeners of each advance', async () => {
    const p = new SpoolPositions({ storage: 0n, batches: 0n });
    const wal = await spoolWith(50, p);
    const heard: bigint[] = [];
    p.onAdvance('storage', (lsn) => heard.push(lsn));
    p.advance('storage', 40n);
    p.advance('storage', 30n);
    expect(p.lsn('storage')).toBe(40n);
    expect(heard).toEqual([40n, 30n]);
    p.position('batches').advance(45n);
    expect(wal.releasedLsn).toBe(40n);
    await wal.close();
  });

  it('refuses a consumer that was not registered at start', () => {
    const p = new SpoolPositions<string>({ storage: 0n });
    expect(() => p.advance('uplink', 5n)).toThrow(/no spool consumer named uplink: the consumers are storage/);
    expect(() => p.onAdvance('uplink', () => undefined)).toThrow(RangeError);
    expect(() => new SpoolPositions({})).toThrow(RangeError);
  });
});
