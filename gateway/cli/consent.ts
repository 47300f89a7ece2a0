/**
 * `vitalproof consent …`: the patient's side (docs/research-api.md, "Command line"). The patient
 * signs with their own key (--key-file), the one the hospital bound to their pseudonym
 * (`vitalproof admin bind-patient`); only that key grants and revokes for them.
 *
 *   consent grant --key-file F --pseudonym P --researcher 0x… --metrics a,b --from T --to T
 *                 --expires T --purpose TEXT
 *   consent revoke ID --key-file F
 *   consent list --pseudonym P [--key-file F] [--disclosures [--url U] [--from T --to T] [--out FILE]] [--json]
 *
 * Times (T): Unix ms, ISO 8601 (2026-05-04T10:00:00Z, or a date), `now`, or now plus or minus a
 * duration: `now-1h`, `now+30d`, `+7d`, `-15m` (units ms, s, m, h, d, w; now is taken to the
 * whole second, except with ms).
 *
 * The chain is the other commands' (gateway/chain/runtime.ts openChainForCli): the embedded chain
 * of the gateway running on --dataDir, or that data dir's embedded chain started for the
 * command, or the configured external chain. DEV ONLY, on the embedded chain: the accounts of the
 * public test mnemonic are funded; 0, 1 and 2 are the deployer, the hospital admin and the
 * gateway; the demo and the README use dev account 3 as the patient and dev account 4 as the
 * researcher (`vitalproof admin dev-key 3 > patient.key`).
 *
 * The pseudonym names the patient off chain; on chain the patient is the patientRef their key is
 * bound to. `grant` checks that the two agree when the data dir knows the pseudonym's
 * patientRef (its devices' enrolment, or the hospital's patient-ref key), and refuses otherwise.
 *
 * `list --disclosures` logs in to the gateway's HTTP API with the patient's key (a session as in
 * `vitalproof research login`) and fetches the disclosure report (docs/consent.md): every access
 * to the patient's data, each anchored one with its access proof, which is verified against the
 * chain here (inclusion, anchor, grant).
 *
 * Exit codes: 0 done, 1 refused or failed (a revert, a proof that does not verify), 2 usage error.
 */
import { writeFileSync } from 'node:fs';
import { getAddress, id, ZeroHash } from 'ethers';
import { consentRegistryInterface, sensorMaskOf, type ConsentRegistryContract, type Grant } from '../chain/contracts.js';
import { readKeyFile, type ChainRuntime } from '../chain/runtime.js';
import { runningGateway } from '../running.js';
import { verifyAccessBundle } from '../proof/access-verify.js';
import type { DisclosureItem, DisclosureReport } from '../consent/disclosure.js';
import { ApiError, apiRequest, defaultSessionFile, sessionFor, SessionStore } from '../research-client/index.js';
import { trustCaFile } from '../util/tls-trust.js';
import { addressArg, chainConfigKey, checkPseudonym, parseArgs, parseMetrics, parseTimeArg } from './args.js';
import { chainConfig, consentOf, revertMessage, send, withChain } from './chain-context.js';
import { badUsage } from './errors.js';
import { defaultIo, formatGrantTable, iso, metricNames, short, type CliIo, type GrantRow } from './output.js';
import { isFallbackOf, resolvePatientRef } from './patient-ref.js';
import type { AccessEntryJson } from '../consent/access-entry.js';

export const CONSENT_USAGE = `usage: vitalproof consent <grant|revoke|list> [options]
  grant    --key-file F --pseudonym P --researcher 0x… --metrics a,b --from T --to T --expires T --purpose TEXT
           the patient (the key bound to P) lets the researcher receive the metrics (sensor names:
           heart_rate, spo2, …) of P's data recorded from T to T (inclusive), until the expiry;
           purposeRef = keccak256(TEXT) on chain; prints the grant id
  revoke ID --key-file F
           ends grant ID now (live deliveries stop within 2 s of the block)
  list     --pseudonym P [--key-file F]
           P's grants and their status, from the chain
           --disclosures   also the disclosure report from the gateway (needs --key-file): every
                           access to P's data, each anchored one verified against the chain
           --url U         the gateway's HTTP API (default: the gateway running on --dataDir, else
                           http://HTTP.HOST:HTTP.PORT of the configuration)
           --ca FILE       trust FILE's CA certificates for an https --url (besides the system's
                           and NODE_EXTRA_CA_CERTS)
           --from T --to T access times of the report (default: all)
           --out FILE      write the whole report (with its proofs) to FILE
           --json          machine-readable output
           --session-file F  where sessions are kept (default ~/.vitalproof/sessions.json)
times T: Unix ms, ISO 8601, now, now±N(ms|s|m|h|d|w) (e.g. now-1h, now+30d)
chain: --dataDir DIR (its embedded chain, or the running gateway's), or --config FILE / --chain.* for
an external one. DEV ONLY on the embedded chain: dev account 3 is the demo's patient, 4 its researcher
exit code: 0 done, 1 refused or failed, 2 usage error`;

const VALUES = ['ca', 'key-file', 'pseudonym', 'researcher', 'metrics', 'from', 'to', 'expires', 'purpose', 'url', 'out', 'session-file'];
const SWITCHES = ['disclosures', 'json'];
const OWN = [...VALUES, ...SWITCHES, 'help'];

/**
 * Runs `vitalproof consent` with `argv` (the arguments after "consent").
 * @returns the exit code; usage errors are thrown as UsageError or ConfigError (exit code 2).
 */
export async function consentCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const { positionals, flags } = parseArgs(argv, { values: VALUES, switches: SWITCHES, others: chainConfigKey, usage: CONSENT_USAGE });
  const sub = positionals[0];
  if (flags['help'] || !sub) {
    (sub ? io.out : io.err)(CONSENT_USAGE);
    return sub ? 0 : 2;
  }
  switch (sub) {
    case 'grant':
      return grantCommand(positionals.slice(1), flags, io);
    case 'revoke':
      return revokeCommand(positionals.slice(1), flags, io);
    case 'list':
      return listCommand(positionals.slice(1), flags, io);
    default:
      throw badUsage(`unknown consent command "${sub}"`, CONSENT_USAGE);
  }
}

async function grantCommand(rest: string[], flags: Record<string, string>, io: CliIo): Promise<number> {
  if (rest.length) throw badUsage(`consent grant takes no positional argument (got "${rest[0]}")`);
  const missing = ['key-file', 'pseudonym', 'researcher', 'metrics', 'from', 'to', 'expires', 'purpose'].filter((k) => flags[k] === undefined);
  if (missing.length) throw badUsage(`consent grant needs ${missing.map((k) => `--${k}`).join(', ')}`, CONSENT_USAGE);
  const pseudonym = flags['pseudonym']!;
  checkPseudonym(pseudonym);
  const researcher = addressArg('--researcher', flags['researcher']!);
  const metrics = parseMetrics(flags['metrics']!);
  const now = Date.now();
  const from = parseTimeArg('--from', flags['from']!, now);
  const to = parseTimeArg('--to', flags['to']!, now);
  const expires = parseTimeArg('--expires', flags['expires']!, now);
  if (from > to) throw badUsage(`--from (${iso(from)}) is after --to (${iso(to)})`);
  if (expires <= now) throw badUsage(`--expires (${iso(expires)}) must be in the future`);
  const purpose = flags['purpose']!;
  if (!purpose.trim()) throw badUsage('--purpose must not be empty');
  const key = readKeyFile(flags['key-file']!);
  const cfg = chainConfig(flags, OWN, flags['key-file']);
  return withChain(cfg, async (chain) => {
    const consent = consentOf(chain);
    const ref = await patientRefForKey(chain, consent, cfg.dataDir, pseudonym, key.address, io);
    if (!ref) return 1;
    const patient = key.connect(chain.provider);
    const purposeRef = id(purpose);
    const receipt = await send(
      () =>
        (consent.connect(patient) as ConsentRegistryContract).grant(ref, researcher, sensorMaskOf(metrics.map((m) => m.code)), from, to, expires, purposeRef),
      chain,
      io,
    );
    if (!receipt) return 1;
    const ev = receipt.logs.map((l) => safeParse(l)).find((p) => p?.name === 'ConsentGranted');
    const grantId = ev ? (ev.args[0] as bigint) : undefined;
    if (grantId === undefined) throw new Error(`grant transaction ${receipt.hash} has no ConsentGranted event`);
    if (flags['json']) {
      io.out(
        JSON.stringify({
          grantId: grantId.toString(),
          patient: pseudonym,
          researcher,
          metrics: metrics.map((m) => m.name),
          dataFromMs: from,
          dataToMs: to,
          expiresAtMs: expires,
          purposeRef,
          txHash: receipt.hash,
          block: receipt.blockNumber,
        }),
      );
    } else {
      io.out(
        `grant ${grantId}: ${pseudonym} lets ${researcher} receive ${metrics.map((m) => m.name).join(', ')} recorded ${iso(from)} to ${iso(to)}, until ${iso(expires)}`,
      );
      io.out(`  purpose "${purpose}" (purposeRef ${purposeRef}); tx ${receipt.hash}, block ${receipt.blockNumber}`);
    }
    return 0;
  });
}

async function revokeCommand(rest: string[], flags: Record<string, string>, io: CliIo): Promise<number> {
  const idArg = rest[0];
  if (!idArg || rest.length > 1 || !/^[1-9]\d*$/.test(idArg)) throw badUsage('consent revoke needs a grant id (a positive integer)', CONSENT_USAGE);
  if (!flags['key-file']) throw badUsage("consent revoke needs --key-file (the patient's key)", CONSENT_USAGE);
  const key = readKeyFile(flags['key-file']);
  const cfg = chainConfig(flags, OWN, flags['key-file']);
  return withChain(cfg, async (chain) => {
    const consent = consentOf(chain);
    let g: Grant;
    try {
      g = await consent.getGrant(BigInt(idArg));
    } catch (e) {
      const why = revertMessage(e);
      if (!why) throw e;
      io.err(`no grant ${idArg} on ConsentRegistry ${chain.record.consentRegistry!.address} (${why})`);
      return 1;
    }
    if (g.revokedAtMs !== 0n) {
      io.out(`grant ${idArg} was revoked already at ${iso(Number(g.revokedAtMs))}: nothing to do`);
      return 0;
    }
    const owner = await consent.patientOf(g.patientRef);
    if (getAddress(owner) !== key.address) {
      io.err(
        `refused: grant ${idArg} is for patientRef ${short(g.patientRef)}, whose bound address is ${getAddress(owner)}, not ${key.address}: only the patient revokes`,
      );
      return 1;
    }
    const receipt = await send(() => (consent.connect(key.connect(chain.provider)) as ConsentRegistryContract).revoke(BigInt(idArg)), chain, io);
    if (!receipt) return 1;
    const ev = receipt.logs.map((l) => safeParse(l)).find((p) => p?.name === 'ConsentRevoked');
    const at = ev ? Number(ev.args[3] as bigint) : undefined;
    io.out(
      `revoked grant ${idArg} (${metricNames(g.sensorMask).join(', ')} to ${getAddress(g.researcher)})${at ? ` at ${iso(at)}` : ''}; tx ${receipt.hash}, block ${receipt.blockNumber}`,
    );
    return 0;
  });
}

async function listCommand(rest: string[], flags: Record<string, string>, io: CliIo): Promise<number> {
  if (rest.length) throw badUsage(`consent list takes no positional argument (got "${rest[0]}")`);
  const pseudonym = flags['pseudonym'];
  if (!pseudonym) throw badUsage('consent list needs --pseudonym', CONSENT_USAGE);
  checkPseudonym(pseudonym);
  const disclosures = flags['disclosures'] !== undefined;
  const keyFile = flags['key-file'];
  if (disclosures && !keyFile)
    throw badUsage("consent list --disclosures needs --key-file: the gateway shows a patient's disclosures to the patient's key only");
  const now = Date.now();
  const from = flags['from'] !== undefined ? parseTimeArg('--from', flags['from'], now) : undefined;
  const to = flags['to'] !== undefined ? parseTimeArg('--to', flags['to'], now) : undefined;
  if (!disclosures && (from !== undefined || to !== undefined || flags['out'] !== undefined)) throw badUsage('--from, --to and --out apply to --disclosures');
  const key = keyFile ? readKeyFile(keyFile) : undefined;
  const cfg = chainConfig(flags, OWN, keyFile);
  const json = flags['json'] !== undefined;
  return withChain(cfg, async (chain) => {
    const consent = consentOf(chain);
    let ref: string | undefined;
    if (key) {
      ref = await patientRefForKey(chain, consent, cfg.dataDir, pseudonym, key.address, io);
      if (!ref) return 1;
    } else {
      ref = resolvePatientRef(cfg.dataDir, pseudonym)?.patientRef;
      if (!ref) {
        io.err(`${cfg.dataDir} does not know the patientRef of ${pseudonym} (no enrolled device, no patient-ref key): give the patient's --key-file instead`);
        return 1;
      }
    }
    const ids = await consent.grantIdsOf(ref);
    const grants = await Promise.all(ids.map(async (gid) => grantRow(gid, await consent.getGrant(gid), now)));
    grants.reverse(); // newest first, as the API lists them
    let report: DisclosureReport | undefined;
    let verified: VerifiedItem[] = [];
    if (disclosures) {
      if (flags['ca'] !== undefined) trustCaFile(flags['ca']);
      const base = flags['url'] ?? runningGateway(cfg.dataDir)?.httpUrl ?? `${cfg.http.tls.cert ? 'https' : 'http'}://${cfg.http.host}:${cfg.http.port}`;
      const store = new SessionStore(flags['session-file'] ?? defaultSessionFile());
      const q = new URLSearchParams({ pseudonym });
      if (from !== undefined) q.set('from', String(from));
      if (to !== undefined) q.set('to', String(to));
      try {
        report = await sessionFor(base, key!, store, (token) => apiRequest<DisclosureReport>(base, `/patient/disclosures?${q}`, { token }));
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        io.err(`disclosure report refused: ${e.describe()}`);
        return 1;
      }
      if (flags['out']) writeFileSync(flags['out'], `${JSON.stringify(report, null, 2)}\n`);
      verified = await verifyItems(report.items, chain);
    }
    if (json) {
      io.out(
        JSON.stringify(
          {
            pseudonym,
            patientRef: ref,
            grants,
            ...(report
              ? {
                  disclosures: {
                    summary: report.summary,
                    items: verified.map((v) => ({
                      ...v.entry,
                      status: v.status,
                      ...(v.reason ? { reason: v.reason } : {}),
                      ...(v.verdict ? { verified: v.verdict } : {}),
                    })),
                  },
                }
              : {}),
          },
          null,
          2,
        ),
      );
    } else {
      io.out(
        `${pseudonym} (patientRef ${short(ref)}, bound to ${getAddress(await consent.patientOf(ref))}): ${grants.length} grant${grants.length === 1 ? '' : 's'}`,
      );
      for (const l of formatGrantTable(grants)) io.out(`  ${l}`);
      if (report) {
        const s = report.summary;
        io.out(
          `disclosures (gateway ${report.gatewayId}): ${s.entries} access${s.entries === 1 ? '' : 'es'}, ${s.readings} readings, to ${s.researchers.length} researcher${s.researchers.length === 1 ? '' : 's'}${s.researchers.length ? ` (${s.researchers.join(', ')})` : ''}; ${s.anchored} anchored, ${s.pending} pending, ${s.errors} errors`,
        );
        for (const l of formatDisclosures(verified)) io.out(`  ${l}`);
        if (flags['out']) io.out(`report with its proofs written to ${flags['out']}`);
      }
    }
    const bad = verified.filter((v) => v.status === 'error' || (v.verdict !== undefined && v.verdict !== 'ok')).length;
    if (bad) io.err(`${bad} disclosure${bad === 1 ? '' : 's'} did not verify`);
    return bad ? 1 : 0;
  });
}

export function grantRow(grantId: bigint, g: Grant, nowMs: number): GrantRow {
  const revoked = g.revokedAtMs !== 0n;
  return {
    grantId: grantId.toString(),
    researcher: getAddress(g.researcher),
    metrics: metricNames(g.sensorMask),
    dataFromMs: Number(g.dataFromMs),
    dataToMs: Number(g.dataToMs),
    expiresAtMs: Number(g.expiresAtMs),
    purposeRef: g.purposeRef,
    grantedAtMs: Number(g.grantedAtMs),
    revokedAtMs: revoked ? Number(g.revokedAtMs) : null,
    status: revoked ? 'REVOKED' : nowMs >= Number(g.expiresAtMs) ? 'EXPIRED' : 'OK',
  };
}

interface VerifiedItem {
  status: DisclosureItem['status'];
  entry: DisclosureEntryView;
  reason?: string;
  /** 'ok', or the failed checks; undefined when not anchored (nothing to verify). */
  verdict?: string;
}

/** An access-log entry as the report shows it: without what identifies the patient (pseudonym, patientRef, salt). */
type DisclosureEntryView = Omit<AccessEntryJson, 'kind' | 'pseudonym' | 'patientRef' | 'salt'> & { kind: string; batchSeq?: string };

async function verifyItems(items: readonly DisclosureItem[], chain: ChainRuntime): Promise<VerifiedItem[]> {
  const out: VerifiedItem[] = [];
  for (const it of items) {
    if (it.status === 'anchored') {
      const v = await verifyAccessBundle(it.proof, {
        provider: chain.provider,
        trusted: {
          chainId: chain.chainId,
          anchorRegistry: chain.record.anchorRegistry.address,
          ...(chain.record.consentRegistry ? { consentRegistry: chain.record.consentRegistry.address } : {}),
        },
      });
      const failed = v.checks.filter((c) => c.status !== 'pass').map((c) => `${c.check} ${c.status}${c.code ? ` ${c.code}` : ''}`);
      out.push({ status: 'anchored', entry: { ...it.proof.entry, batchSeq: it.proof.anchor.batchSeq }, verdict: v.ok ? 'ok' : failed.join(', ') });
    } else {
      out.push({ status: it.status, entry: { ...it.entry, ...(it.batchSeq ? { batchSeq: it.batchSeq } : {}) }, reason: it.reason });
    }
  }
  return out;
}

/** One line per disclosure: when, to whom, what, and whether its proof verified. */
export function formatDisclosures(items: readonly VerifiedItem[]): string[] {
  if (items.length === 0) return ['(no accesses)'];
  return items.map((v) => {
    const e = v.entry;
    const proof =
      v.status === 'anchored'
        ? `anchored in access batch ${e.batchSeq}, proof ${v.verdict === 'ok' ? 'verified' : `FAILED: ${v.verdict}`}`
        : `${v.status}: ${v.reason}`;
    return `#${e.seq} ${e.kind.padEnd(6)} ${iso(e.firstAtMs)}..${iso(e.atMs).slice(11)} ${e.researcher} grant ${e.grantId}: ${e.count} ${e.metrics.join('+')} readings recorded ${iso(e.fromMs)}..${iso(e.toMs).slice(11)}; ${proof}`;
  });
}

/**
 * The patientRef the patient's key is bound to on chain, checked against the pseudonym: when the
 * data dir knows the pseudonym's patientRef (or the pseudonym is a `ref-…` one) the two must agree.
 * Reports a refusal on `io.err` and gives undefined.
 */
async function patientRefForKey(
  chain: ChainRuntime,
  consent: ConsentRegistryContract,
  dataDir: string,
  pseudonym: string,
  address: string,
  io: CliIo,
): Promise<string | undefined> {
  const bound = (await consent.patientRefOf(address)).toLowerCase();
  if (bound === ZeroHash) {
    io.err(
      `refused: ${address} is not bound to any patient on ConsentRegistry ${chain.record.consentRegistry!.address}; the hospital binds it: vitalproof admin bind-patient ${pseudonym} ${address}`,
    );
    return undefined;
  }
  const local = resolvePatientRef(dataDir, pseudonym);
  if (local ? local.patientRef !== bound : /^ref-/.test(pseudonym) && !isFallbackOf(pseudonym, bound)) {
    io.err(
      `refused: ${address} speaks for patientRef ${short(bound)}, but ${pseudonym} is patientRef ${local ? short(local.patientRef) : `${pseudonym.slice(4)}…`}: wrong key or wrong pseudonym`,
    );
    return undefined;
  }
  return bound;
}

function safeParse(l: { topics: readonly string[]; data: string }): ReturnType<typeof consentRegistryInterface.parseLog> | undefined {
  try {
    return consentRegistryInterface.parseLog({ topics: [...l.topics], data: l.data });
  } catch {
    return undefined;
  }
}
