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
 * `verify` runs `vitalproof verify` (gateway/cli/verify.ts) on the bundles and then holds
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
 * The client itself (HTTP API, sessions, live subscription, export writer) is the library
 * gateway/research-client/; this module and research-*.ts are its command line.
 *
 * Exit codes: 0 done, 1 refused or failed, 2 usage error.
 */
import { configFromFlags } from '../config.js';
import { readKeyFile } from '../chain/runtime.js';
import { runningGateway } from '../running.js';
import {
  ApiError,
  apiRequest,
  defaultSessionFile,
  httpLogin,
  logout,
  normaliseUrl,
  NoSessionError,
  SessionStore,
  withSession,
  type ApiGrant,
} from '../research-client/index.js';
import { trustCaFile } from '../util/tls-trust.js';
import { chainConfigKey, parseArgs, without } from './args.js';
import { badUsage } from './errors.js';
import { defaultIo, formatGrantTable, iso, type CliIo, type GrantRow } from './output.js';
import { CERT_ERRORS, RESEARCH_USAGE, type ResearchContext } from './research-common.js';
import { exportGrant } from './research-export.js';
import { subscribe } from './research-subscribe.js';
import { researchVerify } from './research-verify.js';

const VALUES = [
  'ca',
  'key-file',
  'url',
  'mqtt',
  'pseudonym',
  'metric',
  'count',
  'format',
  'gateway-id',
  'out',
  'from',
  'to',
  'limit',
  'session-file',
  'rpc',
  'deployment',
  'progress-interval',
];
const SWITCHES = ['all', 'proofs', 'offline', 'json'];
const OWN = [...VALUES, ...SWITCHES, 'help'];

/**
 * Runs `vitalproof research` with `argv` (the arguments after "research").
 * @returns the exit code; usage errors are thrown as UsageError or ConfigError (exit code 2).
 */
export async function researchCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const spec = { values: VALUES, switches: SWITCHES, usage: RESEARCH_USAGE };
  const first = parseArgs(argv, spec);
  const sub = first.positionals[0];
  if (first.flags['help'] || !sub) {
    (sub ? io.out : io.err)(RESEARCH_USAGE);
    return sub ? 0 : 2;
  }
  // verify takes vitalproof verify's options, and checks them itself.
  if (sub === 'verify') return researchVerify(without(argv, first.positionalIndexes[0]!), io);
  const { positionals, flags } = parseArgs(argv, { ...spec, others: chainConfigKey });
  const cfg = configFromFlags(flags, OWN);
  const running = runningGateway(cfg.dataDir);
  if (flags['ca'] !== undefined) trustCaFile(flags['ca']);
  const base = normaliseUrl(flags['url'] ?? running?.httpUrl ?? `${cfg.http.tls.cert ? 'https' : 'http'}://${cfg.http.host}:${cfg.http.port}`);
  const store = new SessionStore(flags['session-file'] ?? defaultSessionFile());
  const key = flags['key-file'] !== undefined ? readKeyFile(flags['key-file']) : undefined;
  const ctx: ResearchContext = { flags, base, key, store, io };
  const all = flags['all'] !== undefined;
  try {
    switch (sub) {
      case 'login': {
        if (!key) throw badUsage('research login needs --key-file', RESEARCH_USAGE);
        const s = await httpLogin(base, key, store);
        io.out(`logged in to gateway ${s.gatewayId} at ${base} as ${s.address}; session valid until ${iso(s.expiresAtMs)}, saved in ${store.path}`);
        const grants = await apiRequest<{ grants: ApiGrant[] }>(base, '/research/grants', { token: s.token }).catch(() => undefined);
        if (grants)
          io.out(
            `${grants.grants.length} grant${grants.grants.length === 1 ? '' : 's'}, ${grants.grants.filter((g) => g.status === 'OK').length} in force: vitalproof research grants --url ${base}`,
          );
        return 0;
      }
      case 'logout': {
        const { address, ended } = await logout(base, key, store, all);
        io.out(`logged out of ${base} as ${address}: ${ended} session${ended === 1 ? '' : 's'} ended${all ? ' (every session of the account)' : ''}`);
        return 0;
      }
      case 'grants': {
        const { grants } = await withSession(base, key, store, (token) => apiRequest<{ grants: ApiGrant[] }>(base, '/research/grants', { token }));
        if (flags['json']) io.out(JSON.stringify(grants, null, 2));
        else for (const l of formatApiGrants(grants)) io.out(l);
        return 0;
      }
      case 'subscribe':
        return await subscribe(ctx, cfg, running);
      case 'export':
        return await exportGrant(positionals.slice(1), ctx);
      default:
        throw badUsage(`unknown research command "${sub}"`, RESEARCH_USAGE);
    }
  } catch (e) {
    if (e instanceof ApiError) {
      io.err(`${e.describe()}${e.status === 401 && !key ? ' (log in again: vitalproof research login --key-file F)' : ''}`);
      return 1;
    }
    if (e instanceof NoSessionError) {
      io.err(sessionProblem(e, sub === 'logout' ? { all } : undefined));
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

/** What to do when there is no session to use; logout, which never logs in without --all, says so. */
function sessionProblem(e: NoSessionError, logout: { all: boolean } | undefined): string {
  const { url, sessionFile } = e.detail;
  if (logout && e.code === 'CLIENT_NO_SESSION')
    return `no session with ${url} in ${sessionFile}${logout.all ? ': give --key-file to end every session of the account' : ''}`;
  return e.message;
}

function unreachableMessage(e: unknown, base: string): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (e.name === 'TimeoutError') return `the gateway at ${base} did not answer in time`;
  if (cause?.code && CERT_ERRORS.has(cause.code))
    return `cannot trust the gateway at ${base}: ${cause.code} (${cause.message ?? ''}); give its CA with --ca FILE (or NODE_EXTRA_CA_CERTS)`;
  if (e.message === 'fetch failed' || cause?.code === 'ECONNREFUSED')
    return `cannot reach the gateway at ${base}: ${cause?.code ?? cause?.message ?? e.message} (is it running? --url)`;
  return undefined;
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
