/**
 * The status routes of the gateway's HTTP endpoint (gateway/http/routes.ts): GET /status (JSON)
 * and GET /metrics (Prometheus text) for the operator, GET /healthz for anyone; and the
 * snapshot they serve.
 */
import type { HttpStatus } from '../http/server.js';
import type { Route } from '../http/routes.js';
import type { BleStatus } from '../transport/ble/central.js';
import { ALARMS, ALL_ALARMS, type Alarm, type AlarmCode, type DependencyStatus } from './health.js';
import type { MqttStatus } from '../transport/mqtt/broker.js';
import type { BatchWriterStatus } from '../storage/batch-writer.js';
import type { UplinkStatus } from '../uplink/publisher.js';

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
  /** Live deliveries prepared and waiting for their access-log entry: none is sent before it (docs/consent.md, "Live deliveries"). */
  liveAggregates: number;
  /** Last sealed and last anchored batch (stream 1). */
  sealed: string;
  anchored: string;
  /** Sealed batches waiting for their anchor. */
  pending: number;
  lastError?: string;
}

export interface StatusSnapshot {
  /** The uplink to the hospital broker (docs/uplink.md); absent in an older gateway's status. */
  uplink?: UplinkStatus | { enabled: false };
  gatewayId: string;
  uptimeS: number;
  /** The raised alarms, oldest first (gateway/status/health.ts; docs/operations.md, "Alarms"). */
  alarms: Alarm[];
  /** Each dependency as its last health probe found it: chain (JSON-RPC endpoint), influx. */
  dependencies: Record<string, DependencyStatus>;
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
    /** Lookups of devices that moved here in the shared InfluxDB (docs/fleet.md); mode off: none are made. */
    handoff: { mode: 'store' | 'off'; lookups: number; learned: number; duplicatesElsewhere: number; failures: number; skipped: number };
  };
  /** The embedded broker: listeners, limits, open connections, CONNECT refusals (CONNECT_*) and transport refusals (MQTT_*, gateway/transport/mqtt/refusals.ts). */
  mqtt: MqttStatus & { devicesConnected: number; connectRefusedBy: Record<string, number>; refusedBy: Record<string, number> };
  /** The BLE central: its devices, refusals (the CONNECT_* codes MQTT uses), fragment rejections and ended connections by reason. */
  ble:
    | ({ mode: 'on' } & BleStatus & { connectRefusedBy: Record<string, number>; fragmentRejectedBy: Record<string, number>; endedBy: Record<string, number> })
    | { mode: 'off' };
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
  storage: {
    up: boolean;
    lagMs: number;
    lastError?: string;
    framesWritten: number;
    pointsWritten: number;
    errors: number;
    url: string;
    /** Frames set aside since start because InfluxDB refused them for good (docs/storage.md, "Storage quarantine"). */
    quarantined: number;
    /** Frames in dataDir/storage-quarantine/ now, waiting for `vitalproof storage replay`. */
    quarantineHeld: number;
  };
  batches: { open: { batch: string; frames: number; ageMs: number }; lastSealed: string; lastAnchored: string; pendingAnchors: number; intervalMs: number };
  /** Anchored batches written to the shared InfluxDB's `batches` (docs/proof-format.md, "Proofs across the hospital"): last written, and the lag in batches. */
  batchPoints?: { frames: BatchWriterStatus; access: BatchWriterStatus };
  chain: {
    mode: 'embedded' | 'external' | 'off';
    up: boolean;
    url?: string;
    chainId?: number;
    gateway?: string;
    anchorRegistry?: string;
    deviceRegistry?: string;
    lastError?: string;
    /** Since when `up` has held its value (Unix ms). */
    sinceMs?: number;
    halted?: string;
    lastAnchor?: { batch: string; root: string; txHash: string; block: number; gasUsed: number; confirmedAtMs: number };
  };
  consent: ConsentStatus;
  accessLog: AccessLogStatus;
  /** The listener (gateway/http/server.ts): added by /status and /metrics to the parts' snapshot. */
  http?: HttpStatus;
}

/** GET /status (the snapshot as JSON) and GET /metrics (Prometheus text), operator only: a gateway's and a hub's (gateway/hub/status.ts). */
export function snapshotRoutes<T>(full: () => T, metrics: (s: T) => string): Route[] {
  return [
    {
      path: '/status',
      access: 'operator',
      methods: ['GET'],
      handle: (_req, _url, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(full(), null, 2)),
    },
    {
      path: '/metrics',
      access: 'operator',
      methods: ['GET'],
      handle: (_req, _url, res) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics(full())),
    },
  ];
}

/**
 * /status and /metrics (operator: loopback only) serve `snapshot` with the listener's own
 * figures; /healthz (public) answers 503 while any critical alarm is raised, with codes only.
 */
export function statusRoutes(snapshot: () => StatusSnapshot, listener: () => HttpStatus): Route[] {
  return [
    ...snapshotRoutes(() => ({ ...snapshot(), http: listener() }), prometheus),
    {
      path: '/healthz',
      access: 'public',
      methods: ['GET'],
      handle: (_req, _url, res) => {
        // 503 while any critical alarm is raised; codes only (this route answers beyond loopback).
        const s = snapshot();
        const alarms: AlarmCode[] = s.alarms.filter((a) => a.severity === 'critical').map((a) => a.code);
        if (s.spool.diskLow && !alarms.includes('DISK_FULL')) alarms.push('DISK_FULL');
        const warnings = s.alarms.filter((a) => a.severity !== 'critical').map((a) => a.code);
        const ok = alarms.length === 0;
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ ok, alarms, warnings, storageUp: s.storage.up, spoolAlarm: s.spool.alarm }));
      },
    },
  ];
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
  if (s.uplink?.enabled) {
    g('uplink_connected', s.uplink.connected ? 1 : 0);
    g('uplink_published_frames_total', s.uplink.published.frames);
    g('uplink_published_anchors_total', s.uplink.published.anchors);
    g('uplink_lag_records', s.uplink.lag.records);
    g('uplink_lag_ms', s.uplink.lag.ms);
    g('uplink_outages_total', s.uplink.outages);
  }
  g('handoff_lookups_total', s.frames.handoff.lookups);
  g('handoff_learned_total', s.frames.handoff.learned);
  g('handoff_duplicates_elsewhere_total', s.frames.handoff.duplicatesElsewhere);
  g('handoff_lookup_failures_total', s.frames.handoff.failures);
  g('handoff_lookups_skipped_total', s.frames.handoff.skipped);
  for (const [t, c] of Object.entries(s.frames.byTransport)) g('frames_accepted_by_transport_total', c.accepted, `transport="${t}"`);
  for (const [r, n] of Object.entries(s.mqtt.connectRefusedBy)) g('connect_refused_total', n, `transport="mqtt",reason="${r}"`);
  g('mqtt_devices_connected', s.mqtt.devicesConnected);
  g('mqtt_connections', s.mqtt.connections);
  for (const [r, n] of Object.entries(s.mqtt.refusedBy)) g('mqtt_refused_total', n, `reason="${r}"`);
  g('mqtt_plain_on_non_loopback', s.mqtt.plainOnNonLoopback ? 1 : 0);
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
  g('storage_quarantined_total', s.storage.quarantined);
  g('storage_quarantine_held', s.storage.quarantineHeld);
  g('points_written_total', s.storage.pointsWritten);
  g('batches_sealed_total', Number(s.batches.lastSealed));
  g('batches_anchored_total', Number(s.batches.lastAnchored));
  g('batches_pending_anchor', s.batches.pendingAnchors);
  for (const w of s.batchPoints ? [s.batchPoints.frames, s.batchPoints.access] : []) g('batch_points_lag', w.lag, `stream="${w.stream}"`);
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
  if (s.http) {
    g('http_connections', s.http.connections);
    for (const [r, n] of Object.entries(s.http.refusedBy)) g('http_refused_total', n, `reason="${r}"`);
    for (const [r, n] of Object.entries(s.http.login.refusedBy)) g('http_login_refused_total', n, `reason="${r}"`);
    g('http_sessions_opened_total', s.http.login.sessionsOpened);
    g('http_logouts_total', s.http.login.loggedOut);
    if (s.http.login.recoveries !== undefined) g('login_signature_recoveries_total', s.http.login.recoveries);
  }
  g('access_log_entries', s.accessLog.entries);
  g('access_log_batches_sealed_total', Number(s.accessLog.sealed));
  g('access_log_batches_anchored_total', Number(s.accessLog.anchored));
  g('access_log_batches_pending_anchor', s.accessLog.pending);
  for (const code of ALL_ALARMS) g('alarm', s.alarms.some((a) => a.code === code) ? 1 : 0, `code="${code}",severity="${ALARMS[code].severity}"`);
  for (const [d, st] of Object.entries(s.dependencies)) g('dependency_up', st.up ? 1 : 0, `dependency="${d}"`);
  return `${lines.join('\n')}\n`;
}
