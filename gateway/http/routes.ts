/**
 * The gateway's HTTP routes: one table, every route in it marked with who may call it, and the
 * dispatcher that enforces the mark before a route's handler sees the request.
 *
 *   operator   a client on the gateway host (loopback): /status, /metrics, the proof API, which
 *              serves raw signed frames without a login. From anywhere else: 403 OPERATOR_ONLY.
 *   public     anyone who reaches the port: /healthz (alarm codes only), and the researcher and
 *              patient API (docs/research-api.md), whose routes check their callers themselves
 *              (a login's signature, a bearer session, consent); the operator's routes must never
 *              become a way around consent.
 *
 * A path no route claims answers as an operator route would (404 on the gateway host, 403
 * beyond it), so nothing about which paths exist is told beyond the gateway host. Domain
 * modules contribute their entries (gateway/status/http.ts, gateway/research/http.ts,
 * gateway/proof/http.ts); gateway/parts/http.ts puts the table together.
 */
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { errorBody, HTTP_STATUS } from './errors.js';
import { createApiServer, type HttpGuard, type HttpLimits } from './server.js';

/** Who may call a route. */
export type Access = 'operator' | 'public';
export const ACCESS: readonly Access[] = ['operator', 'public'];

export interface Route {
  /** The whole path (the target's path, without the query), exactly, or a pattern that must match all of it. */
  path: string | RegExp;
  access: Access;
  /**
   * The methods the route takes; any other is answered 405 (no body) before access is checked.
   * Omitted: the handler checks the method itself (the research API answers its own 405).
   */
  methods?: readonly string[];
  /**
   * Answers the request; `params` are the pattern's groups. A throw or rejection before
   * anything was sent is answered 503 UNAVAILABLE; after, the connection is cut (the client
   * sees a truncated body, never a wrong one).
   */
  handle(req: IncomingMessage, url: URL, res: ServerResponse, params: string[]): unknown;
}

/**
 * The request target as a URL, or undefined when it is not an origin-form path (RFC 9112
 * §3.2.1): '//' and its kin would make `new URL(target, base)` read a host and throw.
 */
export function requestUrl(target: string | undefined): URL | undefined {
  const t = target ?? '/';
  if (!t.startsWith('/')) return undefined;
  try {
    return new URL(`http://localhost${t}`);
  } catch {
    return undefined;
  }
}

/** The operator: a client on the gateway host itself. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\./.test(a);
}

/**
 * The request listener for `routes`, enforcing each route's mark.
 * @throws TypeError for a route without a mark (operator or public): no route is served
 *   without saying who may call it.
 */
export function routeRequests(routes: readonly Route[]): RequestListener {
  for (const r of routes) {
    if (!ACCESS.includes(r.access)) throw new TypeError(`route ${String(r.path)} must be marked ${ACCESS.join(' or ')}, got ${String(r.access)}`);
  }
  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  return (req, res) => {
    const url = requestUrl(req.url);
    if (!url) {
      // '//', '//[' …: not a path (the URL parser throws on them; an uncaught throw here ended the process).
      return json(res, HTTP_STATUS.HTTP_MALFORMED, errorBody('HTTP_MALFORMED', 'HTTP_MALFORMED: the request target is not a path'));
    }
    const operator = isLoopback(req.socket.remoteAddress);
    const refuseOperatorRoute = (): void => {
      const path = (req.url ?? '/').split('?')[0];
      json(
        res,
        HTTP_STATUS.OPERATOR_ONLY,
        errorBody('OPERATOR_ONLY', `${path} answers only on the gateway host (loopback); researchers use /research/…, patients /patient/…`),
      );
    };
    const { route, params } = match(routes, url.pathname);
    if (!route) {
      if (req.method !== 'GET') return void res.writeHead(405).end();
      return operator ? void res.writeHead(404).end() : refuseOperatorRoute();
    }
    if (route.methods && !route.methods.includes(req.method ?? '')) return void res.writeHead(405).end();
    if (route.access === 'operator' && !operator) return refuseOperatorRoute();
    const failed = (e: Error): void => {
      if (res.headersSent) {
        // A streamed answer broke off: the client sees a truncated body, never a wrong one.
        res.destroy(e);
        return;
      }
      json(res, HTTP_STATUS.UNAVAILABLE, errorBody('UNAVAILABLE', e.message));
    };
    try {
      Promise.resolve(route.handle(req, url, res, params)).catch(failed);
    } catch (e) {
      failed(e as Error);
    }
  };
}

/** The first route whose path is all of `pathname`, with its pattern's groups. */
function match(routes: readonly Route[], pathname: string): { route?: Route; params: string[] } {
  for (const route of routes) {
    if (typeof route.path === 'string') {
      if (route.path === pathname) return { route, params: [] };
      continue;
    }
    const m = route.path.exec(pathname);
    if (m && m[0] === pathname) return { route, params: m.slice(1) };
  }
  return { params: [] };
}

/**
 * Serves `routes` on host:port behind the listener: the guard (TLS or plain, connection caps,
 * counters) and the request limits of http.* (./server.ts).
 */
export async function startHttpServer(
  host: string,
  port: number,
  routes: readonly Route[],
  listener: { guard: HttpGuard; limits: HttpLimits },
): Promise<{ server: Server; port: number }> {
  const server = createApiServer(listener.guard, listener.limits, routeRequests(routes));
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => res());
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : port };
}
