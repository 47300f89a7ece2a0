/**
 * The proof API, on the gateway's HTTP endpoint:
 *
 *   GET /proofs/frame/<device>/<seq>                 one bundle (200), or an error (404, 409, 422)
 *   GET /proofs?device=<id>&from=<t>&to=<t>&limit=n  { export: <bundle collection>, skipped: [...], truncated }
 *
 * The same routes serve a gateway's own frames (ProofService) and, on the hub, every gateway's
 * (FleetProofService, ./fleet.ts). Times are Unix ms or ISO 8601. Errors are JSON
 * { error: CODE, message }, with the status of their code (gateway/http/errors.ts).
 */
import type { ServerResponse } from 'node:http';
import { parseTimeMs } from '../util/time.js';
import { errorBody, HTTP_STATUS } from '../http/errors.js';
import type { Route } from '../http/routes.js';
import type { Proofs } from './service.js';

/** Operator routes (gateway/http/routes.ts): a bundle holds the raw signed frame, served without a login. */
export function proofRoutes(service: Proofs): Route[] {
  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  return [
    {
      path: /^\/proofs\/frame\/([0-9a-f]{16})\/(\d+)$/,
      access: 'operator',
      methods: ['GET'],
      handle: async (_req, _url, res, [device, seq]) => {
        const r = await service.byFrame(device!, BigInt(seq!));
        return r.ok ? json(res, 200, r.bundle) : json(res, HTTP_STATUS[r.code], errorBody(r.code, r.message));
      },
    },
    {
      path: '/proofs',
      access: 'operator',
      methods: ['GET'],
      handle: async (_req, url, res) => {
        const q = url.searchParams;
        const device = q.get('device') ?? undefined;
        if (device !== undefined && !/^[0-9a-f]{16}$/.test(device))
          return json(res, HTTP_STATUS.BAD_REQUEST, errorBody('BAD_REQUEST', 'device must be 16 lowercase hex digits'));
        const from = parseTimeMs(q.get('from'));
        const to = parseTimeMs(q.get('to'));
        const limit = q.get('limit') ? Number(q.get('limit')) : undefined;
        if (Number.isNaN(from) || Number.isNaN(to))
          return json(res, HTTP_STATUS.BAD_REQUEST, errorBody('BAD_REQUEST', 'from and to must be Unix ms or ISO 8601 times'));
        if (limit !== undefined && !(Number.isInteger(limit) && limit > 0))
          return json(res, HTTP_STATUS.BAD_REQUEST, errorBody('BAD_REQUEST', 'limit must be a positive integer'));
        return json(res, 200, await service.byRange(device, from, to, limit));
      },
    },
  ];
}
