/**
 * `vitalproof fleet`: a running hub's view of the hospital (GET /fleet): each gateway with its
 * last status (state, frames/s, spool depth, storage and uplink lag, last anchor) and each
 * device with the gateway it is on now (docs/fleet.md, "Watching the fleet").
 */
import { configFromFlags } from '../config.js';
import type { FleetSnapshot } from '../hub/fleet-view.js';
import { trustCaFile } from '../util/tls-trust.js';
import { parseArgs } from './args.js';

/** Runs `vitalproof fleet [--url URL] [--ca FILE] [--limit N] [--json]` with `argv` (the arguments after "fleet"). */
export async function fleetCommand(argv: string[], out: (line: string) => void = (l) => console.log(l)): Promise<number> {
  const { flags } = parseArgs(argv, { values: ['url', 'ca', 'limit'], switches: ['json'] });
  const cfg = configFromFlags(flags, ['url', 'ca', 'limit', 'json']);
  if (flags['ca'] !== undefined) trustCaFile(flags['ca']);
  const url = flags['url'] ?? `${cfg.http.tls.cert ? 'https' : 'http'}://${cfg.http.host}:${cfg.http.port}`;
  const res = await fetch(`${url}/fleet?limit=${encodeURIComponent(flags['limit'] ?? '1000')}`);
  if (!res.ok) {
    console.error(
      res.status === 404
        ? `error: ${url} is not a hub (it has no /fleet): point --url at \`vitalproof hub\``
        : `error: ${url}/fleet answered ${res.status}: ${await res.text()}`,
    );
    return 1;
  }
  const f = (await res.json()) as FleetSnapshot;
  if (flags['json'] !== undefined) {
    out(JSON.stringify(f, null, 2));
    return 0;
  }
  for (const line of formatFleet(f, Date.now())) out(line);
  return 0;
}

/** The fleet as text: one line per gateway, then one per device. */
export function formatFleet(f: FleetSnapshot, nowMs: number): string[] {
  const ago = (ms: number | undefined): string => (ms === undefined ? '-' : `${Math.max(0, Math.round((nowMs - ms) / 1000))} s ago`);
  const lines = [`gateways (${f.gateways.length})`];
  for (const g of f.gateways) {
    lines.push(
      `  ${g.gateway.padEnd(16)} ${g.state.padEnd(7)} heard ${ago(g.lastHeardMs)}, ${g.framesPerS ?? '-'} frames/s, spool ${g.spoolDepth ?? '-'}, ` +
        `storage lag ${g.storageLag ?? '-'}, uplink lag ${g.uplinkLag ?? '-'}, last anchor ${g.lastAnchor ? `batch ${g.lastAnchor.batch} (${ago(g.lastAnchor.confirmedAtMs)})` : (g.lastAnchoredBatch ?? '-')}, devices ${g.devices}`,
    );
  }
  lines.push(`devices (${f.devices.length + f.devicesOmitted})`);
  for (const d of f.devices) lines.push(`  ${d.device} on ${d.gateway} (${d.seq !== '0' ? `seq ${d.seq}, ` : ''}${ago(d.receivedAtMs)})`);
  if (f.devicesOmitted > 0) lines.push(`  … ${f.devicesOmitted} more (--limit)`);
  return lines;
}
