/**
 * The hub's operator routes (gateway/http/routes.ts): GET /status and /metrics for the operator,
 * GET /fleet (the gateways and where each device is now; `vitalproof fleet` prints it), and
 * GET /healthz for anyone. The research, proof and disclosure routes are the gateway's own.
 */
import type { Route } from '../http/routes.js';
import type { HttpGuard, HttpStatus } from '../http/server.js';
import { snapshotRoutes, type AccessLogStatus, type ConsentStatus } from '../status/http.js';
import type { MqttStatus } from '../transport/mqtt/broker.js';
import type { FleetSnapshot } from './fleet-view.js';
import type { UplinkFeedStatus } from './uplink-feed.js';

export interface HubSnapshot {
  role: 'hub';
  gatewayId: string;
  instance: string;
  uptimeS: number;
  chain: { url: string; chainId: number; account: string };
  uplink: UplinkFeedStatus;
  /** Gateways in full; devices only counted here (GET /fleet lists them). */
  fleet: FleetSnapshot;
  consent: ConsentStatus;
  accessLog: AccessLogStatus;
  mqtt: MqttStatus;
  http?: HttpStatus;
}

/** Devices GET /fleet lists at most (?limit=, up to this). */
export const MAX_FLEET_DEVICES = 10_000;

export function hubStatusRoutes(snapshot: () => HubSnapshot, fleet: (limit: number) => FleetSnapshot): (guard: HttpGuard) => Route[] {
  return (guard) => {
    const full = (): HubSnapshot => ({ ...snapshot(), http: guard.status() });
    const json = (res: Parameters<Route['handle']>[2], status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2));
    };
    return [
      ...snapshotRoutes(full, prometheus),
      {
        path: '/fleet',
        access: 'operator',
        methods: ['GET'],
        handle: (_req, url, res) => {
          const asked = Number(url.searchParams.get('limit') ?? 1000);
          const limit = Number.isSafeInteger(asked) && asked >= 0 ? Math.min(asked, MAX_FLEET_DEVICES) : 1000;
          json(res, 200, fleet(limit));
        },
      },
      {
        path: '/healthz',
        access: 'public',
        methods: ['GET'],
        handle: (_req, _url, res) => {
          // Codes only (this route answers beyond loopback): the broker and the chain, which the hub cannot serve without.
          const s = snapshot();
          const alarms = [...(s.uplink.connected ? [] : ['UPLINK_DOWN']), ...(s.consent.following ? [] : ['CONSENT_NOT_FOLLOWING'])];
          json(res, alarms.length === 0 ? 200 : 503, { ok: alarms.length === 0, alarms });
        },
      },
    ];
  };
}

function prometheus(s: HubSnapshot): string {
  const lines: string[] = [];
  const g = (name: string, v: number, labels = ''): void => {
    lines.push(`vitalproof_hub_${name}${labels ? `{${labels}}` : ''} ${v}`);
  };
  g('uplink_connected', s.uplink.connected ? 1 : 0);
  g('uplink_frames_total', s.uplink.received.frames);
  for (const [code, n] of Object.entries(s.uplink.refusedBy)) g('uplink_refused_total', n, `code="${code}"`);
  g('frames_released_total', s.uplink.sequencer.released);
  g('frames_duplicate_total', s.uplink.sequencer.duplicates);
  g('frames_late_total', s.uplink.sequencer.late);
  g('frames_held', s.uplink.sequencer.held);
  g('gateways', s.fleet.gateways.length);
  g('gateways_online', s.fleet.gateways.filter((x) => x.state === 'online').length);
  g('researchers_connected', s.consent.researchersConnected);
  g('deliveries_total', s.consent.deliveries);
  g('access_log_entries', s.accessLog.entries);
  return `${lines.join('\n')}\n`;
}
