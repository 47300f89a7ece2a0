/**
 * Researcher sessions shared by hub instances (gateway/consent/shared-auth.ts and the shared mode
 * of gateway/consent/auth.ts), with real ethers wallets: two authenticators with one secret,
 * their shared states relayed to each other as the hospital broker relays them (the broker
 * itself is exercised in test/e2e/fleet-research.test.ts). Time is an explicit clock.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Wallet } from 'ethers';
import { AUTH_ERRORS, ResearcherAuthenticator, type AuthErrorCode, type LoginResult, type SessionResult } from '../../../gateway/consent/auth.js';
import { openSession, SharedAuthState, signSession, SIGNED_TOKEN_CHARS } from '../../../gateway/consent/shared-auth.js';
import { hubAuthSecret } from '../../../gateway/hub/auth-share.js';
import { ConfigError } from '../../../gateway/config.js';

const T0 = Date.parse('2026-05-04T10:00:00.000Z');
const researcher = new Wallet('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');
const SECRET = Buffer.from('a-secret-the-hub-instances-share-0123456789');

function refused(r: LoginResult | SessionResult, code: AuthErrorCode): void {
  expect(r.ok, `expected ${code}`).toBe(false);
  if (!r.ok) expect(r.message.startsWith(`${code}: ${AUTH_ERRORS[code]}`)).toBe(true);
}

/** Two instances of hub "hub", their states relayed to each other (when `linked`), and one clock. */
function hospital(): { t: { ms: number }; a: ResearcherAuthenticator; b: ResearcherAuthenticator; sa: SharedAuthState; sb: SharedAuthState } {
  const t = { ms: T0 };
  const now = (): number => t.ms;
  const sa = new SharedAuthState(now);
  const sb = new SharedAuthState(now);
  sa.sink = (e) => sb.heard(e);
  sb.sink = (e) => sa.heard(e);
  sa.setReady(true);
  sb.setReady(true);
  const a = new ResearcherAuthenticator({ gatewayId: 'hub', now, secret: SECRET, shared: sa });
  const b = new ResearcherAuthenticator({ gatewayId: 'hub', now, secret: SECRET, shared: sb });
  return { t, a, b, sa, sb };
}

async function signedLogin(at: ResearcherAuthenticator): Promise<{ text: string; signature: string }> {
  const { text } = at.issueChallenge(researcher.address, 'http');
  return { text, signature: await researcher.signMessage(text) };
}

describe('signed session tokens', () => {
  it('carry their claims under the MAC, in one base64url word, and nothing else opens', () => {
    const { token, claims } = signSession(SECRET, 'hub', researcher.address, T0, T0 + 3600_000);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(token.length).toBe(SIGNED_TOKEN_CHARS);
    expect(claims.id).toMatch(/^[0-9a-f]{32}$/);
    expect(openSession(SECRET, 'hub', token)).toEqual(claims);
    expect(openSession(SECRET, 'other-hub', token)).toBeUndefined();
    expect(openSession(Buffer.from('another-secret-of-another-hospital-000'), 'hub', token)).toBeUndefined();
    // Every byte is covered: a changed expiry (or anything else) no longer opens.
    const bytes = Buffer.from(token, 'base64url');
    for (const i of [1, 17, 37, 45, 60]) {
      const forged = Buffer.from(bytes);
      forged[i] = forged[i]! ^ 1;
      expect(openSession(SECRET, 'hub', forged.toString('base64url')), `byte ${i}`).toBeUndefined();
    }
    expect(openSession(SECRET, 'hub', randomBytes(32).toString('base64url'))).toBeUndefined();
  });
});

describe('sessions shared by hub instances', () => {
  it('logs in at one instance with a challenge of the other, and the session works at both', async () => {
    const { a, b } = hospital();
    const r = b.login(await signedLogin(a));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.session.researcher).toBe(researcher.address);
    for (const at of [a, b]) expect(at.session(r.session.token)).toEqual({ ok: true, session: r.session });
    // A restarted instance (a new authenticator, the same secret, the state it reads back) still knows it.
    const restarted = new ResearcherAuthenticator({ gatewayId: 'hub', now: () => T0, secret: SECRET, shared: new SharedAuthState(() => T0) });
    expect(restarted.session(r.session.token).ok).toBe(true);
  });

  it('refuses a login replayed at the other instance, and a token after its expiry', async () => {
    const { t, a, b } = hospital();
    const login = await signedLogin(a);
    const r = a.login(login);
    expect(r.ok).toBe(true);
    refused(b.login(login), 'AUTH_REPLAYED');
    refused(a.login(login), 'AUTH_REPLAYED');
    t.ms += 3600_000;
    if (r.ok) refused(b.session(r.session.token), 'AUTH_SESSION_EXPIRED');
  });

  it('ends a logged-out session at every instance, and every session of the address with logout all', async () => {
    const { t, a, b, sb } = hospital();
    const one = a.login(await signedLogin(a));
    const two = b.login(await signedLogin(b));
    expect(one.ok && two.ok).toBe(true);
    if (!one.ok || !two.ok) return;
    expect(b.logout(one.session.token)).toBe(true);
    refused(a.session(one.session.token), 'AUTH_UNKNOWN_SESSION');
    refused(b.session(one.session.token), 'AUTH_UNKNOWN_SESSION');
    expect(a.logout(one.session.token)).toBe(false);
    expect(a.session(two.session.token).ok).toBe(true);
    expect(a.endSessionsOf(researcher.address)).toBe(1);
    refused(b.session(two.session.token), 'AUTH_UNKNOWN_SESSION');
    expect(sb.stats()).toMatchObject({ endedSessions: 1, endedAll: 1, usedNonces: 2 });
    // A login after the logout of all is a new session, in force.
    t.ms += 1;
    const three = b.login(await signedLogin(a));
    expect(three.ok && a.session(three.session.token).ok).toBe(true);
  });

  it('answers AUTH_BUSY to logins until the shared state is read, without recovering a signature', async () => {
    const state = new SharedAuthState(() => T0);
    const at = new ResearcherAuthenticator({ gatewayId: 'hub', now: () => T0, secret: SECRET, shared: state });
    const login = await signedLogin(at);
    refused(at.login(login), 'AUTH_BUSY');
    expect(at.stats().recoveries).toBe(0);
    state.setReady(true);
    expect(at.login(login).ok).toBe(true);
    expect(at.stats().shared).toMatchObject({ ready: true, usedNonces: 1, recorded: 1 });
  });

  it('needs the secret it shares', () => {
    expect(() => new ResearcherAuthenticator({ gatewayId: 'hub', shared: new SharedAuthState() })).toThrow(/need the secret/);
  });
});

describe('hub.authSecretFile', () => {
  it('is created 0600 when missing and read back the same; a short one is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vp-auth-secret-'));
    try {
      const path = join(dir, 'sub', 'hub-auth.secret');
      const s = hubAuthSecret(path);
      expect(s.length).toBe(64);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(hubAuthSecret(path).equals(s)).toBe(true);
      expect(readFileSync(path, 'utf8').trim()).toBe(s.toString());
      writeFileSync(join(dir, 'short'), 'too-short\n');
      expect(() => hubAuthSecret(join(dir, 'short'))).toThrow(ConfigError);
      expect(() => hubAuthSecret(join(dir, 'short'))).toThrow(/at least 32 bytes, found 9/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
