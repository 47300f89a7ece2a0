/** Renders a status snapshot for a terminal: the demo's live view and `vitalproof status`. */
import type { StatusSnapshot } from './http.js';

export function formatStatus(s: StatusSnapshot): string {
  const rej =
    Object.entries(s.frames.rejectedBy)
      .map(([r, n]) => `${r}=${n}`)
      .join(' ') || 'none';
  const refused =
    Object.entries(s.mqtt.connectRefusedBy)
      .map(([r, n]) => `${r}=${n}`)
      .join(' ') || 'none';
  const mb = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
  return [
    `gateway ${s.gatewayId}  up ${s.uptimeS}s  MQTT :${s.mqtt.port}${s.mqtt.tls ? `  MQTT/TLS :${s.mqtt.tls.port}${s.mqtt.tls.requireClientCert ? ' (client certificates)' : ''}` : ''}  devices connected ${s.mqtt.devicesConnected}  connections ${s.mqtt.connections}`,
    ...s.mqtt.warnings.map((w) => `WARNING  ${w}`),
    // An older gateway's status has no alarms.
    ...(s.alarms ?? []).map((a) => `ALARM    ${a.code} (${a.severity}, since ${new Date(a.sinceMs).toISOString()}): ${a.detail}`),
    `frames   ${s.frames.receivedPerS.toFixed(1)}/s in, ${s.frames.acceptedPerS.toFixed(1)}/s accepted | received ${s.frames.received}  accepted ${s.frames.accepted}  duplicates ${s.frames.duplicates}  rejected ${s.frames.rejected}  seq gaps ${s.frames.seqGaps}`,
    `rejected ${rej}`,
    `connect  refused ${refused} | at the transport ${
      Object.entries(s.mqtt.refusedBy)
        .map(([r, n]) => `${r}=${n}`)
        .join(' ') || 'none'
    }`,
    `spool    backlog ${s.spool.backlogFrames} frames, ${mb(s.spool.bytes)} of ${mb(s.spool.quotaBytes)}${s.spool.alarm ? '  ALARM: near quota' : ''}`,
    `influxdb ${s.storage.up ? 'up' : `DOWN (${s.storage.lastError ?? 'unknown'})`}  lag ${(s.storage.lagMs / 1000).toFixed(1)}s  frames written ${s.storage.framesWritten}  points ${s.storage.pointsWritten}${s.storage.quarantineHeld ? `  QUARANTINED ${s.storage.quarantineHeld} frame(s): fix the database, then vitalproof storage replay` : ''}`,
    `batches  open #${s.batches.open.batch} (${s.batches.open.frames} frames, ${(s.batches.open.ageMs / 1000).toFixed(1)}s)  sealed ${s.batches.lastSealed}  anchored ${s.batches.lastAnchored}  waiting ${s.batches.pendingAnchors}`,
    chainLine(s.chain),
    ...uplinkLines(s.uplink),
    ...httpLines(s.http),
    consentLine(s.consent),
    accessLogLine(s.accessLog),
    ...bleLines(s.ble),
  ].join('\n');
}

/** The API listener (gateway/http/server.ts): scheme, connections, refusals, logins. */
function httpLines(h: StatusSnapshot['http']): string[] {
  if (!h) return [];
  const list = (o: Record<string, number>): string =>
    Object.entries(o)
      .map(([r, n]) => `${r}=${n}`)
      .join(' ') || 'none';
  return [
    ...(h.plainAllowed ? ['WARNING  http: plain HTTP on a non-loopback address (http.allowPlain): bearer tokens and readings in clear'] : []),
    `http     ${h.scheme}  connections ${h.connections}  refused ${list(h.refusedBy)} | sessions opened ${h.login.sessionsOpened}  logged out ${h.login.loggedOut}  logins refused ${list(h.login.refusedBy)}  signature checks ${h.login.recoveries ?? '?'}`,
  ];
}

/** The uplink to the hospital broker (docs/uplink.md), when it is on. */
function uplinkLines(u: StatusSnapshot['uplink']): string[] {
  if (!u?.enabled) return [];
  const state = u.connected ? 'connected' : `DOWN (${u.lastError ?? 'connecting'})`;
  return [
    `uplink   ${u.url} ${state}  published ${u.published.frames} frames, ${u.published.anchors} anchors  lag ${u.lag.records} (${(u.lag.ms / 1000).toFixed(1)}s)`,
  ];
}

function consentLine(c: StatusSnapshot['consent'] | undefined): string {
  if (!c) return 'consent  (not reported)';
  if (!c.enabled) return `consent  off${c.lastError ? ` (${c.lastError})` : ' (no chain)'}`;
  const state = c.following ? `following (block ${c.lastBlock ?? '?'})` : `NOT FOLLOWING (${c.lastError ?? 'starting'})`;
  return `consent  ${state}  grants ${c.grants} (${c.inForce} in force)  researchers connected ${c.researchersConnected}  subscriptions ${c.subscriptions}  deliveries ${c.deliveries}  cut ${c.cut}`;
}

function accessLogLine(a: StatusSnapshot['accessLog'] | undefined): string {
  if (!a) return 'access   (not reported)';
  return `access   log entries ${a.entries} (${a.openEntries} not batched, ${a.liveAggregates} live aggregates open)  batches sealed ${a.sealed}  anchored ${a.anchored}  waiting ${a.pending}${a.lastError ? `  ERROR ${a.lastError}` : ''}`;
}

/** Devices listed one per line, up to this many; the rest are summed up. */
const BLE_DEVICE_LINES = 24;

function bleLines(b: StatusSnapshot['ble']): string[] {
  if (b.mode === 'off') return ['ble      off'];
  const list = (o: Record<string, number>): string =>
    Object.entries(o)
      .map(([r, n]) => `${r}=${n}`)
      .join(' ') || 'none';
  const head = b.up ? `ble      ${b.adapter ?? '?'} up` : `ble      DOWN (${b.lastError ?? 'starting'})`;
  const lines = [
    `${head}  wearables connected ${b.devicesConnected} of ${b.devices.length} seen`,
    `ble      refused ${list(b.connectRefusedBy)} | fragments refused ${list(b.fragmentRejectedBy)} | disconnects ${list(b.endedBy)}`,
  ];
  for (const d of b.devices.slice(0, BLE_DEVICE_LINES)) {
    const rssi = d.rssi !== undefined ? `${d.rssi} dBm` : '— dBm';
    const last = d.lastFrameAtMs !== undefined ? `last frame ${new Date(d.lastFrameAtMs).toISOString().slice(11, 19)}` : 'no frame yet';
    const behind = d.behindMs !== undefined ? `  ${(d.behindMs / 1000).toFixed(1)}s behind` : '';
    const pending = d.pendingFrames ? `  ${d.pendingFrames} unsettled` : '';
    const retry = d.retryInMs !== undefined ? `  retry in ${(d.retryInMs / 1000).toFixed(1)}s (${d.lastEnd ?? ''})` : '';
    lines.push(`  ${(d.deviceId ?? d.address).padEnd(16)} ${d.state.padEnd(10)} ${rssi.padStart(8)}  frames ${d.frames}  ${last}${behind}${pending}${retry}`);
  }
  if (b.devices.length > BLE_DEVICE_LINES) lines.push(`  … and ${b.devices.length - BLE_DEVICE_LINES} more`);
  return lines;
}

function chainLine(c: StatusSnapshot['chain']): string {
  if (c.mode === 'off') return 'chain    off (batches are sealed and wait for a chain)';
  const state = c.halted ? `HALTED ${c.halted}` : c.up ? 'up' : `DOWN (${c.lastError ?? 'unknown'})`;
  const last = c.lastAnchor
    ? `  last anchor #${c.lastAnchor.batch} root ${c.lastAnchor.root.slice(0, 18)}… tx ${c.lastAnchor.txHash.slice(0, 18)}… block ${c.lastAnchor.block}`
    : '  no anchor yet';
  return `chain    ${c.mode} ${state} chain id ${c.chainId ?? '?'}${last}`;
}
