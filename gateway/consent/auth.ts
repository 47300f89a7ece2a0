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
 *   gateway-issued   issueChallenge(account, purpose): stateless. The nonce is 6 random bytes
 *                    followed by the first 10 bytes of HMAC-SHA256(secret, gateway, account,
 *                    purpose, issued, expires, random) (challengeMac), under a secret drawn at
 *                    random when the authenticator starts. A login proves the gateway issued its
 *                    challenge by that MAC alone: no table of pending challenges, so no flood of
 *                    POST /auth/challenge can push a researcher's challenge out (issue #10, 5).
 *                    Valid until its expiry (default 5 min). HTTP logins must use one
 *                    (AUTH_UNKNOWN_CHALLENGE otherwise).
 *   self-issued      an MQTT client writes the text itself with a fresh random nonce and the
 *                    current time, so that it can log in with nothing but its key: accepted only
 *                    for purpose "mqtt", while the gateway's clock is within ±60 s of `issued`,
 *                    and never for a text issued before the authenticator started (a restart
 *                    forgets the nonces seen, so older logins could otherwise be replayed).
 * Either way a challenge is accepted once: a replayed login fails AUTH_REPLAYED.
 *
 * Cheap checks before expensive ones (issue #10, 2). Recovering the signer of a secp256k1
 * signature costs about 2-6 ms of CPU here; a MAC check, a parse and a map look-up cost
 * microseconds. So verifyLogin checks the form, gateway, purpose, the MAC (or, for a
 * self-issued text, its dates), expiry and single use first, and recovers a signature only for a
 * challenge that passed all of them, within a budget: gateway-issued challenges draw on
 * `recoveriesPerS` (a global bucket), self-issued ones, which anybody can write, on a smaller
 * budget of their own (`selfIssuedPerS`) and one per account (and per source address when the
 * transport gives one). A spent budget answers AUTH_BUSY without recovering anything: logins
 * wait, devices do not (their PUBACKs share the event loop). `stats().recoveries` counts the
 * recoveries done.
 *
 * Why the secret is random per start and not kept in the data dir: the used-nonce set is in
 * memory. With a persisted secret, a challenge used just before a restart would verify again
 * after it and could be replayed until it expires; with a fresh secret every challenge issued
 * before the restart fails its MAC (AUTH_UNKNOWN_CHALLENGE), and a researcher asks for a new one.
 * Logins are rare (one an hour per researcher): that cost is small. Hub instances that share a
 * secret file (hub.authSecretFile) share the used-nonce set too, through the hospital broker, so
 * that the same argument holds across instances and restarts (./shared-auth.ts; docs/fleet.md).
 *
 * Single use without eviction. A nonce enters the used set only after its MAC (or dates) and
 * its signature verified, and is forgotten when its challenge expires. Nothing else ever enters,
 * so forged logins cannot fill it, and the set holds at most recoveries-per-second × challenge
 * life entries; a set that is full anyway (maxUsedNonces) refuses new logins with AUTH_BUSY
 * rather than forget a used nonce (which would let it be replayed).
 *
 * A login over HTTP becomes a session: an opaque random bearer token bound to the address,
 * valid for an hour by default, ended early by logout (one session, or every session of the
 * address). Addresses the chain knows (`admitted`: a grantee or a bound patient) keep up to
 * maxSessionsPerResearcher sessions each; any other key (a free Ethereum key can sign a
 * login) shares a small pool of maxUnadmittedSessions, oldest ended first, so a stranger's
 * logins can never crowd out the sessions of those who have grants. Over MQTT the password is
 * the login itself, in the compact form `base64url(challenge text) "." 0x-hex signature`
 * (encodeLogin / decodeLogin), and the username is the account's address.
 *
 * Verdicts, not exceptions, for anything a client sends: { ok: false, code, message }.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { getAddress, isAddress, verifyMessage } from 'ethers';
import type { Remedies } from '../../firmware-proto/coded-error.js';
import { KeyedBuckets, TokenBucket } from '../util/token-bucket.js';
import { openSession, signSession, type SharedAuthState, type SharedAuthStats } from './shared-auth.js';

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
  AUTH_BUSY:
    "the gateway's budget of login signature checks is spent for now (a flood of logins, or many logins for one account): retry in a few seconds; a self-issued MQTT login can use a gateway-issued challenge instead",
} as const;
export type AuthErrorCode = keyof typeof AUTH_ERRORS;

/** What to do about each code: docs/consent.md, "Logins". */
export const AUTH_ERROR_REMEDIES: Remedies<AuthErrorCode> = {
  AUTH_MALFORMED: 'Sign the exact challenge text; send `base64url(text).0x…` as the MQTT password.',
  AUTH_BAD_SIGNATURE: "Sign with the account's key, over the exact text.",
  AUTH_WRONG_ACCOUNT: 'Use the address as the MQTT username, or leave it empty.',
  AUTH_WRONG_GATEWAY: 'Ask this gateway for a challenge, or use its id.',
  AUTH_WRONG_PURPOSE: '`mqtt` for MQTT, `http` for the API.',
  AUTH_UNKNOWN_CHALLENGE: '`POST /auth/challenge` again.',
  AUTH_EXPIRED: 'Make a fresh challenge.',
  AUTH_CLOCK_SKEW: 'Fix the client clock.',
  AUTH_REPLAYED: 'Every login needs a fresh challenge.',
  AUTH_UNKNOWN_SESSION: 'Log in again.',
  AUTH_SESSION_EXPIRED: 'Log in again.',
  AUTH_BUSY: 'Retry after `Retry-After`; over MQTT (CONNACK 3), retry later or use a gateway-issued `mqtt` challenge.',
};

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
  /** The bearer token: 43 base64url characters (32 random bytes); with shared sessions a signed token (./shared-auth.ts). */
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
  /** Sessions per admitted address at most (the oldest are ended). Default 16. */
  maxSessionsPerResearcher?: number;
  /** Sessions of addresses that are not `admitted`, all together (the oldest are ended). Default 256. */
  maxUnadmittedSessions?: number;
  /**
   * Whether the chain knows an address (a grantee, a bound patient): its sessions do not come
   * out of the small shared pool. Asked once per successful login. Default: everyone is admitted.
   */
  admitted?: (address: string) => boolean;
  /** Used nonces remembered at most; when full, logins are refused AUTH_BUSY until some expire. Default 16,384. */
  maxUsedNonces?: number;
  /** Signature recoveries per second for gateway-issued challenges (burst: twice as many). Default 10. */
  recoveriesPerS?: number;
  /** Signature recoveries per second for self-issued MQTT challenges, all accounts together (burst: twice). Default 5. */
  selfIssuedPerS?: number;
  /** ... and per account, and per source address when known (burst 5). Default 1. */
  selfIssuedPerKeyPerS?: number;
  /** The MAC key of gateway-issued challenges (32 bytes). Default: random, drawn at construction. */
  secret?: Uint8Array;
  /**
   * Hub instances that share `secret` (hub.authSecretFile; ./shared-auth.ts): sessions become
   * signed tokens any of them verifies, and used nonces and logouts are recorded in this state,
   * which the hub shares through the hospital broker. Requires `secret`.
   */
  shared?: SharedAuthState;
  now?: () => number;
}

/** Bytes of the nonce: random part, then truncated MAC (16 in all: the 32 hex digits of NONCE). */
const NONCE_RANDOM_BYTES = 6;
const NONCE_MAC_BYTES = 10;
/** Domain separation of challengeMac: this MAC is for nothing else. */
const MAC_DOMAIN = 'VitalProof login challenge MAC v1';

/**
 * The MAC part of a gateway-issued nonce: the first 10 bytes of HMAC-SHA256(secret, domain ‖
 * gateway ‖ account ‖ purpose ‖ issued ‖ expires ‖ random), newline-separated (no field can
 * hold a newline, so the encoding is unambiguous). 80 bits: guessing one takes 2^80 tries.
 */
export function challengeMac(secret: Uint8Array, c: Omit<LoginChallenge, 'nonce'>, random: Buffer): Buffer {
  const h = createHmac('sha256', secret);
  h.update([MAC_DOMAIN, c.gateway, c.account, c.purpose, String(c.issuedAtMs), String(c.expiresAtMs), random.toString('hex')].join('\n'));
  return h.digest().subarray(0, NONCE_MAC_BYTES);
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
  for (const [k, v] of [
    ['issuedAtMs', c.issuedAtMs],
    ['expiresAtMs', c.expiresAtMs],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > 8.64e15) throw new TypeError(`${k} must be a Unix time in ms, got ${v}`);
  }
  return formatChallenge({ ...c, account: getAddress(c.account) });
}

/** The eight lines of a challenge whose fields are known good (account checksummed): no checks, no hashing. */
function formatChallenge(c: LoginChallenge): string {
  return [
    LOGIN_TITLE,
    LOGIN_NOTICE,
    `gateway: ${c.gateway}`,
    `account: ${c.account}`,
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

/** Sizes and counters of the authenticator (for /status). */
export interface AuthStats {
  /** Nonces remembered as used (each from a login whose signature verified). */
  usedNonces: number;
  sessions: number;
  /** Sessions of addresses the chain does not know (the shared pool). */
  unadmittedSessions: number;
  /** secp256k1 signature recoveries done since start (the expensive step of a login). */
  recoveries: number;
  /** Logins refused AUTH_BUSY since start, before any recovery. */
  busy: number;
  /** With shared sessions (./shared-auth.ts): the shared state (`sessions` then counts none: tokens are not kept). */
  shared?: SharedAuthStats;
}

interface SessionEntry extends Session {
  admitted: boolean;
}

/**
 * Issues challenges, checks logins and keeps sessions, in memory (a restart forgets sessions
 * and invalidates every challenge: researchers log in again).
 */
export class ResearcherAuthenticator {
  readonly gatewayId: string;
  /** Self-issued challenges dated before this instant are refused (nonces seen earlier are forgotten). */
  readonly startedAtMs: number;
  private readonly challengeTtlMs: number;
  private readonly sessionTtlMs: number;
  private readonly skewMs: number;
  private readonly maxSessions: number;
  private readonly maxUnadmitted: number;
  private readonly maxUsed: number;
  private readonly admitted: (address: string) => boolean;
  private readonly secret: Uint8Array;
  private readonly shared: SharedAuthState | undefined;
  private readonly now: () => number;
  private readonly issuedBudget: TokenBucket;
  private readonly selfIssuedBudget: TokenBucket;
  private readonly selfIssuedPerKey: KeyedBuckets;
  /** nonce → until when it must be remembered as used (after that, the challenge is expired anyway). */
  private readonly used = new Map<string, number>();
  /** The earliest `until` in `used`: pruning is skipped until then. */
  private usedNextExpiry = Infinity;
  private readonly sessions = new Map<string, SessionEntry>();
  private unadmittedCount = 0;
  private recoveries = 0;
  private busy = 0;

  /** @throws TypeError for a malformed gatewayId or option. */
  constructor(opts: AuthenticatorOptions) {
    if (!GATEWAY_ID.test(opts.gatewayId)) throw new TypeError(`gatewayId must be 1-64 characters [A-Za-z0-9._-], got "${opts.gatewayId}"`);
    this.gatewayId = opts.gatewayId;
    this.challengeTtlMs = positive('challengeTtlMs', opts.challengeTtlMs ?? 5 * 60_000);
    this.sessionTtlMs = positive('sessionTtlMs', opts.sessionTtlMs ?? 60 * 60_000);
    this.skewMs = positive('selfIssuedSkewMs', opts.selfIssuedSkewMs ?? 60_000);
    this.maxSessions = positive('maxSessionsPerResearcher', opts.maxSessionsPerResearcher ?? 16);
    this.maxUnadmitted = positive('maxUnadmittedSessions', opts.maxUnadmittedSessions ?? 256);
    this.maxUsed = positive('maxUsedNonces', opts.maxUsedNonces ?? 16_384);
    this.admitted = opts.admitted ?? (() => true);
    if (opts.secret !== undefined && opts.secret.length < 32) throw new TypeError(`secret must be at least 32 bytes, got ${opts.secret.length}`);
    if (opts.shared && !opts.secret) throw new TypeError('shared sessions need the secret the instances share');
    this.secret = opts.secret ?? randomBytes(32);
    this.shared = opts.shared;
    this.now = opts.now ?? Date.now;
    this.startedAtMs = this.now();
    const rate = (name: string, v: number): number => {
      if (!(Number.isFinite(v) && v > 0)) throw new TypeError(`${name} must be a positive number, got ${v}`);
      return v;
    };
    const issued = rate('recoveriesPerS', opts.recoveriesPerS ?? 10);
    const self = rate('selfIssuedPerS', opts.selfIssuedPerS ?? 5);
    const perKey = rate('selfIssuedPerKeyPerS', opts.selfIssuedPerKeyPerS ?? 1);
    this.issuedBudget = new TokenBucket({ ratePerS: issued, burst: Math.max(1, Math.ceil(2 * issued)), now: this.now });
    this.selfIssuedBudget = new TokenBucket({ ratePerS: self, burst: Math.max(1, Math.ceil(2 * self)), now: this.now });
    this.selfIssuedPerKey = new KeyedBuckets({ ratePerS: perKey, burst: 5, maxKeys: 10_000, now: this.now });
  }

  /**
   * A new challenge for `account` to sign (POST /auth/challenge). Stateless: nothing is stored.
   * @throws TypeError for a malformed address or purpose.
   */
  issueChallenge(account: string, purpose: LoginPurpose): { text: string; challenge: LoginChallenge } {
    if (!LOGIN_PURPOSES.includes(purpose)) throw new TypeError(`purpose must be mqtt or http, got "${String(purpose)}"`);
    let checksummed: string;
    try {
      checksummed = getAddress(account); // the one keccak of an issue: anyone may ask for challenges
    } catch {
      throw new TypeError(`account must be an Ethereum address, got "${account}"`);
    }
    const now = this.now();
    const fields = { gateway: this.gatewayId, account: checksummed, purpose, issuedAtMs: now, expiresAtMs: now + this.challengeTtlMs };
    const random = randomBytes(NONCE_RANDOM_BYTES);
    const challenge: LoginChallenge = { ...fields, nonce: Buffer.concat([random, challengeMac(this.secret, fields, random)]).toString('hex') };
    return { text: formatChallenge(challenge), challenge };
  }

  /** Whether this gateway issued `c` (its nonce's MAC verifies): microseconds, no state. */
  issuedHere(c: LoginChallenge): boolean {
    const n = Buffer.from(c.nonce, 'hex');
    const random = n.subarray(0, NONCE_RANDOM_BYTES);
    return timingSafeEqual(n.subarray(NONCE_RANDOM_BYTES), challengeMac(this.secret, c, random));
  }

  /**
   * Checks a login for `purpose` and consumes its challenge. In order, cheap to expensive: form
   * (AUTH_MALFORMED), gateway, purpose, origin (the MAC of a gateway-issued challenge; the dates
   * of a self-issued one: AUTH_UNKNOWN_CHALLENGE, AUTH_EXPIRED, AUTH_CLOCK_SKEW), single use
   * (AUTH_REPLAYED), room and budget (AUTH_BUSY), and only then the signature
   * (AUTH_BAD_SIGNATURE). Only a login that passes everything consumes the challenge.
   * @param source the client's address when the transport knows it: self-issued logins are also
   *   budgeted per source.
   */
  verifyLogin(login: Login, purpose: LoginPurpose, source?: string): LoginResult {
    if (
      typeof login !== 'object' ||
      login === null ||
      typeof login.text !== 'string' ||
      typeof login.signature !== 'string' ||
      !SIGNATURE.test(login.signature)
    ) {
      return failure('AUTH_MALFORMED', 'expected { text, signature: 0x + 130 hex digits }');
    }
    const c = parseChallenge(login.text);
    if (!c) return failure('AUTH_MALFORMED', 'the text is not a VitalProof researcher login challenge');
    if (c.gateway !== this.gatewayId) return failure('AUTH_WRONG_GATEWAY', `the challenge is for gateway "${c.gateway}", this is "${this.gatewayId}"`);
    if (c.purpose !== purpose) return failure('AUTH_WRONG_PURPOSE', `the challenge is for ${c.purpose}, this login is ${purpose}`);

    const now = this.now();
    const issued = this.issuedHere(c);
    let rememberUntil: number;
    if (issued) {
      if (now >= c.expiresAtMs) return failure('AUTH_EXPIRED', `challenge ${c.nonce} expired at ${iso(c.expiresAtMs)}`);
      rememberUntil = c.expiresAtMs;
    } else {
      if (purpose !== 'mqtt') return failure('AUTH_UNKNOWN_CHALLENGE', `challenge ${c.nonce} was not issued by this gateway (or the gateway restarted since)`);
      // Self-issued (MQTT): dated near the gateway clock, after the authenticator started.
      if (c.issuedAtMs > now + this.skewMs) return failure('AUTH_CLOCK_SKEW', `issued ${iso(c.issuedAtMs)}, the gateway clock reads ${iso(now)}`);
      if (c.issuedAtMs < now - this.skewMs) return failure('AUTH_EXPIRED', `issued ${iso(c.issuedAtMs)}, more than ${this.skewMs} ms before ${iso(now)}`);
      if (c.issuedAtMs < this.startedAtMs)
        return failure('AUTH_EXPIRED', `issued ${iso(c.issuedAtMs)}, before the gateway started at ${iso(this.startedAtMs)}`);
      if (now >= c.expiresAtMs) return failure('AUTH_EXPIRED', `the challenge expired at ${iso(c.expiresAtMs)}`);
      rememberUntil = Math.min(c.expiresAtMs, c.issuedAtMs + this.skewMs + 1);
    }
    this.pruneUsed(now);
    if (this.used.has(c.nonce) || this.shared?.nonceUsed(c.nonce)) return failure('AUTH_REPLAYED', `challenge ${c.nonce} was used already`);
    if (this.shared && !this.shared.isReady()) return this.refuseBusy('the shared login state has not been read from the hospital broker yet');
    if (this.used.size >= this.maxUsed) return this.refuseBusy(`${this.used.size} used challenges are remembered until they expire (maxUsedNonces)`);
    if (issued) {
      if (!this.issuedBudget.take())
        return this.refuseBusy(`signature checks for gateway-issued challenges are spent; next in ${this.issuedBudget.retryAfterMs()} ms`);
    } else {
      if (!this.selfIssuedPerKey.take(`account:${c.account}`)) return this.refuseBusy(`self-issued logins for ${c.account} come too fast`);
      if (source !== undefined && !this.selfIssuedPerKey.take(`source:${source}`)) return this.refuseBusy('self-issued logins from this address come too fast');
      if (!this.selfIssuedBudget.take())
        return this.refuseBusy(`signature checks for self-issued challenges are spent; next in ${this.selfIssuedBudget.retryAfterMs()} ms`);
    }

    let recovered: string;
    this.recoveries++;
    try {
      recovered = verifyMessage(login.text, login.signature);
    } catch {
      return failure('AUTH_BAD_SIGNATURE', 'the signature is not a valid secp256k1 signature');
    }
    if (recovered !== c.account) return failure('AUTH_BAD_SIGNATURE', `the signature recovers ${recovered}, the challenge names ${c.account}`);
    this.used.set(c.nonce, rememberUntil);
    this.usedNextExpiry = Math.min(this.usedNextExpiry, rememberUntil);
    this.shared?.record({ kind: 'nonce', nonce: c.nonce, untilMs: rememberUntil });
    return { ok: true, researcher: c.account, challenge: c };
  }

  /**
   * An MQTT CONNECT: `password` is the compact login (encodeLogin), `username` (when given)
   * must be the account it names; `source` is the client's address when known.
   */
  verifyMqttLogin(username: string | undefined, password: string | Uint8Array | undefined, source?: string): LoginResult {
    const login = password === undefined ? undefined : decodeLogin(password);
    if (!login) return failure('AUTH_MALFORMED', 'the MQTT password must be base64url(challenge text) "." 0x-hex signature');
    const r = this.verifyLogin(login, 'mqtt', source);
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
    if (this.shared) {
      // A signed token costs no memory here: nothing to cap (the login budget bounds the rate).
      const { token } = signSession(this.secret, this.gatewayId, r.researcher, now, now + this.sessionTtlMs);
      return { ok: true, session: { token, researcher: r.researcher, issuedAtMs: now, expiresAtMs: now + this.sessionTtlMs } };
    }
    this.pruneSessions(now);
    const admitted = this.admitted(r.researcher);
    const entry: SessionEntry = {
      token: randomBytes(32).toString('base64url'),
      researcher: r.researcher,
      issuedAtMs: now,
      expiresAtMs: now + this.sessionTtlMs,
      admitted,
    };
    this.sessions.set(entry.token, entry);
    if (admitted) {
      const mine = [...this.sessions.values()].filter((s) => s.researcher === r.researcher);
      for (const s of mine.slice(0, Math.max(0, mine.length - this.maxSessions))) this.end(s.token);
    } else {
      this.unadmittedCount++;
      // The oldest sessions of unknown addresses make room (Map order is oldest first).
      for (const [t, s] of this.sessions) {
        if (this.unadmittedCount <= this.maxUnadmitted) break;
        if (!s.admitted) this.end(t);
      }
    }
    return { ok: true, session: publicSession(entry) };
  }

  /** The session of a bearer token (`Authorization: Bearer <token>`). */
  session(token: string): SessionResult {
    if (this.shared) return this.signedSession(token);
    const s = typeof token === 'string' ? this.sessions.get(token) : undefined;
    if (!s) return failure('AUTH_UNKNOWN_SESSION', 'no session has this token');
    if (this.now() >= s.expiresAtMs) {
      this.end(token);
      return failure('AUTH_SESSION_EXPIRED', `the session expired at ${iso(s.expiresAtMs)}`);
    }
    return { ok: true, session: publicSession(s) };
  }

  /** Ends a session (logout); true when there was one. */
  logout(token: string): boolean {
    if (this.shared) {
      const r = this.signedSession(token);
      if (!r.ok) return false;
      this.shared.record({ kind: 'ended', id: openSession(this.secret, this.gatewayId, token)!.id, untilMs: r.session.expiresAtMs });
      return true;
    }
    return this.end(token);
  }

  /** Ends every session of a researcher (logout everywhere, a leaked token; or their last grant revoked); returns how many. */
  endSessionsOf(researcher: string): number {
    if (this.shared) {
      // Tokens are not kept, so they cannot be counted: every one issued until now ends (1 stands for them).
      const now = this.now();
      this.shared.record({ kind: 'ended-all', researcher: getAddress(researcher), beforeMs: now, untilMs: now + this.sessionTtlMs });
      return 1;
    }
    let n = 0;
    for (const [t, s] of this.sessions) {
      if (s.researcher.toLowerCase() === researcher.toLowerCase() && this.end(t)) n++;
    }
    return n;
  }

  /** Sizes of the in-memory tables and the work counters (for status). */
  stats(): AuthStats {
    const now = this.now();
    this.pruneUsed(now);
    this.pruneSessions(now);
    return {
      usedNonces: this.used.size,
      sessions: this.sessions.size,
      unadmittedSessions: this.unadmittedCount,
      recoveries: this.recoveries,
      busy: this.busy,
      ...(this.shared ? { shared: this.shared.stats() } : {}),
    };
  }

  /** A signed token's session: its MAC, its expiry, and whether it was logged out anywhere. */
  private signedSession(token: string): SessionResult {
    const c = openSession(this.secret, this.gatewayId, token);
    if (!c) return failure('AUTH_UNKNOWN_SESSION', 'no session has this token');
    if (this.now() >= c.expiresAtMs) return failure('AUTH_SESSION_EXPIRED', `the session expired at ${iso(c.expiresAtMs)}`);
    if (this.shared!.sessionEnded(c)) return failure('AUTH_UNKNOWN_SESSION', 'the session was logged out');
    return { ok: true, session: { token, researcher: c.researcher, issuedAtMs: c.issuedAtMs, expiresAtMs: c.expiresAtMs } };
  }

  private refuseBusy(detail: string): AuthFailure {
    this.busy++;
    return failure('AUTH_BUSY', detail);
  }

  private end(token: string): boolean {
    const s = this.sessions.get(token);
    if (!s) return false;
    this.sessions.delete(token);
    if (!s.admitted) this.unadmittedCount--;
    return true;
  }

  private pruneUsed(now: number): void {
    if (now < this.usedNextExpiry) return;
    let next = Infinity;
    for (const [n, until] of this.used) {
      if (now >= until) this.used.delete(n);
      else next = Math.min(next, until);
    }
    this.usedNextExpiry = next;
  }

  private pruneSessions(now: number): void {
    for (const [t, s] of this.sessions) if (now >= s.expiresAtMs) this.end(t);
  }
}

function publicSession(s: SessionEntry): Session {
  return { token: s.token, researcher: s.researcher, issuedAtMs: s.issuedAtMs, expiresAtMs: s.expiresAtMs };
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
