/**
 * Researcher authentication by Ethereum key (docs/consent.md, "Researcher login"). No shared
 * passwords: a researcher proves they hold the key of the address that grants name by signing
 * a login challenge as an EIP-191 personal message (`wallet.signMessage(text)`); the gateway
 * recovers the address with ethers' verifyMessage.
 *
 * The challenge is a short human-readable text (so a wallet shows the researcher what they
 * sign), parsed strictly:
 *
 *   VitalProof researcher login
 *   Signing this proves you hold this account's key to the gateway named below. It moves no funds.
 *   gateway: ward-3
 *   account: 0x70997970C51812dc3A010C7d01b50e0d17dc79C8
 *   purpose: mqtt
 *   nonce: 6f1c0a3e5b7d9f21c4e6a8b0d2f41357
 *   issued: 2026-05-04T10:00:00.000Z
 *   expires: 2026-05-04T10:05:00.000Z
 *
 * Two ways to get one:
 *   gateway-issued   issueChallenge(account, purpose): the gateway remembers the nonce until the
 *                    expiry (default 5 min). HTTP logins must use one (AUTH_UNKNOWN_CHALLENGE
 *                    otherwise).
 *   self-issued      an MQTT client writes the text itself with a fresh random nonce and the
 *                    current time, so that it can log in with nothing but its key: accepted only
 *                    for purpose "mqtt", while the gateway's clock is within ±60 s of `issued`,
 *                    and never for a text issued before the authenticator started (a restart
 *                    forgets the nonces seen, so older logins could otherwise be replayed).
 * Either way a challenge is accepted once: a replayed login fails AUTH_REPLAYED.
 *
 * A login over HTTP becomes a session: an opaque random bearer token bound to the address,
 * valid for an hour by default. Over MQTT the password is the login itself, in the compact
 * form `base64url(challenge text) "." 0x-hex signature` (encodeLogin / decodeLogin), and the
 * username is the account's address.
 *
 * Verdicts, not exceptions, for anything a client sends: { ok: false, code, message }.
 */
import { randomBytes } from 'node:crypto';
import { getAddress, isAddress, verifyMessage } from 'ethers';

export const LOGIN_TITLE = 'VitalProof researcher login';
export const LOGIN_NOTICE = "Signing this proves you hold this account's key to the gateway named below. It moves no funds.";
export type LoginPurpose = 'mqtt' | 'http';
export const LOGIN_PURPOSES: readonly LoginPurpose[] = ['mqtt', 'http'];

/** The closed set of reasons a login or a session token is refused. */
export const AUTH_ERRORS = {
  AUTH_MALFORMED: 'the login is not a challenge text and a signature in the documented form (docs/consent.md)',
  AUTH_BAD_SIGNATURE: 'the signature does not recover the account the challenge names (signed by another key, or over another text)',
  AUTH_WRONG_ACCOUNT: 'the MQTT username is not the account the challenge names',
  AUTH_WRONG_GATEWAY: 'the challenge names another gateway',
  AUTH_WRONG_PURPOSE: 'the challenge is for another purpose (mqtt / http) than this login',
  AUTH_UNKNOWN_CHALLENGE: 'this gateway did not issue the challenge (or has restarted since); HTTP logins need a challenge from POST /auth/challenge',
  AUTH_EXPIRED: 'the challenge has expired (self-issued MQTT challenges: issued more than 60 s ago, or before the gateway started)',
  AUTH_CLOCK_SKEW: 'the self-issued challenge is dated more than 60 s ahead of the gateway clock: check the client clock',
  AUTH_REPLAYED: 'the challenge was used for a login already: every login needs a fresh challenge',
  AUTH_UNKNOWN_SESSION: 'no session has this token (never issued, logged out, or the gateway restarted): log in again',
  AUTH_SESSION_EXPIRED: 'the session has expired: log in again',
} as const;
export type AuthErrorCode = keyof typeof AUTH_ERRORS;

export type AuthFailure = { ok: false; code: AuthErrorCode; message: string };

/** A challenge as parsed from its text. */
export interface LoginChallenge {
  gateway: string;
  /** EIP-55 checksummed. */
  account: string;
  purpose: LoginPurpose;
  /** 32 lowercase hex digits (128 random bits). */
  nonce: string;
  issuedAtMs: number;
  expiresAtMs: number;
}

export interface Login {
  /** The exact challenge text that was signed. */
  text: string;
  /** 0x + 130 hex digits (65 bytes: r ‖ s ‖ v). */
  signature: string;
}

export interface Session {
  /** The bearer token: 43 base64url characters (32 random bytes). */
  token: string;
  /** The researcher's address, EIP-55 checksummed. */
  researcher: string;
  issuedAtMs: number;
  expiresAtMs: number;
}

export type LoginResult = { ok: true; researcher: string; challenge: LoginChallenge } | AuthFailure;
export type SessionResult = { ok: true; session: Session } | AuthFailure;

export interface AuthenticatorOptions {
  /** The gateway's label (configuration gatewayId): a challenge for another gateway is refused. */
  gatewayId: string;
  /** Life of a gateway-issued challenge. Default 5 min. */
  challengeTtlMs?: number;
  /** Life of a session. Default 1 h. */
  sessionTtlMs?: number;
  /** How far a self-issued challenge's `issued` may be from the gateway clock. Default 60 s. */
  selfIssuedSkewMs?: number;
  /** Outstanding gateway-issued challenges at most (the oldest are dropped). Default 10,000. */
  maxPendingChallenges?: number;
  /** Sessions per researcher at most (the oldest are ended). Default 16. */
  maxSessionsPerResearcher?: number;
  now?: () => number;
}

const NONCE = /^[0-9a-f]{32}$/;
const SIGNATURE = /^0x[0-9a-fA-F]{130}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const GATEWAY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** Longest challenge text accepted: well above any valid one, small enough to parse cheaply. */
const MAX_TEXT = 1024;

/**
 * The challenge text for these fields (the exact bytes the researcher signs).
 * @throws TypeError for a field that cannot appear in a challenge.
 * @example
 *   const text = challengeText({ gateway: 'ward-3', account: wallet.address, purpose: 'mqtt',
 *     nonce: randomBytes(16).toString('hex'), issuedAtMs: Date.now(), expiresAtMs: Date.now() + 60_000 });
 *   const password = encodeLogin({ text, signature: await wallet.signMessage(text) });
 */
export function challengeText(c: LoginChallenge): string {
  if (!GATEWAY_ID.test(c.gateway)) throw new TypeError(`gateway must be 1-64 characters [A-Za-z0-9._-], got "${c.gateway}"`);
  if (!isAddress(c.account)) throw new TypeError(`account must be an Ethereum address, got "${c.account}"`);
  if (!LOGIN_PURPOSES.includes(c.purpose)) throw new TypeError(`purpose must be mqtt or http, got "${String(c.purpose)}"`);
  if (!NONCE.test(c.nonce)) throw new TypeError('nonce must be 32 lowercase hex digits');
  for (const [k, v] of [['issuedAtMs', c.issuedAtMs], ['expiresAtMs', c.expiresAtMs]] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > 8.64e15) throw new TypeError(`${k} must be a Unix time in ms, got ${v}`);
  }
  return [
    LOGIN_TITLE,
    LOGIN_NOTICE,
    `gateway: ${c.gateway}`,
    `account: ${getAddress(c.account)}`,
    `purpose: ${c.purpose}`,
    `nonce: ${c.nonce}`,
    `issued: ${new Date(c.issuedAtMs).toISOString()}`,
    `expires: ${new Date(c.expiresAtMs).toISOString()}`,
  ].join('\n');
}

/**
 * Parses a challenge text strictly: the eight lines in order, exactly as challengeText writes
 * them (one spelling per challenge, so a signature covers one meaning).
 * @returns the challenge, or undefined when the text is not one.
 */
export function parseChallenge(text: string): LoginChallenge | undefined {
  if (typeof text !== 'string' || text.length > MAX_TEXT) return undefined;
  const lines = text.split('\n');
  if (lines.length !== 8 || lines[0] !== LOGIN_TITLE || lines[1] !== LOGIN_NOTICE) return undefined;
  const field = (i: number, key: string): string | undefined => {
    const l = lines[i]!;
    return l.startsWith(`${key}: `) ? l.slice(key.length + 2) : undefined;
  };
  const gateway = field(2, 'gateway');
  const account = field(3, 'account');
  const purpose = field(4, 'purpose');
  const nonce = field(5, 'nonce');
  const issued = field(6, 'issued');
  const expires = field(7, 'expires');
  if (gateway === undefined || !GATEWAY_ID.test(gateway)) return undefined;
  // The checksummed spelling only: getAddress rejects a wrong mixed-case checksum.
  if (account === undefined || !/^0x[0-9a-fA-F]{40}$/.test(account)) return undefined;
  let checksummed: string;
  try {
    checksummed = getAddress(account);
  } catch {
    return undefined;
  }
  if (checksummed !== account) return undefined;
  if (purpose !== 'mqtt' && purpose !== 'http') return undefined;
  if (nonce === undefined || !NONCE.test(nonce)) return undefined;
  const time = (s: string | undefined): number | undefined => {
    if (s === undefined || !ISO.test(s)) return undefined;
    const ms = Date.parse(s);
    return Number.isFinite(ms) && new Date(ms).toISOString() === s ? ms : undefined;
  };
  const issuedAtMs = time(issued);
  const expiresAtMs = time(expires);
  if (issuedAtMs === undefined || expiresAtMs === undefined || expiresAtMs <= issuedAtMs) return undefined;
  return { gateway, account, purpose, nonce, issuedAtMs, expiresAtMs };
}

/** The compact form of a login (the MQTT password): `base64url(UTF-8 text) "." signature`. */
export function encodeLogin(login: Login): string {
  return `${Buffer.from(login.text, 'utf8').toString('base64url')}.${login.signature}`;
}

/** Reads the compact form; undefined when it is not one. Accepts a Buffer (aedes hands passwords as Buffers). */
export function decodeLogin(compact: string | Uint8Array): Login | undefined {
  const s = typeof compact === 'string' ? compact : Buffer.from(compact).toString('utf8');
  if (s.length > 2 * MAX_TEXT) return undefined;
  const dot = s.indexOf('.');
  if (dot <= 0 || s.indexOf('.', dot + 1) !== -1) return undefined;
  const b64 = s.slice(0, dot);
  const signature = s.slice(dot + 1);
  if (!BASE64URL.test(b64) || !SIGNATURE.test(signature)) return undefined;
  const bytes = Buffer.from(b64, 'base64url');
  if (bytes.toString('base64url') !== b64) return undefined; // one spelling
  const text = bytes.toString('utf8');
  if (Buffer.from(text, 'utf8').toString('base64url') !== b64) return undefined; // not valid UTF-8
  return { text, signature };
}

/**
 * A challenge an MQTT client makes for itself: a fresh random nonce, issued now, valid for
 * `ttlMs` (the gateway accepts it only within ±60 s of `issued` anyway).
 * @example
 *   const text = selfIssuedChallenge('ward-3', wallet.address);
 *   mqtt.connect(url, { username: wallet.address, password: encodeLogin({ text, signature: await wallet.signMessage(text) }) });
 */
export function selfIssuedChallenge(gateway: string, account: string, nowMs = Date.now(), ttlMs = 60_000): string {
  return challengeText({ gateway, account, purpose: 'mqtt', nonce: randomBytes(16).toString('hex'), issuedAtMs: nowMs, expiresAtMs: nowMs + ttlMs });
}

/**
 * Issues challenges, checks logins and keeps sessions, in memory (a restart forgets sessions
 * and outstanding challenges: researchers log in again).
 */
export class ResearcherAuthenticator {
  readonly gatewayId: string;
  /** Self-issued challenges dated before this instant are refused (nonces seen earlier are forgotten). */
  readonly startedAtMs: number;
  private readonly challengeTtlMs: number;
  private readonly sessionTtlMs: number;
  private readonly skewMs: number;
  private readonly maxPending: number;
  private readonly maxSessions: number;
  private readonly now: () => number;
  /** nonce → the gateway-issued challenge, until it is used or expires. */
  private readonly pending = new Map<string, LoginChallenge>();
  /** nonce → until when it must be remembered as used (after that, the challenge is expired anyway). */
  private readonly used = new Map<string, number>();
  private readonly sessions = new Map<string, Session>();

  /** @throws TypeError for a malformed gatewayId or option. */
  constructor(opts: AuthenticatorOptions) {
    if (!GATEWAY_ID.test(opts.gatewayId)) throw new TypeError(`gatewayId must be 1-64 characters [A-Za-z0-9._-], got "${opts.gatewayId}"`);
    this.gatewayId = opts.gatewayId;
    this.challengeTtlMs = positive('challengeTtlMs', opts.challengeTtlMs ?? 5 * 60_000);
    this.sessionTtlMs = positive('sessionTtlMs', opts.sessionTtlMs ?? 60 * 60_000);
    this.skewMs = positive('selfIssuedSkewMs', opts.selfIssuedSkewMs ?? 60_000);
    this.maxPending = positive('maxPendingChallenges', opts.maxPendingChallenges ?? 10_000);
    this.maxSessions = positive('maxSessionsPerResearcher', opts.maxSessionsPerResearcher ?? 16);
    this.now = opts.now ?? Date.now;
    this.startedAtMs = this.now();
  }

  /**
   * A new challenge for `account` to sign (POST /auth/challenge).
   * @throws TypeError for a malformed address or purpose.
   */
  issueChallenge(account: string, purpose: LoginPurpose): { text: string; challenge: LoginChallenge } {
    if (!isAddress(account)) throw new TypeError(`account must be an Ethereum address, got "${account}"`);
    if (!LOGIN_PURPOSES.includes(purpose)) throw new TypeError(`purpose must be mqtt or http, got "${String(purpose)}"`);
    const now = this.now();
    this.prune(now);
    const challenge: LoginChallenge = { gateway: this.gatewayId, account: getAddress(account), purpose, nonce: randomBytes(16).toString('hex'), issuedAtMs: now, expiresAtMs: now + this.challengeTtlMs };
    this.pending.set(challenge.nonce, challenge);
    while (this.pending.size > this.maxPending) this.pending.delete(this.pending.keys().next().value as string);
    return { text: challengeText(challenge), challenge };
  }

  /**
   * Checks a login for `purpose` and consumes its challenge. In order: form (AUTH_MALFORMED),
   * gateway, purpose, signature, then the challenge's origin and time (AUTH_UNKNOWN_CHALLENGE,
   * AUTH_EXPIRED, AUTH_CLOCK_SKEW) and single use (AUTH_REPLAYED). Only a login that passes
   * everything consumes the challenge.
   */
  verifyLogin(login: Login, purpose: LoginPurpose): LoginResult {
    if (typeof login !== 'object' || login === null || typeof login.text !== 'string' || typeof login.signature !== 'string' || !SIGNATURE.test(login.signature)) {
      return failure('AUTH_MALFORMED', 'expected { text, signature: 0x + 130 hex digits }');
    }
    const c = parseChallenge(login.text);
    if (!c) return failure('AUTH_MALFORMED', 'the text is not a VitalProof researcher login challenge');
    if (c.gateway !== this.gatewayId) return failure('AUTH_WRONG_GATEWAY', `the challenge is for gateway "${c.gateway}", this is "${this.gatewayId}"`);
    if (c.purpose !== purpose) return failure('AUTH_WRONG_PURPOSE', `the challenge is for ${c.purpose}, this login is ${purpose}`);
    let recovered: string;
    try {
      recovered = verifyMessage(login.text, login.signature);
    } catch {
      return failure('AUTH_BAD_SIGNATURE', 'the signature is not a valid secp256k1 signature');
    }
    if (recovered !== c.account) return failure('AUTH_BAD_SIGNATURE', `the signature recovers ${recovered}, the challenge names ${c.account}`);

    const now = this.now();
    this.prune(now);
    if (this.used.has(c.nonce)) return failure('AUTH_REPLAYED', `challenge ${c.nonce} was used already`);
    const issued = this.pending.get(c.nonce);
    let rememberUntil: number;
    if (issued) {
      if (challengeText(issued) !== login.text) return failure('AUTH_UNKNOWN_CHALLENGE', `the text differs from challenge ${c.nonce} as issued`);
      if (now >= c.expiresAtMs) return failure('AUTH_EXPIRED', `challenge ${c.nonce} expired at ${iso(c.expiresAtMs)}`);
      rememberUntil = c.expiresAtMs;
    } else {
      if (purpose !== 'mqtt') return failure('AUTH_UNKNOWN_CHALLENGE', `challenge ${c.nonce} was not issued by this gateway (or it expired, or the gateway restarted)`);
      // Self-issued (MQTT): dated near the gateway clock, after the authenticator started.
      if (c.issuedAtMs > now + this.skewMs) return failure('AUTH_CLOCK_SKEW', `issued ${iso(c.issuedAtMs)}, the gateway clock reads ${iso(now)}`);
      if (c.issuedAtMs < now - this.skewMs) return failure('AUTH_EXPIRED', `issued ${iso(c.issuedAtMs)}, more than ${this.skewMs} ms before ${iso(now)}`);
      if (c.issuedAtMs < this.startedAtMs) return failure('AUTH_EXPIRED', `issued ${iso(c.issuedAtMs)}, before the gateway started at ${iso(this.startedAtMs)}`);
      if (now >= c.expiresAtMs) return failure('AUTH_EXPIRED', `the challenge expired at ${iso(c.expiresAtMs)}`);
      rememberUntil = Math.min(c.expiresAtMs, c.issuedAtMs + this.skewMs + 1);
    }
    this.pending.delete(c.nonce);
    this.used.set(c.nonce, rememberUntil);
    return { ok: true, researcher: c.account, challenge: c };
  }

  /**
   * An MQTT CONNECT: `password` is the compact login (encodeLogin), `username` (when given)
   * must be the account it names.
   */
  verifyMqttLogin(username: string | undefined, password: string | Uint8Array | undefined): LoginResult {
    const login = password === undefined ? undefined : decodeLogin(password);
    if (!login) return failure('AUTH_MALFORMED', 'the MQTT password must be base64url(challenge text) "." 0x-hex signature');
    const r = this.verifyLogin(login, 'mqtt');
    if (r.ok && username !== undefined && username !== '' && username.toLowerCase() !== r.researcher.toLowerCase()) {
      return failure('AUTH_WRONG_ACCOUNT', `username ${username}, the challenge names ${r.researcher}`);
    }
    return r;
  }

  /** An HTTP login (POST /auth/login): a gateway-issued challenge and its signature become a session. */
  login(login: Login): SessionResult {
    const r = this.verifyLogin(login, 'http');
    if (!r.ok) return r;
    const now = this.now();
    const session: Session = { token: randomBytes(32).toString('base64url'), researcher: r.researcher, issuedAtMs: now, expiresAtMs: now + this.sessionTtlMs };
    this.sessions.set(session.token, session);
    const mine = [...this.sessions.values()].filter((s) => s.researcher === r.researcher);
    for (const s of mine.slice(0, Math.max(0, mine.length - this.maxSessions))) this.sessions.delete(s.token);
    return { ok: true, session: { ...session } };
  }

  /** The session of a bearer token (`Authorization: Bearer <token>`). */
  session(token: string): SessionResult {
    const s = typeof token === 'string' ? this.sessions.get(token) : undefined;
    if (!s) return failure('AUTH_UNKNOWN_SESSION', 'no session has this token');
    if (this.now() >= s.expiresAtMs) {
      this.sessions.delete(token);
      return failure('AUTH_SESSION_EXPIRED', `the session expired at ${iso(s.expiresAtMs)}`);
    }
    return { ok: true, session: { ...s } };
  }

  /** Ends a session (logout); true when there was one. */
  logout(token: string): boolean {
    return this.sessions.delete(token);
  }

  /** Ends every session of a researcher (e.g. when their last grant is revoked); returns how many. */
  endSessionsOf(researcher: string): number {
    let n = 0;
    for (const [t, s] of this.sessions) {
      if (s.researcher.toLowerCase() === researcher.toLowerCase()) {
        this.sessions.delete(t);
        n++;
      }
    }
    return n;
  }

  /** Sizes of the in-memory tables (for status). */
  stats(): { pendingChallenges: number; usedNonces: number; sessions: number } {
    this.prune(this.now());
    return { pendingChallenges: this.pending.size, usedNonces: this.used.size, sessions: this.sessions.size };
  }

  private prune(now: number): void {
    for (const [n, c] of this.pending) if (now >= c.expiresAtMs) this.pending.delete(n);
    for (const [n, until] of this.used) if (now >= until) this.used.delete(n);
    for (const [t, s] of this.sessions) if (now >= s.expiresAtMs) this.sessions.delete(t);
  }
}

function failure(code: AuthErrorCode, detail: string): AuthFailure {
  return { ok: false, code, message: `${code}: ${AUTH_ERRORS[code]} (${detail})` };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function positive(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`${name} must be a positive integer, got ${v}`);
  return v;
}
