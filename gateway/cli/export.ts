/**
 * `vitalproof export`: proof bundles from a running gateway's HTTP API into a file that
 * `vitalproof verify` (or any verifier following docs/proof-format.md) checks.
 *
 *   export --device ID --seq N            [--out FILE|-] [--url URL] [--ca FILE]   one frame's bundle
 *   export [--device ID] [--from T] [--to T] [--limit N] [--out FILE|-] [--url URL] [--ca FILE]
 *
 * --ca FILE: trust that CA for an https --url (docs/operations.md, "HTTPS for the API").
 */
import { writeFileSync } from 'node:fs';
import { ConfigError, configFromFlags } from '../config.js';
import { runningGateway } from '../running.js';
import { parseArgs } from './args.js';
import type { ProofBundles } from '../proof/bundle.js';
import { parseTimeMs } from '../util/time.js';
import { trustCaFile } from '../util/tls-trust.js';

const OWN = ['device', 'seq', 'from', 'to', 'limit', 'out', 'url', 'config', 'ca'];

/** Runs `vitalproof export` with `argv` (the arguments after "export"). @returns the exit code: 0 exported, 1 nothing to export or refused. */

export async function exportCommand(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  const { flags } = parseArgs(argv, { values: OWN });
  const cfg = configFromFlags(flags, OWN);
  if (flags['ca'] !== undefined) trustCaFile(flags['ca']);
  const base = flags['url'] ?? runningGateway(cfg.dataDir)?.httpUrl ?? `http://${cfg.http.host}:${cfg.http.port}`;
  const target = flags['out'] ?? '-';
  const write = (doc: unknown): void => {
    const text = `${JSON.stringify(doc, null, 2)}\n`;
    if (target === '-') process.stdout.write(text);
    else writeFileSync(target, text);
  };
  const say = target === '-' ? (l: string): void => console.error(l) : out;
  const device = flags['device'];
  if (device !== undefined && !/^[0-9a-f]{16}$/.test(device)) throw new ConfigError(`--device must be a device id (16 lowercase hex digits), got "${device}"`);
  if (flags['seq'] !== undefined) {
    if (!device || !/^\d+$/.test(flags['seq'])) throw new ConfigError('--seq N needs --device ID');
    const res = await fetch(`${base}/proofs/frame/${device}/${flags['seq']}`);
    const body = (await res.json()) as { error?: string; message?: string };
    if (!res.ok) {
      say(`no bundle for ${device}/${flags['seq']}: ${body.error} (${body.message})`);
      return 1;
    }
    write(body);
    say(`exported 1 bundle (${device} seq ${flags['seq']})${target === '-' ? '' : ` to ${target}`}`);
    return 0;
  }
  const q = new URLSearchParams();
  if (device) q.set('device', device);
  for (const k of ['from', 'to'] as const) {
    if (flags[k] === undefined) continue;
    const t = parseTimeMs(flags[k]);
    if (t === undefined || Number.isNaN(t)) throw new ConfigError(`--${k} must be Unix ms or an ISO 8601 time, got "${flags[k]}"`);
    q.set(k, String(t));
  }
  if (flags['limit']) q.set('limit', flags['limit']);
  const res = await fetch(`${base}/proofs?${q}`);
  if (!res.ok) {
    say(`export failed: HTTP ${res.status} ${await res.text()}`);
    return 1;
  }
  const body = (await res.json()) as { export: ProofBundles; skipped: { device: string; seq: string; code: string }[]; truncated: boolean };
  write(body.export);
  const byCode = new Map<string, number>();
  for (const s of body.skipped) byCode.set(s.code, (byCode.get(s.code) ?? 0) + 1);
  say(
    `exported ${body.export.bundles.length} bundles${target === '-' ? '' : ` to ${target}`}${body.truncated ? ' (limit reached: export the rest with --from after the last frame)' : ''}`,
  );
  if (body.skipped.length) say(`skipped ${body.skipped.length}: ${[...byCode].map(([c, n]) => `${c} ${n}`).join(', ')}`);
  return body.export.bundles.length === 0 && body.skipped.length > 0 ? 1 : 0;
}
