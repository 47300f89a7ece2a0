/**
 * The status / API listener's own limits (gateway/http/server.ts) on real servers over
 * loopback, plain and TLS (a development CA made by the openssl CLI): which transport a
 * configuration gets, connection caps in all and per source (127.0.0.x are distinct sources),
 * oversized headers, requests that never finish, TLS handshakes that fail, and the operator's
 * loopback check over TLS. Every refusal is counted under its code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Server } from 'node:http';
import { DEFAULTS, ConfigError, loadConfig, type GatewayConfig } from '../../../gateway/config.js';
import { HttpGuard, httpTransport, sourceKey, type HttpStatus } from '../../../gateway/http/server.js';
import { startHttpServer } from '../../../gateway/http/routes.js';
import { statusRoutes, type StatusSnapshot } from '../../../gateway/status/http.js';
import { ensureDevCa, pem, type DevCa } from '../../../gateway/tls/dev-ca.js';
import { KeyedBuckets, TokenBucket } from '../../../gateway/util/token-bucket.js';

let dir: string;
let ca: DevCa;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-http-guard-'));
  ca = ensureDevCa(join(dir, 'ca'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function http(over: Partial<GatewayConfig['http']> & { tls?: Partial<GatewayConfig['http']['tls']> } = {}): GatewayConfig['http'] {
  return { ...structuredClone(DEFAULTS.http), ...over, tls: { ...DEFAULTS.http.tls, ...over.tls } };
}

describe('httpTransport: HTTPS with a certificate, plain HTTP only on loopback or when allowed', () => {
  it('plain on loopback; HTTPS with cert and key (and ca); plainAllowed only with allowPlain=true off loopback', () => {
    for (const host of ['127.0.0.1', '127.3.2.1', '::1', 'localhost', '[::1]']) expect(httpTransport(http({ host }))).toEqual({ plainAllowed: false });
    const t = httpTransport(http({ host: '0.0.0.0', tls: { cert: ca.serverCert, key: ca.serverKey, ca: ca.caCert } }));
    expect(t.tls?.cert.toString()).toContain('BEGIN CERTIFICATE');
    expect(t.tls?.ca?.toString()).toContain('BEGIN CERTIFICATE');
    expect(t.plainAllowed).toBe(false);
    expect(httpTransport(http({ host: '10.1.2.3', allowPlain: 'true' }))).toEqual({ plainAllowed: true });
  });

  it.each([
    [{ host: '0.0.0.0' }, /http.host 0.0.0.0 is not loopback and there is no certificate.*http.allowPlain=true/],
    [{ host: '::' }, /not loopback/],
    [{ host: '192.168.1.5', allowPlain: 'yes' }, /http.allowPlain must be true or false/],
    [{ tls: { cert: '/nonexistent/cert.pem' } }, /http.tls.cert and http.tls.key go together/],
    [{ tls: { cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem' } }, /cannot read http.tls.cert \/nonexistent\/cert.pem/],
    [{ tls: { ca: '/etc/hostname' } }, /http.tls.ca is set but http.tls.cert and http.tls.key are not/],
  ] as const)('refuses %j', (over, message) => {
    expect(() => httpTransport(http(over as Partial<GatewayConfig['http']>))).toThrow(ConfigError);
    expect(() => httpTransport(http(over as Partial<GatewayConfig['http']>))).toThrow(message);
  });
});

describe('sources and buckets', () => {
  it('counts IPv4 by address (also IPv4-mapped) and IPv6 by /64', () => {
    expect(sourceKey('10.0.0.7')).toBe('10.0.0.7');
    expect(sourceKey('::ffff:10.0.0.7')).toBe('10.0.0.7');
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey(undefined)).toBe('unknown');
  });

  it('a bucket gives burst tokens, then ratePerS; keyed buckets keep at most maxKeys keys', () => {
    let t = 0;
    const b = new TokenBucket({ ratePerS: 2, burst: 3, now: () => t });
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    expect(b.retryAfterMs()).toBe(500);
    t += 500;
    expect([b.take(), b.take()]).toEqual([true, false]);
    const k = new KeyedBuckets({ ratePerS: 1, burst: 1, maxKeys: 100, now: () => t });
    expect([k.take('a'), k.take('a'), k.take('b')]).toEqual([true, false, true]);
    for (let i = 0; i < 1000; i++) k.take(`x${i}`);
    expect(k.size).toBe(100);
    expect(() => new TokenBucket({ ratePerS: 0, burst: 1 })).toThrow(TypeError);
  });
});

/** A listener with small limits on a free loopback port. */
async function listen(
  tls: boolean,
  over: Partial<GatewayConfig['http']> = {},
): Promise<{ server: Server; port: number; guard: HttpGuard; status: () => HttpStatus }> {
  const cfg = http({
    maxConnections: 3,
    maxConnectionsPerSource: 2,
    maxHeaderBytes: 1024,
    headersTimeoutMs: 400,
    requestTimeoutMs: 800,
    keepAliveTimeoutMs: 300,
    ...over,
    ...(tls ? { tls: { cert: ca.serverCert, key: ca.serverKey, ca: '' } } : {}),
  });
  const guard = new HttpGuard(cfg, httpTransport(cfg));
  const snapshot = (): StatusSnapshot => ({ gatewayId: 'gw-unit' }) as unknown as StatusSnapshot;
  const { server, port } = await startHttpServer(
    '127.0.0.1',
    0,
    statusRoutes(snapshot, () => guard.status()),
    { guard, limits: cfg },
  );
  return { server, port, guard, status: () => guard.status() };
}

function close(server: Server): Promise<void> {
  return new Promise((res) => {
    server.close(() => res());
    server.closeAllConnections();
  });
}

/** A raw TCP connection from `localAddress`, resolved once connected, with its bytes and its close. */
function raw(port: number, localAddress = '127.0.0.1'): Promise<{ sock: Socket; data: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const sock = connect({ port, host: '127.0.0.1', localAddress });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('data', (d) => (text += d.toString()));
    sock.on('error', () => undefined);
    sock.once('connect', () => resolve({ sock, data: () => text, closed }));
    sock.once('error', reject);
  });
}

describe('request limits on a real listener', () => {
  it('431 for headers over maxHeaderBytes, 408 for headers that never finish and for an idle connection, counted', async () => {
    const l = await listen(false, { maxConnectionsPerSource: 10, maxConnections: 10 });
    try {
      const big = await raw(l.port);
      big.sock.write(`GET /nothing HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(2000)}\r\n\r\n`);
      await big.closed;
      expect(big.data()).toMatch(/^HTTP\/1.1 431 /);
      expect(big.data()).toContain('"error":"HTTP_HEADERS_TOO_LARGE"');
      const slow = await raw(l.port);
      slow.sock.write('GET /nothing HTTP/1.1\r\nHost: x\r\n'); // and nothing more
      const idle = await raw(l.port);
      await Promise.all([slow.closed, idle.closed]);
      expect(slow.data()).toMatch(/^HTTP\/1.1 408 /);
      expect(l.status().refusedBy).toEqual({ HTTP_HEADERS_TOO_LARGE: 1, HTTP_REQUEST_TIMEOUT: 2 });
      const junk = await raw(l.port);
      junk.sock.write('\x16\x03\x01 not http at all\r\n\r\n');
      await junk.closed;
      expect(junk.data()).toMatch(/^HTTP\/1.1 400 /);
      expect(l.status().refusedBy.HTTP_MALFORMED).toBe(1);
    } finally {
      await close(l.server);
    }
  });

  it('closes connections over maxConnectionsPerSource and maxConnections at once, before any byte; others go on', async () => {
    const l = await listen(false);
    try {
      const a1 = await raw(l.port, '127.0.0.1');
      const a2 = await raw(l.port, '127.0.0.1');
      const a3 = await raw(l.port, '127.0.0.1'); // third from one source
      await a3.closed;
      expect(a3.data()).toBe('');
      expect(l.status().refusedBy).toEqual({ HTTP_TOO_MANY_FROM_SOURCE: 1 });
      const b1 = await raw(l.port, '127.0.0.2'); // another source: the third connection in all
      const b2 = await raw(l.port, '127.0.0.3'); // the fourth: over maxConnections
      await b2.closed;
      expect(l.status().refusedBy).toEqual({ HTTP_TOO_MANY_FROM_SOURCE: 1, HTTP_TOO_MANY_CONNECTIONS: 1 });
      expect(l.status().connections).toBe(3);
      b1.sock.write('GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await b1.closed;
      expect(b1.data()).toMatch(/^HTTP\/1.1 404 /);
      a1.sock.destroy();
      await a1.closed;
      const again = await raw(l.port, '127.0.0.1'); // a slot of the source is free again
      again.sock.write('GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await again.closed;
      expect(again.data()).toMatch(/^HTTP\/1.1 404 /);
      a2.sock.destroy();
    } finally {
      await close(l.server);
    }
  });

  it('over TLS: the operator (loopback) still gets /status; a plain-HTTP client and a handshake that never comes are refused and counted', async () => {
    const l = await listen(true, { maxConnectionsPerSource: 10, maxConnections: 10 });
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port: l.port, path: '/status', ca: pem(ca.caCert), servername: 'localhost' }, (res) => {
          let b = '';
          res.on('data', (d: Buffer) => (b += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        });
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(200);
      expect(JSON.parse(body)).toMatchObject({ gatewayId: 'gw-unit', http: { scheme: 'https', plainAllowed: false } });
      const plain = await raw(l.port);
      plain.sock.write('GET /status HTTP/1.1\r\nHost: x\r\n\r\n');
      const silent = await raw(l.port);
      await Promise.all([plain.closed, silent.closed]);
      expect(plain.data()).not.toContain('gatewayId');
      expect(l.status().refusedBy).toEqual({ HTTP_TLS_HANDSHAKE_FAILED: 2 });
      // A client that does not trust the development CA cannot talk to it.
      const untrusting = await new Promise<string>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: l.port, servername: 'localhost' });
        s.once('secureConnect', () => resolve('connected'));
        s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      expect(untrusting).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
    } finally {
      await close(l.server);
    }
  });
});

describe('configuration', () => {
  it('reads http.tls.* and http.allowPlain from flags and environment; checks the limits', () => {
    const c = loadConfig({
      env: { VP_HTTP_ALLOW_PLAIN: 'true', VP_HTTP_TLS_CERT: 'c.pem' },
      flags: { 'http.tls.key': 'k.pem', 'http.maxConnectionsPerSource': '8' },
    });
    expect(c.http.allowPlain).toBe('true');
    expect(c.http.tls).toEqual({ cert: resolve('c.pem'), key: resolve('k.pem'), ca: '' });
    expect(c.http.maxConnectionsPerSource).toBe(8);
    expect(() => loadConfig({ env: {}, flags: { 'http.headersTimeoutMs': '40000' } })).toThrow(
      /http.headersTimeoutMs \(40000\) must not exceed http.requestTimeoutMs \(30000\)/,
    );
    expect(() => loadConfig({ env: {}, flags: { 'http.maxConnections': '0' } })).toThrow(/http.maxConnections must be an integer >= 1/);
    expect(() => loadConfig({ env: {}, flags: { 'login.recoveriesPerS': '0' } })).toThrow(/login.recoveriesPerS must be a number > 0/);
  });
});
