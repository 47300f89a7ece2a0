/**
 * Structured logs (JSON lines, pino). Log lines carry device ids and patient pseudonyms at
 * most: never names, never readings.
 *
 * Two bounds keep an attacker (or a long uptime) from filling the disk through the log:
 *
 * - **Size.** With `log.file`, the file is rotated at `log.maxBytes` (file → file.1 → … →
 *   file.<keepFiles>, the oldest deleted), so the log takes at most (keepFiles + 1) × maxBytes
 *   (`RotatingFile`). On stdout the service manager's journal bounds it (journald's
 *   SystemMaxUse).
 * - **Rate.** Events an unauthenticated or misbehaving party can cause at will (a refused
 *   login, a refused subscription filter) go through a `LogLimiter`: per event, the first
 *   `burst` lines of each window are written, the rest only counted, and one `log_suppressed`
 *   line per event and window says how many were not written, by reason. Every refusal is
 *   also counted by code in /status and /metrics, so nothing is lost but the repetition.
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogFileOptions {
  /** Rotate when the file reaches this many bytes; 0: never. Default 64 MiB. */
  maxBytes?: number;
  /** Rotated files kept (file.1 … file.N). Default 4. */
  keepFiles?: number;
}

export function createLogger(level: string, file?: string, rotation: LogFileOptions = {}): Logger {
  const dest = file ? new RotatingFile(file, rotation) : pino.destination(1);
  return pino({ level, base: { svc: 'vitalproof' }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

/** Lines waiting to be written at most (bytes): beyond, lines are dropped and counted (a disk that stalls must not grow memory). */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
/** One write() at most: a chunk of whole lines. */
const MAX_CHUNK_BYTES = 256 * 1024;

/**
 * A log file with size-based rotation: asynchronous appends of whole lines (one write in flight
 * at a time), rotated between two writes, so a line is never split across files and no file
 * exceeds maxBytes unless one line alone does. On process exit what is buffered is written
 * synchronously. pino writes to it like to any stream (`write(line)`).
 *
 * @example
 *   const log = pino({}, new RotatingFile('/var/log/vitalproof/gateway.log', { maxBytes: 64 << 20, keepFiles: 4 }));
 */
export class RotatingFile {
  readonly maxBytes: number;
  readonly keepFiles: number;
  private fd: number;
  private bytes: number;
  private queue: string[] = [];
  private queuedBytes = 0;
  private writing = false;
  private dropped = 0;
  private closed = false;
  private idle: (() => void)[] = [];
  private readonly onExit = (): void => this.flushSync();

  /** @throws RangeError for a negative or non-integer bound; Error when the file cannot be opened. */
  constructor(
    readonly file: string,
    opts: LogFileOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.keepFiles = opts.keepFiles ?? 4;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 0) throw new RangeError(`log.maxBytes must be an integer >= 0, got ${this.maxBytes}`);
    if (!Number.isSafeInteger(this.keepFiles) || this.keepFiles < 0 || this.keepFiles > 1000)
      throw new RangeError(`log.keepFiles must be an integer 0-1000, got ${this.keepFiles}`);
    mkdirSync(dirname(file), { recursive: true });
    this.fd = openSync(file, 'a');
    this.bytes = existsSync(file) ? statSync(file).size : 0;
    process.on('exit', this.onExit);
  }

  /** Lines dropped because the disk did not keep up (MAX_BUFFERED_BYTES). */
  get droppedLines(): number {
    return this.dropped;
  }

  write(line: string): boolean {
    if (this.closed) return false;
    if (this.queuedBytes + line.length > MAX_BUFFERED_BYTES) {
      this.dropped++;
      return false;
    }
    this.queue.push(line);
    this.queuedBytes += line.length;
    if (!this.writing) this.next();
    return true;
  }

  /** pino's logger.flush(cb): cb once everything written so far is on its way to the file (written, or dropped and counted). */
  flush(cb?: (err?: Error) => void): void {
    if (!this.writing && this.queue.length === 0) cb?.();
    else if (cb) this.idle.push(() => cb());
  }

  /**
   * Writes what is buffered now, synchronously (exit, fatal fault). A chunk already handed to
   * an asynchronous write may land after these lines: at exit, order matters less than loss.
   */
  flushSync(): void {
    while (this.queue.length > 0) {
      const chunk = this.take();
      writeSync(this.fd, chunk);
      this.bytes += Buffer.byteLength(chunk);
    }
  }

  end(): void {
    this.flushSync();
    this.closed = true;
    process.off('exit', this.onExit);
    if (!this.writing) closeSync(this.fd);
  }

  private next(): void {
    if (this.queue.length === 0) {
      if (this.closed) closeSync(this.fd);
      for (const f of this.idle.splice(0)) f();
      return;
    }
    const chunk = this.take();
    this.writing = true;
    write(this.fd, chunk, null, 'utf8', (err) => {
      this.writing = false;
      // A write that fails (disk full) loses its lines: a log must never stop the gateway.
      if (!err) this.bytes += Buffer.byteLength(chunk);
      else this.dropped += chunk.split('\n').length - 1;
      this.next();
    });
  }

  /** The next chunk of whole lines; rotates first when the next line would not fit any more. */
  private take(): string {
    const first = this.queue[0]!;
    if (this.maxBytes > 0 && this.bytes > 0 && this.bytes + Buffer.byteLength(first) > this.maxBytes) this.rotate();
    const room = this.maxBytes > 0 ? Math.max(this.maxBytes - this.bytes, 1) : MAX_CHUNK_BYTES;
    let n = 0;
    let size = 0;
    for (const l of this.queue) {
      const b = Buffer.byteLength(l);
      if (n > 0 && (size + b > room || size + b > MAX_CHUNK_BYTES)) break;
      n++;
      size += b;
    }
    const lines = this.queue.splice(0, n);
    for (const l of lines) this.queuedBytes -= l.length;
    return lines.join('');
  }

  /** file.(N-1) → file.N, …, file → file.1, then a new file (no write is in flight). */
  private rotate(): void {
    closeSync(this.fd);
    if (this.keepFiles === 0) rmSync(this.file, { force: true });
    else {
      rmSync(`${this.file}.${this.keepFiles}`, { force: true });
      for (let i = this.keepFiles - 1; i >= 1; i--) if (existsSync(`${this.file}.${i}`)) renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      renameSync(this.file, `${this.file}.1`);
    }
    this.fd = openSync(this.file, 'a');
    this.bytes = 0;
  }
}

export interface LogLimiterOptions {
  /** Lines written per event and window. Default 10. */
  burst?: number;
  /** Default 60,000 ms. */
  windowMs?: number;
  now?: () => number;
}

type Level = 'info' | 'warn' | 'error';

interface EventWindow {
  level: Level;
  startedAtMs: number;
  written: number;
  suppressed: number;
  byReason: Map<string, number>;
  timer: NodeJS.Timeout | undefined;
}

/** Distinct reasons counted per event and window; more are counted under `other` (reasons are closed sets, this is a guard). */
const MAX_REASONS = 32;

/**
 * Rate-limited log lines for events a party outside the gateway's control can repeat at will.
 * Per event name: the first `burst` lines of a window are written as given; the others are
 * counted (by `reason`), and at the end of the window one line
 * `{ event: 'log_suppressed', of, suppressed, byReason, windowMs }` at the same level reports
 * them. Memory: one small record per event name (a closed set in the code).
 *
 * @example
 *   const limited = new LogLimiter(log);
 *   limited.warn('research_connect_refused', { reason: 'AUTH_BAD_SIGNATURE' }, 'researcher CONNECT refused', 'AUTH_BAD_SIGNATURE');
 */
export class LogLimiter {
  readonly burst: number;
  readonly windowMs: number;
  private readonly now: () => number;
  private readonly events = new Map<string, EventWindow>();
  private suppressedTotal = 0;

  /** @throws RangeError for a burst < 0 or a window < 1 ms. */
  constructor(
    private readonly log: Pick<Logger, Level>,
    opts: LogLimiterOptions = {},
  ) {
    this.burst = opts.burst ?? 10;
    this.windowMs = opts.windowMs ?? 60_000;
    if (!Number.isSafeInteger(this.burst) || this.burst < 0) throw new RangeError(`log burst must be an integer >= 0, got ${this.burst}`);
    if (!Number.isSafeInteger(this.windowMs) || this.windowMs < 1) throw new RangeError(`log window must be an integer >= 1 ms, got ${this.windowMs}`);
    this.now = opts.now ?? Date.now;
  }

  /** Lines not written so far (reported in log_suppressed lines). */
  get suppressed(): number {
    return this.suppressedTotal;
  }

  info(event: string, fields: Record<string, unknown>, msg: string, reason?: string): void {
    this.line('info', event, fields, msg, reason);
  }

  warn(event: string, fields: Record<string, unknown>, msg: string, reason?: string): void {
    this.line('warn', event, fields, msg, reason);
  }

  /** Writes the summaries of every open window now (at shutdown). */
  close(): void {
    for (const [event, w] of this.events) this.summarise(event, w);
    this.events.clear();
  }

  private line(level: Level, event: string, fields: Record<string, unknown>, msg: string, reason: string | undefined): void {
    const now = this.now();
    let w = this.events.get(event);
    if (w && now - w.startedAtMs >= this.windowMs) {
      this.summarise(event, w);
      w = undefined;
    }
    if (!w) {
      w = { level, startedAtMs: now, written: 0, suppressed: 0, byReason: new Map(), timer: undefined };
      this.events.set(event, w);
    }
    if (w.written < this.burst) {
      w.written++;
      this.log[level]({ ...fields, event }, msg);
      return;
    }
    w.suppressed++;
    this.suppressedTotal++;
    const key = reason === undefined ? '-' : w.byReason.has(reason) || w.byReason.size < MAX_REASONS ? reason : 'other';
    w.byReason.set(key, (w.byReason.get(key) ?? 0) + 1);
    if (!w.timer) {
      const win = w;
      w.timer = setTimeout(
        () => {
          if (this.events.get(event) === win) this.events.delete(event);
          this.summarise(event, win);
        },
        Math.max(0, win.startedAtMs + this.windowMs - now),
      );
      w.timer.unref();
    }
  }

  private summarise(event: string, w: EventWindow): void {
    clearTimeout(w.timer);
    w.timer = undefined;
    if (w.suppressed === 0) return;
    const n = w.suppressed;
    w.suppressed = 0;
    this.log[w.level](
      { event: 'log_suppressed', of: event, suppressed: n, byReason: Object.fromEntries(w.byReason), windowMs: this.windowMs },
      `${n} more ${event} lines not written (rate limit: ${this.burst} per ${this.windowMs} ms)`,
    );
  }
}
