/**
 * The log's bounds (gateway/log.ts): size-based rotation of the log file on a real file system
 * (no line split or lost across files, no file over the limit, only keepFiles kept), and the
 * rate limit of lines others can cause at will (the first lines of a window written, the rest
 * counted in one summary per window, by reason).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { LogLimiter, RotatingFile, createLogger } from '../../gateway/log.js';

const dir = mkdtempSync(join(tmpdir(), 'vp-log-bounds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const flushed = (f: { flush(cb: () => void): void }): Promise<void> => new Promise((r) => f.flush(r));

describe('RotatingFile', () => {
  it('rotates at maxBytes between whole lines, keeps keepFiles files, and loses no line of those kept', async () => {
    const file = join(dir, 'a', 'gateway.log');
    const out = new RotatingFile(file, { maxBytes: 10_000, keepFiles: 2 });
    const lines = 3000;
    for (let i = 0; i < lines; i++) {
      out.write(`${JSON.stringify({ i, pad: 'x'.repeat(i % 37) })}\n`);
      if (i % 250 === 0) await flushed(out); // writes in flight while lines keep coming, and some idle points
    }
    await flushed(out);
    out.end();
    expect(existsSync(`${file}.3`)).toBe(false);
    const kept = [`${file}.2`, `${file}.1`, file].map((f) => readFileSync(f, 'utf8'));
    for (const [k, text] of kept.entries()) {
      expect(Buffer.byteLength(text), `file ${k}`).toBeLessThanOrEqual(10_000);
      expect(text.endsWith('\n')).toBe(true);
    }
    const seen = kept
      .join('')
      .trimEnd()
      .split('\n')
      .map((l) => (JSON.parse(l) as { i: number }).i);
    // The newest lines, in order, none missing: the tail of what was written.
    expect(seen[seen.length - 1]).toBe(lines - 1);
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, k) => lines - seen.length + k));
    expect(Buffer.byteLength(kept.join(''))).toBeGreaterThan(20_000); // two full files and the current one
    expect(out.droppedLines).toBe(0);
  });

  it('continues an existing file and counts it against maxBytes; keepFiles 0 keeps only the current file', async () => {
    const file = join(dir, 'b.log');
    const first = new RotatingFile(file, { maxBytes: 1000, keepFiles: 0 });
    first.write(`${'a'.repeat(599)}\n`);
    await flushed(first);
    first.end();
    const second = new RotatingFile(file, { maxBytes: 1000, keepFiles: 0 });
    second.write(`${'b'.repeat(599)}\n`); // 600 + 600 > 1000: a new file
    await flushed(second);
    second.end();
    expect(readFileSync(file, 'utf8')).toBe(`${'b'.repeat(599)}\n`);
    expect(existsSync(`${file}.1`)).toBe(false);
  });

  it('is what createLogger writes to with log.file: pino lines, bounded', async () => {
    const file = join(dir, 'c', 'gw.log');
    const log = createLogger('info', file, { maxBytes: 4096, keepFiles: 1 });
    for (let i = 0; i < 500; i++) log.info({ event: 'test_line', i }, 'a line');
    await new Promise<void>((r) => log.flush(() => r()));
    expect(statSync(file).size).toBeLessThanOrEqual(4096);
    expect(statSync(`${file}.1`).size).toBeLessThanOrEqual(4096);
    expect(existsSync(`${file}.2`)).toBe(false);
    const last = readFileSync(file, 'utf8').trimEnd().split('\n').pop()!;
    expect(JSON.parse(last)).toMatchObject({ event: 'test_line', i: 499, svc: 'vitalproof' });
  });

  it('refuses bounds that are not non-negative integers', () => {
    expect(() => new RotatingFile(join(dir, 'd.log'), { maxBytes: -1 })).toThrow(RangeError);
    expect(() => new RotatingFile(join(dir, 'd.log'), { keepFiles: 1.5 })).toThrow(RangeError);
  });
});

describe('LogLimiter', () => {
  /** A pino logger writing into an array, and a clock the test moves. */
  function setUp(burst: number, windowMs: number): { lines: Record<string, unknown>[]; limiter: LogLimiter; clock: { now: number } } {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const clock = { now: 1_000_000 };
    return { lines, limiter: new LogLimiter(log, { burst, windowMs, now: () => clock.now }), clock };
  }

  it('writes the first lines of each window per event, counts the rest by reason, and summarises them once per window', () => {
    const { lines, limiter, clock } = setUp(3, 10_000);
    const reasons = ['AUTH_BAD_SIGNATURE', 'AUTH_REPLAYED', 'NO_LIVE_GRANT'];
    for (let i = 0; i < 10_000; i++) limiter.warn('research_connect_refused', { reason: reasons[i % 3] }, 'refused', reasons[i % 3]);
    for (let i = 0; i < 5; i++) limiter.info('research_subscribe_refused', { code: 'NO_GRANT' }, 'refused', 'NO_GRANT');
    expect(lines.filter((l) => l['event'] === 'research_connect_refused')).toHaveLength(3);
    expect(lines.filter((l) => l['event'] === 'research_subscribe_refused')).toHaveLength(3);
    expect(lines.filter((l) => l['event'] === 'log_suppressed')).toHaveLength(0);
    clock.now += 10_000; // the next line after the window closes its summary first
    limiter.warn('research_connect_refused', { reason: 'AUTH_EXPIRED' }, 'refused', 'AUTH_EXPIRED');
    const summary = lines.filter((l) => l['event'] === 'log_suppressed');
    expect(summary).toEqual([
      expect.objectContaining({
        of: 'research_connect_refused',
        suppressed: 9997,
        byReason: { AUTH_BAD_SIGNATURE: 3333, AUTH_REPLAYED: 3332, NO_LIVE_GRANT: 3332 },
        windowMs: 10_000,
        level: 40,
      }),
    ]);
    expect(lines[lines.length - 1]).toMatchObject({ event: 'research_connect_refused', reason: 'AUTH_EXPIRED' });
    limiter.close();
    expect(lines.filter((l) => l['event'] === 'log_suppressed').map((l) => [l['of'], l['suppressed']])).toEqual([
      ['research_connect_refused', 9997],
      ['research_subscribe_refused', 2],
    ]);
    expect(limiter.suppressed).toBe(9999);
    // 10,006 events in, 9 lines out: 3 + 3 written, 1 after the window, 2 summaries.
    expect(lines).toHaveLength(9);
  });

  it('writes the summary when the window ends even if nothing else comes', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const limiter = new LogLimiter(log, { burst: 1, windowMs: 50 });
    for (let i = 0; i < 100; i++) limiter.info('flood', {}, 'x', 'R');
    const summary = await new Promise<Record<string, unknown>>((resolve) => {
      const poll = setInterval(() => {
        const s = lines.find((l) => l['event'] === 'log_suppressed');
        if (s) {
          clearInterval(poll);
          resolve(s);
        }
      }, 10);
    });
    expect(summary).toMatchObject({ of: 'flood', suppressed: 99, byReason: { R: 99 } });
  });
});
