/**
 * gateway/consent/auth.ts with real ethers wallets: the challenge text, the HTTP login and its
 * session, the MQTT login with a self-issued challenge, and every refusal code. Time is an
 * explicit clock, so expiry is exact and nothing sleeps.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Wallet } from 'ethers';
import {
  AUTH_ERRORS,
  challengeMac,
  challengeText,
  decodeLogin,
  encodeLogin,
  LOGIN_TITLE,
  parseChallenge,
  ResearcherAuthenticator,
  selfIssuedChallenge,
  type AuthErrorCode,
  type LoginResult,
  type SessionResult,
} from '../../../gateway/consent/auth.js';

const T0 = Date.parse('2026-05-04T10:00:00.000Z');
const researcher = new Wallet('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');
const other = new Wallet('0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a');

function clock(start = T0): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function auth(c = clock(), extra: Partial<ConstructorParameters<typeof ResearcherAuthenticator>[0]> = {}): ResearcherAuthenticator {
  return new ResearcherAuthenticator({ gatewayId: 'ward-3', now: c.now, ...extra });
}

function refused(r: LoginResult | SessionResult, code: AuthErrorCode): void {
  expect(r.ok, `expected ${code}`).toBe(false);
  if (!r.ok) {
    expect(r.code).toBe(code);
    expect(r.message.startsWith(`${code}: ${AUTH_ERRORS[code]}`)).toBe(true);
  }
}

describe('challenge text', () => {
  it('is the documented eight lines, parsed back exactly, and one spelling only', () => {
    const c = {
      gateway: 'ward-3',
      account: researcher.address,
      purpose: 'mqtt' as const,
      nonce: '6f1c0a3e5b7d9f21c4e6a8b0d2f41357',
      issuedAtMs: T0,
      expiresAtMs: T0 + 300_000,
    };
    const text = challengeText(c);
    expect(text).toBe(
      [
        'VitalProof researcher login',
        "Signing this proves you hold this account's key to the gateway named below. It moves no funds.",
        'gateway: ward-3',
        `account: ${researcher.address}`,
        'purpose: mqtt',
        'nonce: 6f1c0a3e5b7d9f21c4e6a8b0d2f41357',
        'issued: 2026-05-04T10:00:00.000Z',
        'expires: 2026-05-04T10:05:00.000Z',
      ].join('\n'),
    );
    expect(text.startsWith(LOGIN_TITLE)).toBe(true);
    expect(parseChallenge(text)).toEqual(c);
    const variants = [
      `${text}\n`, // trailing newline
      text.replace('\n', '\r\n'),
      text.replace(researcher.address, researcher.address.toLowerCase()), // not the checksummed spelling
      text.replace('purpose: mqtt', 'purpose: ftp'),
      text.replace('nonce: 6f1c', 'nonce: 6F1C'),
      text.replace('10:00:00.000Z', '10:00:00Z'),
      text.replace('2026-05-04T10:05', '2026-05-04T09:55'), // expires before issued
      text.replace('gateway: ward-3', 'gateway: ward 3'),
      text.split('\n').reverse().join('\n'),
    ];
    for (const v of variants) expect(parseChallenge(v), v).toBeUndefined();
  });

  it('compact login form: base64url(text).signature, round trip; anything else is refused', async () => {
    const text = selfIssuedChallenge('ward-3', researcher.address, T0);
    const signature = await researcher.signMessage(text);
    const compact = encodeLogin({ text, signature });
    expect(compact).toMatch(/^[A-Za-z0-9_-]+\.0x[0-9a-f]{130}$/);
    expect(decodeLogin(compact)).toEqual({ text, signature });
    expect(decodeLogin(Buffer.from(compact))).toEqual({ text, signature });
    expect(decodeLogin(`${compact}.x`)).toBeUndefined();
    expect(decodeLogin(compact.replace('.', ':'))).toBeUndefined();
    expect(decodeLogin(`${compact.split('.')[0]}=.${signature}`)).toBeUndefined();
    expect(decodeLogin(`${compact.split('.')[0]}.${signature.slice(0, -2)}`)).toBeUndefined();
  });
});

describe('HTTP login', () => {
  it('issues a challenge, accepts its signature once, and gives a bearer session bound to the address', async () => {
    const c = clock();
    const a = auth(c);
    const { text, challenge } = a.issueChallenge(researcher.address.toLowerCase(), 'http');
    expect(challenge).toMatchObject({ gateway: 'ward-3', account: researcher.address, purpose: 'http', issuedAtMs: T0, expiresAtMs: T0 + 300_000 });
    const login = { text, signature: await researcher.signMessage(text) };
    c.advance(1000);
    const r = a.login(login);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.session).toMatchObject({ researcher: researcher.address, issuedAtMs: T0 + 1000, expiresAtMs: T0 + 1000 + 3_600_000 });
    expect(r.session.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const s = a.session(r.session.token);
    expect(s.ok && s.session.researcher).toBe(researcher.address);
    // The same signed login again: single use.
    refused(a.login(login), 'AUTH_REPLAYED');
    expect(a.stats()).toMatchObject({ usedNonces: 1, sessions: 1 });
  });

  it('refuses a signature by another key, a text changed after issue, a challenge it never issued, another purpose or gateway', async () => {
    const a = auth();
    const { text } = a.issueChallenge(researcher.address, 'http');
    refused(a.login({ text, signature: await other.signMessage(text) }), 'AUTH_BAD_SIGNATURE');
    refused(a.login({ text, signature: await researcher.signMessage(`${text} `) }), 'AUTH_BAD_SIGNATURE');
    // A text changed after issue no longer carries the gateway's MAC.
    refused(
      a.login({ text: text.replace(/nonce: [0-9a-f]+/, 'nonce: 00000000000000000000000000000000'), signature: await researcher.signMessage(text) }),
      'AUTH_UNKNOWN_CHALLENGE',
    );
    // Self-made and correctly signed, but not issued by this gateway: HTTP needs an issued challenge.
    const own = challengeText({
      gateway: 'ward-3',
      account: researcher.address,
      purpose: 'http',
      nonce: 'ab'.repeat(16),
      issuedAtMs: T0,
      expiresAtMs: T0 + 60_000,
    });
    refused(a.login({ text: own, signature: await researcher.signMessage(own) }), 'AUTH_UNKNOWN_CHALLENGE');
    const forMqtt = a.issueChallenge(researcher.address, 'mqtt').text;
    refused(a.login({ text: forMqtt, signature: await researcher.signMessage(forMqtt) }), 'AUTH_WRONG_PURPOSE');
    const elsewhere = auth(clock(), { gatewayId: 'ward-4' }).issueChallenge(researcher.address, 'http').text;
    refused(a.login({ text: elsewhere, signature: await researcher.signMessage(elsewhere) }), 'AUTH_WRONG_GATEWAY');
    refused(a.login({ text: 'hello', signature: await researcher.signMessage('hello') }), 'AUTH_MALFORMED');
    refused(a.login({ text, signature: '0x1234' }), 'AUTH_MALFORMED');
    // None of the refusals used the challenge up: the right signature still logs in.
    expect(a.login({ text, signature: await researcher.signMessage(text) }).ok).toBe(true);
  });

  it('expires challenges after 5 minutes and sessions after an hour; logout ends a session', async () => {
    const c = clock();
    const a = auth(c);
    const late = a.issueChallenge(researcher.address, 'http').text;
    c.advance(300_000);
    refused(a.login({ text: late, signature: await researcher.signMessage(late) }), 'AUTH_EXPIRED');
    const { text } = a.issueChallenge(researcher.address, 'http');
    c.advance(299_999);
    const r = a.login({ text, signature: await researcher.signMessage(text) });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    c.advance(3_599_999);
    expect(a.session(r.session.token).ok).toBe(true);
    c.advance(1);
    refused(a.session(r.session.token), 'AUTH_SESSION_EXPIRED');
    refused(a.session(r.session.token), 'AUTH_UNKNOWN_SESSION');
    const t2 = a.issueChallenge(researcher.address, 'http').text;
    const r2 = a.login({ text: t2, signature: await researcher.signMessage(t2) });
    expect(r2.ok && a.logout(r2.session.token)).toBe(true);
    if (r2.ok) refused(a.session(r2.session.token), 'AUTH_UNKNOWN_SESSION');
    refused(a.session('not-a-token'), 'AUTH_UNKNOWN_SESSION');
  });

  it('keeps at most maxSessionsPerResearcher sessions per researcher, ending the oldest; endSessionsOf ends them all', async () => {
    const a = auth(clock(), { maxSessionsPerResearcher: 2 });
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { text } = a.issueChallenge(researcher.address, 'http');
      const r = a.login({ text, signature: await researcher.signMessage(text) });
      if (r.ok) tokens.push(r.session.token);
    }
    expect(tokens).toHaveLength(3);
    refused(a.session(tokens[0]!), 'AUTH_UNKNOWN_SESSION');
    expect(a.session(tokens[1]!).ok && a.session(tokens[2]!).ok).toBe(true);
    expect(a.endSessionsOf(researcher.address.toLowerCase())).toBe(2);
    refused(a.session(tokens[2]!), 'AUTH_UNKNOWN_SESSION');
  });
});

describe('MQTT login (password = the login)', () => {
  it('accepts a self-issued challenge once, with the username as its account; a replay fails AUTH_REPLAYED', async () => {
    const c = clock();
    const a = auth(c);
    c.advance(5000);
    const text = selfIssuedChallenge('ward-3', researcher.address, c.now());
    const password = encodeLogin({ text, signature: await researcher.signMessage(text) });
    const r = a.verifyMqttLogin(researcher.address, Buffer.from(password));
    expect(r.ok && r.researcher).toBe(researcher.address);
    c.advance(1000);
    refused(a.verifyMqttLogin(researcher.address, password), 'AUTH_REPLAYED');
    // After the acceptance window, the same login is refused as expired (its nonce is forgotten then).
    c.advance(60_000);
    refused(a.verifyMqttLogin(researcher.address, password), 'AUTH_EXPIRED');
    expect(a.stats().usedNonces).toBe(0);
  });

  it('refuses a wrong username, a stale or future-dated challenge, one dated before the gateway started, and a garbled password', async () => {
    const c = clock();
    const a = auth(c);
    c.advance(120_000);
    const sign = async (issuedAtMs: number, ttl = 60_000): Promise<string> => {
      const text = selfIssuedChallenge('ward-3', researcher.address, issuedAtMs, ttl);
      return encodeLogin({ text, signature: await researcher.signMessage(text) });
    };
    refused(a.verifyMqttLogin(other.address, await sign(c.now())), 'AUTH_WRONG_ACCOUNT');
    refused(a.verifyMqttLogin(researcher.address, await sign(c.now() - 60_001, 300_000)), 'AUTH_EXPIRED');
    refused(a.verifyMqttLogin(researcher.address, await sign(c.now() + 60_001)), 'AUTH_CLOCK_SKEW');
    refused(a.verifyMqttLogin(researcher.address, await sign(c.now() - 1000, 500)), 'AUTH_EXPIRED');
    // Exactly 60 s old: still within the window.
    expect(a.verifyMqttLogin(researcher.address, await sign(c.now() - 60_000, 300_000)).ok).toBe(true);
    // A restarted gateway forgets the nonces it saw: logins made before it started are refused.
    const before = await sign(c.now() - 10_000);
    const restarted = auth(clock(c.now()));
    refused(restarted.verifyMqttLogin(researcher.address, before), 'AUTH_EXPIRED');
    expect(restarted.verifyMqttLogin(researcher.address, await sign(c.now())).ok).toBe(true);
    refused(a.verifyMqttLogin(researcher.address, undefined), 'AUTH_MALFORMED');
    refused(a.verifyMqttLogin(researcher.address, 'not a login'), 'AUTH_MALFORMED');
    // An HTTP-purpose text is refused over MQTT.
    const httpText = a.issueChallenge(researcher.address, 'http').text;
    refused(a.verifyMqttLogin(researcher.address, encodeLogin({ text: httpText, signature: await researcher.signMessage(httpText) })), 'AUTH_WRONG_PURPOSE');
  });

  it('also accepts a gateway-issued mqtt challenge (a client that fetched one over HTTP), once', async () => {
    const c = clock();
    const a = auth(c);
    const { text } = a.issueChallenge(researcher.address, 'mqtt');
    c.advance(200_000); // beyond the ±60 s of self-issued ones, within the 5 min of an issued one
    const password = encodeLogin({ text, signature: await researcher.signMessage(text) });
    expect(a.verifyMqttLogin('', password).ok).toBe(true);
    refused(a.verifyMqttLogin('', password), 'AUTH_REPLAYED');
  });
});

/** A random key (Wallet.createRandom derives from a mnemonic: far slower). */
function freshWallet(): Wallet {
  return new Wallet(`0x${randomBytes(32).toString('hex')}`);
}

/** A signature-shaped string no key made: recovering it costs as much as a real one. */
function randomSignature(): string {
  return `0x${randomBytes(64).toString('hex')}1b`;
}

describe('cheap checks before signature recovery (issue #10, 2 and 5)', () => {
  it('refuses forged, altered, expired, replayed and misdirected challenges without recovering any signature', async () => {
    const c = clock();
    const a = auth(c);
    const { text, challenge } = a.issueChallenge(researcher.address, 'http');
    expect(challenge.nonce).toMatch(/^[0-9a-f]{32}$/);
    const good = { text, signature: await researcher.signMessage(text) };
    expect(a.login(good).ok).toBe(true);
    expect(a.stats().recoveries).toBe(1);

    const forged = (over: Partial<Parameters<typeof challengeText>[0]>): string =>
      challengeText({ ...challenge, nonce: randomBytes(16).toString('hex'), ...over });
    const cases: [string, AuthErrorCode][] = [
      [forged({}), 'AUTH_UNKNOWN_CHALLENGE'], // a nonce the gateway never made
      [challengeText({ ...challenge, account: other.address }), 'AUTH_UNKNOWN_CHALLENGE'], // another account under the same nonce
      [challengeText({ ...challenge, expiresAtMs: challenge.expiresAtMs + 3_600_000 }), 'AUTH_UNKNOWN_CHALLENGE'], // a longer life
      [challengeText({ ...challenge, gateway: 'ward-4' }), 'AUTH_WRONG_GATEWAY'],
      [challengeText({ ...challenge, purpose: 'mqtt' }), 'AUTH_WRONG_PURPOSE'],
      [text, 'AUTH_REPLAYED'],
      ['VitalProof researcher login\nnot a challenge', 'AUTH_MALFORMED'],
    ];
    for (let i = 0; i < 200; i++) {
      for (const [t, code] of cases) refused(a.login({ text: t, signature: randomSignature() }), code);
    }
    const late = a.issueChallenge(researcher.address, 'http').text;
    c.advance(300_000);
    refused(a.login({ text: late, signature: randomSignature() }), 'AUTH_EXPIRED');
    // 1,401 refusals, not one secp256k1 recovery among them.
    expect(a.stats().recoveries).toBe(1);
    // A genuine, unexpired challenge with a wrong signature is the only refusal that recovers.
    const fresh = a.issueChallenge(researcher.address, 'http').text;
    refused(a.login({ text: fresh, signature: await other.signMessage(fresh) }), 'AUTH_BAD_SIGNATURE');
    expect(a.stats().recoveries).toBe(2);
  });

  it('the nonce is random ‖ HMAC under the secret: the same secret recognises it, a restarted gateway (new secret) does not', async () => {
    const secret = randomBytes(32);
    const c = clock();
    const a = auth(c, { secret });
    const { text, challenge } = a.issueChallenge(researcher.address, 'http');
    const n = Buffer.from(challenge.nonce, 'hex');
    expect(n.subarray(6).equals(challengeMac(secret, challenge, n.subarray(0, 6)))).toBe(true);
    expect(a.issuedHere(challenge)).toBe(true);
    const signature = await researcher.signMessage(text);
    refused(auth(clock(c.now()), { secret: randomBytes(32) }).login({ text, signature }), 'AUTH_UNKNOWN_CHALLENGE');
    expect(auth(clock(c.now()), { secret }).login({ text, signature }).ok).toBe(true);
    expect(() => auth(c, { secret: randomBytes(16) })).toThrow(TypeError);
  });

  it('a flood of 20,000 challenges keeps nothing and evicts nothing: the first one still logs in', async () => {
    const c = clock();
    const a = auth(c);
    const first = a.issueChallenge(researcher.address, 'http').text;
    const nonces = new Set<string>();
    for (let i = 0; i < 20_000; i++) nonces.add(a.issueChallenge(i % 2 ? other.address : researcher.address, 'http').challenge.nonce);
    expect(nonces.size).toBe(20_000); // all distinct
    expect(a.stats()).toMatchObject({ usedNonces: 0, sessions: 0, recoveries: 0 });
    c.advance(299_999);
    expect(a.login({ text: first, signature: await researcher.signMessage(first) }).ok).toBe(true);
  });

  it('remembers used nonces only from verified logins, only until they expire, and at most maxUsedNonces (then AUTH_BUSY, no recovery)', async () => {
    const c = clock();
    const a = auth(c, { maxUsedNonces: 3 });
    const login = async (): Promise<LoginResult> => {
      const { text } = a.issueChallenge(researcher.address, 'http');
      return a.verifyLogin({ text, signature: await researcher.signMessage(text) }, 'http');
    };
    // Bad signatures on genuine challenges do not enter the set.
    for (let i = 0; i < 10; i++)
      refused(a.verifyLogin({ text: a.issueChallenge(researcher.address, 'http').text, signature: randomSignature() }, 'http'), 'AUTH_BAD_SIGNATURE');
    expect(a.stats().usedNonces).toBe(0);
    for (let i = 0; i < 3; i++) expect((await login()).ok).toBe(true);
    expect(a.stats().usedNonces).toBe(3);
    const before = a.stats().recoveries;
    refused(await login(), 'AUTH_BUSY');
    expect(a.stats()).toMatchObject({ usedNonces: 3, recoveries: before, busy: 1 });
    c.advance(300_000); // every remembered challenge has expired: forgotten
    expect(a.stats().usedNonces).toBe(0);
    expect((await login()).ok).toBe(true);
  });

  it('spends at most recoveriesPerS recoveries (burst twice) on gateway-issued challenges; AUTH_BUSY beyond, without recovering', async () => {
    const c = clock();
    const a = auth(c, { recoveriesPerS: 2 });
    const { text } = a.issueChallenge(researcher.address, 'http');
    for (let i = 0; i < 4; i++) refused(a.login({ text, signature: randomSignature() }), 'AUTH_BAD_SIGNATURE');
    refused(a.login({ text, signature: randomSignature() }), 'AUTH_BUSY');
    refused(a.login({ text, signature: await researcher.signMessage(text) }), 'AUTH_BUSY');
    expect(a.stats().recoveries).toBe(4);
    c.advance(500); // one token back
    expect(a.login({ text, signature: await researcher.signMessage(text) }).ok).toBe(true);
    expect(a.stats().recoveries).toBe(5);
  });

  it('self-issued MQTT logins: budgeted per account, per source and in all, apart from gateway-issued ones', async () => {
    const c = clock();
    const a = auth(c, { selfIssuedPerS: 5 }); // burst 10 in all; 5 per account or source
    c.advance(1000);
    const selfLogin = async (w: Wallet, source?: string): Promise<LoginResult> => {
      const text = selfIssuedChallenge('ward-3', w.address, c.now());
      return a.verifyMqttLogin(w.address, encodeLogin({ text, signature: await w.signMessage(text) }), source);
    };
    for (let i = 0; i < 5; i++) expect((await selfLogin(researcher)).ok).toBe(true);
    refused(await selfLogin(researcher), 'AUTH_BUSY'); // this account's share
    expect((await selfLogin(other, '10.0.0.9')).ok).toBe(true); // another account is not held up
    // One source naming many accounts: its own share of 5.
    const many = Array.from({ length: 5 }, () => freshWallet());
    const results = [];
    for (const w of many) results.push((await selfLogin(w, '10.0.0.7')).ok);
    expect(results).toEqual([true, true, true, true, false]);
    // The global self-issued budget (10) is spent now; a gateway-issued mqtt challenge still logs in.
    refused(await selfLogin(freshWallet(), '10.0.0.8'), 'AUTH_BUSY');
    const { text } = a.issueChallenge(researcher.address, 'mqtt');
    expect(a.verifyMqttLogin(researcher.address, encodeLogin({ text, signature: await researcher.signMessage(text) }), '10.0.0.7').ok).toBe(true);
  });
});

describe('sessions: logout, revocation of all, and the pool of unknown addresses', () => {
  it('logout ends one session; endSessionsOf ends every session of the address and no other', async () => {
    const a = auth();
    const open = async (w: Wallet): Promise<string> => {
      const { text } = a.issueChallenge(w.address, 'http');
      const r = a.login({ text, signature: await w.signMessage(text) });
      if (!r.ok) throw new Error(r.message);
      return r.session.token;
    };
    const [r1, r2, o1] = [await open(researcher), await open(researcher), await open(other)];
    expect(a.logout(r1)).toBe(true);
    expect(a.logout(r1)).toBe(false);
    refused(a.session(r1), 'AUTH_UNKNOWN_SESSION');
    expect(a.session(r2).ok).toBe(true);
    const r3 = await open(researcher);
    expect(a.endSessionsOf(researcher.address)).toBe(2);
    refused(a.session(r2), 'AUTH_UNKNOWN_SESSION');
    refused(a.session(r3), 'AUTH_UNKNOWN_SESSION');
    expect(a.session(o1).ok).toBe(true);
    expect(a.stats().sessions).toBe(1);
  });

  it('addresses the chain does not know share maxUnadmittedSessions (oldest ended first); admitted ones are never pushed out', async () => {
    const a = auth(clock(), { admitted: (x) => x === researcher.address, maxUnadmittedSessions: 3 });
    const open = async (w: Wallet): Promise<string> => {
      const { text } = a.issueChallenge(w.address, 'http');
      const r = a.login({ text, signature: await w.signMessage(text) });
      if (!r.ok) throw new Error(r.message);
      return r.session.token;
    };
    const mine = await open(researcher);
    const strangers: string[] = [];
    for (let i = 0; i < 6; i++) strangers.push(await open(freshWallet()));
    expect(a.stats()).toMatchObject({ sessions: 4, unadmittedSessions: 3 });
    expect(a.session(mine).ok).toBe(true);
    for (const t of strangers.slice(0, 3)) refused(a.session(t), 'AUTH_UNKNOWN_SESSION');
    for (const t of strangers.slice(3)) expect(a.session(t).ok).toBe(true);
    const last = a.session(strangers[5]!);
    expect(last.ok && a.endSessionsOf(last.session.researcher)).toBe(1);
    expect(a.stats()).toMatchObject({ sessions: 3, unadmittedSessions: 2 });
  });
});
