/**
 * The researcher's HTTP client of the gateway's API (docs/research-api.md, the wire contract):
 * one JSON request at a time, a refusal as an ApiError with the API's `{ error, message }`.
 * The wire types are the server's own (gateway/research/http.ts, readings.ts), so client and
 * server cannot drift.
 */
import { ConfigError } from '../config.js';
import type { FrameJson } from '../research/readings.js';
import { ApiError } from './errors.js';

export { ApiError } from './errors.js';

export type { GrantJson as ApiGrant } from '../research/http.js';
export type { FrameJson as ApiFrame } from '../research/readings.js';

/** A readings page, format json (GET /research/grants/<id>/readings). */
export interface ReadingsPage {
  grantId: string;
  patient: string;
  from: number | string;
  to: number | string;
  frames: FrameJson[];
  nextCursor: string | null;
  proofs?: unknown[];
  /** Frames of the page without a bundle, and why (e.g. not anchored yet). */
  proofsSkipped?: { deviceId: string; seq: string; code: string }[];
}

/**
 * One request to the API: JSON in, JSON out.
 * @throws ApiError for an answer that is not 2xx (its `{ error, message }`); the fetch error when the gateway is unreachable.
 */
export async function apiRequest<T>(
  base: string,
  path: string,
  o: { method?: 'GET' | 'POST'; body?: unknown; token?: string; timeoutMs?: number } = {},
): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method: o.method ?? (o.body !== undefined ? 'POST' : 'GET'),
    headers: {
      accept: 'application/json',
      ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
    },
    ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    signal: AbortSignal.timeout(o.timeoutMs ?? 120_000),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const b = (json ?? {}) as { error?: unknown; message?: unknown };
    throw new ApiError(
      res.status,
      typeof b.error === 'string' ? b.error : `HTTP_${res.status}`,
      typeof b.message === 'string' ? b.message : text.slice(0, 200),
      path,
    );
  }
  if (json === undefined) throw new ApiError(res.status, 'NOT_JSON', `the answer is not JSON: ${text.slice(0, 200)}`, path);
  return json as T;
}

/**
 * The gateway's API URL as sessions are keyed: origin and path, no trailing slash.
 * @throws ConfigError for anything but an http(s) URL.
 */
export function normaliseUrl(u: string): string {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw new ConfigError(`--url "${u}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`--url must be http(s), got ${url.protocol}`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}
