/**
 * The hub instances' shared login state on the hospital broker (docs/fleet.md, "Researcher
 * sessions across hubs"): what a signed session token cannot say for itself
 * (gateway/consent/shared-auth.ts), told to every instance of the same hub id.
 *
 *   vitalproof/hub/<gatewayId>/auth/nonce/<nonce>            a challenge used for a login
 *   vitalproof/hub/<gatewayId>/auth/ended/<session id>       a session logged out
 *   vitalproof/hub/<gatewayId>/auth/ended-all/<address>      every session of an address, until now
 *   vitalproof/hub/<gatewayId>/auth/sync/<client id>         this link's own marker (not retained)
 *
 * Each event is a retained QoS 1 message `{"untilMs":…}` (and `beforeMs` for ended-all) with an
 * MQTT 5 message expiry at `untilMs`: the broker keeps it while what it guards could still be
 * used (a challenge until it expires, a logout until its session would have expired) and then
 * drops it, so nothing needs cleaning. An instance that starts (or restarts) reads them all when
 * it subscribes; it then publishes a marker to itself, and because the broker sends the retained
 * messages of a subscription before anything published after it, the marker's return means the
 * state is read: only then does this instance accept logins (before, AUTH_BUSY). After each
 * reconnect the link publishes what it knows again, so the state survives a broker that lost it.
 *
 * Why a connection of its own and not the uplink feed's: the feed's session is persistent and
 * may hold a backlog of frames queued while the hub was away; a logout must not wait behind it.
 * This link starts clean every time and reads the whole state from the retained messages.
 *
 * Only hub accounts may publish or subscribe here (gateway/fleet/broker.ts, hubAcls).
 */
import { brokerClientOptions } from '../uplink/broker-client.js';
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { ConfigError } from '../config.js';
import type { AuthEvent, SharedAuthState } from '../consent/shared-auth.js';
import { HUB_ROOT } from '../fleet/broker.js';
import type { Logger } from '../log.js';
import { safeUrl } from '../uplink/publisher.js';
import { secretLine } from '../util/secret-file.js';

/** Bytes a shared secret must have at least (HMAC-SHA256 keys). */
export const MIN_SECRET_BYTES = 32;

/**
 * The secret in `path` (its first line, 32+ bytes). A missing file is created, mode 0600, with 64
 * random hex digits: the first hub instance of a box makes it, the others read it (the file is
 * linked into place whole, so a racing instance reads either nothing or all of it).
 * @throws ConfigError CONFIG_FILE_UNREADABLE when unreadable or shorter than 32 bytes.
 */
export function hubAuthSecret(path: string, key = 'hub.authSecretFile'): Buffer {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    try {
      linkSync(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigError(`${key} ${path}: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  const secret = Buffer.from(secretLine(path, key), 'utf8');
  if (secret.length < MIN_SECRET_BYTES)
    throw new ConfigError(`${key} ${path}: expected a first line of at least ${MIN_SECRET_BYTES} bytes, found ${secret.length}`, 'CONFIG_FILE_UNREADABLE');
  return secret;
}

export interface AuthShareOptions {
  url: string;
  username: string;
  password: string;
  /** Distinct from the uplink feed's client id. */
  clientId: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** The hub id the instances share (configuration gatewayId). */
  gatewayId: string;
  state: SharedAuthState;
  log: Logger;
  /** How long start() waits for the state to be read before it lets the hub go on (logins wait longer). Default 5 s. */
  startTimeoutMs?: number;
}

export class AuthShare {
  private client: MqttClient | undefined;
  private readonly root: string;
  private marker = '';

  constructor(private readonly o: AuthShareOptions) {
    this.root = `${HUB_ROOT}/${o.gatewayId}/auth`;
  }

  /** Connects (and keeps reconnecting); resolves once the shared state is read, or after startTimeoutMs. */
  async start(): Promise<void> {
    const opts = brokerClientOptions(this.o, {
      clean: true,
      reconnectPeriod: 1000,
    });
    const client = connect(this.o.url, opts);
    this.client = client;
    let synced!: () => void;
    const first = new Promise<void>((res) => (synced = res));
    this.o.state.sink = (e) => this.publish(e);
    client.on('message', (topic, payload) => {
      if (this.message(topic, payload)) synced();
    });
    client.on('connect', () => {
      this.marker = randomBytes(8).toString('hex');
      client.subscribe(`${this.root}/+/+`, { qos: 1 }, (err, granted) => {
        if (err || (granted ?? []).some((g) => g.qos > 2)) {
          this.o.log.error(
            { event: 'hub_auth_share_refused', err: err?.message },
            'the hospital broker refused the hub its login-state subscription: run `vitalproof broker init` again (hub role ACLs)',
          );
          return;
        }
        client.publish(`${this.root}/sync/${this.o.clientId}`, this.marker, { qos: 1 });
      });
    });
    client.on('error', (e) => this.o.log.warn({ event: 'hub_auth_share_error', url: safeUrl(this.o.url), err: e.message }, 'login-state link error'));
    const timeout = new Promise<void>((res) => setTimeout(res, this.o.startTimeoutMs ?? 5000).unref());
    await Promise.race([first, timeout]);
    if (!this.o.state.isReady())
      this.o.log.warn(
        { event: 'hub_auth_share_waiting', url: safeUrl(this.o.url) },
        'logins wait (AUTH_BUSY) until the shared login state is read from the broker',
      );
  }

  async stop(): Promise<void> {
    this.o.state.sink = undefined;
    const c = this.client;
    this.client = undefined;
    if (c) await c.endAsync(false).catch(() => undefined);
  }

  /** Handles one message; true when it was this link's marker (the retained state before it is read). */
  private message(topic: string, payload: Buffer): boolean {
    if (!topic.startsWith(`${this.root}/`)) return false;
    const [kind, name] = topic.slice(this.root.length + 1).split('/');
    if (kind === 'sync') {
      if (name !== this.o.clientId || payload.toString() !== this.marker) return false;
      const first = !this.o.state.isReady();
      this.o.state.setReady(true);
      // Tell the broker what this instance knows again: a broker that lost its retained messages regains them.
      if (!first) for (const e of this.o.state.events()) this.publish(e);
      this.o.log.info({ event: 'hub_auth_share_ready', ...this.o.state.stats() }, 'shared login state read');
      return true;
    }
    if (payload.length === 0 || name === undefined) return false;
    let body: { untilMs?: unknown; beforeMs?: unknown };
    try {
      body = JSON.parse(payload.toString('utf8')) as typeof body;
    } catch {
      return false;
    }
    const untilMs = Number(body.untilMs);
    if (!Number.isSafeInteger(untilMs)) return false;
    if (kind === 'nonce' && /^[0-9a-f]{32}$/.test(name)) this.o.state.heard({ kind, nonce: name, untilMs });
    else if (kind === 'ended' && /^[0-9a-f]{32}$/.test(name)) this.o.state.heard({ kind, id: name, untilMs });
    else if (kind === 'ended-all' && /^0x[0-9a-f]{40}$/.test(name) && Number.isSafeInteger(Number(body.beforeMs)))
      this.o.state.heard({ kind, researcher: name, beforeMs: Number(body.beforeMs), untilMs });
    return false;
  }

  private publish(e: AuthEvent): void {
    const c = this.client;
    const left = Math.ceil((e.untilMs - Date.now()) / 1000);
    if (!c || left <= 0) return;
    const [name, body] =
      e.kind === 'nonce'
        ? [e.nonce, { untilMs: e.untilMs }]
        : e.kind === 'ended'
          ? [e.id, { untilMs: e.untilMs }]
          : [e.researcher.toLowerCase(), { beforeMs: e.beforeMs, untilMs: e.untilMs }];
    // mqtt.js queues it while the broker is away and sends it on reconnect.
    c.publish(`${this.root}/${e.kind}/${name}`, JSON.stringify(body), { qos: 1, retain: true, properties: { messageExpiryInterval: left } }, (err) => {
      if (err) this.o.log.warn({ event: 'hub_auth_share_publish_failed', kind: e.kind, err: err.message }, 'a login-state event was not published');
    });
  }
}
