/**
 * The pure parts of the storage quarantine: the bisection that finds refused frames
 * (gateway/storage/isolate.ts) and the quarantine directory (gateway/storage/quarantine.ts).
 * InfluxDB's side is in test/gateway/storage/quarantine.test.ts, against a real influxd;
 * here a writer that refuses chosen lines stands for the rule "these points are refused for
 * good", to count requests and check order exactly.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isStorageError, StorageError } from '../../../gateway/storage/errors.js';
import { writeIsolating } from '../../../gateway/storage/isolate.js';
import { StorageQuarantine, type QuarantinedFrame } from '../../../gateway/storage/quarantine.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** n groups of 3 lines; the writer refuses (400) any request holding a line of a group in `bad`. */
function scenario(n: number, bad: number[], status = 400) {
  const groups = Array.from({ length: n }, (_, i) => ({ id: i, lines: [`g${i}a`, `g${i}b`, `g${i}c`] }));
  const stored = new Set<string>();
  let requests = 0;
  const write = async (lines: string[]): Promise<void> => {
    requests++;
    const refused = lines.filter((l) => bad.includes(Number(l.slice(1, -1))));
    // Like InfluxDB 1.x's partial write: the other points of the request are stored.
    for (const l of lines) if (!refused.includes(l)) stored.add(l);
    if (refused.length) throw new StorageError('INFLUX_REJECTED', { status, error: `partial write: field type conflict dropped=${refused.length}` });
  };
  return { groups, stored, write, requests: () => requests };
}

describe('writeIsolating', () => {
  it('one request when nothing is refused', async () => {
    const s = scenario(100, []);
    const refused: number[] = [];
    await writeIsolating(s.groups, s.write, (g) => void refused.push(g.id));
    expect(refused).toEqual([]);
    expect(s.requests()).toBe(1);
    expect(s.stored.size).toBe(300);
  });

  it('finds exactly the refused groups, in order, with O(k log n) requests, and every other line is stored', async () => {
    const s = scenario(1000, [17, 503, 998]);
    const refused: number[] = [];
    await writeIsolating(s.groups, s.write, (g, e) => {
      expect(e.detail['status']).toBe(400);
      refused.push(g.id);
    });
    expect(refused).toEqual([17, 503, 998]);
    expect(s.requests()).toBeLessThanOrEqual(1 + 3 * 2 * Math.ceil(Math.log2(1000)));
    for (const g of s.groups) for (const l of g.lines) expect(s.stored.has(l)).toBe(![17, 503, 998].includes(g.id));
  });

  it('every group refused: each is found, with 2n - 1 requests', async () => {
    const s = scenario(
      16,
      Array.from({ length: 16 }, (_, i) => i),
    );
    const refused: number[] = [];
    await writeIsolating(s.groups, s.write, (g) => void refused.push(g.id));
    expect(refused).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(s.requests()).toBe(31);
  });

  it.each([413, 422])('HTTP %i is a refusal for good too', async (status) => {
    const s = scenario(4, [2], status);
    const refused: number[] = [];
    await writeIsolating(s.groups, s.write, (g) => void refused.push(g.id));
    expect(refused).toEqual([2]);
  });

  it.each([
    ['401 credentials', new StorageError('INFLUX_REJECTED', { status: 401, error: 'authorization failed' })],
    ['404 database missing', new StorageError('INFLUX_REJECTED', { status: 404, error: 'database not found' })],
    ['5xx', new StorageError('INFLUX_SERVER_ERROR', { status: 503, error: 'engine: cache-max-memory-size exceeded' })],
    ['a timeout', new StorageError('INFLUX_TIMEOUT', { timeoutMs: 10 })],
  ])('%s is transient: thrown at once, nothing set aside', async (_n, err) => {
    const refused: number[] = [];
    let requests = 0;
    const e = await writeIsolating(
      [{ lines: ['a'] }, { lines: ['b'] }],
      async () => {
        requests++;
        throw err;
      },
      () => void refused.push(0),
    ).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBe(err);
    expect(requests).toBe(1);
    expect(refused).toEqual([]);
  });

  it('a transient failure half-way through the bisection stops it: what was refused before stays refused', async () => {
    const groups = Array.from({ length: 8 }, (_, i) => ({ id: i, lines: [`g${i}`] }));
    let calls = 0;
    const refused: number[] = [];
    const e = await writeIsolating(
      groups,
      async (lines) => {
        calls++;
        if (calls >= 5) throw new StorageError('INFLUX_UNREACHABLE', { reason: 'ECONNREFUSED' });
        if (lines.includes('g0')) throw new StorageError('INFLUX_REJECTED', { status: 400, error: 'field type conflict' });
      },
      (g) => void refused.push(g.id),
    ).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isStorageError(e, 'INFLUX_UNREACHABLE')).toBe(true);
    expect(refused).toEqual([0]);
  });
});

describe('StorageQuarantine', () => {
  const entry = (lsn: number, extra: Partial<QuarantinedFrame> = {}): QuarantinedFrame => ({
    version: 1,
    lsn: String(lsn),
    device: '0a1b2c3d4e5f6071',
    seq: String(100 + lsn),
    sensor: 'heart_rate',
    sha256: `${'ab'.repeat(31)}${lsn.toString(16).padStart(2, '0')}`,
    database: 'vitalproof',
    lines: [`heart_rate,device=0a1b2c3d4e5f6071 value=${lsn} 1`],
    status: 400,
    error: 'field type conflict',
    quarantinedAtMs: 1,
    ...extra,
  });

  function quarantine(maxBytes?: number): StorageQuarantine {
    const d = mkdtempSync(join(tmpdir(), 'vp-sq-'));
    dirs.push(d);
    return new StorageQuarantine(join(d, 'q'), maxBytes ? { maxBytes } : {});
  }

  it('adds once per frame, lists in LSN order, and survives a restart', () => {
    const q = quarantine();
    expect(q.add(entry(12))).toBe(true);
    expect(q.add(entry(3))).toBe(true);
    expect(q.add(entry(12))).toBe(false);
    expect(q.has(12n, entry(12).sha256)).toBe(true);
    expect(q.entries().map((e) => e.entry?.lsn)).toEqual(['3', '12']);
    const again = new StorageQuarantine(q.dir);
    expect(again.has(3n, entry(3).sha256)).toBe(true);
    expect(again.stats().held).toBe(2);
  });

  it('forgets a temporary file of a write cut short, and reports a file it cannot read without dropping it', () => {
    const q = quarantine();
    q.add(entry(1));
    writeFileSync(join(q.dir, `${StorageQuarantine.fileName(2n, entry(2).sha256)}.tmp`), '{"version":1,"lsn":"2"');
    writeFileSync(join(q.dir, StorageQuarantine.fileName(3n, entry(3).sha256)), 'not json');
    const again = new StorageQuarantine(q.dir);
    expect(readdirSync(q.dir).some((n) => n.endsWith('.tmp'))).toBe(false);
    const listed = again.entries();
    expect(listed.map((e) => [e.entry?.lsn, e.unreadable !== undefined])).toEqual([
      ['1', false],
      [undefined, true],
    ]);
  });

  it('sees files another process removed (a replay) at its next rescan', () => {
    const q = quarantine();
    q.add(entry(1));
    q.add(entry(2));
    const t = Date.now() + 10_000;
    expect(q.stats(t).held).toBe(2);
    rmSync(join(q.dir, StorageQuarantine.fileName(1n, entry(1).sha256)));
    expect(q.stats(t + 500).held).toBe(2); // rescans at most once a second
    expect(q.stats(t + 1000).held).toBe(1);
    expect(q.has(1n, entry(1).sha256)).toBe(false);
  });

  it('refuses beyond maxBytes with QUARANTINE_FULL and writes nothing', () => {
    const one = Buffer.byteLength(`${JSON.stringify(entry(1))}\n`);
    const q = quarantine(one + 10);
    q.add(entry(1));
    let e: unknown;
    try {
      q.add(entry(2));
    } catch (x) {
      e = x;
    }
    expect(isStorageError(e, 'QUARANTINE_FULL')).toBe(true);
    expect(readdirSync(q.dir)).toHaveLength(1);
    expect(q.stats().bytes).toBe(one);
  });
});
