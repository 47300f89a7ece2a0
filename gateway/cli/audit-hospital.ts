/**
 * `vitalproof audit --hospital`: the hospital audit (gateway/audit/fleet.ts; docs/audit.md, "The
 * hospital audit") with a hub's configuration: the hospital InfluxDB (influx.url) and the
 * external chain; no gateway data dir is needed.
 */
import { auditFailed, finishReport } from './output.js';
import { ConfigError, type GatewayConfig } from '../config.js';
import { openChainForCli, type ChainRuntime } from '../chain/runtime.js';
import { runFleetAudit, type FleetAuditReport } from '../audit/fleet.js';
import type { FindingCode } from '../audit/audit.js';

/** What `vitalproof audit` parsed that the hospital audit uses. */
export interface HospitalAuditOptions {
  device?: string;
  patient?: string;
  fromMs?: number;
  toMs?: number;
  json?: string;
  limit: number;
  maxFindings: number;
}

/** @returns the exit code: 0 all intact, 1 findings, 2 configuration error or the audit could not run. */
export async function hospitalAudit(cfg: GatewayConfig, opts: HospitalAuditOptions, out: (line: string) => void, say: (line: string) => void): Promise<number> {
  let chain: ChainRuntime | undefined;
  try {
    if (!cfg.influx.url) throw new ConfigError('--hospital audits the hospital InfluxDB: set influx.url (as the hub has it)');
    if (cfg.chain.mode === 'off') throw new ConfigError('--hospital checks anchors on the chain: chain.mode must not be off');
    chain = await openChainForCli(cfg);
    const r = await runFleetAudit({
      influx: {
        url: cfg.influx.url,
        database: cfg.influx.database,
        username: cfg.influx.username,
        password: cfg.influx.password,
        timeoutMs: Math.max(cfg.influx.timeoutMs, 60_000),
      },
      chain: { provider: chain.provider, anchorRegistry: chain.record.anchorRegistry.address, deviceRegistry: chain.record.deviceRegistry.address },
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      ...(opts.patient !== undefined ? { patient: opts.patient } : {}),
      ...(opts.fromMs !== undefined ? { fromMs: opts.fromMs } : {}),
      ...(opts.toMs !== undefined ? { toMs: opts.toMs } : {}),
      maxFindings: opts.maxFindings,
    });
    for (const line of formatHospitalAudit(r, opts.limit)) say(line);
    return finishReport(r, opts.json, out, say);
  } catch (e) {
    return auditFailed(e, say);
  } finally {
    await chain?.stop().catch(() => undefined);
  }
}

/** The readable summary of a hospital audit: one line per gateway, the totals, the first findings. */
export function formatHospitalAudit(r: FleetAuditReport, limit: number): string[] {
  const who = r.range.patient ? `patient ${r.range.patient}` : (r.range.device ?? 'every device');
  const range = r.range.from || r.range.to ? `${r.range.from ?? 'the beginning'} to ${r.range.to ?? 'now'}` : 'all time';
  const nonzero = (c: Record<FindingCode, number>): string =>
    (Object.entries(c) as [FindingCode, number][])
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ') || 'nothing stored';
  const lines = [`hospital audit: ${who}, ${range}; InfluxDB ${r.influx.url} database ${r.influx.database}`];
  for (const g of r.gateways)
    lines.push(`  ${g.gateway}: ${g.batches} anchored batches by ${g.trusted.length}/${g.accounts.length} accounts with GATEWAY_ROLE; ${nonzero(g.counts)}`);
  lines.push(
    `  ${r.summary.readings} readings (stored frames, each once) in ${r.summary.acceptances} acceptances; ${r.shared.length + r.sharedOmitted} held by more than one gateway`,
  );
  for (const s of r.shared.slice(0, 5))
    lines.push(`    ${s.device} seq ${s.seq}: ${s.holders.map((h) => `${h.gateway} batch ${h.batch ?? '-'} leaf ${h.leaf ?? '-'}`).join('; ')}`);
  lines.push(`  ${r.summary.points} points of ${r.summary.devices} devices: ${nonzero(r.summary.counts)}`);
  for (const f of r.findings.slice(0, limit))
    lines.push(`  ${f.code} ${f.gateway} ${f.measurement} ${f.device}${f.seq !== undefined ? ` seq ${f.seq}` : ''}: ${f.reason}`);
  if (r.findings.length > limit) lines.push(`  … ${r.findings.length - limit} more in the JSON report (--json)`);
  lines.push(r.ok ? 'OK: every point intact' : 'FINDINGS: see above');
  return lines;
}
