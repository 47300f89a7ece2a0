/**
 * A deadline on every JSON-RPC request the gateway sends to the chain.
 *
 * Why not ethers' own `FetchRequest.timeout`: on Node it arms node:http's socket *idle* timer,
 * which rejects the call but leaves the request open (the socket stays until the node answers
 * or closes), and it defaults to 5 minutes. A node that accepts TCP and never answers (a
 * SIGSTOPped process, a black-holed endpoint, a wedged client) then held every anchoring and
 * registry call for 5 minutes while /status still said "up" (issue #10, item 6). Here each HTTP
 * request has one total deadline — connection, answer and body — and is aborted at it:
 *
 *   no answer in time          ChainError CHAIN_TIMEOUT     { url, method, timeoutMs }
 *   refused, reset, no route   ChainError CHAIN_UNREACHABLE { url, method, reason }
 *
 * The error passes through ethers unchanged (JsonRpcProvider rejects every call of the batch
 * with it), so callers and /status see the code. `url` in errors is the endpoint's origin only:
 * hosted endpoints carry an API key in the path.
 */
import { FetchRequest, makeError, type FetchCancelSignal, type FetchGetUrlFunc, type GetUrlResponse } from 'ethers';
import { ChainError } from './errors.js';
import { DeadlineHttpError, requestWithDeadline } from '../util/deadline-http.js';

/** Default of chain.rpcTimeoutMs. */
export const DEFAULT_RPC_TIMEOUT_MS = 10_000;

/** The origin of a URL (no credentials, path or query), for errors and logs. */
export function endpointOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}

/**
 * A FetchRequest for `new JsonRpcProvider(request, …)` whose every send has a total deadline.
 * @throws TypeError for a timeout that is not a positive integer.
 */
export function deadlineFetchRequest(url: string, timeoutMs: number): FetchRequest {
  checkTimeout(timeoutMs);
  const req = new FetchRequest(url);
  req.timeout = timeoutMs; // ethers' own bound across its 429 retries; the deadline below is per HTTP request
  req.getUrlFunc = deadlineGetUrl(timeoutMs);
  return req;
}

/** ethers' getUrl hook: the built-in fetch with a total deadline and coded failures. */
export function deadlineGetUrl(timeoutMs: number): FetchGetUrlFunc {
  checkTimeout(timeoutMs);
  return async (req: FetchRequest, signal?: FetchCancelSignal): Promise<GetUrlResponse> => {
    const body = req.body;
    const res = await post(req.url, req.headers, body ? Buffer.from(body) : undefined, req.method, timeoutMs, methodsOf(body), signal);
    return { statusCode: res.status, statusMessage: res.statusText, headers: res.headers, body: res.body.length ? res.body : null };
  };
}

/**
 * One JSON-RPC call with its own deadline, outside any provider (no batching, no queue behind
 * other calls): what the health probe uses to ask "does the node answer at all?".
 * @throws ChainError CHAIN_TIMEOUT, CHAIN_UNREACHABLE, CHAIN_RPC_ERROR
 */
export async function rpcCall(url: string, method: string, params: unknown[], timeoutMs: number): Promise<unknown> {
  checkTimeout(timeoutMs);
  const payload = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }));
  const res = await post(url, { 'content-type': 'application/json' }, payload, 'POST', timeoutMs, method);
  const where = { url: endpointOf(url), method };
  if (res.status !== 200) throw new ChainError('CHAIN_RPC_ERROR', { ...where, expected: 'HTTP 200', status: res.status });
  let doc: { result?: unknown; error?: { code?: number; message?: string } };
  try {
    doc = JSON.parse(Buffer.from(res.body).toString('utf8')) as typeof doc;
  } catch {
    throw new ChainError('CHAIN_RPC_ERROR', { ...where, expected: 'a JSON-RPC answer', found: Buffer.from(res.body.subarray(0, 80)).toString('utf8') });
  }
  if (doc.error) throw new ChainError('CHAIN_RPC_ERROR', { ...where, error: doc.error.message ?? 'unknown', rpcCode: doc.error.code });
  if (!('result' in doc)) throw new ChainError('CHAIN_RPC_ERROR', { ...where, expected: 'a result', found: 'neither result nor error' });
  return doc.result;
}

/**
 * The chain's head by eth_blockNumber, within `timeoutMs`.
 * @throws ChainError CHAIN_TIMEOUT, CHAIN_UNREACHABLE, CHAIN_RPC_ERROR
 */
export async function probeChain(url: string, timeoutMs: number): Promise<number> {
  const r = await rpcCall(url, 'eth_blockNumber', [], timeoutMs);
  if (typeof r !== 'string' || !/^0x[0-9a-fA-F]+$/.test(r))
    throw new ChainError('CHAIN_RPC_ERROR', { url: endpointOf(url), method: 'eth_blockNumber', expected: 'a hex quantity', found: String(r).slice(0, 80) });
  return Number(r);
}

async function post(
  url: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
  method: string,
  timeoutMs: number,
  rpcMethod: string,
  cancel?: FetchCancelSignal,
): Promise<{ status: number; statusText: string; headers: Record<string, string>; body: Uint8Array }> {
  const where = { url: endpointOf(url), method: rpcMethod };
  try {
    return await requestWithDeadline(url, {
      method,
      headers,
      ...(body ? { body } : {}),
      timeoutMs,
      ...(cancel ? { onCancel: (c: () => void) => cancel.addListener(c) } : {}),
    });
  } catch (e) {
    if (!(e instanceof DeadlineHttpError)) throw e;
    if (e.kind === 'cancelled') throw makeError('request cancelled', 'CANCELLED');
    if (e.kind === 'timeout') throw new ChainError('CHAIN_TIMEOUT', { ...where, timeoutMs }, { cause: e });
    throw new ChainError('CHAIN_UNREACHABLE', { ...where, reason: e.reason }, { cause: e });
  }
}

/** The JSON-RPC method names in a request body (a batch names several), for the error's detail. */
function methodsOf(body: Uint8Array | null): string {
  if (!body) return 'GET';
  const text = Buffer.from(body.subarray(0, 4096)).toString('utf8');
  const names = [...new Set([...text.matchAll(/"method"\s*:\s*"([A-Za-z0-9_]{1,64})"/g)].map((m) => m[1]!))];
  return names.length <= 3 ? names.join(',') || 'unknown' : `${names.slice(0, 3).join(',')},…`;
}

function checkTimeout(ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 1) throw new TypeError(`an RPC timeout must be a positive integer of ms, got ${ms}`);
}
