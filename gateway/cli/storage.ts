/**
 * `vitalproof storage replay`: writes the frames of the storage quarantine (frames InfluxDB
 * refused for good, docs/storage.md "Storage quarantine") to InfluxDB again, once the operator
 * fixed the database, and removes those it takes.
 *
 *   vitalproof storage replay [--dry-run] [--json] [--config FILE] [--<config key> VALUE …]
 *
 * Where it writes: InfluxDB at influx.url, else the running gateway's (dataDir/gateway.json),
 * else the data dir's embedded influxd (started for the command, then stopped).
 *
 * Exit code: 0 nothing left in the quarantine; 1 frames still refused (or unreadable files)
 * after the replay, or any frame held in a dry run; 2 usage or configuration error, or the
 * replay could not run (InfluxDB unreachable, timing out, refusing the credentials).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, configFromFlags, type GatewayConfig } from '../config.js';
import { parseArgs } from './args.js';
import { usageErrorLines } from './errors.js';
import { InfluxSink } from '../storage/influx-sink.js';
import { influxForCommand, type CommandInflux } from './influx.js';
import { logSafeMessage, STORAGE_QUARANTINE_DIR, StorageQuarantine } from '../storage/quarantine.js';
import { replayQuarantine, type ReplayReport } from '../storage/replay.js';

export const STORAGE_USAGE = `usage: vitalproof storage replay [options]
  writes the frames of the storage quarantine (dataDir/${STORAGE_QUARANTINE_DIR}/: frames InfluxDB refused
  for good, such as a field type conflict) to InfluxDB again, and removes those it stores
  --dry-run            list the held frames and InfluxDB's message for each; write nothing
  --json               print the report as JSON
  --config FILE, and any config key as --key value (--dataDir, --influx.url, --influx.database, ...)
exit code: 0 quarantine empty, 1 frames still refused (or held, in a dry run), 2 usage/config error or InfluxDB unreachable`;

const OWN_FLAGS = ['dry-run', 'json', 'help'] as const;

/**
 * Runs `vitalproof storage …`. No side effects at import; `out` receives every line.
 * @returns the exit code (see the module comment).
 */
export async function storageCommand(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  let cfg: GatewayConfig;
  let flags: Record<string, string>;
  try {
    const args = parseArgs(argv, { switches: ['dry-run', 'json'] });
    flags = args.flags;
    if (flags['help'] !== undefined) {
      out(STORAGE_USAGE);
      return 0;
    }
    const positionals = args.positionals;
    if (positionals[0] !== 'replay') throw new ConfigError(positionals[0] ? `unknown storage command "${positionals[0]}"` : 'storage needs a command: replay');
    if (positionals.length > 1) throw new ConfigError(`unexpected argument "${positionals[1]}"`);
    cfg = configFromFlags(flags, OWN_FLAGS);
  } catch (e) {
    const lines = usageErrorLines(e);
    if (!lines) throw e;
    out(lines[0]!);
    out(STORAGE_USAGE);
    return 2;
  }
  const dryRun = flags['dry-run'] === 'true';
  const dir = join(cfg.dataDir, STORAGE_QUARANTINE_DIR);
  if (!existsSync(dir)) {
    out(`storage quarantine ${dir}: empty (nothing was ever set aside)`);
    return 0;
  }
  const quarantine = new StorageQuarantine(dir, { maxBytes: cfg.storage.quarantineMaxBytes });
  let influx: CommandInflux | undefined;
  try {
    let influxUrl = '';
    if (!dryRun) {
      influx = await influxForCommand(cfg, 'the replay');
      influxUrl = influx.url;
    }
    const sinks = new Map<string, InfluxSink>();
    const report = await replayQuarantine(
      quarantine,
      (database, retentionPolicy) => {
        const key = `${database}\0${retentionPolicy ?? ''}`;
        let s = sinks.get(key);
        if (!s) {
          s = new InfluxSink({
            url: influxUrl,
            database,
            gatewayId: cfg.gatewayId,
            username: cfg.influx.username,
            password: cfg.influx.password,
            timeoutMs: cfg.influx.timeoutMs,
            ...(retentionPolicy ? { retentionPolicy } : {}),
          });
          sinks.set(key, s);
        }
        return s;
      },
      { dryRun },
    );
    if (flags['json'] === 'true') out(JSON.stringify(report, null, 2));
    else for (const line of formatReplay(report, dir, influxUrl)) out(line);
    return report.stillRefused.length > 0 || report.unreadable.length > 0 ? 1 : 0;
  } catch (e) {
    const err = e as Error;
    out(`error: ${e instanceof ConfigError ? err.message : `the replay could not run: ${err.message}`}`);
    out('frames replayed before the error are removed from the quarantine; the others are still held: run the replay again');
    return 2;
  } finally {
    await influx?.stop();
  }
}

/** The report for a terminal: counts, then one line per frame still held (device, seq, InfluxDB's message). */
export function formatReplay(r: ReplayReport, dir: string, influxUrl: string): string[] {
  const lines = [`storage quarantine ${dir}: ${r.held} frame(s) held`];
  const frame = (f: ReplayReport['stillRefused'][number]): string =>
    `  device ${f.device} seq ${f.seq} (lsn ${f.lsn}, ${f.sensor}, set aside ${new Date(f.quarantinedAtMs).toISOString()}): ${f.status} ${logSafeMessage(f.error)}`;
  if (r.dryRun) {
    lines.push(`dry run: nothing written; a replay would write ${r.stillRefused.length} frame(s)`);
    for (const f of r.stillRefused) lines.push(frame(f));
  } else {
    lines.push(`replayed ${r.replayed.length} frame(s) into ${influxUrl}: stored, and removed from the quarantine`);
    if (r.stillRefused.length) {
      lines.push(`still refused ${r.stillRefused.length} frame(s), kept in the quarantine with InfluxDB's answer:`);
      for (const f of r.stillRefused) lines.push(frame(f));
    }
  }
  for (const u of r.unreadable) lines.push(`  unreadable ${u.file}: ${u.reason} (left in place)`);
  return lines;
}
