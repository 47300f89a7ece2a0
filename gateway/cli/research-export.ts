/**
 * `vitalproof research export GRANT_ID --out FILE`: every reading a grant allows, page by page,
 * into FILE (and the proof bundles into FILE.proofs.json with --proofs), written by the client's
 * ReadingsExport (gateway/research-client/export.ts), with a progress line on stderr: redrawn
 * in place on a terminal, a line every --progress-interval ms otherwise.
 */
import { ReadingsExport, withSession, type ExportState } from '../research-client/index.js';
import { parseMetrics, parseTimeArg, positive } from './args.js';
import { badUsage } from './errors.js';
import { iso, megabytes, ProgressLine, thousands } from './output.js';
import { RESEARCH_USAGE, type ResearchContext } from './research-common.js';

/** The progress line: pages, frames, readings, how far through the data range, rate. */
export function formatExportProgress(s: ExportState): string {
  const pct =
    s.fromMs !== undefined && s.toMs !== undefined && s.lastMs !== undefined && s.toMs > s.fromMs
      ? Math.max(0, Math.min(100, Math.floor((100 * (s.lastMs - s.fromMs)) / (s.toMs - s.fromMs))))
      : undefined;
  const rate = s.elapsedMs > 0 ? Math.round((s.frames * 1000) / s.elapsedMs) : 0;
  return (
    `${s.done ? 'exported' : 'exporting'} grant ${s.grantId}: ${s.pages} page${s.pages === 1 ? '' : 's'}, ${thousands(s.frames)} frames, ${thousands(s.readings)} readings` +
    (s.proofs ? `, ${thousands(s.proofs)} proofs` : '') +
    `, ${megabytes(s.bytes)}` +
    (s.lastMs !== undefined && !s.done ? `, up to ${iso(s.lastMs)}${pct !== undefined ? ` (${pct} % of the range)` : ''}` : '') +
    `, ${(s.elapsedMs / 1000).toFixed(1)} s${rate ? `, ${thousands(rate)} frames/s` : ''}`
  );
}

/**
 * Runs `research export` with its positional arguments (the grant id).
 * @returns the exit code: 0 exported (a note on stderr when frames have no proof yet).
 */
export async function exportGrant(rest: string[], ctx: ResearchContext): Promise<number> {
  const { flags, base, key, store, io } = ctx;
  const grantId = rest[0];
  if (!grantId || rest.length > 1 || !/^[1-9]\d*$/.test(grantId)) throw badUsage('research export needs a grant id (a positive integer)', RESEARCH_USAGE);
  const out = flags['out'];
  if (!out) throw badUsage('research export needs --out FILE', RESEARCH_USAGE);
  const format = flags['format'] ?? 'json';
  if (format !== 'json' && format !== 'csv') throw badUsage(`--format must be json or csv, got "${format}"`);
  const proofs = flags['proofs'] !== undefined;
  const now = Date.now();
  const fromMs = flags['from'] !== undefined ? parseTimeArg('--from', flags['from'], now) : undefined;
  const toMs = flags['to'] !== undefined ? parseTimeArg('--to', flags['to'], now) : undefined;
  const metrics = flags['metric'] !== undefined ? parseMetrics(flags['metric']).map((m) => m.name) : undefined;
  const limit = flags['limit'] !== undefined ? positive('--limit', flags['limit']) : 1000;
  if (limit > 10_000) throw badUsage('--limit is at most 10000 frames per page');
  const intervalMs = flags['progress-interval'] !== undefined ? positive('--progress-interval', flags['progress-interval']) : 5000;

  const progress = new ProgressLine(io.progress ?? process.stderr, intervalMs);
  const exp = new ReadingsExport({
    base,
    grantId,
    out,
    format,
    proofs,
    ...(fromMs !== undefined ? { fromMs } : {}),
    ...(toMs !== undefined ? { toMs } : {}),
    ...(metrics ? { metrics } : {}),
    limit,
    withToken: (fn) => withSession(base, key, store, fn),
    onPage: () => draw(),
  });
  const draw = (force = false): void => progress.update(formatExportProgress(exp.tick()), force);
  const ticker = setInterval(() => draw(), Math.min(intervalMs, 1000));
  ticker.unref();
  try {
    await exp.run();
  } catch (e) {
    progress.break();
    throw e;
  } finally {
    clearInterval(ticker);
  }
  const { state, skipped, proofsPath } = exp;
  progress.finish(formatExportProgress(state));
  io.out(
    `wrote ${out} (${format}, ${thousands(state.frames)} frames, ${thousands(state.readings)} readings)${proofsPath ? ` and ${proofsPath} (${thousands(state.proofs)} proof bundles)` : ''}`,
  );
  const unproven = proofs ? state.frames - state.proofs : 0;
  if (unproven > 0)
    io.err(
      `note: ${unproven} exported frame${unproven === 1 ? ' has' : 's have'} no proof bundle${skipped.size ? ` (${[...skipped].map(([c, n]) => `${c} ${n}`).join(', ')})` : ''}: frames not anchored yet get one when exported again after the next anchor`,
    );
  return 0;
}
