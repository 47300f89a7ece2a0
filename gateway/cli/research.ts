/**
 * `vitalproof research …`: the researcher's side of docs/research-api.md ("Command line"), a
 * client of the gateway's HTTP API and MQTT broker written to that page.
 *
 *   research login --key-file F [--url U] [--ca FILE]
 *   research logout [--all] [--key-file F] [--url U]
 *   research grants [--key-file F] [--url U]
 *   research subscribe --key-file F --pseudonym P --metric M[,M…] [--mqtt URL] [--count N] [--format ndjson|text]
 *   research export GRANT_ID --out FILE [--format json|csv] [--from T --to T] [--metric M[,M…]] [--proofs] [--limit N]
 *   research verify FILE [--rpc URL | --offline] [--deployment F] [--json]
 *
 * Sessions. `login` asks the gateway for a challenge (POST /auth/challenge, purpose http), checks
 * that it is a login challenge for this account and purpose (docs/consent.md: nothing else is
 * signed), signs it (EIP-191) and trades it for a bearer token (POST /auth/login). The token is
 * kept in ~/.vitalproof/sessions.json (directory mode 0700, file mode 0600; --session-file to
 * put it elsewhere), one entry per gateway URL and account, with the gateway's id; the other
 * commands take it from there. A session lasts an hour: with --key-file a command logs in again
 * by itself when its session has ended; without, it asks for `research login`.
 *
 * Live. `subscribe` connects to the broker with the account's address as username and a
 * self-issued `mqtt` login as password (base64url(challenge).0xsignature: no round trip, the
 * gateway's id from the saved session, --gateway-id, or a gateway-issued mqtt challenge over
 * HTTP), signs a fresh one for every reconnect (a login is single use), subscribes to its own
 * notice topic and to vp/consented/P/M per metric, and prints each delivery as one JSON line on
 * stdout (notices go to stderr). It ends when every subscription has ended (revocation,
 * expiry: exit 0), after --count deliveries, on Ctrl-C, or when every subscription was refused
 * (exit 1, with the gateway's reason code).
 *
 * Historical. `export` pages through GET /research/grants/ID/readings (format json, with
 * proofs=1 for --proofs) and writes FILE as JSON (a `vitalproof.research-export` document) or
 * CSV (the API's csv columns), and the proof bundles of the exported frames into
 * FILE.proofs.json (a `vitalproof.proof-bundles` collection). Both are written to a temporary
 * file and renamed at the end: a failed export leaves nothing half written. A progress line goes
 * to stderr: redrawn in place on a terminal, a line every few seconds otherwise.
 *
 * `verify` runs `vitalproof verify` (gateway/proof/verify-cli.ts) on the bundles and then holds
 * the exported readings to them: every exported frame has a bundle whose signed frame hashes to
 * its frameSha256, and every exported reading is a sample of that signed frame.
 *
 * `logout` ends the saved session at the gateway (POST /auth/logout) and forgets it; with --all
 * every session of the account (POST /auth/logout?all=1: a token that leaked dies now, not in an
 * hour), logging in first with --key-file when no session is saved.
 *
 * HTTPS. An https --url is checked against the system's CAs and NODE_EXTRA_CA_CERTS; --ca FILE
 * adds FILE's certificates (a hospital or development CA) for this command
 * (gateway/util/tls-trust.ts).
 *
 * MQTT over TLS. `subscribe` dials an mqtts:// --mqtt with the same trust as the API (the
 * system's CAs, NODE_EXTRA_CA_CERTS, --ca). Without --mqtt it follows the API's transport: an
 * https API means MQTT over TLS (defaultBrokerUrl), so that the consented stream is never in
 * clear where the API is encrypted.
 *
 * Exit codes: 0 done, 1 refused or failed, 2 usage error.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import { getAddress, type BaseWallet } from 'ethers';
import { ConfigError, configFromFlags, type GatewayConfig } from '../config.js';
import { parseArgv } from './args.js';
import { readKeyFile } from '../chain/runtime.js';
import { runningGateway, type RunningGateway } from '../running.js';
import { encodeLogin, parseChallenge, selfIssuedChallenge, type LoginChallenge, type LoginPurpose } from '../consent/auth.js';
import { checkPseudonym, defaultIo, type CliIo } from './admin.js';
import type { GrantJson as ApiGrant } from '../research/http.js';
import type { FrameJson as ApiFrame } from '../research/readings.js';
import { formatGrantTable, iso, parseMetrics, parseTimeArg, type GrantRow } from './consent.js';
import { verifyCommand } from './verify.js';
import { BUNDLES_FORMAT, BUNDLE_VERSION, isBundleFormatError, parseBundles, type ProofBundle } from '../proof/bundle.js';
import { decodeFrame, sampleTimeNs, sampleValue } from '../../firmware-proto/frame.js';
import { trustCaFile, trustedCas } from '../util/tls-trust.js';

export const RESEARCH_USAGE = `usage: vitalproof research <login|logout|grants|subscribe|export|verify> [options]
  login --key-file F                 log in to the gateway's API with the researcher's key; keeps the
                                     session token (1 h) in the session file for the other commands
  logout [--all]                     end the saved session at the gateway and forget it; --all: every
                                     session of the account (a leaked token), logging in with --key-file
                                     first when none is saved
  grants                             the researcher's grants, newest first, with their status
  subscribe --key-file F --pseudonym P --metric M[,M…]
                                     live readings of patient P (one JSON line each on stdout; notices
                                     on stderr) until every subscription ends (revocation, expiry)
      --mqtt URL                     the broker, mqtt:// or mqtts:// (MQTT over TLS, trusted like an
                                     https --url: --ca, NODE_EXTRA_CA_CERTS). Default: the gateway
                                     running on --dataDir (its TLS listener when its API is https);
                                     for an https --url mqtts://URL.HOST:MQTT.TLS.PORT (8883); else
                                     mqtt://MQTT.HOST:MQTT.PORT of the configuration. The API does not
                                     say where the broker is: give --mqtt when it listens elsewhere
      --count N                      stop after N deliveries
      --format ndjson|text           one JSON object per delivery (default), or a readable line
      --gateway-id ID                the gateway's id for self-issued MQTT logins (default: from
                                     the saved session, else asked of the gateway over HTTP)
  export GRANT_ID --out FILE         every reading grant GRANT_ID allows, page by page, with a progress line
      --format json|csv              FILE's format (default json)
      --from T --to T                data time range (default: the grant's data window)
      --metric M[,M…]                only these metrics (default: every granted one)
      --proofs                       also the proof bundles of the exported frames, into FILE.proofs.json
      --limit N                      frames per page (default 1000, at most 10000)
      --progress-interval MS         when stderr is not a terminal, a progress line this often (default 5000)
  verify FILE [--rpc URL | --offline] [--deployment F] [--json]
                                     FILE: an export (its FILE.proofs.json is checked, and the exported
                                     readings against the signed frames) or a bundle file:
                                     vitalproof verify on the bundles
common options:
  --url U            the gateway's HTTP API (default: the gateway running on --dataDir, else
                     http://HTTP.HOST:HTTP.PORT of the configuration, http://127.0.0.1:8080;
                     https:// when the configuration has http.tls.cert)
  --ca FILE          trust FILE's CA certificates for an https --url and an mqtts --mqtt (besides
                     the system's and NODE_EXTRA_CA_CERTS)
  --key-file F       the researcher's private key (64 hex digits); with it, an ended session is renewed
  --session-file F   where sessions are kept (default ${defaultSessionFile()}, mode 0600)
times T: Unix ms, ISO 8601, now, now±N(ms|s|m|h|d|w)
exit code: 0 done, 1 refused or failed, 2 usage error`;

const OWN = ['ca', 'all', 'key-file', 'url', 'mqtt', 'pseudonym', 'metric', 'count', 'format', 'gateway-id', 'out', 'from', 'to', 'proofs', 'limit', 'session-file', 'rpc', 'offline', 'deployment', 'json', 'help', 'progress-interval'];

/**
 * Runs `vitalproof research` with `argv` (the arguments after "research").
 * @returns the exit code; usage errors are thrown as ConfigError (exit code 2).
 */
export async function researchCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const { positionals, flags } = parseArgv(argv);
  const sub = positionals[0];
  if (flags['help'] || !sub) {
    (sub ? io.out : io.err)(RESEARCH_USAGE);
    return sub ? 0 : 2;
  }
  if (sub === 'verify') return researchVerify(argv.slice(1), io);
  for (const k of Object.keys(flags)) if (!OWN.includes(k) && !k.includes('.') && !['config', 'dataDir', 'gatewayId'].includes(k)) throw new ConfigError(`unknown option --${k}\n${RESEARCH_USAGE}`);
  const cfg = configFromFlags(flags, OWN);
  const running = runningGateway(cfg.dataDir);
  if (flags['ca'] !== undefined) trustCaFile(flags['ca']);
  const base = normaliseUrl(flags['url'] ?? running?.httpUrl ?? `${cfg.http.tls.cert ? 'https' : 'http'}://${cfg.http.host}:${cfg.http.port}`);
  const store = new SessionStore(flags['session-file'] ?? defaultSessionFile());
  const keyFile = flags['key-file'] !== undefined && flags['key-file'] !== 'true' ? flags['key-file'] : undefined;
  const key = keyFile ? readKeyFile(keyFile) : undefined;
  try {
    switch (sub) {
      case 'login': {
        if (!key) throw new ConfigError(`research login needs --key-file\n${RESEARCH_USAGE}`);
        const s = await httpLogin(base, key, store);
        io.out(`logged in to gateway ${s.gatewayId} at ${base} as ${s.address}; session valid until ${iso(s.expiresAtMs)}, saved in ${store.path}`);
        const grants = await apiRequest<{ grants: ApiGrant[] }>(base, '/research/grants', { token: s.token }).catch(() => undefined);
        if (grants) io.out(`${grants.grants.length} grant${grants.grants.length === 1 ? '' : 's'}, ${grants.grants.filter((g) => g.status === 'OK').length} in force: vitalproof research grants --url ${base}`);
        return 0;
      }
      case 'logout':
        return await logout(base, key, store, flags['all'] !== undefined && flags['all'] !== 'false', io);
      case 'grants': {
        const { grants } = await withSession(base, key, store, (token) => apiRequest<{ grants: ApiGrant[] }>(base, '/research/grants', { token }));
        if (flags['json']) io.out(JSON.stringify(grants, null, 2));
        else for (const l of formatApiGrants(grants)) io.out(l);
        return 0;
      }
      case 'subscribe':
        return await subscribe(flags, cfg, base, key, store, io, running);
      case 'export':
        return await exportGrant(positionals.slice(1), flags, base, key, store, io);
      default:
        throw new ConfigError(`unknown research command "${sub}"\n${RESEARCH_USAGE}`);
    }
  } catch (e) {
    if (e instanceof ApiError) {
      io.err(`${e.describe()}${e.status === 401 && !key ? ' (log in again: vitalproof research login --key-file F)' : ''}`);
      return 1;
    }
    if (e instanceof NoSessionError) {
      io.err(e.message);
      return 1;
    }
    const unreachable = unreachableMessage(e, base);
    if (unreachable) {
      io.err(unreachable);
      return 1;
    }
    throw e;
  }
}

// ---- HTTP API ------------------------------------------------------------------------------

/** A refusal of the API: `{ error: CODE, message }` with its HTTP status (docs/research-api.md). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly path: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
  describe(): string {
    return `the gateway refused ${this.path.split('?')[0]}: HTTP ${this.status} ${this.code}${this.message ? `: ${this.message}` : ''}`;
  }
}

/** The API's Grant and readings Frame (docs/research-api.md): the server's own types, so client and server cannot drift. */
export type { GrantJson as ApiGrant } from '../research/http.js';
export type { FrameJson as ApiFrame } from '../research/readings.js';

/** A readings page, format json. */
export interface ReadingsPage {
  grantId: string;
  patient: string;
  from: number | string;
  to: number | string;
  frames: ApiFrame[];
  nextCursor: string | null;
  proofs?: unknown[];
  /** Frames of the page without a bundle, and why (e.g. not anchored yet). */
  proofsSkipped?: { deviceId: string; seq: string; code: string }[];
}

/**
 * One request to the API: JSON in, JSON out.
 * @throws ApiError for an answer that is not 2xx (its `{ error, message }`); the fetch error when the gateway is unreachable.
 */
export async function apiRequest<T>(base: string, path: string, o: { method?: 'GET' | 'POST'; body?: unknown; token?: string; timeoutMs?: number } = {}): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method: o.method ?? (o.body !== undefined ? 'POST' : 'GET'),
    headers: { accept: 'application/json', ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
    ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    signal: AbortSignal.timeout(o.timeoutMs ?? 120_000),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const b = (json ?? {}) as { error?: unknown; message?: unknown };
    throw new ApiError(res.status, typeof b.error === 'string' ? b.error : `HTTP_${res.status}`, typeof b.message === 'string' ? b.message : text.slice(0, 200), path);
  }
  if (json === undefined) throw new ApiError(res.status, 'NOT_JSON', `the answer is not JSON: ${text.slice(0, 200)}`, path);
  return json as T;
}

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
    throw new ApiError(200, 'WRONG_CHALLENGE', `the gateway's challenge is for ${c.account} (${c.purpose}), not ${getAddress(address)} (${purpose}): nothing was signed`, '/auth/challenge');
  }
  return { text, challenge: c };
}

/** Logs in over HTTP with `key` (challenge, EIP-191 signature, session) and saves the session. */
export async function httpLogin(base: string, key: BaseWallet, store: SessionStore): Promise<SavedSession> {
  const { text, challenge } = await fetchChallenge(base, key.address, 'http');
  const signature = await key.signMessage(text);
  const r = await apiRequest<{ token: string; address: string; expiresAtMs: number }>(base, '/auth/login', { body: { challenge: text, signature } });
  if (typeof r.token !== 'string' || !r.token) throw new ApiError(200, 'NO_TOKEN', 'the login answer has no token', '/auth/login');
  const s: SavedSession = { url: base, address: key.address, gatewayId: challenge.gateway, token: r.token, expiresAtMs: Number(r.expiresAtMs), savedAtMs: Date.now() };
  store.save(s);
  return s;
}

const SESSION_ENDED = new Set(['AUTH_UNKNOWN_SESSION', 'AUTH_SESSION_EXPIRED']);
/** A saved session is not used in its last minute. */
const SESSION_MARGIN_MS = 60_000;

class NoSessionError extends Error {}

/**
 * Runs `fn` with a session token for `base`: the saved one of `key`'s account (or the only one
 * saved for `base` when no key is given), else a new login with `key`. When the gateway says
 * the session has ended and `key` is given, logs in again and retries once.
 * @throws NoSessionError when there is no usable session and no key to log in with.
 */
export async function withSession<T>(base: string, key: BaseWallet | undefined, store: SessionStore, fn: (token: string) => Promise<T>): Promise<T> {
  let s = store.find(base, key?.address);
  if (s === 'ambiguous') throw new NoSessionError(`several accounts have sessions with ${base} in ${store.path}: name one with --key-file`);
  if (s && s.expiresAtMs - SESSION_MARGIN_MS <= Date.now()) s = undefined;
  if (!s) {
    if (!key) throw new NoSessionError(`no session with ${base} in ${store.path} (or it has ended): vitalproof research login --key-file F --url ${base}`);
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

/** Certificate errors of Node's TLS: the gateway's certificate is not trusted (or not for this name). */
const CERT_ERRORS = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED']);

/**
 * POST /auth/logout (?all=1): ends the saved session (or all of the account's) and forgets it.
 * @returns the exit code.
 */
async function logout(base: string, key: BaseWallet | undefined, store: SessionStore, all: boolean, io: CliIo): Promise<number> {
  let s = store.find(base, key?.address);
  if (s === 'ambiguous') throw new NoSessionError(`several accounts have sessions with ${base} in ${store.path}: name one with --key-file`);
  if (!s && all && key) s = await httpLogin(base, key, store); // a session to speak for the account
  if (!s) throw new NoSessionError(`no session with ${base} in ${store.path}${all ? ': give --key-file to end every session of the account' : ''}`);
  let ended: number;
  try {
    ({ ended } = await apiRequest<{ ended: number }>(base, `/auth/logout${all ? '?all=1' : ''}`, { method: 'POST', token: s.token }));
  } catch (e) {
    // A session the gateway no longer knows is ended already: forget it all the same.
    if (!(e instanceof ApiError) || e.status !== 401 || !SESSION_ENDED.has(e.code) || all) throw e;
    ended = 0;
  }
  store.remove(base, s.address);
  io.out(`logged out of ${base} as ${s.address}: ${ended} session${ended === 1 ? '' : 's'} ended${all ? ' (every session of the account)' : ''}`);
  return 0;
}

function unreachableMessage(e: unknown, base: string): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (e.name === 'TimeoutError') return `the gateway at ${base} did not answer in time`;
  if (cause?.code && CERT_ERRORS.has(cause.code)) return `cannot trust the gateway at ${base}: ${cause.code} (${cause.message ?? ''}); give its CA with --ca FILE (or NODE_EXTRA_CA_CERTS)`;
  if (e.message === 'fetch failed' || cause?.code === 'ECONNREFUSED') return `cannot reach the gateway at ${base}: ${cause?.code ?? cause?.message ?? e.message} (is it running? --url)`;
  return undefined;
}

export function normaliseUrl(u: string): string {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw new ConfigError(`--url "${u}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`--url must be http(s), got ${url.protocol}`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

// ---- sessions ------------------------------------------------------------------------------

export interface SavedSession {
  /** The gateway's HTTP API, normalised (no trailing slash). */
  url: string;
  /** The account, EIP-55. */
  address: string;
  /** The gateway's id, from the challenge it issued (MQTT logins name it). */
  gatewayId: string;
  token: string;
  expiresAtMs: number;
  savedAtMs: number;
}

export const SESSIONS_FORMAT = 'vitalproof.sessions';

/** ~/.vitalproof/sessions.json. */
export function defaultSessionFile(): string {
  return join(homedir(), '.vitalproof', 'sessions.json');
}

/**
 * The saved sessions: one JSON file, mode 0600 in a directory created with mode 0700, written
 * atomically (temporary file, rename); ended sessions are dropped at each write. A bearer token
 * is a password for an hour: keep the file to yourself.
 */
export class SessionStore {
  constructor(readonly path: string) {}

  all(): SavedSession[] {
    if (!existsSync(this.path)) return [];
    let doc: { format?: unknown; sessions?: unknown };
    try {
      doc = JSON.parse(readFileSync(this.path, 'utf8')) as typeof doc;
    } catch (e) {
      throw new ConfigError(`session file ${this.path} is not readable JSON (${(e as Error).message}): delete it and log in again`);
    }
    if (doc.format !== SESSIONS_FORMAT || !Array.isArray(doc.sessions)) throw new ConfigError(`${this.path} is not a VitalProof session file`);
    return (doc.sessions as SavedSession[]).filter((s) => typeof s?.url === 'string' && typeof s.address === 'string' && typeof s.token === 'string' && typeof s.expiresAtMs === 'number');
  }

  /** The session of `address` with `url`, or the only one with `url` when no address is given ('ambiguous' when several). */
  find(url: string, address?: string): SavedSession | 'ambiguous' | undefined {
    const u = normaliseUrl(url);
    const mine = this.all().filter((s) => s.url === u && (address === undefined || s.address === getAddress(address)));
    if (address === undefined) {
      const live = mine.filter((s) => s.expiresAtMs > Date.now());
      if (live.length > 1) return 'ambiguous';
      return live[0] ?? mine[0];
    }
    return mine[0];
  }

  save(s: SavedSession): void {
    this.write([...this.all().filter((x) => !(x.url === s.url && x.address === s.address)), s]);
  }

  remove(url: string, address: string): void {
    const u = normaliseUrl(url);
    const rest = this.all().filter((x) => !(x.url === u && x.address === address));
    this.write(rest);
  }

  private write(all: SavedSession[]): void {
    const now = Date.now();
    const sessions = all.filter((x) => x.expiresAtMs > now);
    const dir = dirname(this.path);
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${JSON.stringify({ format: SESSIONS_FORMAT, version: 1, sessions }, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    chmodSync(this.path, 0o600);
  }
}

function formatApiGrants(grants: readonly ApiGrant[]): string[] {
  if (grants.length === 0) return ['no grants'];
  const byPatient = new Map<string, ApiGrant[]>();
  for (const g of grants) byPatient.set(g.patient, [...(byPatient.get(g.patient) ?? []), g]);
  const out: string[] = [];
  for (const [p, gs] of byPatient) {
    out.push(`patient ${p}:`);
    const rows: GrantRow[] = gs.map((g) => ({ ...g, grantId: String(g.grantId) }));
    for (const l of formatGrantTable(rows)) out.push(`  ${l}`);
  }
  return out;
}

// ---- live: MQTT ----------------------------------------------------------------------------

/** A delivery on vp/consented/P/M (docs/research-api.md, "Deliveries"). */
export interface Delivery {
  grantId: string;
  patient: string;
  metric: string;
  deviceId: string;
  seq: string;
  frameSha256: string;
  readings: { timeMs: number; values: Record<string, number> }[];
}

/** A notice on vp/researcher/<address>/notices. */
export interface Notice {
  event: 'subscription_refused' | 'subscription_ended' | string;
  topic: string;
  code: string;
  grantId?: string;
  atMs: number;
}

export function consentedTopic(pseudonym: string, metric: string): string {
  return `vp/consented/${pseudonym}/${metric}`;
}

export function noticeTopic(address: string): string {
  return `vp/researcher/${address.toLowerCase()}/notices`;
}

/** The MQTT password of docs/consent.md: a fresh self-issued mqtt challenge, signed. */
export function mqttPassword(gatewayId: string, key: BaseWallet, nowMs = Date.now()): string {
  const text = selfIssuedChallenge(gatewayId, key.address, nowMs);
  return encodeLogin({ text, signature: key.signMessageSync(text) });
}

/** A delivery as one readable line. */
export function formatDelivery(d: Delivery): string {
  const first = d.readings[0];
  const last = d.readings[d.readings.length - 1];
  const values = d.readings.map((r) => Object.values(r.values).join('/')).join(' ');
  return `${first ? iso(first.timeMs) : '-'}${last && last !== first ? `..${iso(last.timeMs).slice(11)}` : ''} ${d.patient} ${d.metric} device ${d.deviceId} seq ${d.seq} grant ${d.grantId}: ${values}`;
}

/** A notice as one readable line. */
export function formatNotice(n: Notice): string {
  const what = n.event === 'subscription_ended' ? 'subscription ended' : n.event === 'subscription_refused' ? 'subscription refused' : n.event;
  return `${what}: ${n.topic}: ${n.code}${n.grantId ? ` (grant ${n.grantId})` : ''}${Number.isFinite(n.atMs) ? ` at ${iso(n.atMs)}` : ''}`;
}

/** True when an MQTT topic filter (with + and #) matches a topic. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** How long a refused subscription waits for the gateway's notice saying why. */
const REFUSAL_NOTICE_WAIT_MS = 2000;

export interface LiveOptions {
  /** mqtt://host:port of the gateway's broker, or mqtts://host:port (MQTT over TLS). */
  brokerUrl: string;
  /**
   * mqtts: the CA certificates (PEM) the broker's certificate must chain to. They replace Node's
   * default list (the system's roots and NODE_EXTRA_CA_CERTS), which applies when this is left out.
   */
  ca?: readonly string[];
  key: BaseWallet;
  /** The gateway's id: self-issued logins name it (docs/consent.md). */
  gatewayId: string;
  /** The first CONNECT's password, when it is not a self-issued login (a gateway-issued mqtt challenge, signed). */
  firstPassword?: string;
  pseudonym: string;
  /** Metric names, or '+' (every granted metric). */
  metrics: readonly string[];
  /** How long a refused subscription waits for the notice that says why. Default 2 s. */
  refusalNoticeWaitMs?: number;
}

export interface LiveEvents {
  /** A subscription the broker accepted (SUBACK granted). */
  subscribed: [topic: string];
  /** A subscription the broker refused (SUBACK 0x80), with the gateway's notice saying why if it came. */
  refused: [topic: string, notice: Notice | undefined, returnCode: number | undefined];
  /** Every subscription was answered; `accepted` of them are active. */
  ready: [accepted: number];
  delivery: [delivery: Delivery, topic: string];
  /** A notice on the researcher's notice topic (refusals come with `refused` instead). */
  notice: [notice: Notice];
  /** A `subscription_ended` notice ended these active subscriptions. */
  ended: [notice: Notice, topics: string[]];
  /** No subscription is active any more (each ended, or none was accepted). */
  idle: [];
  /** CONNACK 4 (bad credentials) or 5 (not authorised): the client stops. */
  loginRefused: [returnCode: number, message: string];
  /** The first connection failed: the client stops. */
  connectFailed: [error: Error];
  /** Lost after it was up; the client reconnects with a fresh login and resubscribes. */
  connectionLost: [reason: string];
}

/**
 * A researcher's live access over MQTT (docs/research-api.md, "MQTT"): connects with the
 * account's address and a login as password (a fresh self-issued one at every reconnect: a
 * login is single use), subscribes to its notice topic and to vp/consented/P/M for each metric,
 * and reports what comes as events. close() ends it.
 * @example
 *   const live = new LiveSubscription({ brokerUrl, key, gatewayId: 'gw-local', pseudonym: 'pt-0042', metrics: ['heart_rate'] });
 *   live.on('delivery', (d) => console.log(d.readings.length));
 *   live.on('ended', (n) => console.log('ended:', n.code));
 */
export class LiveSubscription extends EventEmitter<LiveEvents> {
  readonly noticeTopic: string;
  readonly topics: string[];
  /** Subscriptions the broker accepted and that have not ended. */
  readonly active = new Set<string>();
  private readonly client: MqttClient;
  private everConnected = false;
  private closed = false;
  private readonly refusalNotices = new Map<string, Notice>();
  private readonly refusalWaiters = new Map<string, (n: Notice | undefined) => void>();

  constructor(private readonly o: LiveOptions) {
    super();
    this.noticeTopic = noticeTopic(o.key.address);
    this.topics = o.metrics.map((m) => consentedTopic(o.pseudonym, m));
    this.client = mqtt.connect(o.brokerUrl, {
      username: o.key.address,
      password: o.firstPassword ?? mqttPassword(o.gatewayId, o.key),
      clientId: `vp-research-${randomBytes(6).toString('hex')}`,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(o.ca ? { ca: [...o.ca] } : {}),
    });
    this.client.on('reconnect', () => {
      this.client.options.password = mqttPassword(o.gatewayId, o.key);
    });
    this.client.on('error', (e: Error & { code?: number | string }) => {
      if (this.closed) return;
      if (e.code === 4 || e.code === 5) {
        this.emit('loginRefused', e.code, e.message);
        void this.close();
      } else if (!this.everConnected) {
        this.emit('connectFailed', e);
        void this.close();
      } else this.emit('connectionLost', e.message);
    });
    this.client.on('offline', () => {
      if (this.everConnected && !this.closed) this.emit('connectionLost', 'offline');
    });
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.once('connect', () => {
      this.everConnected = true;
      void this.subscribeAll();
    });
  }

  /** Ends the connection (idempotent). */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => this.client.end(true, () => resolve()));
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (this.closed) return;
    if (topic === this.noticeTopic) {
      let n: Notice;
      try {
        n = JSON.parse(payload.toString('utf8')) as Notice;
      } catch {
        return;
      }
      if (n.event === 'subscription_refused') {
        this.refusalNotices.set(n.topic, n);
        const waiter = this.refusalWaiters.get(n.topic);
        if (waiter) return waiter(n);
        // Not a subscription being made: a resubscription after a reconnect was refused (the
        // grant ended while the connection was down), which ends it like a cut.
        if (!this.active.has(n.topic)) return;
      }
      this.emit('notice', n);
      if (n.event === 'subscription_ended' || n.event === 'subscription_refused') {
        const ended = [...this.active].filter((t) => t === n.topic || topicMatches(t, n.topic));
        for (const t of ended) {
          this.active.delete(t);
          this.client.unsubscribe(t);
        }
        if (ended.length) {
          this.emit('ended', n, ended);
          if (this.active.size === 0) this.emit('idle');
        }
      }
      return;
    }
    let d: Delivery;
    try {
      d = JSON.parse(payload.toString('utf8')) as Delivery;
    } catch {
      return;
    }
    this.emit('delivery', d, topic);
  }

  private sub(topic: string): Promise<{ ok: boolean; code?: number }> {
    return new Promise((res) => {
      this.client.subscribe(topic, { qos: 0 }, (err, granted) => {
        const rc = granted?.[0]?.qos;
        const code = rc ?? (err as (Error & { code?: number }) | null)?.code;
        if (err || rc === undefined || (rc & 0x80) !== 0) res({ ok: false, ...(code !== undefined ? { code } : {}) });
        else res({ ok: true });
      });
    });
  }

  private async subscribeAll(): Promise<void> {
    const notices = await this.sub(this.noticeTopic);
    for (const t of this.topics) {
      if (this.closed) return;
      const waitNotice = new Promise<Notice | undefined>((res) => {
        const timer = setTimeout(() => res(undefined), this.o.refusalNoticeWaitMs ?? REFUSAL_NOTICE_WAIT_MS);
        this.refusalWaiters.set(t, (x) => {
          clearTimeout(timer);
          res(x);
        });
      });
      const r = await this.sub(t);
      if (r.ok) {
        this.refusalWaiters.get(t)?.(undefined);
        this.refusalWaiters.delete(t);
        this.active.add(t);
        this.emit('subscribed', t);
        continue;
      }
      const notice = this.refusalNotices.get(t) ?? (notices.ok ? await waitNotice : undefined);
      this.refusalWaiters.delete(t);
      if (!this.closed) this.emit('refused', t, notice, r.code);
    }
    if (this.closed) return;
    this.emit('ready', this.active.size);
    if (this.active.size === 0) this.emit('idle');
  }
}

async function subscribe(flags: Record<string, string>, cfg: GatewayConfig, base: string, key: BaseWallet | undefined, store: SessionStore, io: CliIo, running: RunningGateway | undefined): Promise<number> {
  if (!key) throw new ConfigError(`research subscribe needs --key-file (the MQTT login is signed with it)\n${RESEARCH_USAGE}`);
  const pseudonym = flags['pseudonym'];
  if (!pseudonym || pseudonym === 'true') throw new ConfigError(`research subscribe needs --pseudonym\n${RESEARCH_USAGE}`);
  checkPseudonym(pseudonym);
  const metricArg = flags['metric'];
  if (!metricArg || metricArg === 'true') throw new ConfigError(`research subscribe needs --metric (a sensor name, a comma-separated list, or +)\n${RESEARCH_USAGE}`);
  const metrics = metricArg.trim() === '+' ? ['+'] : parseMetrics(metricArg).map((m) => m.name);
  const count = flags['count'] !== undefined ? positive('--count', flags['count']) : undefined;
  const format = flags['format'] ?? 'ndjson';
  if (format !== 'ndjson' && format !== 'text') throw new ConfigError(`--format must be ndjson or text for subscribe, got "${format}"`);
  const brokerUrl = flags['mqtt'] ?? defaultBrokerUrl(base, cfg, running);
  if (!/^mqtts?:\/\/[^/]+/.test(brokerUrl)) throw new ConfigError(`--mqtt must be an mqtt:// or mqtts:// URL, got "${brokerUrl}"`);
  const ca = brokerUrl.startsWith('mqtts:') ? trustedCas() : undefined;

  // The gateway's id names the gateway in a self-issued login: from the flag, the saved session,
  // the gateway on --dataDir; else the gateway issues the first challenge (and names itself in it).
  let gatewayId = flags['gateway-id'] ?? sessionGatewayId(store, base, key.address) ?? running?.gatewayId;
  let firstPassword: string | undefined;
  if (!gatewayId) {
    const { text, challenge } = await fetchChallenge(base, key.address, 'mqtt');
    gatewayId = challenge.gateway;
    firstPassword = encodeLogin({ text, signature: await key.signMessage(text) });
  }
  const live = new LiveSubscription({ brokerUrl, key, gatewayId, pseudonym, metrics, ...(firstPassword ? { firstPassword } : {}), ...(ca ? { ca } : {}) });
  let delivered = 0;
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, why: string): void => {
      if (done) return;
      done = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      io.err(`${why}; ${delivered} deliver${delivered === 1 ? 'y' : 'ies'} received`);
      void live.close().then(() => resolve(code));
    };
    const onSignal = (): void => finish(0, 'stopped');
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    live.on('subscribed', (t) => io.err(`subscribed to ${t}`));
    live.on('refused', (t, n, rc) => io.err(`refused: ${t}: ${n ? `${n.code}${n.grantId ? ` (grant ${n.grantId})` : ''}` : `SUBACK 0x${(rc ?? 0x80).toString(16)} (no notice said why)`}`));
    live.on('ready', (accepted) => {
      if (accepted === 0) finish(1, 'no subscription was accepted');
    });
    live.on('notice', (n) => io.err(formatNotice(n)));
    live.on('idle', () => finish(0, 'every subscription has ended'));
    live.on('delivery', (d) => {
      if (done) return;
      delivered++;
      io.out(format === 'text' ? formatDelivery(d) : JSON.stringify(d));
      if (count !== undefined && delivered >= count) finish(0, `${count} deliveries received`);
    });
    live.on('loginRefused', (rc, m) => finish(1, `the gateway refused the login at ${brokerUrl}: ${rc === 4 ? 'bad credentials (4)' : 'not authorised (5)'}: ${m}`));
    live.on('connectFailed', (e) => finish(1, brokerFailure(brokerUrl, e)));
    live.on('connectionLost', (why) => io.err(`mqtt: connection lost (${why}); reconnecting with a fresh login`));
  });
}

/**
 * The broker `subscribe` dials without --mqtt, over the same kind of transport as the API (an
 * https API: MQTT over TLS).
 *   - The gateway running on --dataDir, when `base` is its API: the listeners it advertises in
 *     dataDir/gateway.json: mqtts://<the API's host>:<mqttTlsPort> for an https API; the plain
 *     loopback listener for an http API, or when it runs no TLS listener (same box, loopback).
 *   - Else an https `base`: mqtts://<its host>:<mqtt.tls.port> (8883 unless configured): the API
 *     does not say where the broker listens, so --mqtt is needed when it is anywhere else.
 *   - Else mqtt://<mqtt.host>:<mqtt.port> of the configuration (127.0.0.1:1883).
 * @example defaultBrokerUrl('https://gw.ward3:8080', cfg, undefined) // 'mqtts://gw.ward3:8883'
 */
export function defaultBrokerUrl(base: string, cfg: GatewayConfig, running: RunningGateway | undefined): string {
  const api = new URL(base);
  const https = api.protocol === 'https:';
  if (running && normaliseUrl(running.httpUrl) === base) {
    return https && running.mqttTlsPort !== undefined ? `mqtts://${api.hostname}:${running.mqttTlsPort}` : `mqtt://127.0.0.1:${running.mqttPort}`;
  }
  return https ? `mqtts://${api.hostname}:${cfg.mqtt.tls.port}` : `mqtt://${cfg.mqtt.host}:${cfg.mqtt.port}`;
}

/** Why the broker could not be reached, with what to do when its certificate is not trusted. */
function brokerFailure(brokerUrl: string, e: Error & { code?: string | number }): string {
  if (typeof e.code === 'string' && CERT_ERRORS.has(e.code)) return `cannot trust the broker at ${brokerUrl}: ${e.code} (${e.message}); give its CA with --ca FILE (or NODE_EXTRA_CA_CERTS)`;
  return `cannot connect to ${brokerUrl}: ${e.message}`;
}

function sessionGatewayId(store: SessionStore, base: string, address: string): string | undefined {
  try {
    const s = store.find(base, address);
    return s && s !== 'ambiguous' ? s.gatewayId : undefined;
  } catch {
    return undefined;
  }
}

// ---- historical: export --------------------------------------------------------------------

export const EXPORT_FORMAT = 'vitalproof.research-export';
export const CSV_HEADER = 'time_ms,metric,channel,value,device,seq,frame_sha256';

/** The CSV rows of one frame: one per sample and channel (the API's csv columns). */
export function csvRows(f: ApiFrame): string[] {
  const rows: string[] = [];
  for (const r of f.readings) for (const [channel, value] of Object.entries(r.values)) rows.push(`${r.timeMs},${f.metric},${channel},${value},${f.deviceId},${f.seq},${f.frameSha256}`);
  return rows;
}

/** Where an export stands, for its progress line. */
export interface ExportState {
  grantId: string;
  pages: number;
  frames: number;
  readings: number;
  proofs: number;
  bytes: number;
  /** The data range being exported (ms), once the first page told it. */
  fromMs?: number;
  toMs?: number;
  /** Device time of the last reading written. */
  lastMs?: number;
  elapsedMs: number;
  done?: boolean;
}

/** The progress line: pages, frames, readings, how far through the data range, rate. */
export function formatExportProgress(s: ExportState): string {
  const pct = s.fromMs !== undefined && s.toMs !== undefined && s.lastMs !== undefined && s.toMs > s.fromMs ? Math.max(0, Math.min(100, Math.floor((100 * (s.lastMs - s.fromMs)) / (s.toMs - s.fromMs)))) : undefined;
  const rate = s.elapsedMs > 0 ? Math.round((s.frames * 1000) / s.elapsedMs) : 0;
  return (
    `${s.done ? 'exported' : 'exporting'} grant ${s.grantId}: ${s.pages} page${s.pages === 1 ? '' : 's'}, ${thousands(s.frames)} frames, ${thousands(s.readings)} readings` +
    (s.proofs ? `, ${thousands(s.proofs)} proofs` : '') +
    `, ${megabytes(s.bytes)}` +
    (s.lastMs !== undefined && !s.done ? `, up to ${iso(s.lastMs)}${pct !== undefined ? ` (${pct} % of the range)` : ''}` : '') +
    `, ${(s.elapsedMs / 1000).toFixed(1)} s${rate ? `, ${thousands(rate)} frames/s` : ''}`
  );
}

function thousands(n: number): string {
  return n.toLocaleString('en-US');
}

function megabytes(b: number): string {
  return b < 1024 * 1024 ? `${(b / 1024).toFixed(1)} kB` : `${(b / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * The progress display: on a terminal one line redrawn in place (at most every 100 ms); on
 * anything else a line every `intervalMs` (default 5 s), and the last one at the end.
 */
export class ProgressLine {
  private lastDraw = -Infinity;
  private drawn = false;
  constructor(
    private readonly stream: { isTTY?: boolean; write: (s: string) => unknown },
    private readonly intervalMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  update(line: string, force = false): void {
    const t = this.now();
    if (this.stream.isTTY) {
      if (!force && t - this.lastDraw < 100) return;
      this.stream.write(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else {
      if (!force && t - this.lastDraw < this.intervalMs) return;
      this.stream.write(`${line}\n`);
    }
    this.lastDraw = t;
  }

  finish(line: string): void {
    if (this.stream.isTTY) this.stream.write(`\r\x1b[2K${line}\n`);
    else this.stream.write(`${line}\n`);
    this.drawn = false;
  }

  /** Ends a redrawn line before other output (a TTY), so it is not overwritten. */
  break(): void {
    if (this.stream.isTTY && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}

/** A file written in pieces to a temporary name and renamed into place when complete. */
class StagedFile {
  private readonly tmp: string;
  private fd: number;
  bytes = 0;
  constructor(readonly path: string) {
    this.tmp = `${path}.${process.pid}.partial`;
    this.fd = openSync(this.tmp, 'w', 0o644);
  }
  write(s: string): void {
    const b = Buffer.from(s, 'utf8');
    writeSync(this.fd, b);
    this.bytes += b.length;
  }
  commit(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
    renameSync(this.tmp, this.path);
  }
  discard(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    rmSync(this.tmp, { force: true });
  }
}

async function exportGrant(rest: string[], flags: Record<string, string>, base: string, key: BaseWallet | undefined, store: SessionStore, io: CliIo): Promise<number> {
  const grantId = rest[0];
  if (!grantId || rest.length > 1 || !/^[1-9]\d*$/.test(grantId)) throw new ConfigError(`research export needs a grant id (a positive integer)\n${RESEARCH_USAGE}`);
  const out = flags['out'];
  if (!out || out === 'true') throw new ConfigError(`research export needs --out FILE\n${RESEARCH_USAGE}`);
  const format = flags['format'] ?? 'json';
  if (format !== 'json' && format !== 'csv') throw new ConfigError(`--format must be json or csv, got "${format}"`);
  const proofs = flags['proofs'] !== undefined;
  if (proofs && flags['proofs'] !== 'true') throw new ConfigError('--proofs takes no value');
  const now = Date.now();
  const q = new URLSearchParams({ format: 'json' });
  for (const k of ['from', 'to'] as const) if (flags[k] !== undefined) q.set(k, String(parseTimeArg(`--${k}`, flags[k], now)));
  if (flags['metric'] !== undefined) for (const m of parseMetrics(flags['metric'])) q.append('metric', m.name);
  if (proofs) q.set('proofs', '1');
  const limit = flags['limit'] !== undefined ? positive('--limit', flags['limit']) : 1000;
  if (limit > 10_000) throw new ConfigError('--limit is at most 10000 frames per page');
  q.set('limit', String(limit));
  const intervalMs = flags['progress-interval'] !== undefined ? positive('--progress-interval', flags['progress-interval']) : 5000;

  const started = Date.now();
  const state: ExportState = { grantId, pages: 0, frames: 0, readings: 0, proofs: 0, bytes: 0, elapsedMs: 0 };
  const progress = new ProgressLine(io.progress ?? process.stderr, intervalMs);
  const draw = (force = false): void => {
    state.elapsedMs = Date.now() - started;
    state.bytes = file.bytes + (proofFile?.bytes ?? 0);
    progress.update(formatExportProgress(state), force);
  };
  const file = new StagedFile(out);
  const proofFile = proofs ? new StagedFile(`${out}.proofs.json`) : undefined;
  const ticker = setInterval(() => draw(), Math.min(intervalMs, 1000));
  ticker.unref();
  const skipped = new Map<string, number>();
  try {
    let cursor: string | null = null;
    let first: ReadingsPage | undefined;
    do {
      if (cursor) q.set('cursor', cursor);
      const path = `/research/grants/${grantId}/readings?${q}`;
      const page: ReadingsPage = await withSession(base, key, store, (token) => apiRequest<ReadingsPage>(base, path, { token }));
      if (!Array.isArray(page.frames)) throw new ApiError(200, 'NOT_A_PAGE', 'the answer has no frames', path);
      if (!first) {
        first = page;
        state.fromMs = toMs(page.from);
        // Nothing is recorded in the future: a data window reaching past now ends, for the progress, now.
        const to = toMs(page.to);
        state.toMs = to !== undefined ? Math.min(to, started) : undefined;
        if (format === 'json') {
          file.write(`{"format":${JSON.stringify(EXPORT_FORMAT)},"version":1,"gateway":${JSON.stringify(base)},"grantId":${JSON.stringify(String(page.grantId ?? grantId))},"patient":${JSON.stringify(page.patient)},"from":${JSON.stringify(page.from)},"to":${JSON.stringify(page.to)},"metrics":${JSON.stringify(q.getAll('metric').length ? q.getAll('metric') : null)},"proofs":${proofs},"frames":[`);
        } else file.write(`${CSV_HEADER}\n`);
        proofFile?.write(`{"format":${JSON.stringify(BUNDLES_FORMAT)},"version":${BUNDLE_VERSION},"bundles":[`);
      }
      for (const f of page.frames) {
        if (format === 'json') file.write(`${state.frames ? ',' : ''}\n${JSON.stringify(f)}`);
        else for (const r of csvRows(f)) file.write(`${r}\n`);
        state.frames++;
        state.readings += f.readings.length;
        const last = f.readings[f.readings.length - 1];
        if (last) state.lastMs = Math.max(state.lastMs ?? 0, last.timeMs);
      }
      for (const x of page.proofsSkipped ?? []) skipped.set(x.code, (skipped.get(x.code) ?? 0) + 1);
      for (const b of page.proofs ?? []) {
        proofFile?.write(`${state.proofs ? ',' : ''}\n${JSON.stringify(b)}`);
        state.proofs++;
      }
      state.pages++;
      draw();
      cursor = page.nextCursor ?? null;
    } while (cursor);
    if (format === 'json') file.write(`\n],"summary":${JSON.stringify({ pages: state.pages, frames: state.frames, readings: state.readings, proofs: state.proofs })},"exportedAtMs":${Date.now()}}\n`);
    proofFile?.write('\n]}\n');
    file.commit();
    proofFile?.commit();
  } catch (e) {
    file.discard();
    proofFile?.discard();
    progress.break();
    throw e;
  } finally {
    clearInterval(ticker);
  }
  state.done = true;
  state.elapsedMs = Date.now() - started;
  state.bytes = file.bytes + (proofFile?.bytes ?? 0);
  progress.finish(formatExportProgress(state));
  io.out(`wrote ${out} (${format}, ${thousands(state.frames)} frames, ${thousands(state.readings)} readings)${proofFile ? ` and ${proofFile.path} (${thousands(state.proofs)} proof bundles)` : ''}`);
  const unproven = proofs ? state.frames - state.proofs : 0;
  if (unproven > 0) io.err(`note: ${unproven} exported frame${unproven === 1 ? ' has' : 's have'} no proof bundle${skipped.size ? ` (${[...skipped].map(([c, n]) => `${c} ${n}`).join(', ')})` : ''}: frames not anchored yet get one when exported again after the next anchor`);
  return 0;
}

function toMs(v: number | string): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return undefined;
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

function positive(name: string, v: string): number {
  if (!/^[1-9]\d*$/.test(v)) throw new ConfigError(`${name} must be a positive integer, got "${v}"`);
  return Number(v);
}

// ---- verify --------------------------------------------------------------------------------

/** What the cross-check of an export against its bundles found. */
export interface ExportCheck {
  frames: number;
  readings: number;
  /** Frames with a bundle whose signed frame hashes to their frameSha256 and holds each of their readings. */
  matched: number;
  /** Frames without a bundle (not anchored at export time). */
  unproven: string[];
  /** Frames whose readings are not those of the signed frame. */
  mismatched: string[];
}

/**
 * Holds exported frames to the signed frames of `bundles`: a frame's bundle is the one whose raw
 * frame bytes hash (SHA-256) to its frameSha256; each exported reading must be a sample of that
 * frame, at the same time, with the same value in every channel.
 */
export function checkExportAgainstBundles(frames: readonly ApiFrame[], bundles: readonly ProofBundle[]): ExportCheck {
  const byHash = new Map<string, ProofBundle>();
  for (const b of bundles) byHash.set(createHash('sha256').update(Buffer.from(b.frame.raw, 'base64')).digest('hex'), b);
  const r: ExportCheck = { frames: frames.length, readings: 0, matched: 0, unproven: [], mismatched: [] };
  for (const f of frames) {
    r.readings += f.readings.length;
    const name = `${f.deviceId}/${f.seq}`;
    const b = byHash.get(f.frameSha256.toLowerCase().replace(/^0x/, ''));
    if (!b) {
      r.unproven.push(name);
      continue;
    }
    const frame = decodeFrame(Buffer.from(b.frame.raw, 'base64'));
    // A sample's time in ms, fractional when the sampling interval is not whole ms (as the gateway serves it).
    const samples = new Map<number, Record<string, number>>();
    for (let i = 0; i < frame.count; i++) {
      const ns = sampleTimeNs(frame, i);
      samples.set(Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6, Object.fromEntries(frame.spec.channels.map((c, ci) => [c, sampleValue(frame, i, ci)])));
    }
    const ok =
      frame.deviceId === f.deviceId &&
      frame.seq.toString() === f.seq &&
      frame.spec.name === f.metric &&
      f.readings.every((x) => {
        const s = samples.get(x.timeMs);
        return s !== undefined && Object.keys(x.values).length === Object.keys(s).length && Object.entries(x.values).every(([c, v]) => s[c] !== undefined && Math.abs(s[c]! - v) <= 1e-9 * Math.max(1, Math.abs(v)));
      });
    if (ok) r.matched++;
    else r.mismatched.push(name);
  }
  return r;
}

/** Reads an export file (json, or csv regrouped into frames). @throws Error for a file that is neither. */
export function readExportFile(path: string): { kind: 'json' | 'csv'; frames: ApiFrame[] } | undefined {
  const text = readFileSync(path, 'utf8');
  if (text.startsWith(`${CSV_HEADER}\n`) || text === CSV_HEADER) {
    const frames = new Map<string, ApiFrame>();
    for (const line of text.split('\n').slice(1)) {
      if (!line) continue;
      const [t, metric, channel, value, device, seq, sha] = line.split(',');
      const k = `${device}/${seq}`;
      let f = frames.get(k);
      if (!f) frames.set(k, (f = { metric: metric!, deviceId: device!, seq: seq!, frameSha256: sha!, batch: null, leaf: null, readings: [] }));
      let r = f.readings.find((x) => x.timeMs === Number(t));
      if (!r) f.readings.push((r = { timeMs: Number(t), values: {} }));
      r.values[channel!] = Number(value);
    }
    return { kind: 'csv', frames: [...frames.values()] };
  }
  let doc: { format?: unknown; frames?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    return undefined;
  }
  if (doc.format !== EXPORT_FORMAT || !Array.isArray(doc.frames)) return undefined;
  return { kind: 'json', frames: doc.frames as ApiFrame[] };
}

async function researchVerify(argv: string[], io: CliIo): Promise<number> {
  // verify-cli's own options pass through unchanged; the one file may be an export or bundles.
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--rpc' || a === '--deployment') i++;
    else if (!a.startsWith('-')) files.push(a);
  }
  if (files.length !== 1) throw new ConfigError(`research verify needs one FILE: an export (with its FILE.proofs.json) or a bundle file\n${RESEARCH_USAGE}`);
  const file = files[0]!;
  if (!existsSync(file)) throw new ConfigError(`research verify: no such file ${file}`);
  const exp = readExportFile(file);
  const bundleFile = exp ? `${file}.proofs.json` : file;
  if (exp && !existsSync(bundleFile)) {
    io.err(`error: ${bundleFile} does not exist: export with --proofs to verify what was exported`);
    return 2;
  }
  const flagArgs = argv.filter((a) => a !== file);
  const code = await verifyCommand([bundleFile, ...flagArgs], io.out, io.err);
  if (!exp || code === 2) return code;
  let bundles: ProofBundle[];
  try {
    bundles = parseBundles(JSON.parse(readFileSync(bundleFile, 'utf8')));
  } catch (e) {
    if (!isBundleFormatError(e)) throw e;
    return 2;
  }
  const c = checkExportAgainstBundles(exp.frames, bundles);
  const json = argv.includes('--json');
  const line = `export ${file}: ${c.frames} frames, ${c.readings} readings; ${c.matched} frames match their signed, proven frame, ${c.mismatched.length} do not, ${c.unproven.length} have no proof`;
  if (json) io.err(line);
  else io.out(line);
  for (const m of c.mismatched.slice(0, 20)) io.err(`  MISMATCH ${m}: the exported readings are not those of the signed frame`);
  if (c.unproven.length) io.err(`  ${c.unproven.length} frame${c.unproven.length === 1 ? ' was' : 's were'} not anchored when exported (e.g. ${c.unproven.slice(0, 3).join(', ')}): export again later to prove them`);
  return code !== 0 || c.mismatched.length || c.unproven.length ? 1 : 0;
}

