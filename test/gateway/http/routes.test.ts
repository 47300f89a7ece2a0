/**
 * The gateway's route table (gateway/parts/http.ts gatewayRoutes) and the dispatcher that
 * enforces its marks (gateway/http/routes.ts), on a real listener: every route is marked
 * operator or public, a route without a mark is not served, and an operator route refuses a
 * client that is not on the gateway host while the public ones answer it.
 *
 * The listener is served on loopback TCP (the operator) and on a Unix socket: a Unix-socket
 * peer has no IP address, so it is not loopback, which gives every machine a non-loopback
 * client without a second network interface.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchStore } from '../../../gateway/anchor/batch-store.js';
import { DEFAULTS } from '../../../gateway/config.js';
import { AccessLog } from '../../../gateway/consent/access-log.js';
import { ResearcherAuthenticator } from '../../../gateway/consent/auth.js';
import { ACCESS, routeRequests, startHttpServer, type Route } from '../../../gateway/http/routes.js';
import { createApiServer, HttpGuard, httpTransport } from '../../../gateway/http/server.js';
import { createLogger } from '../../../gateway/log.js';
import { gatewayRoutes, gatewayStatusRoutes } from '../../../gateway/parts/http.js';
import { ProofService } from '../../../gateway/proof/service.js';
import type { StatusSnapshot } from '../../../gateway/status/http.js';
import { InfluxSink } from '../../../gateway/storage/influx-sink.js';

let dir: string;
let accessLog: AccessLog;
let table: Route[];
let guard: HttpGuard;
const servers: Server[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-routes-'));
  const log = createLogger('silent');
  accessLog = await AccessLog.open(join(dir, 'access-log'));
  // Never contacted: no request below reads readings or proofs.
  const sink = new InfluxSink({ url: 'http://127.0.0.1:9', database: 'vitalproof', gatewayId: 'gw-routes' });
  const proofs = new ProofService({
    store: new BatchStore(join(dir, 'batches')),
    sink,
    keyOf: () => undefined,
    deviceRegistry: undefined,
    gatewayId: 'gw-routes',
  });
  guard = new HttpGuard(DEFAULTS.http, httpTransport(DEFAULTS.http));
  const snapshot = (): StatusSnapshot =>
    ({ gatewayId: 'gw-routes', alarms: [], spool: { diskLow: false, alarm: false }, storage: { up: true } }) as unknown as StatusSnapshot;
  table = gatewayRoutes({
    status: gatewayStatusRoutes(snapshot)(guard),
    proofs,
    research: {
      guard,
      auth: new ResearcherAuthenticator({ gatewayId: 'gw-routes' }),
      view: undefined,
      disclosures: undefined,
      accessLog,
      readings: { sink, deviceOf: () => undefined, log },
      proofs,
      log,
    },
  });
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
  await accessLog.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One request over loopback TCP (`port`) or a Unix socket (`socketPath`). */
function call(to: { port: number } | { socketPath: string }, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...('port' in to ? { host: '127.0.0.1', port: to.port } : { socketPath: to.socketPath }), method, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the route table', () => {
  it('marks every route operator or public: the operator has status, metrics and the proof API', () => {
    expect(table.length).toBeGreaterThan(0);
    for (const r of table) expect(ACCESS, String(r.path)).toContain(r.access);
    const paths = (access: string): string[] => table.filter((r) => r.access === access).map((r) => String(r.path));
    expect(paths('operator')).toEqual(['/status', '/metrics', String(/^\/proofs\/frame\/([0-9a-f]{16})\/(\d+)$/), '/proofs']);
    expect(paths('public')).toEqual([
      '/healthz',
      '/auth/challenge',
      '/auth/login',
      '/auth/logout',
      '/research/grants',
      String(/^\/research\/grants\/([^/]+)\/readings$/),
      '/patient/grants',
      '/patient/disclosures',
    ]);
  });

  it('serves no route that does not say who may call it', () => {
    const unmarked = { path: '/new', handle: () => undefined } as unknown as Route;
    expect(() => routeRequests([...table, unmarked])).toThrow(/route \/new must be marked operator or public, got undefined/);
    expect(() => routeRequests([{ ...unmarked, access: 'anyone' } as unknown as Route])).toThrow(TypeError);
  });
});

describe('the listener enforces the marks', () => {
  let tcp: { port: number };
  let unix: { socketPath: string };

  beforeAll(async () => {
    const onLoopback = await startHttpServer('127.0.0.1', 0, table, { guard, limits: DEFAULTS.http });
    servers.push(onLoopback.server);
    tcp = { port: onLoopback.port };
    const socketPath = join(dir, 'api.sock');
    const onSocket = createApiServer(guard, DEFAULTS.http, routeRequests(table));
    servers.push(onSocket);
    await new Promise<void>((res, rej) => {
      onSocket.once('error', rej);
      onSocket.listen(socketPath, () => res());
    });
    unix = { socketPath };
  });

  it('answers an operator route on the gateway host', async () => {
    const r = await call(tcp, 'GET', '/status');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ gatewayId: 'gw-routes', http: { scheme: 'http' } });
  });

  it('refuses an operator route to a non-loopback client without a token, and answers its public routes', async () => {
    for (const path of ['/status', '/metrics', '/proofs', `/proofs/frame/${'ab'.repeat(8)}/1`]) {
      const r = await call(unix, 'GET', path);
      expect([r.status, JSON.parse(r.body)], path).toEqual([
        403,
        { error: 'OPERATOR_ONLY', message: `${path} answers only on the gateway host (loopback); researchers use /research/…, patients /patient/…` },
      ]);
    }
    const health = await call(unix, 'GET', '/healthz');
    expect([health.status, JSON.parse(health.body)]).toEqual([200, { ok: true, alarms: [], warnings: [], storageUp: true, spoolAlarm: false }]);
    // A public research route answers too, and checks its caller itself: no session, 401.
    const grants = await call(unix, 'GET', '/research/grants');
    expect(grants.status).toBe(401);
    expect(JSON.parse(grants.body).error).toMatch(/^AUTH_/);
  });

  it('answers a path no route claims as an operator route would: 403 beyond the gateway host, 404 on it', async () => {
    expect((await call(unix, 'GET', '/nowhere')).status).toBe(403);
    expect((await call(tcp, 'GET', '/nowhere')).status).toBe(404);
    expect((await call(unix, 'POST', '/nowhere')).status).toBe(405);
    // A method the route does not take is 405 before the mark is looked at.
    expect((await call(unix, 'POST', '/status')).status).toBe(405);
  });
});
