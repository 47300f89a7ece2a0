/**
 * `vitalproof audit`: checks every point InfluxDB holds against the signed frames, the batch
 * store and the chain (gateway/audit/audit.ts; docs/audit.md), prints a summary and writes
 * the full report as JSON.
 *
 *   vitalproof audit [--device ID] [--from ISO|ms] [--to ISO|ms] [--json FILE|-] [--limit N]
 *                    [--gateway ADDR,…] [--config FILE] [--<config key> VALUE …]
 *   vitalproof audit --hospital [--patient PSEUDONYM | --device ID] [...]   (a hub's config: every gateway, gateway/audit/fleet.ts)
 *
 * Where it looks: InfluxDB at influx.url, else the running gateway's (dataDir/gateway.json),
 * else the data dir's embedded influxd (started for the audit, then stopped); the chain of
 * openChainForCli; the batch store in dataDir/batches; device keys from the chain's
 * DeviceRegistry, else from dataDir/registry.json.
 *
 * Exit code: 0 every point intact and nothing missing; 1 anything found; 2 usage or
 * configuration error, or the audit could not run (InfluxDB or the chain unreachable).
 */
import { existsSync } from 'node:fs';
import { auditFailed, finishReport } from './output.js';
import type { HospitalAuditOptions } from './audit-hospital.js';
import { join } from 'node:path';
import { ConfigError, configFromFlags, type GatewayConfig } from '../config.js';
import { parseArgs } from './args.js';
import { usageErrorLines } from './errors.js';
import { parseTimeMs } from '../util/time.js';
import { runningGateway } from '../running.js';
import { registryPath } from '../registry/open.js';
import { BatchStore } from '../anchor/batch-store.js';
import { chainDir, openChainForCli, type ChainRuntime } from '../chain/runtime.js';
import { DEPLOYMENT_FILE } from '../chain/deploy.js';
import { FileRegistry } from '../registry/file-registry.js';
import { influxForCommand, type CommandInflux } from './influx.js';
import { FINDING_CODES, runAudit, type AuditReport, type Finding, type FindingCode } from '../audit/audit.js';

export const AUDIT_USAGE = `usage: vitalproof audit [options]
  checks every point in InfluxDB against its signed frame, its Merkle batch and the root anchored on chain
  --device ID          one device (16 hex digits); default every device
  --from ISO|ms        start of the range (inclusive), ISO 8601 or ms since the epoch
  --to ISO|ms          end of the range (exclusive)
  --json FILE|-        write the full report as JSON to FILE, or to stdout with -
  --limit N            findings printed (default 20)
  --max-findings N     findings listed in the JSON report (default 100000; the counts are always complete)
  --gateway ADDR,...   gateway accounts whose anchors count (default: this gateway's chain account)
  --hospital           audit every gateway of the hospital store (a hub's config: influx.url, an external chain), no data dir
  --patient P          with --hospital: one patient's devices (pseudonym)
  --config FILE, and any config key as --key value (--dataDir, --influx.url, --chain.mode, ...)
exit code: 0 all intact, 1 findings, 2 usage/config error or the audit could not run`;

const SEVERITY: FindingCode[] = ['frame_tampered', 'edited', 'unexpected', 'missing', 'seq_gap', 'not_anchored', 'unverifiable'];
const OWN_FLAGS = ['device', 'from', 'to', 'json', 'limit', 'max-findings', 'gateway', 'config', 'help', 'hospital', 'patient'] as const;

/**
 * Runs the audit command. No side effects at import; `out` receives every line (the JSON
 * document too with `--json -`, in which case the summary goes to stderr).
 * @returns the exit code: 0 ok, 1 findings, 2 usage/config error or audit not possible.
 */
export async function auditCommand(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  let opts: ReturnType<typeof parseOptions>;
  let cfg: GatewayConfig;
  try {
    const { positionals, flags } = parseArgs(argv, { values: OWN_FLAGS.filter((f) => f !== 'help' && f !== 'hospital'), switches: ['hospital'] });
    if (flags['help'] !== undefined) {
      out(AUDIT_USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new ConfigError(`unexpected argument "${positionals[0]}"`);
    opts = parseOptions(flags);
    cfg = configFromFlags(flags, OWN_FLAGS);
  } catch (e) {
    const lines = usageErrorLines(e);
    if (!lines) throw e;
    out(lines[0]!);
    out(AUDIT_USAGE);
    return 2;
  }
  const say = opts.json === '-' ? (line: string): void => void process.stderr.write(`${line}\n`) : out;
  if (opts.hospital) return (await import('./audit-hospital.js')).hospitalAudit(cfg, opts, out, say);

  let influx: CommandInflux | undefined;
  let chain: ChainRuntime | undefined;
  try {
    const batchesDir = join(cfg.dataDir, 'batches');
    if (!existsSync(batchesDir)) throw new ConfigError(`no batch store in ${batchesDir}: --dataDir must be the gateway's data dir`);
    const running = runningGateway(cfg.dataDir);
    influx = await influxForCommand(cfg, 'the audit');
    const influxUrl = influx.url;
    const notes: string[] = [];
    if (cfg.chain.mode === 'off') notes.push('chain.mode is off: anchors are not checked (anchored frames are reported unverifiable)');
    else if (cfg.chain.mode === 'embedded' && !existsSync(join(chainDir(cfg.dataDir), DEPLOYMENT_FILE)))
      notes.push(`no embedded chain in ${chainDir(cfg.dataDir)}: anchors are not checked`);
    else chain = await openChainForCli(cfg);
    const gateways = opts.gateways ?? (chain ? [chain.address] : []);
    const regPath = registryPath(cfg.dataDir);
    const fileKeys = existsSync(regPath) ? new FileRegistry(regPath) : undefined;
    const gatewayId = running?.gatewayId ?? cfg.gatewayId;
    const report = await runAudit({
      influx: {
        url: influxUrl,
        database: cfg.influx.database,
        username: cfg.influx.username,
        password: cfg.influx.password,
        timeoutMs: Math.max(cfg.influx.timeoutMs, 60_000),
      },
      batchStore: new BatchStore(batchesDir),
      ...(chain
        ? {
            chain: {
              provider: chain.provider,
              anchorRegistry: chain.record.anchorRegistry.address,
              deviceRegistry: chain.record.deviceRegistry.address,
              gateways,
            },
          }
        : {}),
      ...(fileKeys ? { keys: (id: string) => fileKeys.get(id)?.publicKey, keysSource: 'file' } : {}),
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      ...(opts.fromMs !== undefined ? { fromMs: opts.fromMs } : {}),
      ...(opts.toMs !== undefined ? { toMs: opts.toMs } : {}),
      gatewayId,
      maxFindings: opts.maxFindings,
    });
    if (fileKeys) notes.push(`keys not on chain come from ${regPath}`);
    if (report.otherGateways.length) notes.push(`frames only other gateways accepted were left to their audits: ${report.otherGateways.join(', ')}`);
    if (report.summary.points === 0 && report.otherGateways.length > 0 && !running) {
      notes.push(
        `InfluxDB holds no frame accepted by gateway ${gatewayId}; if this data dir's gateway runs with another gatewayId (${report.otherGateways.join(', ')}), pass --gatewayId`,
      );
    }
    for (const line of formatAudit(report, { limit: opts.limit, chainId: chain?.chainId, notes })) say(line);
    return finishReport(report, opts.json, out, say);
  } catch (e) {
    return auditFailed(e, say);
  } finally {
    await chain?.stop().catch(() => undefined);
    await influx?.stop();
  }
}

interface CliOptions extends HospitalAuditOptions {
  /** --hospital: every gateway of the shared store (./audit-hospital.ts). */
  hospital?: boolean;
  gateways?: string[];
}

function parseOptions(flags: Record<string, string>): CliOptions {
  const o: CliOptions = { limit: 20, maxFindings: 100_000 };
  if (flags['hospital'] !== undefined) o.hospital = true;
  if (flags['patient'] !== undefined) {
    if (!o.hospital) throw new ConfigError('--patient needs --hospital');
    o.patient = flags['patient'];
  }
  if (flags['device'] !== undefined) {
    if (!/^[0-9a-f]{16}$/.test(flags['device'])) throw new ConfigError(`--device must be 16 lowercase hex digits, got "${flags['device']}"`);
    o.device = flags['device'];
  }
  if (flags['from'] !== undefined) o.fromMs = parseTime('--from', flags['from']);
  if (flags['to'] !== undefined) o.toMs = parseTime('--to', flags['to']);
  if (o.fromMs !== undefined && o.toMs !== undefined && o.toMs <= o.fromMs) throw new ConfigError('--to must be after --from');
  if (flags['json'] !== undefined) o.json = flags['json'];
  for (const [flag, prop] of [
    ['limit', 'limit'],
    ['max-findings', 'maxFindings'],
  ] as const) {
    if (flags[flag] === undefined) continue;
    const n = Number(flags[flag]);
    if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(`--${flag} must be a whole number, got "${flags[flag]}"`);
    o[prop] = n;
  }
  if (flags['gateway'] !== undefined) {
    const list = flags['gateway']
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
    for (const a of list) if (!/^0x[0-9a-fA-F]{40}$/.test(a)) throw new ConfigError(`--gateway: "${a}" is not an address`);
    o.gateways = list;
  }
  return o;
}

/** ms since the epoch, or an ISO 8601 time. @throws ConfigError */
function parseTime(flag: string, v: string): number {
  const ms = parseTimeMs(v);
  if (ms === undefined || !Number.isSafeInteger(ms)) throw new ConfigError(`${flag} "${v}" is neither an ISO time nor ms since the epoch`);
  return ms;
}

/** The readable summary: counts per code, then the first `limit` findings one per line. */
export function formatAudit(r: AuditReport, o: { limit: number; chainId?: number | undefined; notes?: string[] }): string[] {
  const lines: string[] = [];
  const range = r.range.from || r.range.to ? `${r.range.from ?? 'the beginning'} to ${r.range.to ?? 'now'}` : 'all time';
  lines.push(`audit of ${r.range.gatewayId ?? 'every gateway'}: ${r.range.device ?? 'every device'}, ${range}`);
  lines.push(
    `  InfluxDB ${r.influx.url} database ${r.influx.database}; batch store ${r.batchStore.dir} (last sealed ${r.batchStore.lastSealed}, last anchored ${r.batchStore.lastAnchored})`,
  );
  lines.push(
    r.chain
      ? `  chain ${o.chainId ?? ''}: AnchorRegistry ${r.chain.anchorRegistry}, DeviceRegistry ${r.chain.deviceRegistry}, trusted gateway ${r.chain.gateways.join(', ')}`
      : '  no chain: anchors not checked',
  );
  const ks = Object.entries(r.keySources)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  lines.push(`  device keys: ${ks || 'no devices'}`);
  for (const n of o.notes ?? []) lines.push(`  note: ${n}`);
  lines.push(`${r.summary.devices} devices, ${r.summary.points} points (InfluxDB queries: ${r.queries}):`);
  for (const code of Object.keys(FINDING_CODES) as FindingCode[]) lines.push(`  ${code.padEnd(15)} ${String(r.summary.counts[code]).padStart(9)}`);
  const total = r.findings.length + r.findingsOmitted;
  if (r.ok) {
    lines.push(
      r.summary.points > 0 ? 'OK: every point intact, nothing missing, no sequence gap' : 'OK: no points and no batch leaves in this range: nothing to audit',
    );
    return lines;
  }
  lines.push(
    `NOT OK: ${total} findings${total > o.limit ? ` (first ${o.limit})` : ''}${r.findingsOmitted ? `; the report lists ${r.findings.length} (--max-findings)` : ''}`,
  );
  // The gravest first: what was changed, then what is gone, then what could not be checked.
  const shown = [...r.findings].sort((a, b) => SEVERITY.indexOf(a.code) - SEVERITY.indexOf(b.code));
  for (const f of shown.slice(0, o.limit)) lines.push(`  ${formatFinding(f)}`);
  return lines;
}

export function formatFinding(f: Finding): string {
  const where = [
    f.measurement.padEnd(16),
    f.device,
    f.time ?? '',
    f.seq !== undefined ? `seq ${f.seq}` : '',
    f.batch !== undefined ? `batch ${f.batch} leaf ${f.leaf}` : '',
  ]
    .filter(Boolean)
    .join('  ');
  const what =
    f.code === 'edited'
      ? (f.diffs ?? [{ field: f.field!, stored: f.stored ?? null, expected: f.expected ?? null }])
          .map((d) => `${d.field} stored ${String(d.stored)}, signed ${String(d.expected)}`)
          .join('; ')
      : f.code === 'seq_gap'
        ? `${f.missingCount} seq missing: ${f.missingSeqs!.slice(0, 10).join(', ')}${f.missingCount! > 10 ? ', …' : ''}`
        : f.reason.length > 160
          ? `${f.reason.slice(0, 159)}…`
          : f.reason;
  return `${f.code.padEnd(15)} ${where}  ${what}`;
}
