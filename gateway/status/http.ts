/**
 * The local HTTP endpoint: GET /status (JSON), GET /metrics (Prometheus text), GET /healthz,
 * and the routes the gateway adds: the proof API (GET) and the researcher and patient API
 * (docs/research-api.md: GET and POST).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { BleStatus } from '../transport/ble/central.js';

export interface StatusSource {
  snapshot(): StatusSnapshot;
  /** Further GET routes (the proof API): answers and returns true when it handled the request. */
  route?: (url: URL, res: ServerResponse) => Promise<boolean>;
  /**
   * Routes for any method (the research API, gateway/research/http.ts), tried after the status
   * routes and before `route`: answers and returns true when it handled the request.
   */
  handle?: (req: IncomingMessage, url: URL, res: ServerResponse) => Promise<boolean>;
}

/** The consent side (docs/consent.md): the local view of ConsentRegistry and the live researcher transport. */
export interface ConsentStatus {
  /** False when the chain is off or its deployment has no ConsentRegistry: no researcher access. */
  enabled: boolean;
  /** The view's last round reached the chain. */
  following: boolean;
  lastError?: string;
  /** The last block the view holds. */
  lastBlock?: number;
  /** Grants known (any state), grants in force now, patients bound. */
  grants: number;
  inForce: number;
  patients: number;
  /** Researcher MQTT clients connected, their consented subscriptions, deliveries sent and subscriptions cut (revoked / expired). */
  researchersConnected: number;
  subscriptions: number;
  deliveries: number;
  cut: number;
  /** Refused researcher CONNECTs and SUBSCRIBEs by code. */
  loginRefusedBy: Record<string, number>;
  subscribeRefusedBy: Record<string, number>;
}

/** The access log (docs/consent.md, "Access log") and its Merkle batches (AnchorRegistry stream 1). */
export interface AccessLogStatus {
  /** Entries in the log (the last seq). */
  entries: number;
  /** Entries not sealed in a batch yet. */
  openEntries: number;
  /** Live aggregates not written yet (docs/consent.md, "Live deliveries"). */
  liveAggregates: number;
  /** Last sealed and last anchored batch (stream 1). */
  sealed: string;
  anchored: string;
  /** Sealed batches waiting for their anchor. */
  pending: number;
  lastError?: string;
}

export interface StatusSnapshot {
  gatewayId: string;
  uptimeS: number;
  frames: {
    receivedPerS: number;
    acceptedPerS: number;
    received: number;
    accepted: number;
    duplicates: number;
    rejected: number;
    rejectedBy: Record<string, number>;
    seqGaps: number;
    byTransport: Record<'mqtt' | 'ble', { received: number; accepted: number; rejected: number }>;
  };
  mqtt: { port: number; devicesConnected: number; connectRefusedBy: Record<string, number> };
  /** The BLE central: its devices, refusals (the CONNECT_* codes MQTT uses), fragment rejections and ended connections by reason. */
  ble: ({ mode: 'on' } & BleStatus & { connectRefusedBy: Record<string, number>; fragmentRejectedBy: Record<string, number>; endedBy: Record<string, number> }) | { mode: 'off' };
  spool: {
    backlogFrames: number;
    bytes: number;
    quotaBytes: number;
    usedRatio: number;
    alarm: boolean;
    /** Free bytes on the data dir's filesystem (-1 when unknown). */
    diskFreeBytes: number;
    /** Below spool.minFreeBytes: acknowledgements are held until space returns. */
    diskLow: boolean;
    /** The last spool write failure (WAL_DISK_FULL, WAL_IO, WAL_BROKEN). */
    lastError?: string;
    /** LSNs found missing at start-up (a spool tail shorter than the checkpoint, a corrupt segment). */
    lostOnRecovery?: { from: string; to: string; why: string }[];
  };
  storage: { up: boolean; lagMs: number; lastError?: string; framesWritten: number; pointsWritten: number; errors: number; url: string };
  batches: { open: { batch: string; frames: number; ageMs: number }; lastSealed: string; lastAnchored: string; pendingAnchors: number; intervalMs: number };
  chain: {
    mode: 'embedded' | 'external' | 'off';
    up: boolean;
    url?: string;
    chainId?: number;
    gateway?: string;
    anchorRegistry?: string;
    deviceRegistry?: string;
    lastError?: string;
    halted?: string;
    lastAnchor?: { batch: string; root: string; txHash: string; block: number; gasUsed: number; confirmedAtMs: number };
  };
  consent: ConsentStatus;
  accessLog: AccessLogStatus;
}

/**
 * Loopback clients only: the operator's routes (/status, /metrics, and `route`: the proof API,
 * which serves raw signed frames without a login). Researchers and patients reach their own
 * routes (`handle`: logins, consented readings, disclosure reports) from anywhere the port is
 * bound, and are checked there; the operator's routes must never become a way around consent.
 */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\./.test(a);
}

export async function startStatusServer(host: string, port: number, src: StatusSource): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const operator = isLoopback(req.socket.remoteAddress);
    const refuseOperatorRoute = (): void => {
      res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'OPERATOR_ONLY', message: `${url} answers only on the gateway host (loopback); researchers use /research/…, patients /patient/…` }));
    };
    const builtIn = url === '/status' || url === '/metrics' || url === '/healthz';
    if (!builtIn && src.handle) {
      const u = new URL(req.url ?? '/', 'http://localhost');
      src.handle(req, u, res).then(
        (handled) => {
          if (handled) return;
          if (req.method === 'GET' && src.route) return answerRoute(u);
          res.writeHead(req.method === 'GET' ? 404 : 405).end();
        },
        (e: Error) => failed(e),
      );
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if ((url === '/status' || url === '/metrics') && !operator) {
      refuseOperatorRoute();
    } else if (url === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(src.snapshot(), null, 2));
    } else if (url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(prometheus(src.snapshot()));
    } else if (url === '/healthz') {
      const s = src.snapshot();
      const ok = s.storage.up && !s.spool.alarm;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ok, storageUp: s.storage.up, spoolAlarm: s.spool.alarm }));
    } else if (src.route) {
      answerRoute(new URL(req.url ?? '/', 'http://localhost'));
    } else res.writeHead(404).end();

    function answerRoute(u: URL): void {
      if (!operator) return refuseOperatorRoute();
      src.route!(u, res).then(
        (handled) => {
          if (!handled) res.writeHead(404).end();
        },
        (e: Error) => failed(e),
      );
    }
    function failed(e: Error): void {
      if (res.headersSent) {
        // A streamed answer broke off: the client sees a truncated body, never a wrong one.
        res.destroy(e);
        return;
      }
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'UNAVAILABLE', message: e.message }));
    }
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => res());
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : port };
}

function prometheus(s: StatusSnapshot): string {
  const lines: string[] = [];
  const g = (name: string, v: number, labels = ''): void => {
    lines.push(`vitalproof_${name}${labels ? `{${labels}}` : ''} ${v}`);
  };
  g('frames_received_total', s.frames.received);
  g('frames_accepted_total', s.frames.accepted);
  g('frames_duplicate_total', s.frames.duplicates);
  for (const [r, n] of Object.entries(s.frames.rejectedBy)) g('frames_rejected_total', n, `reason="${r}"`);
  g('seq_gaps_total', s.frames.seqGaps);
  for (const [t, c] of Object.entries(s.frames.byTransport)) g('frames_accepted_by_transport_total', c.accepted, `transport="${t}"`);
  for (const [r, n] of Object.entries(s.mqtt.connectRefusedBy)) g('connect_refused_total', n, `transport="mqtt",reason="${r}"`);
  g('mqtt_devices_connected', s.mqtt.devicesConnected);
  if (s.ble.mode === 'on') {
    for (const [r, n] of Object.entries(s.ble.connectRefusedBy)) g('connect_refused_total', n, `transport="ble",reason="${r}"`);
    for (const [r, n] of Object.entries(s.ble.fragmentRejectedBy)) g('ble_fragments_rejected_total', n, `reason="${r}"`);
    for (const [r, n] of Object.entries(s.ble.endedBy)) g('ble_connections_ended_total', n, `reason="${r}"`);
    g('ble_up', s.ble.up ? 1 : 0);
    g('ble_devices_connected', s.ble.devicesConnected);
  }
  g('spool_backlog_frames', s.spool.backlogFrames);
  g('spool_bytes', s.spool.bytes);
  g('spool_quota_bytes', s.spool.quotaBytes);
  g('storage_up', s.storage.up ? 1 : 0);
  g('storage_lag_ms', s.storage.lagMs);
  g('storage_errors_total', s.storage.errors);
  g('points_written_total', s.storage.pointsWritten);
  g('batches_sealed_total', Number(s.batches.lastSealed));
  g('batches_anchored_total', Number(s.batches.lastAnchored));
  g('batches_pending_anchor', s.batches.pendingAnchors);
  g('chain_up', s.chain.up ? 1 : 0);
  g('consent_following', s.consent.following ? 1 : 0);
  g('consent_grants', s.consent.grants);
  g('consent_grants_in_force', s.consent.inForce);
  g('research_clients_connected', s.consent.researchersConnected);
  g('research_subscriptions', s.consent.subscriptions);
  g('research_deliveries_total', s.consent.deliveries);
  g('research_subscriptions_cut_total', s.consent.cut);
  for (const [r, n] of Object.entries(s.consent.loginRefusedBy)) g('research_login_refused_total', n, `reason="${r}"`);
  for (const [r, n] of Object.entries(s.consent.subscribeRefusedBy)) g('research_subscribe_refused_total', n, `reason="${r}"`);
  g('access_log_entries', s.accessLog.entries);
  g('access_log_batches_sealed_total', Number(s.accessLog.sealed));
  g('access_log_batches_anchored_total', Number(s.accessLog.anchored));
  g('access_log_batches_pending_anchor', s.accessLog.pending);
  return `${lines.join('\n')}\n`;
}
