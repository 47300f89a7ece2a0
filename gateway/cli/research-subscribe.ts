/**
 * `vitalproof research subscribe`: live readings of a patient over MQTT (docs/research-api.md,
 * "MQTT"), one JSON line per delivery on stdout, notices on stderr, with the client's
 * LiveSubscription (gateway/research-client/live.ts). It ends when every subscription has
 * ended (revocation, expiry: exit 0), after --count deliveries, on Ctrl-C, or when every
 * subscription was refused (exit 1, with the gateway's reason code).
 */
import type { GatewayConfig } from '../config.js';
import { encodeLogin } from '../consent/auth.js';
import type { RunningGateway } from '../running.js';
import { fetchChallenge, LiveSubscription, normaliseUrl, type Delivery, type Notice, type SessionStore } from '../research-client/index.js';
import { trustedCas } from '../util/tls-trust.js';
import { checkPseudonym, parseMetrics, positive } from './args.js';
import { badUsage } from './errors.js';
import { iso } from './output.js';
import { CERT_ERRORS, RESEARCH_USAGE, type ResearchContext } from './research-common.js';

/** A delivery as one readable line. */
export function formatDelivery(d: Delivery): string {
  const first = d.readings[0];
  const last = d.readings[d.readings.length - 1];
  const values = d.readings.map((r) => Object.values(r.values).join('/')).join(' ');
  return `${first ? iso(first.timeMs) : '-'}${last && last !== first ? `..${iso(last.timeMs).slice(11)}` : ''} ${d.patient} ${d.metric} device ${d.deviceId} seq ${d.seq} grant ${d.grantId}: ${values}`;
}

/** A notice as one readable line. */
export function formatNotice(n: Notice): string {
  const what = n.event === 'subscription_ended' ? 'subscription ended' : n.event === 'subscription_refused' ? 'subscription refused' : n.event;
  return `${what}: ${n.topic}: ${n.code}${n.grantId ? ` (grant ${n.grantId})` : ''}${Number.isFinite(n.atMs) ? ` at ${iso(n.atMs)}` : ''}`;
}

/**
 * Runs `research subscribe` (see the module comment).
 * @returns the exit code: 0 every subscription ended (or --count, or Ctrl-C), 1 refused or unreachable.
 */
export async function subscribe(ctx: ResearchContext, cfg: GatewayConfig, running: RunningGateway | undefined): Promise<number> {
  const { flags, base, key, store, io } = ctx;
  if (!key) throw badUsage('research subscribe needs --key-file (the MQTT login is signed with it)', RESEARCH_USAGE);
  const pseudonym = flags['pseudonym'];
  if (!pseudonym) throw badUsage('research subscribe needs --pseudonym', RESEARCH_USAGE);
  checkPseudonym(pseudonym);
  const metricArg = flags['metric'];
  if (!metricArg) throw badUsage('research subscribe needs --metric (a sensor name, a comma-separated list, or +)', RESEARCH_USAGE);
  const metrics = metricArg.trim() === '+' ? ['+'] : parseMetrics(metricArg).map((m) => m.name);
  const count = flags['count'] !== undefined ? positive('--count', flags['count']) : undefined;
  const format = flags['format'] ?? 'ndjson';
  if (format !== 'ndjson' && format !== 'text') throw badUsage(`--format must be ndjson or text for subscribe, got "${format}"`);
  const brokerUrl = flags['mqtt'] ?? defaultBrokerUrl(base, cfg, running);
  if (!/^mqtts?:\/\/[^/]+/.test(brokerUrl)) throw badUsage(`--mqtt must be an mqtt:// or mqtts:// URL, got "${brokerUrl}"`);
  const ca = brokerUrl.startsWith('mqtts:') ? trustedCas() : undefined;

  // The gateway's id names the gateway in a self-issued login: from the flag, the saved session,
  // the gateway on --dataDir; else the gateway issues the first challenge (and names itself in it).
  let gatewayId = flags['gateway-id'] ?? sessionGatewayId(store, base, key.address) ?? running?.gatewayId;
  let firstPassword: string | undefined;
  if (!gatewayId) {
    const { text, challenge } = await fetchChallenge(base, key.address, 'mqtt');
    gatewayId = challenge.gateway;
    firstPassword = encodeLogin({ text, signature: await key.signMessage(text) });
  }
  const live = new LiveSubscription({ brokerUrl, key, gatewayId, pseudonym, metrics, ...(firstPassword ? { firstPassword } : {}), ...(ca ? { ca } : {}) });
  let delivered = 0;
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, why: string): void => {
      if (done) return;
      done = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      io.err(`${why}; ${delivered} deliver${delivered === 1 ? 'y' : 'ies'} received`);
      void live.close().then(() => resolve(code));
    };
    const onSignal = (): void => finish(0, 'stopped');
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    live.on('subscribed', (t) => io.err(`subscribed to ${t}`));
    live.on('refused', (t, n, rc) =>
      io.err(`refused: ${t}: ${n ? `${n.code}${n.grantId ? ` (grant ${n.grantId})` : ''}` : `SUBACK 0x${(rc ?? 0x80).toString(16)} (no notice said why)`}`),
    );
    live.on('ready', (accepted) => {
      if (accepted === 0) finish(1, 'no subscription was accepted');
    });
    live.on('notice', (n) => io.err(formatNotice(n)));
    live.on('idle', () => finish(0, 'every subscription has ended'));
    live.on('delivery', (d) => {
      if (done) return;
      delivered++;
      io.out(format === 'text' ? formatDelivery(d) : JSON.stringify(d));
      if (count !== undefined && delivered >= count) finish(0, `${count} deliveries received`);
    });
    live.on('loginRefused', (rc, m) =>
      finish(1, `the gateway refused the login at ${brokerUrl}: ${rc === 4 ? 'bad credentials (4)' : 'not authorised (5)'}: ${m}`),
    );
    live.on('connectFailed', (e) => finish(1, brokerFailure(brokerUrl, e)));
    live.on('connectionLost', (why) => io.err(`mqtt: connection lost (${why}); reconnecting with a fresh login`));
  });
}

/**
 * The broker `subscribe` dials without --mqtt, over the same kind of transport as the API (an
 * https API: MQTT over TLS).
 *   - The gateway running on --dataDir, when `base` is its API: the listeners it advertises in
 *     dataDir/gateway.json: mqtts://<the API's host>:<mqttTlsPort> for an https API; the plain
 *     loopback listener for an http API, or when it runs no TLS listener (same box, loopback).
 *   - Else an https `base`: mqtts://<its host>:<mqtt.tls.port> (8883 unless configured): the API
 *     does not say where the broker listens, so --mqtt is needed when it is anywhere else.
 *   - Else mqtt://<mqtt.host>:<mqtt.port> of the configuration (127.0.0.1:1883).
 * @example defaultBrokerUrl('https://gw.ward3:8080', cfg, undefined) // 'mqtts://gw.ward3:8883'
 */
export function defaultBrokerUrl(base: string, cfg: GatewayConfig, running: RunningGateway | undefined): string {
  const api = new URL(base);
  const https = api.protocol === 'https:';
  if (running && normaliseUrl(running.httpUrl) === base) {
    return https && running.mqttTlsPort !== undefined ? `mqtts://${api.hostname}:${running.mqttTlsPort}` : `mqtt://127.0.0.1:${running.mqttPort}`;
  }
  return https ? `mqtts://${api.hostname}:${cfg.mqtt.tls.port}` : `mqtt://${cfg.mqtt.host}:${cfg.mqtt.port}`;
}

/** Why the broker could not be reached, with what to do when its certificate is not trusted. */
function brokerFailure(brokerUrl: string, e: Error & { code?: string | number }): string {
  if (typeof e.code === 'string' && CERT_ERRORS.has(e.code))
    return `cannot trust the broker at ${brokerUrl}: ${e.code} (${e.message}); give its CA with --ca FILE (or NODE_EXTRA_CA_CERTS)`;
  return `cannot connect to ${brokerUrl}: ${e.message}`;
}

function sessionGatewayId(store: SessionStore, base: string, address: string): string | undefined {
  try {
    const s = store.find(base, address);
    return s && s !== 'ambiguous' ? s.gatewayId : undefined;
  } catch {
    return undefined;
  }
}
