/**
 * Sessions with the gateway's API (docs/consent.md, "Researcher access"; docs/research-api.md).
 * `httpLogin` asks for a challenge (POST /auth/challenge, purpose http), checks that it is a
 * login challenge for this account and purpose (nothing else is ever signed), signs it (EIP-191)
 * and trades it for a bearer token (POST /auth/login), saved in the SessionStore. A session
 * lasts an hour: `withSession` logs in again by itself when it has ended and a key is given.
 */
import { getAddress, type BaseWallet } from 'ethers';
import { parseChallenge, type LoginChallenge, type LoginPurpose } from '../consent/auth.js';
import { ApiError, apiRequest, normaliseUrl } from './api.js';
import { NoSessionError } from './errors.js';
import type { SavedSession, SessionStore } from './session-store.js';

/** The gateway's codes for a session it no longer knows: forget it, log in again. */
const SESSION_ENDED = new Set(['AUTH_UNKNOWN_SESSION', 'AUTH_SESSION_EXPIRED']);
/** A saved session is not used in its last minute. */
const SESSION_MARGIN_MS = 60_000;

/**
 * A login challenge from the gateway (POST /auth/challenge), checked before anything is signed:
 * it must be a VitalProof login challenge (docs/consent.md) for this account and purpose.
 * @throws ApiError when the gateway refuses or answers something else.
 */
export async function fetchChallenge(base: string, address: string, purpose: LoginPurpose): Promise<{ text: string; challenge: LoginChallenge }> {
  const { challenge: text } = await apiRequest<{ challenge: string }>(base, '/auth/challenge', { body: { address, purpose } });
  const c = typeof text === 'string' ? parseChallenge(text) : undefined;
  if (!c) throw new ApiError(200, 'NOT_A_CHALLENGE', 'the gateway answered something that is not a login challenge: nothing was signed', '/auth/challenge');
  if (c.account !== getAddress(address) || c.purpose !== purpose) {
    throw new ApiError(
      200,
      'WRONG_CHALLENGE',
      `the gateway's challenge is for ${c.account} (${c.purpose}), not ${getAddress(address)} (${purpose}): nothing was signed`,
      '/auth/challenge',
    );
  }
  return { text, challenge: c };
}

/** Logs in over HTTP with `key` (challenge, EIP-191 signature, session) and saves the session. */
export async function httpLogin(base: string, key: BaseWallet, store: SessionStore): Promise<SavedSession> {
  const { text, challenge } = await fetchChallenge(base, key.address, 'http');
  const signature = await key.signMessage(text);
  const r = await apiRequest<{ token: string; address: string; expiresAtMs: number }>(base, '/auth/login', { body: { challenge: text, signature } });
  if (typeof r.token !== 'string' || !r.token) throw new ApiError(200, 'NO_TOKEN', 'the login answer has no token', '/auth/login');
  const s: SavedSession = {
    url: base,
    address: key.address,
    gatewayId: challenge.gateway,
    token: r.token,
    expiresAtMs: Number(r.expiresAtMs),
    savedAtMs: Date.now(),
  };
  store.save(s);
  return s;
}

/** The saved session of `key`'s account with `base` (the only one saved there without a key). @throws NoSessionError when several accounts have one and no key chooses. */
function savedSession(base: string, key: BaseWallet | undefined, store: SessionStore): SavedSession | undefined {
  const s = store.find(base, key?.address);
  if (s === 'ambiguous') throw new NoSessionError('CLIENT_SESSION_AMBIGUOUS', { url: base, sessionFile: store.path });
  return s;
}

/**
 * Runs `fn` with a session token for `base`: the saved one of `key`'s account (or the only one
 * saved for `base` when no key is given), else a new login with `key`. When the gateway says
 * the session has ended and `key` is given, logs in again and retries once.
 * @throws NoSessionError when there is no usable session and no key to log in with.
 */
export async function withSession<T>(base: string, key: BaseWallet | undefined, store: SessionStore, fn: (token: string) => Promise<T>): Promise<T> {
  let s = savedSession(base, key, store);
  if (s && s.expiresAtMs - SESSION_MARGIN_MS <= Date.now()) s = undefined;
  if (!s) {
    if (!key) throw new NoSessionError('CLIENT_NO_SESSION', { url: base, sessionFile: store.path });
    s = await httpLogin(base, key, store);
  }
  try {
    return await fn(s.token);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401 || !SESSION_ENDED.has(e.code)) throw e;
    store.remove(base, s.address);
    if (!key) throw e;
    const again = await httpLogin(base, key, store);
    return fn(again.token);
  }
}

/** `withSession` for a caller that always has the key (the patient's `consent list --disclosures`). */
export function sessionFor<T>(base: string, key: BaseWallet, store: SessionStore, fn: (token: string) => Promise<T>): Promise<T> {
  return withSession(normaliseUrl(base), key, store, fn);
}

/**
 * POST /auth/logout (?all=1): ends the saved session (with `all`, every session of the account,
 * logging in with `key` first when none is saved) and forgets it.
 * @returns the account and how many sessions the gateway ended.
 * @throws NoSessionError when there is no session to speak for the account.
 */
export async function logout(base: string, key: BaseWallet | undefined, store: SessionStore, all: boolean): Promise<{ address: string; ended: number }> {
  let s = savedSession(base, key, store);
  if (!s && all && key) s = await httpLogin(base, key, store); // a session to speak for the account
  if (!s) throw new NoSessionError('CLIENT_NO_SESSION', { url: base, sessionFile: store.path });
  let ended: number;
  try {
    ({ ended } = await apiRequest<{ ended: number }>(base, `/auth/logout${all ? '?all=1' : ''}`, { method: 'POST', token: s.token }));
  } catch (e) {
    // A session the gateway no longer knows is ended already: forget it all the same.
    if (!(e instanceof ApiError) || e.status !== 401 || !SESSION_ENDED.has(e.code) || all) throw e;
    ended = 0;
  }
  store.remove(base, s.address);
  return { address: s.address, ended };
}
