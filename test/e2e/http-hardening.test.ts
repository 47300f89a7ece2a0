/**
 * The research API hardened (issue #10: items 2, 5 and the HTTP half of 8), against the real
 * gateway process (embedded chain, influxd) speaking HTTPS with a development CA made on the
 * spot (gateway/tls/dev-ca.ts, openssl CLI):
 *
 *   - the commands reach it with --ca FILE or NODE_EXTRA_CA_CERTS, and refuse it without;
 *   - login, grants, logout: the token is dead at once (401); logout --all ends every session;
 *   - 10,000 POST /auth/challenge cannot push out a challenge issued before them;
 *   - a flood of forged logins from several sources is answered 401/429 with codes, counted
 *     exactly, and only signatures over challenges this gateway issued are ever recovered;
 *     an honest login goes through;
 *   - bodies and headers over the limits are refused (413, 431) and counted;
 *   - plain HTTP on a non-loopback host is refused at start, and accepted with
 *     http.allowPlain=true (a warning, and /status says so).
 * Nothing here measures time: the CPU cost of a flood is a figure of scripts/bench.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetDevices, writeEnrolmentFile } from '../../device-sim/fleet.js';
import { devWallet } from '../../gateway/chain/anvil.js';
import { challengeText, parseChallenge } from '../../gateway/consent/auth.js';
import type { StatusSnapshot } from '../../gateway/status/http.js';
import { ensureDevCa, pem, type DevCa } from '../../gateway/tls/dev-ca.js';
import { useInfluxd } from '../support/influxd.js';
import { CLI, GatewayProcess } from '../support/gateway-process.js';

const influx = useInfluxd();
const devices = fleetDevices('http-hardening', 1, 'heart_rate');
const P = devices[0]!.patient;
const patient = devWallet(3);
const researcher = devWallet(4);
let dir: string;
let dataDir: string;
let ca: DevCa;
let gw: GatewayProcess;
let url: string;
let grantId: string;
const keyFile = (name: string): string => join(dir, `${name}.key`);

function cli(args: string[], env: NodeJS.ProcessEnv = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, HOME: dir, ...env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

interface Answer {
  status: number;
  body: { error?: string; message?: string; [k: string]: unknown };
  headers: Record<string, string | string[] | undefined>;
}

/** One HTTPS request to the gateway, trusting the development CA, from `localAddress` (a loopback source). */
function api(
  method: 'GET' | 'POST',
  path: string,
  o: { body?: unknown; raw?: string; token?: string; from?: string; agent?: Agent; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = o.raw ?? (o.body !== undefined ? JSON.stringify(o.body) : undefined);
    const req = request(
      {
        host: '127.0.0.1',
        port: gw.httpPort,
        servername: 'localhost',
        method,
        path,
        ca: pem(ca.caCert),
        // Without an agent: a fresh connection each time (no keep-alive socket the server may be closing).
        ...(o.agent ? { agent: o.agent } : { agent: false, localAddress: o.from ?? '127.0.0.1' }),
        headers: {
          ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
          ...o.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Answer['body'];
          try {
            body = text ? (JSON.parse(text) as Answer['body']) : {};
          } catch {
            body = { message: text };
          }
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** A keep-alive agent for floods from one loopback source (within http.maxConnectionsPerSource). */
function agentFrom(localAddress: string): Agent {
  return new Agent({ keepAlive: true, maxSockets: 8, ca: pem(ca.caCert), servername: 'localhost', localAddress } as ConstructorParameters<typeof Agent>[0]);
}

async function status(): Promise<StatusSnapshot> {
  const r = await api('GET', '/status');
  expect(r.status).toBe(200);
  return r.body as unknown as StatusSnapshot;
}

/** Runs `count` jobs, `parallel` at a time. */
async function pool<T>(count: number, parallel: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await job(i);
      }
    }),
  );
  return out;
}

async function challengeFor(address: string, from: string): Promise<string> {
  const r = await api('POST', '/auth/challenge', { body: { address, purpose: 'http' }, from });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body['challenge'] as string;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-http-hardening-'));
  dataDir = join(dir, 'gw');
  ca = ensureDevCa(join(dir, 'ca'));
  for (const [name, w] of [
    ['patient', patient],
    ['researcher', researcher],
  ] as const)
    writeFileSync(keyFile(name), `${w.privateKey}\n`, { mode: 0o600 });
  writeEnrolmentFile(join(dir, 'fleet.json'), devices);
  const enrol = cli(['enrol', join(dir, 'fleet.json'), '--dataDir', dataDir]);
  expect(enrol.code, enrol.stderr).toBe(0);
  gw = await GatewayProcess.start({
    dataDir,
    gatewayId: 'gw-https',
    'influx.url': influx.handle.url,
    'mqtt.port': 0,
    'http.port': 0,
    'http.tls.cert': ca.serverCert,
    'http.tls.key': ca.serverKey,
    'http.maxBodyBytes': 4096,
    'http.maxHeaderBytes': 8192,
  });
  url = `https://127.0.0.1:${gw.httpPort}`;
  const bind = cli(['admin', 'bind-patient', P, patient.address, '--dataDir', dataDir]);
  expect(bind.code, bind.stderr).toBe(0);
  const g = cli([
    'consent',
    'grant',
    '--key-file',
    keyFile('patient'),
    '--pseudonym',
    P,
    '--researcher',
    researcher.address,
    '--metrics',
    'heart_rate',
    '--from',
    'now-1h',
    '--to',
    'now+1h',
    '--expires',
    'now+1h',
    '--purpose',
    'https study',
    '--dataDir',
    dataDir,
    '--json',
  ]);
  expect(g.code, g.stderr).toBe(0);
  grantId = (JSON.parse(g.stdout) as { grantId: string }).grantId;
  const deadline = Date.now() + 20_000;
  while ((await status()).consent.grants < 1) {
    if (Date.now() > deadline) throw new Error('the consent view never saw the grant');
    await new Promise((r) => setTimeout(r, 100));
  }
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the API over HTTPS with a development CA', () => {
  it('speaks HTTPS only: the runtime file names https, the loopback operator reads /status over TLS, plain HTTP gets no answer', async () => {
    const runtime = JSON.parse(readFileSync(join(dataDir, 'gateway.json'), 'utf8')) as { httpUrl: string };
    expect(runtime.httpUrl).toBe(`https://127.0.0.1:${gw.httpPort}`);
    const s = await status();
    expect(s.http).toMatchObject({ scheme: 'https', plainAllowed: false });
    const plain = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: gw.httpPort, path: '/status' }, (res) => resolve(`HTTP ${res.statusCode}`));
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      req.end();
    });
    expect(plain).not.toMatch(/^HTTP 200/);
    expect((await status()).http?.refusedBy['HTTP_TLS_HANDSHAKE_FAILED']).toBeGreaterThanOrEqual(1);
    const st = cli(['status', '--url', url, '--ca', ca.caCert]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toContain('gw-https');
    expect(st.stdout).toMatch(/^http {5}https {2}connections \d+ {2}refused HTTP_TLS_HANDSHAKE_FAILED=\d+/m);
  });

  it('research login refuses an untrusted certificate, and works with --ca or NODE_EXTRA_CA_CERTS; grants are listed', () => {
    const untrusted = cli(['research', 'login', '--key-file', keyFile('researcher'), '--url', url]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/cannot trust the gateway at https:\/\/127\.0\.0\.1:\d+: [A-Z_]+ .*--ca FILE/);
    const login = cli(['research', 'login', '--key-file', keyFile('researcher'), '--url', url, '--ca', ca.caCert]);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toMatch(new RegExp(`^logged in to gateway gw-https at ${url} as ${researcher.address}`));
    expect(login.stdout).toMatch(/1 grant, 1 in force/);
    const grants = cli(['research', 'grants', '--url', url, '--json'], { NODE_EXTRA_CA_CERTS: ca.caCert });
    expect(grants.code, grants.stderr).toBe(0);
    expect(JSON.parse(grants.stdout)).toEqual([expect.objectContaining({ grantId, patient: P, researcher: researcher.address, status: 'OK' })]);
  });

  it('research logout ends the session at the gateway: its token is refused 401 at once', async () => {
    const sessions = JSON.parse(readFileSync(join(dir, '.vitalproof', 'sessions.json'), 'utf8')) as { sessions: { token: string }[] };
    const token = sessions.sessions[0]!.token;
    expect((await api('GET', '/research/grants', { token })).status).toBe(200);
    const out = cli(['research', 'logout', '--url', url, '--ca', ca.caCert]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe(`logged out of ${url} as ${researcher.address}: 1 session ended\n`);
    const after = await api('GET', '/research/grants', { token });
    expect(after.status).toBe(401);
    expect(after.body.error).toBe('AUTH_UNKNOWN_SESSION');
    const none = cli(['research', 'grants', '--url', url, '--ca', ca.caCert]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no session with/);
  });

  it('logout --all ends every session of the account (a leaked token dies now)', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 2; i++) {
      const text = await challengeFor(researcher.address, '127.0.0.2');
      const r = await api('POST', '/auth/login', { body: { challenge: text, signature: await researcher.signMessage(text) }, from: '127.0.0.2' });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      tokens.push(r.body['token'] as string);
    }
    const before = (await status()).http!.login.loggedOut;
    const out = cli(['research', 'logout', '--all', '--key-file', keyFile('researcher'), '--url', url, '--ca', ca.caCert]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/: 3 sessions ended \(every session of the account\)\n$/); // the two, and the one it logged in with
    for (const token of tokens) expect((await api('GET', '/research/grants', { token })).body.error).toBe('AUTH_UNKNOWN_SESSION');
    expect((await status()).http!.login.loggedOut).toBe(before + 3);
    // A logout needs a session: no token, no logout.
    const anon = await api('POST', '/auth/logout?all=1', { from: '127.0.0.2' });
    expect(anon.status).toBe(401);
  });
});

describe('login under attack', () => {
  it('10,000 POST /auth/challenge do not push out a challenge issued before them', async () => {
    const early = await challengeFor(researcher.address, '127.0.0.3');
    const agent = agentFrom('127.0.0.4');
    try {
      const answers = await pool(10_000, 16, async () => {
        const r = await api('POST', '/auth/challenge', { body: { address: `0x${randomBytes(20).toString('hex')}`, purpose: 'http' }, agent });
        return r.status;
      });
      expect(answers.filter((s) => s !== 200)).toEqual([]);
    } finally {
      agent.destroy();
    }
    const r = await api('POST', '/auth/login', { body: { challenge: early, signature: await researcher.signMessage(early) }, from: '127.0.0.3' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body['address']).toBe(researcher.address);
    expect((await status()).http!.login).toMatchObject({ usedNonces: expect.any(Number) });
  });

  it('a flood of forged logins from 8 sources is answered 401/429 with codes, counted exactly; only issued challenges cost a recovery', async () => {
    const before = (await status()).http!;
    const sources = Array.from({ length: 8 }, (_, i) => `127.0.1.${i + 1}`);
    const perSource = 150;
    const answers = (
      await Promise.all(
        sources.map(async (from) => {
          const genuine = await challengeFor(researcher.address, from);
          const c = parseChallenge(genuine)!;
          const agent = agentFrom(from);
          try {
            return await pool(perSource, 4, async (i) => {
              // Half forged (a nonce this gateway never made), half genuine with a random signature.
              const text = i % 2 ? challengeText({ ...c, nonce: randomBytes(16).toString('hex') }) : genuine;
              return api('POST', '/auth/login', { body: { challenge: text, signature: `0x${randomBytes(64).toString('hex')}1c` }, agent });
            });
          } finally {
            agent.destroy();
          }
        }),
      )
    ).flat();
    expect(answers).toHaveLength(sources.length * perSource);
    const byCode: Record<string, number> = {};
    for (const a of answers) {
      const code = a.body.error ?? 'NONE';
      byCode[code] = (byCode[code] ?? 0) + 1;
      if (code === 'LOGIN_RATE_LIMITED' || code === 'AUTH_BUSY') {
        expect(a.status).toBe(429);
        expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      } else {
        expect(a.status, code).toBe(401);
        expect(['AUTH_UNKNOWN_CHALLENGE', 'AUTH_BAD_SIGNATURE']).toContain(code);
      }
    }
    // Each source gets its burst of 10 (and ~1/s more); everything else is rate-limited before its body is read.
    expect(byCode['LOGIN_RATE_LIMITED']).toBeGreaterThan(answers.length / 2);
    const after = (await status()).http!;
    const delta = (o: Record<string, number>, p: Record<string, number>, k: string): number => (o[k] ?? 0) - (p[k] ?? 0);
    expect(delta(after.refusedBy, before.refusedBy, 'LOGIN_RATE_LIMITED')).toBe(byCode['LOGIN_RATE_LIMITED']);
    for (const code of ['AUTH_UNKNOWN_CHALLENGE', 'AUTH_BAD_SIGNATURE', 'AUTH_BUSY'])
      expect(delta(after.login.refusedBy, before.login.refusedBy, code), code).toBe(byCode[code] ?? 0);
    // Forged challenges never reached secp256k1: the recoveries are exactly the bad signatures over genuine ones.
    expect(after.login.recoveries! - before.login.recoveries!).toBe(byCode['AUTH_BAD_SIGNATURE'] ?? 0);
    expect(byCode['AUTH_UNKNOWN_CHALLENGE']).toBeGreaterThan(0);

    // An honest researcher from another address logs in (waiting out AUTH_BUSY if the global budget is spent).
    const text = await challengeFor(researcher.address, '127.0.1.100');
    const login = { challenge: text, signature: await researcher.signMessage(text) };
    const deadline = Date.now() + 20_000;
    let r = await api('POST', '/auth/login', { body: login, from: '127.0.1.100' });
    while (r.status === 429 && r.body.error === 'AUTH_BUSY' && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      r = await api('POST', '/auth/login', { body: login, from: '127.0.1.100' });
    }
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    // Summaries at most every 10 s, not a line per refusal.
    expect(answers.length).toBe(1200);
    expect(gw.lines.filter((l) => l.event === 'http_refused').length).toBeLessThan(20);
    expect(gw.lines.filter((l) => l.event === 'research_login_refused')).toEqual([]);
  });

  it('a body over http.maxBodyBytes gets 413 and headers over http.maxHeaderBytes 431, counted', async () => {
    const before = (await status()).http!.refusedBy;
    const big = await api('POST', '/auth/challenge', { raw: JSON.stringify({ address: researcher.address, pad: 'x'.repeat(5000) }), from: '127.0.0.5' });
    expect(big.status).toBe(413);
    expect(big.body.error).toBe('HTTP_BODY_TOO_LARGE');
    const huge = await api('GET', '/research/grants', { headers: { 'x-pad': 'y'.repeat(9000) }, from: '127.0.0.5' });
    expect(huge.status).toBe(431);
    expect(huge.body.error).toBe('HTTP_HEADERS_TOO_LARGE');
    const after = (await status()).http!.refusedBy;
    expect((after['HTTP_BODY_TOO_LARGE'] ?? 0) - (before['HTTP_BODY_TOO_LARGE'] ?? 0)).toBe(1);
    expect((after['HTTP_HEADERS_TOO_LARGE'] ?? 0) - (before['HTTP_HEADERS_TOO_LARGE'] ?? 0)).toBe(1);
    // /metrics carries the same counts.
    const metrics = await api('GET', '/metrics');
    expect(metrics.body.message).toMatch(/vitalproof_http_refused_total\{reason="HTTP_BODY_TOO_LARGE"\} \d+/);
    expect(metrics.body.message).toMatch(/vitalproof_login_signature_recoveries_total \d+/);
  });
});

describe('plain HTTP off loopback', () => {
  const light = (extra: string[]): string[] => [
    'run',
    '--dataDir',
    join(dir, 'plain'),
    '--gatewayId',
    'gw-plain',
    '--chain.mode',
    'off',
    '--registry.source',
    'file',
    '--influx.url',
    influx.handle.url,
    '--mqtt.port',
    '0',
    '--http.port',
    '0',
    ...extra,
  ];

  it('is refused at start without http.allowPlain (a ConfigError, exit 2, nothing started)', () => {
    const r = cli(light(['--http.host', '0.0.0.0']));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: http.host 0.0.0.0 is not loopback and there is no certificate/);
    expect(r.stdout).not.toContain('"event":"ready"');
  });

  it('starts with http.allowPlain=true, with a warning in the log and plainAllowed in /status', async () => {
    const plain = await GatewayProcess.start({
      dataDir: join(dir, 'plain'),
      gatewayId: 'gw-plain',
      'chain.mode': 'off',
      'registry.source': 'file',
      'influx.url': influx.handle.url,
      'mqtt.port': 0,
      'http.port': 0,
      'http.host': '0.0.0.0',
      'http.allowPlain': 'true',
    });
    try {
      const warn = await plain.waitFor((l) => l.event === 'http_plain');
      expect(warn.level).toBe(40);
      const s = await plain.status();
      expect(s.http).toMatchObject({ scheme: 'http', plainAllowed: true });
      expect(s.alarms.map((a) => a.code)).toContain('PLAIN_LISTENER');
    } finally {
      await plain.stop();
    }
  });
});
