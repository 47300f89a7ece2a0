/**
 * Researcher sessions that outlive a hub instance (docs/fleet.md, "Researcher sessions across
 * hubs"). The hub instances of one hospital share a secret (hub.authSecretFile). With it:
 *
 *   challenges  are MAC'd with that secret (./auth.ts, challengeMac): a challenge issued by one
 *               instance verifies at another, and after a restart.
 *   sessions    are signed tokens that carry their own claims (signSession / openSession): the
 *               researcher, when issued, when they expire and a random id, under
 *               HMAC-SHA256(secret). Any instance verifies one; none keeps a table of them.
 *   the rest    what a signature cannot say (a session ended early, a challenge already used)
 *               is a small shared state (SharedAuthState): each instance records its own
 *               events and hears the others' through the hospital broker (gateway/hub/auth-share.ts),
 *               each kept only until what it guards would have expired anyway.
 *
 * Why signed tokens and not a shared session table: a session is checked on every API request,
 * and a signature check is local and costs microseconds, where a table in the broker would be
 * read over the network; only the rare events (logout, a login) travel. What a peer has not yet
 * heard is the residual window: a login replayed at another instance, or a logged-out token used
 * there, within the broker's propagation delay (milliseconds on a hospital network; docs/fleet.md).
 *
 * The token is one base64url word (the API's bearer syntax, gateway/research/http.ts), 114
 * characters: version 1 ‖ id (16 bytes) ‖ researcher (20) ‖ issued ms (8, big-endian) ‖
 * expires ms (8) ‖ HMAC-SHA256(secret, domain ‖ gatewayId ‖ those bytes) (32).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { getAddress } from 'ethers';

/** Domain separation: this MAC signs session tokens only (challengeMac has its own). */
const TOKEN_DOMAIN = 'VitalProof session token v1';
const VERSION = 1;
const ID_BYTES = 16;
const CLAIMS_BYTES = 1 + ID_BYTES + 20 + 8 + 8;
const MAC_BYTES = 32;
/** Length of a signed token in base64url characters. */
export const SIGNED_TOKEN_CHARS = Math.ceil(((CLAIMS_BYTES + MAC_BYTES) * 4) / 3);

/** What a signed token says. */
export interface SessionClaims {
  /** 32 hex digits: names the session in a logout. */
  id: string;
  /** EIP-55 checksummed. */
  researcher: string;
  issuedAtMs: number;
  expiresAtMs: number;
}

function tokenMac(secret: Uint8Array, gatewayId: string, claims: Buffer): Buffer {
  return createHmac('sha256', secret).update(`${TOKEN_DOMAIN}\n${gatewayId}\n`).update(claims).digest();
}

/** The bearer token of a session, signed for the service `gatewayId`. */
export function signSession(
  secret: Uint8Array,
  gatewayId: string,
  researcher: string,
  issuedAtMs: number,
  expiresAtMs: number,
): { token: string; claims: SessionClaims } {
  const id = randomBytes(ID_BYTES);
  const claims = Buffer.alloc(CLAIMS_BYTES);
  claims.writeUInt8(VERSION, 0);
  id.copy(claims, 1);
  Buffer.from(getAddress(researcher).slice(2), 'hex').copy(claims, 1 + ID_BYTES);
  claims.writeBigUInt64BE(BigInt(issuedAtMs), 1 + ID_BYTES + 20);
  claims.writeBigUInt64BE(BigInt(expiresAtMs), 1 + ID_BYTES + 28);
  const token = Buffer.concat([claims, tokenMac(secret, gatewayId, claims)]).toString('base64url');
  return { token, claims: { id: id.toString('hex'), researcher: getAddress(researcher), issuedAtMs, expiresAtMs } };
}

/** The claims of a token this service signed; undefined for anything else (no detail: a forger learns nothing). */
export function openSession(secret: Uint8Array, gatewayId: string, token: string): SessionClaims | undefined {
  if (typeof token !== 'string' || token.length !== SIGNED_TOKEN_CHARS) return undefined;
  const bytes = Buffer.from(token, 'base64url');
  if (bytes.length !== CLAIMS_BYTES + MAC_BYTES || bytes.toString('base64url') !== token) return undefined;
  const claims = bytes.subarray(0, CLAIMS_BYTES);
  if (claims.readUInt8(0) !== VERSION) return undefined;
  if (!timingSafeEqual(bytes.subarray(CLAIMS_BYTES), tokenMac(secret, gatewayId, claims))) return undefined;
  return {
    id: claims.subarray(1, 1 + ID_BYTES).toString('hex'),
    researcher: getAddress(`0x${claims.subarray(1 + ID_BYTES, 1 + ID_BYTES + 20).toString('hex')}`),
    issuedAtMs: Number(claims.readBigUInt64BE(1 + ID_BYTES + 20)),
    expiresAtMs: Number(claims.readBigUInt64BE(1 + ID_BYTES + 28)),
  };
}

/**
 * One event of the shared state, as it travels between instances (gateway/hub/auth-share.ts).
 * Each holds until `untilMs`: after that what it guards has expired anyway.
 */
export type AuthEvent =
  /** A challenge's nonce was used for a login: a replay anywhere is AUTH_REPLAYED. */
  | { kind: 'nonce'; nonce: string; untilMs: number }
  /** One session was logged out. */
  | { kind: 'ended'; id: string; untilMs: number }
  /** Every session of `researcher` issued at or before `beforeMs` was logged out (logout ?all=1). */
  | { kind: 'ended-all'; researcher: string; beforeMs: number; untilMs: number };

export interface SharedAuthStats {
  /** Whether this instance has read the state the others left (logins wait for it: AUTH_BUSY). */
  ready: boolean;
  usedNonces: number;
  endedSessions: number;
  endedAll: number;
  /** Events recorded here / heard from other instances since start. */
  recorded: number;
  heard: number;
}

/**
 * The shared part of the login state, in memory at each instance: used nonces, ended sessions,
 * and per-researcher "ended before" marks. Local events go to `sink` (the broker link sets it);
 * the link hands in what it hears with `heard` and says when it has read the retained state with
 * `setReady`. Bounded by time, not by count: every entry comes from a login whose signature
 * verified (at most the login budget, recoveriesPerS, per instance) and leaves when it expires.
 */
export class SharedAuthState {
  /** Where this instance's own events go; set by the broker link. */
  sink: ((e: AuthEvent) => void) | undefined;
  private readonly nonces = new Map<string, number>();
  private readonly ended = new Map<string, number>();
  private readonly endedAll = new Map<string, { beforeMs: number; untilMs: number }>();
  private ready = false;
  private recorded = 0;
  private heardCount = 0;
  private nextPrune = 0;

  constructor(private readonly now: () => number = Date.now) {}

  setReady(ready: boolean): void {
    this.ready = ready;
  }

  isReady(): boolean {
    return this.ready;
  }

  /** An event of this instance: applied here and sent to the others. */
  record(e: AuthEvent): void {
    this.recorded++;
    this.apply(e);
    this.sink?.(e);
  }

  /** An event heard from an instance (or this one's own, echoed back by the broker). */
  heard(e: AuthEvent): void {
    this.heardCount++;
    this.apply(e);
  }

  nonceUsed(nonce: string): boolean {
    this.prune();
    return this.nonces.has(nonce);
  }

  /** Whether the session was logged out (by itself, or by a logout of all its researcher's sessions). */
  sessionEnded(c: SessionClaims): boolean {
    this.prune();
    if (this.ended.has(c.id)) return true;
    const all = this.endedAll.get(c.researcher.toLowerCase());
    return all !== undefined && c.issuedAtMs <= all.beforeMs;
  }

  /** Everything still in force, as events (the link tells them again after a reconnect). */
  events(): AuthEvent[] {
    this.prune(true);
    return [
      ...[...this.nonces].map(([nonce, untilMs]): AuthEvent => ({ kind: 'nonce', nonce, untilMs })),
      ...[...this.ended].map(([id, untilMs]): AuthEvent => ({ kind: 'ended', id, untilMs })),
      ...[...this.endedAll].map(([researcher, v]): AuthEvent => ({ kind: 'ended-all', researcher, ...v })),
    ];
  }

  stats(): SharedAuthStats {
    this.prune(true);
    return {
      ready: this.ready,
      usedNonces: this.nonces.size,
      endedSessions: this.ended.size,
      endedAll: this.endedAll.size,
      recorded: this.recorded,
      heard: this.heardCount,
    };
  }

  private apply(e: AuthEvent): void {
    if (e.untilMs <= this.now()) return;
    if (e.kind === 'nonce') this.nonces.set(e.nonce, Math.max(e.untilMs, this.nonces.get(e.nonce) ?? 0));
    else if (e.kind === 'ended') this.ended.set(e.id, Math.max(e.untilMs, this.ended.get(e.id) ?? 0));
    else {
      const key = e.researcher.toLowerCase();
      const had = this.endedAll.get(key);
      this.endedAll.set(key, { beforeMs: Math.max(e.beforeMs, had?.beforeMs ?? 0), untilMs: Math.max(e.untilMs, had?.untilMs ?? 0) });
    }
  }

  /** Drops what has expired, at most once a second unless forced. */
  private prune(force = false): void {
    const now = this.now();
    if (!force && now < this.nextPrune) return;
    this.nextPrune = now + 1000;
    for (const [k, until] of this.nonces) if (until <= now) this.nonces.delete(k);
    for (const [k, until] of this.ended) if (until <= now) this.ended.delete(k);
    for (const [k, v] of this.endedAll) if (v.untilMs <= now) this.endedAll.delete(k);
  }
}
