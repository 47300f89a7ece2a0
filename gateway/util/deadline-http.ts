/**
 * One HTTP request with one total deadline — connection, answer and body — at which the
 * request and its socket are destroyed.
 *
 * Why node:http rather than fetch() with AbortSignal.timeout: measured here (Node 20), undici
 * closes an aborted request's connection but opens a fresh one to the same peer right after,
 * idle until its keep-alive timeout; a probe every second against a node that accepts and
 * never answers (a SIGSTOPped process) keeps several such connections open. Here the request's
 * socket is destroyed at the deadline and nothing else is opened.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';

export interface DeadlineResponse {
  status: number;
  statusText: string;
  headers: Record<string, string>;
  body: Buffer;
}

export const DEADLINE_HTTP_ERRORS = {
  REQUEST_DEADLINE: 'no complete answer within the deadline',
  REQUEST_NETWORK: 'the connection was refused, reset or could not be resolved',
  REQUEST_CANCELLED: 'the caller cancelled the request',
} as const;
export type DeadlineHttpErrorCode = keyof typeof DEADLINE_HTTP_ERRORS;

/** What to do about each code: Callers report these under their own codes (CHAIN_TIMEOUT, INFLUX_UNREACHABLE, …): see those. */
export const DEADLINE_HTTP_ERROR_REMEDIES: Remedies<DeadlineHttpErrorCode> = {
  REQUEST_DEADLINE: "See the caller's code (CHAIN_TIMEOUT, INFLUX_TIMEOUT): a hung or overloaded server.",
  REQUEST_NETWORK: "See the caller's code (CHAIN_UNREACHABLE, INFLUX_UNREACHABLE): is the server running, is its URL right.",
  REQUEST_CANCELLED: 'Nothing: the caller gave up on the request (a shutdown, a newer request).',
};

const CODE_OF = { timeout: 'REQUEST_DEADLINE', network: 'REQUEST_NETWORK', cancelled: 'REQUEST_CANCELLED' } as const satisfies Record<
  string,
  DeadlineHttpErrorCode
>;

/**
 * Why a request failed: `timeout` at the deadline, `network` for a refused, reset or
 * unresolvable connection, `cancelled` by the caller. Callers turn it into their component's
 * code (CHAIN_TIMEOUT, INFLUX_UNREACHABLE, …); the message stays `kind: reason`.
 */
export class DeadlineHttpError extends CodedError<DeadlineHttpErrorCode> {
  constructor(
    readonly kind: keyof typeof CODE_OF,
    /** The system error code (ECONNREFUSED, …) or message, for `network`. */
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(DEADLINE_HTTP_ERRORS, CODE_OF[kind], { reason }, { ...options, message: `${kind}: ${reason}` });
  }
}

/**
 * Sends one request and reads the whole answer within `timeoutMs`. Credentials in the URL are
 * sent as a Basic authorization header.
 * @param onCancel registers a callback that cancels the request (e.g. ethers' FetchCancelSignal).
 * @throws DeadlineHttpError
 */
export function requestWithDeadline(
  url: string,
  opts: { method: string; headers?: Record<string, string>; body?: Uint8Array; timeoutMs: number; onCancel?: (cancel: () => void) => void },
): Promise<DeadlineResponse> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch (e) {
      reject(new DeadlineHttpError('network', `invalid URL: ${(e as Error).message}`, { cause: e }));
      return;
    }
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if ((u.username || u.password) && !Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) {
      headers['authorization'] = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    }
    u.username = '';
    u.password = '';
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    let settled = false;
    const req = send(u, { method: opts.method, headers });
    const fail = (e: DeadlineHttpError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy(); // the socket goes with it: nothing waits on a silent peer
      reject(e);
    };
    const timer = setTimeout(() => fail(new DeadlineHttpError('timeout', `no complete answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    opts.onCancel?.(() => fail(new DeadlineHttpError('cancelled', 'cancelled by the caller')));
    req.on('error', (e: NodeJS.ErrnoException) => fail(new DeadlineHttpError('network', e.code ?? e.message, { cause: e })));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e: NodeJS.ErrnoException) => fail(new DeadlineHttpError('network', e.code ?? e.message, { cause: e })));
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: flatten(res.headers), body: Buffer.concat(chunks) });
      });
    });
    req.end(opts.body ? Buffer.from(opts.body) : undefined);
  });
}

function flatten(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}
