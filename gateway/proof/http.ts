/**
 * The proof API, on the gateway's HTTP endpoint:
 *
 *   GET /proofs/frame/<device>/<seq>                 one bundle (200), or an error (404, 409, 422)
 *   GET /proofs?device=<id>&from=<t>&to=<t>&limit=n  { export: <bundle collection>, skipped: [...], truncated }
 *
 * Times are Unix ms or ISO 8601. Errors are JSON { error: CODE, message }, with the status of
 * their code (gateway/http/errors.ts).
 */
import type { ServerResponse } from 'node:http';
import { parseTimeMs } from '../util/time.js';
import { errorBody, HTTP_STATUS } from '../http/errors.js';
import type { ProofService } from './service.js';

export function proofRoutes(service: ProofService): (url: URL, res: ServerResponse) => Promise<boolean> {
  const json = (res: ServerResponse, status: number, body: unknown): true => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    return true;
  };
  return async (url, res) => {
    const m = /^\/proofs\/frame\/([0-9a-f]{16})\/(\d+)$/.exec(url.pathname);
    if (m) {
      const r = await service.byFrame(m[1]!, BigInt(m[2]!));
      return r.ok ? json(res, 200, r.bundle) : json(res, HTTP_STATUS[r.code], errorBody(r.code, r.message));
    }
    if (url.pathname === '/proofs') {
      const q = url.searchParams;
      const device = q.get('device') ?? undefined;
      if (device !== undefined && !/^[0-9a-f]{16}$/.test(device)) return json(res, HTTP_STATUS.BAD_REQUEST, errorBody('BAD_REQUEST', 'device must be 16 lowercase hex digits'));
      const from = parseTimeMs(q.get('from'));
      const to = parseTimeMs(q.get('to'));
      const limit = q.get('limit') ? Number(q.get('limit')) : undefined;
      if (Number.isNaN(from) || Number.isNaN(to)) return json(res, HTTP_STATUS.BAD_REQUEST, errorBody('BAD_REQUEST', 'from and to must be Unix ms or ISO 8601 times'));
      if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) return json(res, HTTP_STATUS.BAD_REQUEST, errorBody('BAD_REQUEST', 'limit must be a positive integer'));
      return json(res, 200, await service.byRange(device, from, to, limit));
    }
    return false;
  };
}
