/**
 * HTTP/1.1 on a raw socket, as strictly as a fuzzer needs it (RFC 9112): a response parser
 * that says whether what came back is a well-formed answer (status line, header fields, a body
 * framed by Content-Length, chunked coding or the end of the connection), and a connection that
 * sends bytes and collects the answers. Node's own client is not used: it refuses to send much
 * of what the fuzzer sends, and is lenient about some of what a server might answer.
 */
import { connect, type Socket } from 'node:net';

export interface HttpAnswer {
  status: number;
  headers: [string, string][];
  body: Buffer;
  /** The answer carried `connection: close`. */
  close: boolean;
}

export type ParseStep = { need: true } | { answer: HttpAnswer; used: number } | { malformed: string };

const STATUS_LINE = /^HTTP\/1\.[01] ([1-5]\d\d)(?: [\t -~\x80-\xff]*)?$/;
const FIELD = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\t -~\x80-\xff]*?)[\t ]*$/;
/** Larger heads or bodies than this are not what the gateway answers. */
const MAX_HEAD = 64 * 1024;
const MAX_BODY = 64 * 1024 * 1024;

/**
 * Parses one response from the start of `buf`.
 * @param head the request was HEAD (no body follows, whatever the headers say).
 * @param ended the connection has ended: a body delimited by the close is complete.
 */
export function parseAnswer(buf: Buffer, head: boolean, ended: boolean): ParseStep {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0)
    return buf.length > MAX_HEAD
      ? { malformed: 'header section over 64 KiB' }
      : ended
        ? { malformed: `connection ended inside the header section (${buf.length} bytes)` }
        : { need: true };
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = STATUS_LINE.exec(lines[0]!);
  if (!m) return { malformed: `bad status line ${JSON.stringify(lines[0]!.slice(0, 80))}` };
  const status = Number(m[1]);
  const headers: [string, string][] = [];
  for (const l of lines.slice(1)) {
    const f = FIELD.exec(l);
    if (!f) return { malformed: `bad header field ${JSON.stringify(l.slice(0, 80))}` };
    headers.push([f[1]!.toLowerCase(), f[2]!]);
  }
  const get = (k: string): string[] => headers.filter(([n]) => n === k).map(([, v]) => v);
  const close = get('connection').some((v) => /(^|,)\s*close\s*(,|$)/i.test(v));
  const start = end + 4;
  const done = (body: Buffer, used: number): ParseStep => ({ answer: { status, headers, body, close }, used });
  if (head || (status >= 100 && status < 200) || status === 204 || status === 304) return done(Buffer.alloc(0), start);
  const te = get('transfer-encoding');
  const cl = get('content-length');
  if (te.length && cl.length) return { malformed: 'both transfer-encoding and content-length' };
  if (te.length) {
    if (te.join(',').trim().toLowerCase() !== 'chunked') return { malformed: `transfer-encoding ${te.join(',')}` };
    const parts: Buffer[] = [];
    let at = start;
    for (;;) {
      const eol = buf.indexOf('\r\n', at);
      if (eol < 0) return ended ? { malformed: 'connection ended inside a chunk size line (truncated body)' } : { need: true };
      const sizeText = buf.subarray(at, eol).toString('latin1').split(';')[0]!.trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return { malformed: `bad chunk size ${JSON.stringify(sizeText.slice(0, 20))}` };
      const size = parseInt(sizeText, 16);
      if (size === 0) {
        // Trailer section, then the final CRLF.
        const fin = buf.indexOf('\r\n\r\n', eol);
        if (fin < 0) return ended ? { malformed: 'connection ended in the trailer section' } : { need: true };
        return done(Buffer.concat(parts), fin + 4);
      }
      if (buf.length < eol + 2 + size + 2) return ended ? { malformed: 'connection ended inside a chunk (truncated body)' } : { need: true };
      if (buf[eol + 2 + size] !== 13 || buf[eol + 3 + size] !== 10) return { malformed: 'chunk not followed by CRLF' };
      parts.push(buf.subarray(eol + 2, eol + 2 + size));
      at = eol + 4 + size;
      if (at - start > MAX_BODY) return { malformed: 'body over 64 MiB' };
    }
  }
  if (cl.length) {
    if (new Set(cl).size !== 1 || !/^\d{1,10}$/.test(cl[0]!)) return { malformed: `content-length ${cl.join(',')}` };
    const n = Number(cl[0]);
    if (n > MAX_BODY) return { malformed: 'body over 64 MiB' };
    if (buf.length < start + n) return ended ? { malformed: `connection ended after ${buf.length - start} of ${n} body bytes` } : { need: true };
    return done(buf.subarray(start, start + n), start + n);
  }
  // Delimited by the end of the connection.
  return ended ? done(buf.subarray(start), buf.length) : { need: true };
}

/** What became of one exchange on a connection. */
export interface Exchange {
  answers: HttpAnswer[];
  /** The gateway closed (or reset) the connection. */
  closed: boolean;
  /** Bytes that could not be read as an answer, and why. */
  malformed?: string;
  /** Nothing more came within the deadline, with the connection still open. */
  timedOut: boolean;
  /** The gateway reset the connection (ECONNRESET / EPIPE while we wrote). */
  reset: boolean;
}

/**
 * One keep-alive connection: write a request's bytes, collect the answers to it. Answers are
 * matched to requests in order; the caller says how many it expects (1, or n for pipelined ones).
 */
export class HttpConnection {
  private readonly socket: Socket;
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  private resetSeen = false;
  private wake: (() => void) | undefined;
  readonly opened: Promise<void>;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.opened = new Promise((res, rej) => {
      this.socket.once('connect', () => res());
      this.socket.once('error', rej);
    });
    this.socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.wake?.();
    });
    this.socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') this.resetSeen = true;
      this.ended = true;
      this.wake?.();
    });
    this.socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    this.socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  get alive(): boolean {
    return !this.ended && !this.socket.destroyed;
  }

  /**
   * Sends `bytes` (half-closing after them when `finish`), and reads until `expected` answers
   * came, the connection ended, or `deadlineMs` passed without progress.
   * @param heads per expected answer: whether it answers a HEAD request.
   */
  async exchange(bytes: Buffer, o: { expected: number; heads: boolean[]; finish: boolean; deadlineMs: number }): Promise<Exchange> {
    await this.opened.catch(() => undefined);
    if (!this.alive) return { answers: [], closed: true, timedOut: false, reset: this.resetSeen };
    if (this.buf.length)
      return { answers: [], closed: false, timedOut: false, reset: false, malformed: `${this.buf.length} unsolicited bytes before the request` };
    this.socket.write(bytes, () => undefined);
    if (o.finish) this.socket.end();
    const answers: HttpAnswer[] = [];
    let deadline = Date.now() + o.deadlineMs;
    for (;;) {
      // Everything parseable now.
      for (;;) {
        if (answers.length >= o.expected && !this.ended) break;
        if (this.buf.length === 0) break;
        const step = parseAnswer(this.buf, o.heads[answers.length] ?? false, this.ended);
        if ('malformed' in step) return { answers, closed: this.ended, malformed: step.malformed, timedOut: false, reset: this.resetSeen };
        if ('need' in step) break;
        this.buf = this.buf.subarray(step.used);
        if (step.answer.status >= 100 && step.answer.status < 200) continue; // interim (100 Continue)
        answers.push(step.answer);
        deadline = Date.now() + o.deadlineMs;
      }
      if (answers.length >= o.expected) return { answers, closed: this.ended, timedOut: false, reset: this.resetSeen };
      if (this.ended)
        return {
          answers,
          closed: true,
          timedOut: false,
          reset: this.resetSeen,
          ...(this.buf.length ? { malformed: `${this.buf.length} bytes after the last answer` } : {}),
        };
      const left = deadline - Date.now();
      if (left <= 0) return { answers, closed: false, timedOut: true, reset: false };
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = (): void => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
