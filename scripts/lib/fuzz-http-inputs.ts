/**
 * Generated HTTP requests for the gateway's API port (docs/research-api.md, the proof API,
 * /status, /metrics, /healthz): methods, paths, query strings (from / to / metric / format /
 * limit / cursor / proofs / pseudonym / device with broken values), headers (bearer tokens real,
 * foreign and broken; content types; oversized and numerous headers) and bodies (JSON broken in
 * many ways, wrong types, oversized), plus raw byte strings that are not HTTP/1.1 at all.
 * Pure: bytes out, no sockets (fuzz-http.ts sends them).
 */
import { challengeText } from '../../gateway/consent/auth.js';
import type { Rng } from './fuzz-rng.js';

/** What the generator knows of the gateway under test. */
export interface HttpContext {
  gatewayId: string;
  /** A grant in force for `token`'s researcher, and a cursor the gateway gave out for it. */
  grantId: bigint;
  token: string;
  /** A logged-in researcher without grants. */
  strangerToken: string;
  researcher: string;
  cursor: string | undefined;
  /** A device with stored frames, and its patient pseudonym. */
  deviceId: string;
  pseudonym: string;
  /** The listener's http.maxHeaderBytes and http.maxBodyBytes. */
  maxHeaderBytes: number;
  maxBodyBytes: number;
  /**
   * Challenges this gateway issued (POST /auth/challenge) to a third account, each with that
   * account's valid signature: the only way past the cheap checks to signature recovery and its
   * budget. Refreshed while the run goes on (they expire); empty when none could be had.
   */
  challenges: readonly { text: string; signature: string }[];
}

export interface HttpInput {
  /** Which generator made it (units are counted by it). */
  kind: string;
  /** The exact bytes sent. */
  bytes: Buffer;
  /** The request method (HEAD answers carry no body), or undefined for bytes that are not a request. */
  method: string | undefined;
  /**
   * The bytes are not a complete request and never will be: the gateway may answer 400 / 408 or
   * close once the client has finished sending (fuzz-http.ts half-closes after them).
   */
  incomplete: boolean;
  /** The body exceeds http.maxBodyBytes: 413 and a close, possibly before all of it was read. */
  oversized: boolean;
  /** Requests in `bytes` (pipelined), each answered in order; whether each is a HEAD. Default one, `method`. */
  heads?: boolean[];
}

const ROUTES = [
  '/auth/challenge',
  '/auth/login',
  '/auth/logout',
  '/research/grants',
  'READINGS',
  '/patient/grants',
  '/patient/disclosures',
  '/proofs',
  'PROOF',
  '/status',
  '/metrics',
  '/healthz',
  'RANDOM',
] as const;
const ROUTE_WEIGHTS = [12, 12, 3, 5, 25, 5, 5, 5, 5, 3, 2, 3, 10];
const METHODS = ['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'get', 'FOO', 'M-SEARCH', 'PROPFIND'];

function weighted<T>(r: Rng, items: readonly T[], weights: readonly number[]): T {
  let x = r.next() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < items.length; i++) {
    x -= weights[i]!;
    if (x < 0) return items[i]!;
  }
  return items[items.length - 1]!;
}

const hex = (r: Rng, n: number): string =>
  Buffer.from(r.bytes(Math.ceil(n / 2)))
    .toString('hex')
    .slice(0, n);
const b64u = (r: Rng, n: number): string => Buffer.from(r.bytes(n)).toString('base64url');
/** `s` without the characters a header value may not carry (controls, DEL, non-ASCII), so the request itself stays well formed. */
function headerSafe(s: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return s.replace(/[\r\n\u0000-\u001f\u007f-\u{10ffff}]/gu, '');
}

/** Printable junk, some of it reserved or percent-escaped in URLs. */
function junk(r: Rng, n: number): string {
  const alphabet = 'abcXYZ019-_.~!$&\'()*+,;=:@/?#[]% "<>\\^`{|}\u00e9\u4e2d\u{1F600}\u0000\u007f';
  const chars = Array.from(alphabet);
  let s = '';
  for (let i = 0; i < n; i++) s += r.pick(chars);
  return s;
}

/** A value that is wrong in one of many ways, for a query parameter. */
function brokenValue(r: Rng): string {
  switch (r.int(16)) {
    case 0:
      return '';
    case 1:
      return String(-1 - r.int(1000));
    case 2:
      return 'NaN';
    case 3:
      return r.pick(['Infinity', '-Infinity', '1e400', '-0', '0x10', '1_000', '1.5', '  7  ']);
    case 4:
      return '9'.repeat(1 + r.int(400));
    case 5:
      return r.pick(['2026-13-45T25:61:61.000Z', '2026-02-30', '0000-00-00T00:00:00Z', '+275760-09-13T00:00:00.001Z', 'yesterday']);
    case 6:
      return encodeURIComponent(junk(r, 1 + r.int(40)));
    case 7:
      return r.pick(['%', '%%', '%zz', '%0', '%C0%80', '%ED%A0%80', '%FF%FE', '%00']);
    case 8:
      return 'a'.repeat(r.pick([100, 1000, 8000]));
    case 9:
      return b64u(r, r.int(200));
    case 10:
      return String(2 ** 53 + r.int(10));
    case 11:
      return String(r.int(2 ** 31));
    case 12:
      return new Date(Date.now() - r.int(7_200_000) + 3_600_000).toISOString();
    case 13:
      return String(Date.now() - r.int(7_200_000));
    case 14:
      return '[object Object]';
    default:
      return junk(r, 1 + r.int(12)).replace(/[&#]/g, '');
  }
}

function mutateCursor(r: Rng, c: string | undefined): string {
  if (!c || r.bool(0.2)) return b64u(r, 8 + r.int(120));
  const b = Buffer.from(c);
  switch (r.int(5)) {
    case 0: {
      const i = r.int(b.length);
      b[i] = r.pick(Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', (x) => x.charCodeAt(0)));
      return b.toString();
    }
    case 1:
      return c.slice(0, r.int(c.length));
    case 2:
      return c + b64u(r, 1 + r.int(20));
    case 3:
      return Buffer.from(
        Buffer.from(c, 'base64url')
          .toString('utf8')
          .replace(/\d/, String(r.int(10))),
        'utf8',
      ).toString('base64url');
    default:
      return c;
  }
}

function readingsQuery(r: Rng, ctx: HttpContext): string {
  const parts: string[] = [];
  const n = r.int(6);
  for (let i = 0; i < n; i++) {
    const key = r.pick(['from', 'to', 'metric', 'metric', 'format', 'limit', 'cursor', 'proofs', 'pseudonym', 'device', junk(r, 3)]);
    let v: string;
    switch (key) {
      case 'metric':
        v = r.bool(0.5)
          ? r.pick(['heart_rate', 'spo2', 'ecg', 'heart_rate,spo2', 'heart_rate,heart_rate', 'HEART_RATE', 'heart_rate,', ',,', 'steps,ecg,accelerometer'])
          : brokenValue(r);
        break;
      case 'format':
        v = r.bool(0.6) ? r.pick(['json', 'ndjson', 'csv', 'xml', 'JSON', 'csv;', 'json ']) : brokenValue(r);
        break;
      case 'limit':
        v = r.bool(0.5) ? r.pick(['1', '2', '0', '10000', '10001', '-5', '1.5', '1e3']) : brokenValue(r);
        break;
      case 'cursor':
        v = r.bool(0.7) ? mutateCursor(r, ctx.cursor) : brokenValue(r);
        break;
      case 'proofs':
        v = r.pick(['0', '1', '2', 'true', '', '01']);
        break;
      case 'pseudonym':
        v = r.bool(0.4) ? ctx.pseudonym : brokenValue(r);
        break;
      case 'device':
        v = r.bool(0.4) ? ctx.deviceId : r.bool(0.5) ? hex(r, 16) : brokenValue(r);
        break;
      default:
        v = brokenValue(r);
    }
    parts.push(`${key}=${v}`);
  }
  if (r.bool(0.05)) parts.push(`${junk(r, 2)}=${brokenValue(r)}`.repeat(1 + r.int(200)));
  return parts.length ? `?${parts.join(r.bool(0.95) ? '&' : ';')}` : r.bool(0.1) ? '?' : '';
}

function grantIdText(r: Rng, ctx: HttpContext): string {
  return r.bool(0.6)
    ? String(ctx.grantId)
    : r.pick([
        String(ctx.grantId + 1n),
        String(ctx.grantId + 1000n),
        '0',
        '-1',
        String(2n ** 64n),
        String(2n ** 64n - 1n),
        '01',
        '1e1',
        'abc',
        '%31',
        '',
        ' 1',
        '9'.repeat(5000),
        encodeURIComponent(junk(r, 6)),
      ]);
}

function path(r: Rng, ctx: HttpContext): { route: string; path: string } {
  const route = weighted(r, ROUTES, ROUTE_WEIGHTS);
  let p: string;
  if (route === 'READINGS') p = `/research/grants/${grantIdText(r, ctx)}/readings`;
  else if (route === 'PROOF')
    p = `/proofs/frame/${r.bool(0.6) ? ctx.deviceId : r.bool(0.5) ? hex(r, 16) : brokenValue(r)}/${r.bool(0.6) ? String(1 + r.int(8)) : brokenValue(r)}`;
  else if (route === 'RANDOM')
    p = r.bool(0.5)
      ? `/${junk(r, r.int(30))}`
      : r.pick([
          '/',
          '//',
          '/research',
          '/research/',
          '/auth',
          '/patient',
          '/proofs/frame',
          '/proofs/frame/',
          '/research/grants/1',
          '/research/grants//readings',
          '/status/',
          '/STATUS',
          '/metrics?x',
          '*',
          '/%2e%2e/%2e%2e/etc/passwd',
          `/${'a'.repeat(r.pick([200, 4000, 20000]))}`,
        ]);
  else p = route;
  // A mutation of the path itself, sometimes.
  if (r.bool(0.08)) {
    p = r.pick([
      `${p}/`,
      `/${p}`,
      p.replace(/\//g, '//'),
      `${p}/.`,
      `${p}/..`,
      p.toUpperCase(),
      `${p};x=1`,
      `${p}#frag`,
      p.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`),
      `${p}%00`,
      `${p}${encodeURIComponent(junk(r, 4))}`,
    ]);
  }
  const query =
    route === 'READINGS' || route === '/proofs' || route === '/patient/grants' || route === '/patient/disclosures' || r.bool(0.1) ? readingsQuery(r, ctx) : '';
  return { route, path: p + query };
}

/** An Authorization header: the real researcher's, the stranger's, or broken, or none. */
function authorization(r: Rng, ctx: HttpContext, route: string): string | undefined {
  // Never a real token to /auth/logout: that would end the session the rest of the run uses.
  const real = route !== '/auth/logout';
  const x = r.next();
  if (x < 0.35 && real) return `Bearer ${ctx.token}`;
  if (x < 0.45 && real) return `Bearer ${ctx.strangerToken}`;
  if (x < 0.7) return undefined;
  return r.pick([
    'Bearer',
    'Bearer ',
    `Bearer ${b64u(r, 32)}`,
    `bearer ${ctx.token.slice(0, 10)}`,
    `Bearer ${ctx.token.slice(0, -1)}`,
    `Bearer ${ctx.token}x`,
    `Bearer  ${b64u(r, 32)}`,
    `Basic ${Buffer.from('admin:admin').toString('base64')}`,
    `Bearer ${'A'.repeat(r.pick([129, 2000, 9000]))}`,
    `Bearer ${headerSafe(junk(r, 20))}`,
  ]);
}

const ADDR = (r: Rng): string => `0x${hex(r, 40)}`;

/** A JSON value of a wrong type, for any field. */
function wrongType(r: Rng): unknown {
  return r.pick<unknown>([null, true, 0, -1, 1e308, 'x', '', [], [1, 2], {}, { $ne: null }, '0x', 'a'.repeat(20000).slice(0, 1 + r.int(20000))]);
}

function challengeBody(r: Rng, ctx: HttpContext): unknown {
  const o: Record<string, unknown> = {};
  if (r.bool(0.9))
    o['address'] = r.bool(0.5)
      ? r.bool(0.5)
        ? ctx.researcher
        : ADDR(r)
      : r.bool(0.5)
        ? r.pick(['0x', '0xZZ', ADDR(r).slice(0, 30), ADDR(r).toUpperCase(), `${ADDR(r)}00`, ADDR(r).replace('0x', '')])
        : wrongType(r);
  if (r.bool(0.8)) o['purpose'] = r.bool(0.6) ? r.pick(['http', 'mqtt']) : r.bool(0.5) ? r.pick(['HTTP', 'ws', '', 'http ', 'mqtt\n']) : wrongType(r);
  if (r.bool(0.1)) o[junk(r, 5)] = wrongType(r);
  if (r.bool(0.03)) o['__proto__'] = { polluted: true };
  return o;
}

/** A challenge text in the documented form, for this gateway or another, signed by nobody (or garbage). */
function loginBody(r: Rng, ctx: HttpContext): unknown {
  const now = Date.now();
  let text: unknown;
  const k = r.next();
  if (k < 0.3 && ctx.challenges.length) {
    // An issued challenge: random signatures, its valid one with a digit changed (another signer),
    // the valid one (a session for the third account; each challenge once, then AUTH_REPLAYED),
    // the valid one over a changed text.
    const c = ctx.challenges[r.int(ctx.challenges.length)]!;
    const flip = (sig: string): string => {
      const i = 2 + r.int(128);
      return `${sig.slice(0, i)}${((parseInt(sig[i]!, 16) + 1 + r.int(15)) % 16).toString(16)}${sig.slice(i + 1)}`;
    };
    const x = r.next();
    if (x < 0.6) return { challenge: c.text, signature: `0x${hex(r, 130)}` };
    if (x < 0.85) return { challenge: c.text, signature: flip(c.signature) };
    if (x < 0.95) return { challenge: c.text, signature: c.signature };
    return { challenge: c.text.replace(/nonce: ./, `nonce: ${hex(r, 1)}`), signature: c.signature };
  }
  if (k < 0.5) {
    text = challengeText({
      gateway: r.bool(0.8) ? ctx.gatewayId : 'gw-elsewhere',
      account: r.bool(0.5) ? ctx.researcher : '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
      purpose: r.bool(0.8) ? 'http' : 'mqtt',
      nonce: hex(r, 32),
      issuedAtMs: now - r.int(600_000),
      expiresAtMs: now + r.int(600_000) + 1,
    });
    if (r.bool(0.3)) {
      const s = [...(text as string)];
      s[r.int(s.length)] = r.pick(['x', '\n', ' ', '\u0000', 'é']);
      text = s.join('');
    }
  } else if (k < 0.7) text = junk(r, r.int(200));
  else if (k < 0.8) text = 'x'.repeat(r.pick([1025, 5000, 15000]));
  else text = wrongType(r);
  const sig =
    r.next() < 0.5
      ? `0x${hex(r, 130)}`
      : r.bool(0.5)
        ? r.pick(['0x', `0x${hex(r, 128)}`, `0x${hex(r, 132)}`, `0x${'0'.repeat(130)}`, `0x${'f'.repeat(130)}`, hex(r, 130)])
        : wrongType(r);
  const o: Record<string, unknown> = {};
  if (r.bool(0.95)) o['challenge'] = text;
  if (r.bool(0.95)) o['signature'] = sig;
  return o;
}

/** A body: JSON for the route (mostly), broken in one of many ways, or oversized. */
function body(r: Rng, ctx: HttpContext, route: string): { body: Buffer; oversized: boolean } {
  const max = ctx.maxBodyBytes;
  const good = route === '/auth/login' ? loginBody(r, ctx) : challengeBody(r, ctx);
  let text = JSON.stringify(good);
  const k = r.next();
  if (k < 0.55) return { body: Buffer.from(text), oversized: false };
  if (k < 0.62) {
    // Larger than http.maxBodyBytes, or just at it.
    const n = r.pick([max - 1, max, max + 1, 40_000, 200_000, 1_100_000]);
    const pad = `{"pad":"${'a'.repeat(Math.max(0, n - 11))}"}`;
    return { body: Buffer.from(pad), oversized: Buffer.byteLength(pad) > max };
  }
  switch (r.int(14)) {
    case 0:
      text = text.slice(0, r.int(text.length));
      break;
    case 1:
      text += r.pick(['}', ']', ',', ' garbage', '\u0000', '{}']);
      break;
    case 2:
      text = text.replace(/"/g, "'");
      break;
    case 3:
      text = r.pick(['null', '[]', '"string"', '42', 'true', '', ' ', 'NaN', '{', '}', '[{}]', '{"a":1}{"a":2}']);
      break;
    case 4:
      text = `${'['.repeat(r.pick([100, 5000, 16000]))}`;
      break;
    case 5:
      text = `${'{"a":'.repeat(r.pick([100, 3000]))}1${'}'.repeat(3000)}`;
      break;
    case 6:
      text = text.replace('{', '{"address":"x","address":1,');
      break;
    case 7:
      text = text.replace(/"[^"]*"/, '"\\ud800\\udfff\\u0000\\x"');
      break;
    case 8:
      return { body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), oversized: false };
    case 9:
      return { body: Buffer.from(text, 'utf16le'), oversized: false };
    case 10:
      return { body: Buffer.from(r.bytes(r.int(300))), oversized: false };
    case 11:
      text = JSON.stringify({ ...(good as object), extra: Array.from({ length: 1 + r.int(1500) }, (_, i) => i) });
      break;
    case 12:
      text = text.replace(/:/, ':1e999,"x":');
      break;
    default:
      text = JSON.stringify([good]);
  }
  const buf = Buffer.from(text);
  return { body: buf, oversized: buf.length > max };
}

function contentType(r: Rng): string | undefined {
  const x = r.next();
  if (x < 0.75) return 'application/json';
  return r.pick([
    undefined,
    'text/plain',
    'application/json; charset=utf-16',
    'application/jsonx',
    'APPLICATION/JSON',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    '',
    'application/json\t',
    '*/*',
  ]);
}

/** Extra headers: noise, repeats, many, long, and the ones HTTP parsers and proxies disagree on. */
function extraHeaders(r: Rng): [string, string][] {
  const out: [string, string][] = [];
  const n = r.bool(0.9) ? r.int(3) : r.pick([50, 100, 300]);
  for (let i = 0; i < n; i++) out.push([`x-${hex(r, 6)}`, headerSafe(junk(r, r.int(30)))]);
  if (r.bool(0.05)) out.push(['x-long', 'v'.repeat(r.pick([8000, 17000, 70000]))]);
  if (r.bool(0.05))
    out.push(
      r.pick<[string, string]>([
        ['expect', '100-continue'],
        ['expect', 'something'],
        ['connection', 'upgrade'],
        ['upgrade', 'websocket'],
        ['accept-encoding', 'gzip'],
        ['range', 'bytes=0-10'],
        ['if-none-match', '*'],
        ['x-forwarded-for', '10.0.0.1'],
        ['host', ''],
        ['host', 'a'.repeat(300)],
      ]),
    );
  return out;
}

function serialise(
  method: string,
  target: string,
  headers: [string, string][],
  bodyBytes: Buffer | undefined,
  o: { chunked?: boolean; badLength?: number } = {},
): Buffer {
  const lines = [`${method} ${target} HTTP/1.1`, 'host: 127.0.0.1'];
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  let payload = bodyBytes ?? Buffer.alloc(0);
  if (o.chunked) {
    lines.push('transfer-encoding: chunked');
    const parts: Buffer[] = [];
    for (let i = 0; i < payload.length; i += 4096) {
      const c = payload.subarray(i, i + 4096);
      parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
    }
    parts.push(Buffer.from('0\r\n\r\n'));
    payload = Buffer.concat(parts);
  } else if (bodyBytes !== undefined || o.badLength !== undefined) lines.push(`content-length: ${o.badLength ?? payload.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
}

/** Bytes that break HTTP/1.1 itself (request line, headers, framing), or a request never finished. */
function rawInput(r: Rng, ctx: HttpContext): HttpInput {
  const valid = serialise('GET', `/research/grants/${ctx.grantId}/readings`, [['authorization', `Bearer ${ctx.token}`]], undefined);
  // Bytes without the blank line that ends a header section are no finished request, whatever they are: the client half-closes after them.
  const mk = (kind: string, bytes: Buffer | string, incomplete = false, method?: string): HttpInput => {
    const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1');
    return { kind: `raw:${kind}`, bytes: b, method, incomplete: incomplete || (b.indexOf('\r\n\r\n') < 0 && b.indexOf('\n\n') < 0), oversized: false };
  };
  switch (r.int(16)) {
    case 0:
      return mk('random', Buffer.from(r.bytes(1 + r.int(300))));
    case 1:
      return mk('version', `GET /status ${r.pick(['HTTP/2.0', 'HTTP/0.9', 'HTTP/1.2', 'HTTP/1', 'HTTP/9.9', 'http/1.1', 'HTTPS/1.1', ''])}\r\nhost: x\r\n\r\n`);
    case 2:
      return mk(
        'request-line',
        r.pick([
          'GET\r\n\r\n',
          'GET  /status  HTTP/1.1\r\n\r\n',
          ' GET /status HTTP/1.1\r\n\r\n',
          'GET /status HTTP/1.1 extra\r\n\r\n',
          'G\u0000T /status HTTP/1.1\r\n\r\n',
          '\r\n\r\nGET /status HTTP/1.1\r\nhost: x\r\n\r\n',
          'GET status HTTP/1.1\r\n\r\n',
          'GET /st atus HTTP/1.1\r\n\r\n',
        ]),
      );
    case 3:
      return mk(
        'header-syntax',
        `GET /status HTTP/1.1\r\n${r.pick(['no colon here', ': empty name', 'bad name: x', 'x:\u0000', 'x: a\rb', ' folded: x', 'x: y\r\n folded', 'h\u00e9: x', 'x y: z'])}\r\n\r\n`,
        false,
        'GET',
      );
    case 4:
      return mk('lf-only', 'GET /status HTTP/1.1\nhost: x\n\n', false, 'GET');
    case 5:
      return mk(
        'cl-and-te',
        `POST /auth/challenge HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
        false,
        'POST',
      );
    case 6:
      return mk(
        'two-lengths',
        `POST /auth/challenge HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\ncontent-length: ${r.pick(['3', '2', '-1'])}\r\n\r\n{}`,
        false,
        'POST',
      );
    case 7:
      return mk(
        'bad-length',
        `POST /auth/challenge HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${r.pick(['-1', 'abc', '0x10', '1 2', '99999999999999999999', '+5', ''])}\r\n\r\n{}`,
        false,
        'POST',
      );
    case 8:
      return mk(
        'bad-chunks',
        `POST /auth/challenge HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n${r.pick(['zz\r\n{}\r\n0\r\n\r\n', '2\r\n{}0\r\n\r\n', `${'f'.repeat(20)}\r\n{}\r\n`, '2;ext=\u0000\r\n{}\r\n0\r\n\r\n', '-2\r\n{}\r\n0\r\n\r\n', '2\r\n{}\r\n0\r\nx: y\r\n\r\n'])}`,
        false,
        'POST',
      );
    case 9:
      return mk(
        'te-variants',
        `POST /auth/challenge HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: ${r.pick(['gzip', 'chunked, gzip', 'identity', 'xchunked', 'chunked\r\ntransfer-encoding: chunked'])}\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
        false,
        'POST',
      );
    case 10: {
      // A valid request cut anywhere: the client stops and half-closes.
      return mk('truncated', valid.subarray(0, r.int(valid.length)), true);
    }
    case 11: {
      // A body shorter than its content-length.
      const b = Buffer.from('{"address":"0x0000000000000000000000000000000000000000"}');
      return mk(
        'short-body',
        serialise('POST', '/auth/challenge', [['content-type', 'application/json']], b.subarray(0, r.int(b.length)), { badLength: b.length }),
        true,
      );
    }
    case 12: {
      // Pipelined: several requests in one write, the last sometimes broken.
      const n = 2 + r.int(6);
      const methods = Array.from({ length: n }, (_, i) => (i === n - 1 && r.bool(0.5) ? 'GARBAGE' : r.pick(['GET', 'HEAD'])));
      const reqs = methods.map((m) =>
        m === 'GARBAGE' ? Buffer.from('GARBAGE\r\n\r\n') : serialise(m, r.pick(['/healthz', '/status', '/research/grants', '/nope']), [], undefined),
      );
      return { ...mk('pipelined', Buffer.concat(reqs), false, 'GET'), heads: methods.map((m) => m === 'HEAD') };
    }
    case 13: {
      // A valid request with one byte flipped.
      const b = Buffer.from(valid);
      const i = r.int(b.length);
      b[i] = b[i]! ^ (1 << r.int(8));
      return mk('bitflip', b, false, 'GET');
    }
    case 14: {
      // Methods and targets HTTP/1.1 servers treat apart; sometimes the rest of HTTP/2's preface after them (one more, malformed, request).
      const preface = r.bool(0.3);
      const input = mk(
        'method',
        `${r.pick(['CONNECT 127.0.0.1:80', 'PRI *', 'GET\t/status', 'OPTIONS *', 'DELETE /status', 'BREW /status'])} HTTP/1.1\r\nhost: x\r\n\r\n${preface ? 'SM\r\n\r\n' : ''}`,
        false,
        'X',
      );
      return preface ? { ...input, heads: [false, false] } : input;
    }
    default:
      return mk(
        'header-flood',
        `GET /status HTTP/1.1\r\n${Array.from({ length: r.pick([200, 2000]) }, (_, i) => `x-${i}: ${'y'.repeat(20)}`).join('\r\n')}\r\n\r\n`,
        false,
        'GET',
      );
  }
}

/**
 * One input: 85 % generated requests (mostly well-formed HTTP carrying broken content), 15 % raw
 * bytes. A header section over http.maxHeaderBytes counts as oversized too: the listener answers
 * 431 and closes while the rest is still coming, and a reset may then swallow the answer.
 */
export function httpInput(r: Rng, ctx: HttpContext): HttpInput {
  const input = r.bool(0.15) ? rawInput(r, ctx) : request(r, ctx);
  const head = input.bytes.indexOf('\r\n\r\n');
  return head > ctx.maxHeaderBytes || (head < 0 && input.bytes.length > ctx.maxHeaderBytes) ? { ...input, oversized: true } : input;
}

function request(r: Rng, ctx: HttpContext): HttpInput {
  const { route, path: target } = path(r, ctx);
  const isPost = route === '/auth/challenge' || route === '/auth/login' || route === '/auth/logout';
  const method = r.bool(0.8) ? (isPost ? 'POST' : 'GET') : r.pick(METHODS);
  const headers: [string, string][] = [];
  const auth = authorization(r, ctx, route);
  if (auth !== undefined) headers.push(['authorization', auth]);
  let b: { body: Buffer; oversized: boolean } | undefined;
  if (method === 'POST' || method === 'PUT' || method === 'PATCH' || r.bool(0.05)) {
    b = body(r, ctx, route);
    const ct = contentType(r);
    if (ct !== undefined) headers.push(['content-type', ct]);
  }
  headers.push(...extraHeaders(r));
  if (r.bool(0.3)) headers.push(['connection', r.pick(['keep-alive', 'close'])]);
  const chunked = b !== undefined && r.bool(0.1);
  return {
    kind: route === 'READINGS' ? 'readings' : route === 'PROOF' ? 'proof' : route === 'RANDOM' ? 'random-path' : route.slice(1),
    bytes: serialise(method, target, headers, b?.body, { chunked }),
    method,
    incomplete: false,
    oversized: b?.oversized ?? false,
  };
}
