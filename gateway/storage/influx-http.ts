/**
 * A small client for the InfluxDB 1.x HTTP API (/ping, /write, /query) on the built-in
 * fetch. Why not node-influx: it writes integers through float64 (Math.floor) and reads
 * them through JSON.parse, so an int64 above 2^53 (a seq, a time in ns) changes on the
 * way; after one failed request it also takes the host out of its pool for a random
 * backoff of up to 10 s, during which every call fails with "No host available".
 *
 * Every request has a timeout and every failure is a coded StorageError; nothing retries
 * here (the spool drainer owns retries).
 */
import { StorageError } from './errors.js';

export interface InfluxHttpOptions {
  /** e.g. http://127.0.0.1:8086 (a path prefix behind a reverse proxy is kept). */
  url: string;
  /** Basic auth when non-empty (InfluxDB with auth-enabled = true). */
  username?: string;
  password?: string;
  /** Per request, body included. Default 10 s. */
  timeoutMs?: number;
}

export interface Series {
  name: string;
  columns: string[];
  /** Numbers of 16+ digits arrive as decimal strings (see parseJsonExact): read integers with BigInt(), floats with Number(). */
  values: unknown[][];
}

/** Rows per chunk of a chunked query; chunked queries are also exempt from max-row-limit. */
const CHUNK_SIZE = 10_000;

export class InfluxHttp {
  private readonly base: string;
  private readonly auth: string | undefined;
  private readonly timeoutMs: number;

  constructor(opts: InfluxHttpOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    this.auth = opts.username ? `Basic ${Buffer.from(`${opts.username}:${opts.password ?? ''}`).toString('base64')}` : undefined;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** True when the server answers /ping with 204 within the timeout; never throws. */
  async ping(): Promise<boolean> {
    try {
      return (await this.request('GET', '/ping', {})).status === 204;
    } catch {
      return false;
    }
  }

  /** Writes lines (ns precision). @throws StorageError */
  async write(database: string, lines: readonly string[], retentionPolicy?: string): Promise<void> {
    const params: Record<string, string> = { db: database, precision: 'ns' };
    if (retentionPolicy) params['rp'] = retentionPolicy;
    const res = await this.request('POST', '/write', params, lines.join('\n'), 'text/plain; charset=utf-8');
    if (res.status !== 204) throw httpError(res, { database, points: lines.length });
  }

  /**
   * Runs one InfluxQL statement (POST, chunked JSON) and returns its series, chunks merged.
   * Use `params` ($name placeholders) for values that come from outside.
   * @throws StorageError, including INFLUX_REJECTED for a statement error such as "database not found".
   */
  async query(q: string, opts: { database?: string; params?: Record<string, string | number> } = {}): Promise<Series[]> {
    const form = new URLSearchParams({ q, epoch: 'ns', chunked: 'true', chunk_size: String(CHUNK_SIZE) });
    if (opts.database) form.set('db', opts.database);
    if (opts.params) form.set('params', JSON.stringify(opts.params));
    const res = await this.request('POST', '/query', {}, form.toString(), 'application/x-www-form-urlencoded');
    if (res.status !== 200) throw httpError(res, { q });
    const merged = new Map<string, Series>();
    // Chunked responses are one JSON document per line; a series continues across documents.
    for (const line of res.body.split('\n')) {
      if (!line.trim()) continue;
      const doc = parseJsonExact(line) as { error?: string; results?: { error?: string; series?: (Series & { tags?: unknown })[] }[] };
      if (doc.error) throw new StorageError('INFLUX_REJECTED', { status: res.status, error: doc.error, q });
      for (const r of doc.results ?? []) {
        if (r.error) throw new StorageError('INFLUX_REJECTED', { status: res.status, error: r.error, q });
        for (const s of r.series ?? []) {
          const key = `${s.name}\0${JSON.stringify(s.tags ?? {})}`;
          const prev = merged.get(key);
          if (prev) prev.values.push(...s.values);
          else merged.set(key, { name: s.name, columns: s.columns, values: [...(s.values ?? [])] });
        }
      }
    }
    return [...merged.values()];
  }

  private async request(
    method: 'GET' | 'POST',
    path: string,
    params: Record<string, string>,
    body?: string,
    contentType?: string,
  ): Promise<{ status: number; body: string }> {
    const qs = new URLSearchParams(params).toString();
    const headers: Record<string, string> = {};
    if (contentType) headers['content-type'] = contentType;
    if (this.auth) headers['authorization'] = this.auth;
    try {
      const res = await fetch(`${this.base}${path}${qs ? `?${qs}` : ''}`, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
      return { status: res.status, body: await res.text() };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      if (err.name === 'TimeoutError') throw new StorageError('INFLUX_TIMEOUT', { url: this.base, path, timeoutMs: this.timeoutMs }, { cause: e });
      throw new StorageError('INFLUX_UNREACHABLE', { url: this.base, path, reason: err.cause?.code ?? err.cause?.message ?? err.message }, { cause: e });
    }
  }
}

function httpError(res: { status: number; body: string }, detail: Record<string, unknown>): StorageError {
  let error = res.body.trim();
  try {
    error = (JSON.parse(res.body) as { error?: string }).error ?? error;
  } catch {
    // not JSON (a proxy's error page): keep the text
  }
  const code = res.status >= 500 ? 'INFLUX_SERVER_ERROR' : res.status >= 400 ? 'INFLUX_REJECTED' : 'INFLUX_BAD_RESPONSE';
  return new StorageError(code, { ...detail, status: res.status, error: error.slice(0, 500) });
}

/**
 * JSON.parse, except that integers of 16 or more digits become decimal strings instead of
 * rounded float64s. The alternation consumes whole string literals first, so digits inside
 * strings are never touched; a number must start a value (after '[', ',' or ':'), so the
 * digits after a decimal point are not either. Go prints floats from 1e16 to 1e21 without
 * a point: they come back as strings too, and Number() of that string is what JSON.parse
 * would have given.
 * @throws StorageError INFLUX_BAD_RESPONSE for text that is not JSON.
 */
export function parseJsonExact(text: string): unknown {
  const quoted = text.replace(/"(?:[^"\\]|\\.)*"|(?<=[[,:]\s*)-?\d{16,}(?![\d.eE])/g, (m) => (m.startsWith('"') ? m : `"${m}"`));
  try {
    return JSON.parse(quoted);
  } catch (e) {
    throw new StorageError('INFLUX_BAD_RESPONSE', { body: text.slice(0, 200) }, { cause: e });
  }
}

/** The rows of a query's series as objects keyed by column (tags and fields alike). */
export function seriesRows(series: Series[]): Record<string, unknown>[] {
  return series.flatMap((s) => s.values.map((v) => Object.fromEntries(s.columns.map((c, i) => [c, v[i]]))));
}
