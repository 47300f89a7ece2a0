/**
 * The MQTT CONNECT decision (PROTOCOL.md §6.1), apart from the broker: given the client id,
 * user name and password of a CONNECT packet, the registry and the gateway clock, accept the
 * device or name the first check it fails. No sockets and no MQTT here, so the connect
 * vectors (firmware-proto/vectors/connect/) run against exactly the code the broker uses.
 *
 * The checks, in the order of §6.1 (the first failing one gives the reason):
 *
 *   1 user name is a device id, password is an 88-byte token, client id is vp-dev-<id>  CONNECT_MALFORMED
 *   2 the device is enrolled, with a key that passes the rule of §2.2                   CONNECT_UNKNOWN_DEVICE
 *   3 not revoked: refused if revokedAt ≤ gateway time                                   CONNECT_REVOKED
 *   4 the token signature verifies under the enrolled key (§5.2), over the client id     CONNECT_BAD_SIGNATURE
 *     of this packet
 *   5 |timestamp − gateway time| ≤ window, and timestamp ≥ gateway start                 CONNECT_STALE
 *   6 the nonce was not accepted before                                                 CONNECT_REPLAYED
 *
 * Step 2 checks the key rule itself, though the registries already leave refused keys out:
 * under a small-order key such as the identity point, OpenSSL accepts the signature
 * R = identity, S = 0 for every message (firmware-proto/vectors/keys/small-order-identity.json),
 * so a registry that ever served one would let anyone connect as that device. A key that
 * breaks the rule is no enrolment, hence CONNECT_UNKNOWN_DEVICE. The check is memoised per
 * key, and only keys of enrolled devices reach it, so its cost is bounded by the registry.
 */
import { parseConnectPassword, connectSigningMessage } from '../../../firmware-proto/connect.js';
import { isDeviceId } from '../../../firmware-proto/frame.js';
import { deviceClientId } from '../../../firmware-proto/topics.js';
import type { ConnectReason } from '../../../firmware-proto/reasons.js';
import { KeyRuleCache, type DeviceRegistry } from '../../registry/registry.js';
import { KeyCache, verifyEd25519 } from '../../verify/ed25519.js';

/** MQTT 3.1.1 CONNACK return codes used for refusals. */
export const CONNACK_BAD_CREDENTIALS = 4;
export const CONNACK_NOT_AUTHORIZED = 5;

/** The CONNACK return code of each refusal (PROTOCOL.md §6.1 and §7.2). */
export const CONNACK_REFUSAL_CODE: Readonly<Record<ConnectReason, 4 | 5>> = {
  CONNECT_MALFORMED: CONNACK_BAD_CREDENTIALS,
  CONNECT_BAD_SIGNATURE: CONNACK_BAD_CREDENTIALS,
  CONNECT_STALE: CONNACK_BAD_CREDENTIALS,
  CONNECT_REPLAYED: CONNACK_BAD_CREDENTIALS,
  CONNECT_UNKNOWN_DEVICE: CONNACK_NOT_AUTHORIZED,
  CONNECT_REVOKED: CONNACK_NOT_AUTHORIZED,
};

/** The accepted nonces are scanned for expired ones only once there are this many. */
const NONCE_PRUNE_AT = 1024;

export interface ConnectAuthOptions {
  /** Tokens are accepted within this many ms of the gateway clock, inclusive (§6.1 step 5; the protocol says 30 000). */
  windowMs: number;
  /**
   * When the gateway process started, ms since the epoch. Tokens made earlier are refused,
   * so that a token captured before a restart is useless after it, though the restarted
   * gateway has forgotten the nonces it accepted.
   */
  startedAtMs: number;
  /** The gateway clock, ms since the epoch. Read once per CONNECT. */
  now: () => number;
  /**
   * Nonces accepted before, as (nonce hex, token time ms) pairs: state carried over, or the
   * `usedNonces` of a connect vector. Each is forgotten like any other once its token time
   * is out of the window.
   */
  usedNonces?: Iterable<readonly [nonceHex: string, timestampMs: number]>;
}

export type ConnectVerdict = { ok: true; deviceId: string } | { ok: false; reason: ConnectReason };

/**
 * Decides on MQTT CONNECT packets, and remembers the nonce of every token it accepted so
 * that each token is accepted once. One instance per broker.
 *
 * @example
 *   const auth = new ConnectAuthenticator(registry, { windowMs: 30_000, startedAtMs: Date.now(), now: Date.now });
 *   const v = auth.check(packet.clientId, packet.username, packet.password);
 *   if (!v.ok) refuse(CONNACK_REFUSAL_CODE[v.reason]);
 */
export class ConnectAuthenticator {
  private readonly keys = new KeyCache();
  private readonly keyRule = new KeyRuleCache();
  /** nonce hex → token time: each token is accepted once within the window. */
  private readonly usedNonces = new Map<string, number>();

  constructor(
    private readonly registry: Pick<DeviceRegistry, 'get'>,
    private readonly opts: ConnectAuthOptions,
  ) {
    for (const [nonce, ts] of opts.usedNonces ?? []) this.usedNonces.set(nonce, ts);
  }

  /**
   * Runs the checks of §6.1 in order. On success the nonce is remembered, so the same token
   * is refused (CONNECT_REPLAYED) from then on. Never throws for bad input: any user name or
   * password, missing or not, gets a verdict.
   */
  check(clientId: string, username: string | undefined, password: Uint8Array | undefined): ConnectVerdict {
    const now = this.opts.now();
    // 1. Shape of the CONNECT fields.
    if (!username || !isDeviceId(username) || !password) return refuse('CONNECT_MALFORMED');
    const token = parseConnectPassword(password);
    if (!token || clientId !== deviceClientId(username)) return refuse('CONNECT_MALFORMED');
    // 2, 3. Enrolled, and not revoked at the gateway's time.
    const rec = this.registry.get(username);
    if (!rec || this.keyRule.check(rec.publicKey) !== null) return refuse('CONNECT_UNKNOWN_DEVICE');
    if (rec.revokedAtMs !== undefined && rec.revokedAtMs <= now) return refuse('CONNECT_REVOKED');
    // 4. The signature binds the device id, this packet's client id, the time and the nonce.
    const msg = connectSigningMessage(username, clientId, token.timestampMs, token.nonce);
    if (!verifyEd25519(this.keys.get(rec.publicKey), msg, token.signature)) return refuse('CONNECT_BAD_SIGNATURE');
    // 5. Fresh, and made while this process runs. A uint64 beyond 2^53 rounds, but stays far outside the window.
    const ts = Number(token.timestampMs);
    if (Math.abs(ts - now) > this.opts.windowMs || ts < this.opts.startedAtMs) return refuse('CONNECT_STALE');
    // 6. Once only.
    this.pruneNonces(now);
    const nonce = Buffer.from(token.nonce).toString('hex');
    if (this.usedNonces.has(nonce)) return refuse('CONNECT_REPLAYED');
    this.usedNonces.set(nonce, ts);
    return { ok: true, deviceId: username };
  }

  /** How many accepted nonces are remembered (for tests and the status page). */
  get rememberedNonces(): number {
    return this.usedNonces.size;
  }

  /**
   * Forgets nonces whose tokens are out of the window: step 5 refuses them from now on,
   * before step 6 is reached (as long as the clock does not step back).
   */
  private pruneNonces(now: number): void {
    if (this.usedNonces.size < NONCE_PRUNE_AT) return;
    for (const [n, ts] of this.usedNonces) if (ts < now - this.opts.windowMs) this.usedNonces.delete(n);
  }
}

function refuse(reason: ConnectReason): ConnectVerdict {
  return { ok: false, reason };
}
