/** `vitalproof status`: a running gateway's status (GET /status), as text. */
import { configFromFlags } from '../config.js';
import { formatStatus } from '../status/format.js';
import type { StatusSnapshot } from '../status/http.js';
import type { HubSnapshot } from '../hub/status.js';
import { trustCaFile } from '../util/tls-trust.js';
import { parseArgs } from './args.js';

/** Runs `vitalproof status [--url URL] [--ca FILE]` with `argv` (the arguments after "status"). */
export async function statusCommand(argv: string[]): Promise<number> {
  const { flags } = parseArgs(argv, { values: ['url', 'ca'] });
  const cfg = configFromFlags(flags, ['url', 'ca']);
  if (flags['ca'] !== undefined) trustCaFile(flags['ca']);
  const url = flags['url'] ?? `${cfg.http.tls.cert ? 'https' : 'http'}://${cfg.http.host}:${cfg.http.port}`;
  const res = await fetch(`${url}/status`);
  const body = (await res.json()) as StatusSnapshot | HubSnapshot;
  console.log('role' in body && body.role === 'hub' ? formatHubStatus(body) : formatStatus(body as StatusSnapshot));
  return 0;
}

/** A hub's /status as text (docs/fleet.md, "Watching the fleet"). */
export function formatHubStatus(s: HubSnapshot): string {
  const u = s.uplink;
  const q = u.sequencer;
  const refused = Object.entries(u.refusedBy)
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
  return [
    `hub ${s.gatewayId} (instance ${s.instance}), up ${s.uptimeS} s; chain ${s.chain.chainId} as ${s.chain.account}`,
    `uplink  ${u.connected ? 'connected' : 'DOWN'} to ${u.url} as ${u.clientId}: ${u.received.frames} frames, ${u.received.anchors} anchors, ${u.received.status} status messages${refused ? `; refused: ${refused}` : ''}`,
    `order   ${q.released} released, ${q.duplicates} duplicates, ${q.late} late, ${q.held} held, ${q.devices} devices`,
    `fleet   ${s.fleet.gateways.length} gateways (${s.fleet.gateways.filter((g) => g.state === 'online').length} online); \`vitalproof fleet\` lists them`,
    `consent ${s.consent.enabled ? (s.consent.following ? 'following' : 'NOT following') : 'off'}: ${s.consent.inForce} grants in force, ${s.consent.researchersConnected} researchers connected, ${s.consent.deliveries} deliveries, ${s.consent.cut} cut`,
    `access  ${s.accessLog.entries} entries; batches sealed ${s.accessLog.sealed}, anchored ${s.accessLog.anchored}${s.accessLog.lastError ? `; ${s.accessLog.lastError}` : ''}`,
  ].join('\n');
}
