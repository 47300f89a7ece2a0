/**
 * The status / API listener itself, apart from its routes (gateway/status/http.ts): HTTPS or
 * plain HTTP, and the limits every request meets before any route sees it (issue #10:
 * "nothing unauthenticated that can exhaust the gateway", "encryption in transit").
 *
 *   transport   http.tls.cert + http.tls.key (optionally http.tls.ca): HTTPS. Without them, plain
 *               HTTP only on a loopback host, or with http.allowPlain=true (a warning in the log
 *               and `http.plainAllowed` in /status); anything else is a ConfigError at start.
 *   connections at most http.maxConnections open, http.maxConnectionsPerSource from one source
 *               (an IPv4 address; an IPv6 /64, what one host usually holds), checked on the TCP
 *               connection before any TLS handshake is spent on it.
 *   requests    headers at most http.maxHeaderBytes (431); headers within http.headersTimeoutMs
 *               and the whole request within http.requestTimeoutMs of its start (408; an idle
 *               new connection, a slowloris, a TLS handshake that never ends); an idle keep-alive
 *               connection closes after http.keepAliveTimeoutMs; bodies at most
 *               http.maxBodyBytes (413, enforced by the routes that read bodies).
 *   logins      POST /auth/login at most http.loginPerSourcePerS per source (burst
 *               http.loginPerSourceBurst): 429 LOGIN_RATE_LIMITED, before the body is read.
 *
 * Every refusal is one code of HTTP_REFUSALS (gateway/http/errors.ts), counted (/status http.refusedBy, /metrics
 * vitalproof_http_refused_total) and summed into an `http_refused` log line at most every 10 s,
 * never a line per refusal (an unauthenticated party must not be able to fill the log).
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { ConfigError, type GatewayConfig } from '../config.js';
import type { AuthStats } from '../consent/auth.js';
import { ALL_HTTP_REFUSALS, HTTP_STATUS, refusalMessage, type HttpErrorCode, type HttpRefusal } from '../http/errors.js';
import type { Logger } from '../log.js';
import { KeyedBuckets } from '../util/token-bucket.js';

/** The http.* configuration keys this module reads. */
export type HttpConfig = GatewayConfig['http'];

/** What the listener speaks, decided from the configuration (httpTransport). */
export interface HttpTransport {
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
  /** Plain HTTP on a host that is not loopback, allowed by http.allowPlain=true. */
  plainAllowed: boolean;
}

/** The `http` part of /status. */
export interface HttpStatus {
  scheme: 'https' | 'http';
  /** Plain HTTP on a non-loopback host (http.allowPlain=true): bearer tokens and readings cross the network in clear. */
  plainAllowed: boolean;
  connections: number;
  /** Refusals by code (HTTP_REFUSALS), nonzero only. */
  refusedBy: Record<string, number>;
  login: {
    /** HTTP sessions opened, and ended by logout. */
    sessionsOpened: number;
    loggedOut: number;
    /** Refused HTTP logins by AUTH_* code (LOGIN_RATE_LIMITED is in refusedBy). */
    refusedBy: Record<string, number>;
  } & Partial<AuthStats>;
}

/** True for a host name or address that only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

/**
 * The transport for `http`, with the TLS material read.
 * @throws ConfigError for half a TLS configuration, an unreadable file, a bad allowPlain, or
 *   plain HTTP on a non-loopback host without http.allowPlain=true.
 */
export function httpTransport(http: HttpConfig): HttpTransport {
  const { cert, key, ca } = http.tls;
  if (http.allowPlain !== 'true' && http.allowPlain !== 'false') throw new ConfigError(`http.allowPlain must be true or false, got "${http.allowPlain}"`);
  if (!cert !== !key)
    throw new ConfigError(
      `http.tls.cert and http.tls.key go together: got ${cert ? 'a certificate without its key' : 'a key without its certificate'}`,
      'CONFIG_CONFLICT',
    );
  if (cert && key) {
    const read = (k: string, p: string): Buffer => {
      try {
        return readFileSync(p);
      } catch (e) {
        throw new ConfigError(`cannot read ${k} ${p}: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
      }
    };
    return { tls: { cert: read('http.tls.cert', cert), key: read('http.tls.key', key), ...(ca ? { ca: read('http.tls.ca', ca) } : {}) }, plainAllowed: false };
  }
  if (ca) throw new ConfigError('http.tls.ca is set but http.tls.cert and http.tls.key are not: HTTPS needs a certificate and its key', 'CONFIG_CONFLICT');
  if (isLoopbackHost(http.host)) return { plainAllowed: false };
  if (http.allowPlain === 'true') return { plainAllowed: true };
  throw new ConfigError(
    `http.host ${http.host} is not loopback and there is no certificate: bearer tokens and health data would cross the network in clear. ` +
      'Set http.tls.cert and http.tls.key (docs/operations.md, "Encryption in transit"), bind http.host to 127.0.0.1, or set http.allowPlain=true to accept plain HTTP knowingly',
    'CONFIG_PLAIN_NOT_LOOPBACK',
  );
}

/**
 * The key a source is counted under: an IPv4 address as is (also IPv4-mapped IPv6), an IPv6
 * address by its /64 (a host usually holds a whole /64, so counting single addresses would let
 * it take 2^64 shares).
 */
export function sourceKey(address: string | undefined): string {
  if (!address) return 'unknown';
  if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) return address.slice(7);
  if (isIP(address) !== 6) return address;
  const [head = '', tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/** Counters and per-source state of the listener; the routes count their refusals here too. */
export class HttpGuard {
  readonly refusedBy = Object.fromEntries(ALL_HTTP_REFUSALS.map((r) => [r, 0])) as Record<HttpRefusal, number>;
  readonly loginRefusedBy: Record<string, number> = {};
  sessionsOpened = 0;
  loggedOut = 0;
  private open = 0;
  private readonly bySource = new Map<string, number>();
  private readonly logins: KeyedBuckets;
  private readonly now: () => number;
  private summaryAtMs = 0;
  private sinceSummary: Record<string, number> = {};

  constructor(
    readonly limits: Pick<HttpConfig, 'maxConnections' | 'maxConnectionsPerSource' | 'maxBodyBytes' | 'loginPerSourcePerS' | 'loginPerSourceBurst'>,
    readonly transport: HttpTransport = { plainAllowed: false },
    private readonly o: { log?: Logger; auth?: { stats(): AuthStats }; now?: () => number } = {},
  ) {
    this.now = o.now ?? Date.now;
    this.logins = new KeyedBuckets({ ratePerS: limits.loginPerSourcePerS, burst: limits.loginPerSourceBurst, maxKeys: 10_000, now: this.now });
  }

  /** A new TCP connection: false (and counted) when it must be closed at once. */
  admit(socket: Socket): boolean {
    const key = sourceKey(socket.remoteAddress);
    if (this.open >= this.limits.maxConnections) return this.refuse('HTTP_TOO_MANY_CONNECTIONS');
    const mine = this.bySource.get(key) ?? 0;
    if (mine >= this.limits.maxConnectionsPerSource) return this.refuse('HTTP_TOO_MANY_FROM_SOURCE');
    this.open++;
    this.bySource.set(key, mine + 1);
    socket.once('close', () => {
      this.open--;
      const n = (this.bySource.get(key) ?? 1) - 1;
      if (n <= 0) this.bySource.delete(key);
      else this.bySource.set(key, n);
    });
    return true;
  }

  /**
   * A login attempt from `address`: undefined when it may go on, else the milliseconds until
   * this source may try again (the refusal is counted).
   */
  loginAttempt(address: string | undefined): number | undefined {
    const key = sourceKey(address);
    if (this.logins.take(key)) return undefined;
    this.refuse('LOGIN_RATE_LIMITED');
    return Math.max(1, this.logins.retryAfterMs(key));
  }

  /** Counts a refusal; false, for `return guard.refuse(...)`. */
  refuse(code: HttpRefusal): false {
    this.refusedBy[code]++;
    this.summarise(code);
    return false;
  }

  /** Counts a refused HTTP login (its AUTH_* code). */
  loginRefused(code: string): void {
    this.loginRefusedBy[code] = (this.loginRefusedBy[code] ?? 0) + 1;
    this.summarise(code);
  }

  status(): HttpStatus {
    const nonzero = (o: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(o).filter(([, n]) => n > 0));
    return {
      scheme: this.transport.tls ? 'https' : 'http',
      plainAllowed: this.transport.plainAllowed,
      connections: this.open,
      refusedBy: nonzero(this.refusedBy),
      login: {
        sessionsOpened: this.sessionsOpened,
        loggedOut: this.loggedOut,
        refusedBy: { ...this.loginRefusedBy },
        ...(this.o.auth ? this.o.auth.stats() : {}),
      },
    };
  }

  /** One `http_refused` line with the counts since the last one, at most every 10 s. */
  private summarise(code: string): void {
    this.sinceSummary[code] = (this.sinceSummary[code] ?? 0) + 1;
    const now = this.now();
    if (!this.o.log || now - this.summaryAtMs < 10_000) return;
    this.o.log.info(
      { event: 'http_refused', byCode: this.sinceSummary, sinceMs: this.summaryAtMs ? now - this.summaryAtMs : 0 },
      'HTTP connections, requests or logins refused (counts since the last such line)',
    );
    this.summaryAtMs = now;
    this.sinceSummary = {};
  }
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 405: 'Method Not Allowed', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/** The request limits of http.* (docs/operations.md). */
export type HttpLimits = Pick<HttpConfig, 'maxHeaderBytes' | 'requestTimeoutMs' | 'headersTimeoutMs' | 'keepAliveTimeoutMs'>;

/**
 * An HTTP or HTTPS server for `handler` with the limits and the guard's connection caps.
 * @example
 *   const guard = new HttpGuard(cfg.http, httpTransport(cfg.http), { log });
 *   const server = createApiServer(guard, cfg.http, (req, res) => res.end('ok'));
 */
export function createApiServer(guard: HttpGuard, limits: HttpLimits, handler: RequestListener<typeof IncomingMessage, typeof ServerResponse>): Server {
  const common = {
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node checks the two timeouts on this period (default 30 s): a fraction of the shorter one.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  };
  const tls = guard.transport.tls;
  // Answers still owed on each connection: a refusal of a malformed request that was pipelined
  // behind others waits for them, so that every answer goes out in request order (RFC 9112 §9.3.2).
  const owed = new WeakMap<Socket, number>();
  const lastRequest = new WeakMap<Socket, IncomingMessage>();
  const afterOwed = new WeakMap<Socket, { upTo: number; send: () => void }>();
  const counted: typeof handler = (req, res) => {
    const socket = req.socket;
    owed.set(socket, (owed.get(socket) ?? 0) + 1);
    lastRequest.set(socket, req);
    res.once('close', () => {
      const left = (owed.get(socket) ?? 1) - 1;
      owed.set(socket, left);
      const next = afterOwed.get(socket);
      if (next && left <= next.upTo) {
        afterOwed.delete(socket);
        next.send();
      }
    });
    handler(req, res);
  };
  const server: Server = tls
    ? (createHttpsServer(
        { ...common, cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}), minVersion: 'TLSv1.2', handshakeTimeout: limits.headersTimeoutMs },
        counted,
      ) as unknown as Server)
    : createHttpServer(common, counted);
  // First, before TLS wraps the socket: a refused connection costs no handshake.
  server.prependListener('connection', (socket: Socket) => {
    if (!guard.admit(socket)) socket.destroy();
  });
  // The parser may report several errors for one connection's bytes: one refusal per connection.
  const answered = new WeakSet<Socket>();
  const refuseOn = (socket: Socket, code: HttpRefusal & HttpErrorCode, extra = ''): void => {
    if (answered.has(socket)) return void socket.destroy();
    answered.add(socket);
    guard.refuse(code);
    const send = (): void => {
      if (!socket.writable) return void socket.destroy();
      const body = JSON.stringify({ error: code, message: refusalMessage(code) });
      const status = HTTP_STATUS[code];
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Bad Request'}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`,
      );
    };
    // A request whose own body broke (a bad chunk) will never complete: its answer is this
    // refusal, sent once the requests before it are answered.
    const last = lastRequest.get(socket);
    const upTo = last && !last.complete ? 1 : 0;
    if ((owed.get(socket) ?? 0) > upTo) afterOwed.set(socket, { upTo, send });
    else send();
  };
  // A CONNECT request (a proxy tunnel): Node closes the socket in silence unless someone listens.
  server.on('connect', (_req: IncomingMessage, socket: Socket) => refuseOn(socket, 'HTTP_METHOD_NOT_ALLOWED', 'allow: GET, POST\r\n'));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'HPE_HEADER_OVERFLOW') refuseOn(socket, 'HTTP_HEADERS_TOO_LARGE');
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') refuseOn(socket, 'HTTP_REQUEST_TIMEOUT');
    else if (err.code === 'ECONNRESET' || err.code === 'EPIPE')
      socket.destroy(); // the client hung up: no refusal of ours
    else if (err.code === 'HPE_INVALID_EOF_STATE')
      socket.destroy(); // it hung up mid-request: the request's reader counts it
    else if (/^ERR_(SSL|TLS)_/.test(err.code ?? ''))
      socket.destroy(); // a failed handshake: counted once, by tlsClientError
    else refuseOn(socket, 'HTTP_MALFORMED');
  });
  if (tls) {
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      // ECONNRESET: the client hung up, or the connection was refused by admit() above.
      if (err.code !== 'ECONNRESET') guard.refuse('HTTP_TLS_HANDSHAKE_FAILED');
      socket.destroy();
    });
  }
  return server;
}
