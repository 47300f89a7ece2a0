/**
 * Gateway configuration: built-in defaults, then a JSON file, then environment variables,
 * then command-line flags; each later source overrides the earlier ones. The defaults run
 * a complete gateway on one box: embedded broker, embedded influxd, data in ./data.
 *
 * Every key has one environment variable (VP_ + path in upper snake case, e.g.
 * VP_MQTT_PORT, VP_INFLUX_URL) and one flag (--mqtt.port, --influx.url); docs/operations.md
 * has the table.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CodedError, type Remedies } from '../firmware-proto/coded-error.js';
import { MAX_FRAME_BYTES } from '../firmware-proto/frame.js';

export interface GatewayConfig {
  /** Spool, registry, quarantine, embedded influxd data: everything the gateway writes. */
  dataDir: string;
  /** Names this gateway in stored points and (later) on chain. */
  gatewayId: string;
  /** The embedded broker's listeners and their limits (gateway/transport/mqtt/; docs/operations.md, "Pre-authentication limits"). */
  mqtt: {
    /** The plain TCP listener: loopback only, unless allowPlain is "true". */
    host: string;
    port: number;
    connectWindowMs: number;
    /** Largest CONNECT packet in bytes (fixed header included): the only packet before CONNACK. A device's is about 150 bytes, a researcher's at most about 2.2 KB. */
    maxConnectBytes: number;
    /** Largest packet from an authenticated device: the largest valid frame (MAX_FRAME_BYTES) in a PUBLISH, with room to spare so that a slightly oversized frame still reaches the decoder and is refused as FRAME_OVERSIZED. */
    maxDevicePacketBytes: number;
    /** Largest packet from an authenticated researcher (SUBSCRIBE, UNSUBSCRIBE, PINGREQ: small). */
    maxResearcherPacketBytes: number;
    /** A connection without an accepted CONNECT after this long is closed (on TLS: the handshake, then the CONNECT, each within it). */
    connectDeadlineMs: number;
    /** Connections open at once on both listeners, authenticated or not. */
    maxConnections: number;
    /** Connections open at once from one address, so that one host cannot take every slot. */
    maxConnectionsPerSource: number;
    /** CONNECT keep-alive allowed, seconds: 0 (no keep-alive: a dead peer is never noticed) and anything above are refused. */
    maxKeepaliveS: number;
    /** Refused connections are logged as one summary line per this many ms at most. */
    refusalLogIntervalMs: number;
    /** "true": plain MQTT on a non-loopback mqtt.host is allowed (readings and tokens in clear on the network), with a warning in the log and /status. */
    allowPlain: string;
    /** MQTT over TLS: a second listener when cert and key are set. */
    tls: {
      /** PEM certificate chain of the gateway; empty: no TLS listener. */
      cert: string;
      /** PEM private key of that certificate. */
      key: string;
      /** PEM CA bundle client certificates are verified against (mutual TLS); empty: none asked for. */
      ca: string;
      /** Empty: the same as mqtt.host. */
      host: string;
      port: number;
      /** "true": every device connection needs a client certificate from `ca` whose CN is its device id, besides its signed CONNECT token. */
      requireClientCert: string;
    };
  };
  /** The status / API listener (gateway/http/server.ts, docs/operations.md "HTTP limits" and "Encryption in transit"). */
  http: {
    host: string;
    port: number;
    /** PEM certificate and key files: with both, the API speaks HTTPS. ca: PEM issuer certificates sent with the certificate (a chain the cert file lacks). */
    tls: { cert: string; key: string; ca: string };
    /** "true": plain HTTP on a non-loopback http.host is accepted, with a warning (tokens and readings in clear). Otherwise it is a ConfigError. */
    allowPlain: string;
    /** Request line and headers at most (431 beyond). */
    maxHeaderBytes: number;
    /** Request bodies (login, challenge) at most (413 beyond). */
    maxBodyBytes: number;
    /** Complete headers within this long of a request's start (an idle new connection too, and a TLS handshake): 408 beyond. At most requestTimeoutMs. */
    headersTimeoutMs: number;
    /** The whole request received within this long (408 beyond): a slow sender cannot hold a connection. */
    requestTimeoutMs: number;
    /** An idle keep-alive connection is closed after this long. */
    keepAliveTimeoutMs: number;
    /** Open connections at most, in all and from one source (IPv4 address, IPv6 /64): beyond, closed at once. */
    maxConnections: number;
    maxConnectionsPerSource: number;
    /** POST /auth/login per source address: tokens per second and burst (429 LOGIN_RATE_LIMITED beyond). */
    loginPerSourcePerS: number;
    loginPerSourceBurst: number;
  };
  /** Researcher logins on any transport (gateway/consent/auth.ts): budgets of the expensive signature check. */
  login: {
    /** secp256k1 recoveries per second for gateway-issued challenges, all clients together (burst twice): AUTH_BUSY beyond. */
    recoveriesPerS: number;
    /** ... for self-issued MQTT challenges, all accounts together (burst twice); 1/s per account and per source within it. */
    selfIssuedPerS: number;
    /** HTTP sessions of addresses without any grant or patient binding on chain, all together (oldest ended first). */
    maxUnadmittedSessions: number;
  };
  influx: {
    /** Empty: start an embedded influxd in dataDir/influxdb on a free loopback port. */
    url: string;
    database: string;
    username: string;
    password: string;
    timeoutMs: number;
  };
  spool: {
    quotaBytes: number;
    alarmRatio: number;
    segmentBytes: number;
    /** Hold acknowledgements while the data dir's filesystem has less than this many bytes free (0: no check). */
    minFreeBytes: number;
  };
  ingest: {
    maxFutureSkewMs: number;
    maxBacklogMs: number;
    verifyWorkers: number;
    /** store: learn a device that moved here from another gateway from the shared InfluxDB (docs/fleet.md); off: every decision is local. */
    handoff: string;
    /** Deadline of one such lookup (ms); past it the frame is decided on what this gateway knows. */
    handoffTimeoutMs: number;
  };
  storage: {
    batchFrames: number;
    retryMinMs: number;
    retryMaxMs: number;
    /**
     * Bound of dataDir/storage-quarantine/ (frames InfluxDB refuses for good, kept for
     * `vitalproof storage replay`). At the bound, such frames wait in the spool instead.
     */
    quarantineMaxBytes: number;
  };
  /** Merkle batches of accepted frames (gateway/anchor/batcher.ts). */
  batch: { intervalMs: number; maxFrames: number };
  chain: {
    /** embedded: anvil in dataDir/chain, contracts deployed on first start. external: rpcUrl + deployment + keyFile. off: batches are sealed and wait. */
    mode: string;
    /** external: the chain's JSON-RPC URL. */
    rpcUrl: string;
    /** external: the deployment record from `vitalproof chain deploy`. Default dataDir/chain/deployment.json. */
    deployment: string;
    /** external: a file holding the gateway account's private key (hex). */
    keyFile: string;
    /** embedded: anvil's loopback port; 0 picks a free one (written to dataDir/chain/endpoint.json). */
    embeddedPort: number;
    confirmations: number;
    txTimeoutMs: number;
    retryMinMs: number;
    retryMaxMs: number;
    /** Deadline of every JSON-RPC request to the chain (anchoring, registry, consent view): a node that does not answer fails the call with CHAIN_TIMEOUT. */
    rpcTimeoutMs: number;
  };
  /** Dependency health and alarms (gateway/status/health.ts, docs/operations.md "Alarms"). */
  health: {
    /** How often the chain and InfluxDB are probed and alarms evaluated. */
    intervalMs: number;
    /** Deadline of a health probe (eth_blockNumber, InfluxDB /ping): a dependency that does not answer within it is down. */
    probeTimeoutMs: number;
    /** ANCHORS_BEHIND when the oldest sealed, unanchored batch is older than this many batch intervals ... */
    anchorsBehindIntervals: number;
    /** ... and older than this (ms): anchoring itself takes confirmations, and a replacement after chain.txTimeoutMs. */
    anchorsBehindMinMs: number;
  };
  /** The local view of ConsentRegistry (docs/consent.md). */
  consent: {
    /** How often the view polls the chain for grants and revocations; a revocation cuts live delivery one poll after its block (keep well under 2 s). */
    pollIntervalMs: number;
  };
  /** The access log of disclosures to researchers, its Merkle batches (AnchorRegistry stream 1). */
  accessLog: {
    /** Seal a batch of access-log entries when its first entry is this old (ms). */
    intervalMs: number;
    /** ... or at this many entries. */
    maxEntries: number;
    /** Live deliveries wait up to this many ms to share one access-log entry per subscription, written (fdatasync) before they are sent; 0: the deliveries of one pipeline tick (docs/consent.md, "Live deliveries"). */
    liveBatchMs: number;
  };
  /** Researcher admission on the MQTT broker (gateway/research/live.ts; docs/research-api.md, "MQTT"). */
  research: {
    /** MQTT connections of one researcher key at once (TOO_MANY_CONNECTIONS beyond). */
    maxConnectionsPerResearcher: number;
    /** Connections at once of keys holding no live grant, all such keys together (NO_LIVE_GRANT beyond); 0 admits only keys with a live grant. */
    maxUngrantedConnections: number;
  };
  registry: {
    /** chain: the DeviceRegistry contract (needs a chain); file: dataDir/registry.json. */
    source: string;
    /** The site label enrolments name (hashed on chain). */
    site: string;
  };
  /** The BLE central (gateway/transport/ble/): BlueZ on the system D-Bus, DBUS_SYSTEM_BUS_ADDRESS to point elsewhere. */
  ble: {
    /** on: discover and connect VitalProof wearables; off: no BLE. */
    mode: string;
    /** BlueZ adapter (hci0); empty for the first one. */
    adapter: string;
    scanIntervalMs: number;
    maxConnections: number;
    connectTimeoutMs: number;
    reconnectMinMs: number;
    reconnectMaxMs: number;
    /** A partial frame with no fragment for this long is dropped and the device disconnected (PROTOCOL.md §10.6). */
    stallMs: number;
    /** A refused device (not enrolled, revoked, wrong key, broken profile) is looked at again after this long. */
    refuseHoldMs: number;
  };
  /** The uplink to the hospital broker (gateway/uplink/; docs/uplink.md): off while url is empty. */
  uplink: {
    /** mqtt:// or mqtts:// of the hospital broker; empty: no uplink (the spool has no 'uplink' position). */
    url: string;
    /** The gateway's broker account; empty: vp-gw-<gatewayId> (what `vitalproof broker add-gateway` creates). */
    username: string;
    /** A file whose first line is the account's password (never in the config itself, the log or /status). */
    passwordFile: string;
    /** mqtts://: PEM CA of the broker's certificate; a client certificate and key when the broker asks for one. */
    tls: { ca: string; cert: string; key: string };
    /** PUBLISHes awaiting their PUBACK at most. */
    inflight: number;
    /** Empty: vp-gw-<gatewayId>. */
    clientId: string;
    /** How often the retained status message is refreshed. */
    statusIntervalMs: number;
    retryMinMs: number;
    retryMaxMs: number;
  };
  /**
   * The hub role (`vitalproof hub`, gateway/hub/; docs/fleet.md): researcher and patient access
   * across every gateway. It reaches the hospital broker with the uplink.* settings (its own
   * account there), reads the shared InfluxDB (influx.url) and an external chain.
   */
  hub: {
    /** Names this instance among hubs that share gatewayId (the hub service's name): its broker client id and log lines. */
    instance: string;
    /** How long a frame waits for an earlier one of its device before it is delivered anyway (gateway/hub/sequencer.ts). */
    holdMs: number;
    /** How long the broker keeps this instance's uplink session (and the frames for it) while it is away, seconds. */
    sessionExpiryS: number;
    /**
     * The secret the hub instances of one hospital share (32+ bytes, first line; created 0600 when
     * missing): researcher sessions then work on every instance and across restarts
     * (gateway/consent/shared-auth.ts). Empty: sessions are this instance's own, as on a gateway.
     */
    authSecretFile: string;
  };
  log: {
    level: string;
    /** Empty: stdout (the service manager's journal bounds it). */
    file: string;
    /** With log.file: rotate at this many bytes (file → file.1 → …); 0: never. */
    maxBytes: number;
    /** Rotated files kept: the log takes at most (keepFiles + 1) × maxBytes. */
    keepFiles: number;
    /** Lines per event and window for events others can repeat at will (refused logins, refused subscription filters); the rest are counted in one log_suppressed line per window. */
    limitBurst: number;
    limitWindowMs: number;
  };
}

export const DEFAULTS: GatewayConfig = {
  dataDir: './data',
  gatewayId: 'gw-local',
  mqtt: {
    host: '127.0.0.1',
    port: 1883,
    connectWindowMs: 30_000,
    maxConnectBytes: 4096,
    maxDevicePacketBytes: MAX_FRAME_BYTES + 1024,
    maxResearcherPacketBytes: 8192,
    connectDeadlineMs: 10_000,
    maxConnections: 1024,
    maxConnectionsPerSource: 64,
    maxKeepaliveS: 300,
    refusalLogIntervalMs: 10_000,
    allowPlain: 'false',
    tls: { cert: '', key: '', ca: '', host: '', port: 8883, requireClientCert: 'false' },
  },
  http: {
    host: '127.0.0.1',
    port: 8080,
    tls: { cert: '', key: '', ca: '' },
    allowPlain: 'false',
    maxHeaderBytes: 16 * 1024,
    maxBodyBytes: 16 * 1024,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveTimeoutMs: 5_000,
    maxConnections: 512,
    maxConnectionsPerSource: 64,
    loginPerSourcePerS: 1,
    loginPerSourceBurst: 10,
  },
  login: { recoveriesPerS: 10, selfIssuedPerS: 5, maxUnadmittedSessions: 256 },
  influx: { url: '', database: 'vitalproof', username: '', password: '', timeoutMs: 10_000 },
  spool: { quotaBytes: 1024 * 1024 * 1024, alarmRatio: 0.8, segmentBytes: 64 * 1024 * 1024, minFreeBytes: 64 * 1024 * 1024 },
  ingest: { maxFutureSkewMs: 30_000, maxBacklogMs: 7 * 24 * 3600_000, verifyWorkers: 2, handoff: 'store', handoffTimeoutMs: 1500 },
  storage: { batchFrames: 1000, retryMinMs: 200, retryMaxMs: 10_000, quarantineMaxBytes: 256 * 1024 * 1024 },
  batch: { intervalMs: 10_000, maxFrames: 50_000 },
  chain: {
    mode: 'embedded',
    rpcUrl: '',
    deployment: '',
    keyFile: '',
    embeddedPort: 0,
    confirmations: 1,
    txTimeoutMs: 60_000,
    retryMinMs: 500,
    retryMaxMs: 15_000,
    rpcTimeoutMs: 10_000,
  },
  health: { intervalMs: 1000, probeTimeoutMs: 2000, anchorsBehindIntervals: 3, anchorsBehindMinMs: 30_000 },
  consent: { pollIntervalMs: 250 },
  accessLog: { intervalMs: 10_000, maxEntries: 50_000, liveBatchMs: 0 },
  research: { maxConnectionsPerResearcher: 4, maxUngrantedConnections: 4 },
  registry: { source: 'chain', site: 'default' },
  ble: {
    mode: 'off',
    adapter: '',
    scanIntervalMs: 1000,
    maxConnections: 32,
    connectTimeoutMs: 10_000,
    reconnectMinMs: 500,
    reconnectMaxMs: 30_000,
    stallMs: 10_000,
    refuseHoldMs: 60_000,
  },
  uplink: {
    url: '',
    username: '',
    passwordFile: '',
    tls: { ca: '', cert: '', key: '' },
    inflight: 100,
    clientId: '',
    statusIntervalMs: 5000,
    retryMinMs: 200,
    retryMaxMs: 10_000,
  },
  hub: { instance: 'hub-1', holdMs: 2000, sessionExpiryS: 3600, authSecretFile: '' },
  log: { level: 'info', file: '', maxBytes: 64 * 1024 * 1024, keepFiles: 4, limitBurst: 10, limitWindowMs: 60_000 },
};

/** Why a configuration (or a command's arguments) cannot be used; the message names the key and the value. */
export const CONFIG_ERRORS = {
  CONFIG_BAD_VALUE: 'a setting or argument has a value of the wrong type or outside its range',
  CONFIG_UNKNOWN_KEY: 'a configuration key (file, environment or flag) that the gateway does not have',
  CONFIG_CONFLICT: 'settings that do not go together, or a setting that needs another one that is not set',
  CONFIG_FILE_UNREADABLE: 'a file the configuration names cannot be read, or does not hold what it should',
  CONFIG_PLAIN_NOT_LOOPBACK: 'plain MQTT or HTTP on an address other than loopback, without allowPlain',
  CONFIG_NO_CHAIN: 'the command needs a chain, or a deployment record, that this configuration does not have',
} as const;
export type ConfigErrorCode = keyof typeof CONFIG_ERRORS;

export const CONFIG_ERROR_REMEDIES: Remedies<ConfigErrorCode> = {
  CONFIG_BAD_VALUE: 'Give the value the message asks for (docs/operations.md lists every key with its default)',
  CONFIG_UNKNOWN_KEY: 'Check the spelling against docs/operations.md, "Configuration"; environment variables are VP_ and the key in upper snake case',
  CONFIG_CONFLICT: 'Set the settings the message names together, or neither',
  CONFIG_FILE_UNREADABLE: 'Check the path and its permissions, and that the file holds what the key needs (PEM certificates, a 64-hex-digit key, JSON)',
  CONFIG_PLAIN_NOT_LOOPBACK:
    'Serve the network over TLS (the tls.cert and tls.key keys), bind the host to 127.0.0.1, or set allowPlain true to accept the risk knowingly (docs/operations.md, "Encryption in transit")',
  CONFIG_NO_CHAIN: 'Run with chain.mode embedded or external, and deploy the contracts with `vitalproof chain deploy` (point chain.deployment at its record)',
};

/**
 * A configuration the gateway or a command cannot run with. The message is written for the
 * operator (it names the key and the value, and is printed as is); `code` is for branching.
 */
export class ConfigError extends CodedError<ConfigErrorCode> {
  constructor(message: string, code: ConfigErrorCode = 'CONFIG_BAD_VALUE') {
    super(CONFIG_ERRORS, code, {}, { message });
  }
}

type Leaf = string | number;

/** Every dotted key of the config with its default, e.g. ['mqtt.port', 1883]. */
export function configKeys(obj: object = DEFAULTS, prefix = ''): [string, Leaf][] {
  return Object.entries(obj).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null ? configKeys(v as object, `${prefix}${k}.`) : [[`${prefix}${k}`, v as Leaf] as [string, Leaf]],
  );
}

export function envName(key: string): string {
  return `VP_${key
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .replace(/\./g, '_')
    .toUpperCase()}`;
}

/**
 * Builds the configuration.
 * @param flags dotted keys from the command line, e.g. { 'mqtt.port': '1884' }
 * @throws ConfigError for an unknown key, a value of the wrong type, or an unreadable file.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; flags?: Record<string, string> } = {}): GatewayConfig {
  const env = opts.env ?? process.env;
  const cfg = structuredClone(DEFAULTS);
  const file = opts.file ?? env.VP_CONFIG;
  if (file) {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
    }
    for (const [k, v] of configKeys(doc as object)) set(cfg, k, v, `file ${file}`);
  }
  for (const [k] of configKeys()) {
    const v = env[envName(k)];
    if (v !== undefined) set(cfg, k, v, `environment ${envName(k)}`);
  }
  for (const [k, v] of Object.entries(opts.flags ?? {})) set(cfg, k, v, `flag --${k}`);
  cfg.dataDir = resolve(cfg.dataDir);
  if (!['embedded', 'external', 'off'].includes(cfg.chain.mode)) throw new ConfigError(`chain.mode must be embedded, external or off, got "${cfg.chain.mode}"`);
  if (!['chain', 'file'].includes(cfg.registry.source)) throw new ConfigError(`registry.source must be chain or file, got "${cfg.registry.source}"`);
  if (cfg.registry.source === 'chain' && cfg.chain.mode === 'off')
    throw new ConfigError('registry.source "chain" needs a chain: set chain.mode to embedded or external, or registry.source to file', 'CONFIG_CONFLICT');
  if (cfg.chain.mode === 'external' && (!cfg.chain.rpcUrl || !cfg.chain.keyFile))
    throw new ConfigError(
      'chain.mode external needs chain.rpcUrl and chain.keyFile (and chain.deployment, or dataDir/chain/deployment.json)',
      'CONFIG_CONFLICT',
    );
  if (!['on', 'off'].includes(cfg.ble.mode)) throw new ConfigError(`ble.mode must be on or off, got "${cfg.ble.mode}"`);
  if (!['store', 'off'].includes(cfg.ingest.handoff)) throw new ConfigError(`ingest.handoff must be store or off, got "${cfg.ingest.handoff}"`);
  if (!Number.isInteger(cfg.ble.maxConnections) || cfg.ble.maxConnections < 1)
    throw new ConfigError(`ble.maxConnections must be an integer >= 1, got ${cfg.ble.maxConnections}`);
  if (!Number.isInteger(cfg.chain.confirmations) || cfg.chain.confirmations < 1)
    throw new ConfigError(`chain.confirmations must be an integer >= 1, got ${cfg.chain.confirmations}`);
  for (const [k, v] of [
    ['consent.pollIntervalMs', cfg.consent.pollIntervalMs],
    ['accessLog.intervalMs', cfg.accessLog.intervalMs],
    ['accessLog.maxEntries', cfg.accessLog.maxEntries],
    ['log.limitWindowMs', cfg.log.limitWindowMs],
    ['research.maxConnectionsPerResearcher', cfg.research.maxConnectionsPerResearcher],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ConfigError(`${k} must be an integer >= 1, got ${v}`);
  }
  for (const [k, v] of [
    ['accessLog.liveBatchMs', cfg.accessLog.liveBatchMs],
    ['research.maxUngrantedConnections', cfg.research.maxUngrantedConnections],
    ['log.maxBytes', cfg.log.maxBytes],
    ['log.keepFiles', cfg.log.keepFiles],
    ['log.limitBurst', cfg.log.limitBurst],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${k} must be an integer >= 0, got ${v}`);
  }
  if (cfg.log.keepFiles > 1000) throw new ConfigError(`log.keepFiles must be at most 1000, got ${cfg.log.keepFiles}`);
  if (!Number.isSafeInteger(cfg.storage.quarantineMaxBytes) || cfg.storage.quarantineMaxBytes < 1)
    throw new ConfigError(`storage.quarantineMaxBytes must be an integer >= 1, got ${cfg.storage.quarantineMaxBytes}`);
  for (const [k, v] of [
    ['chain.rpcTimeoutMs', cfg.chain.rpcTimeoutMs],
    ['ingest.handoffTimeoutMs', cfg.ingest.handoffTimeoutMs],
    ['health.intervalMs', cfg.health.intervalMs],
    ['health.probeTimeoutMs', cfg.health.probeTimeoutMs],
    ['health.anchorsBehindIntervals', cfg.health.anchorsBehindIntervals],
    ['health.anchorsBehindMinMs', cfg.health.anchorsBehindMinMs],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ConfigError(`${k} must be an integer >= 1, got ${v}`);
  }
  checkMqtt(cfg.mqtt);
  checkUplink(cfg.uplink);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(cfg.hub.instance)) throw new ConfigError(`hub.instance must be 1-64 characters [A-Za-z0-9._-], got "${cfg.hub.instance}"`);
  for (const [k, v] of [
    ['hub.holdMs', cfg.hub.holdMs],
    ['hub.sessionExpiryS', cfg.hub.sessionExpiryS],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${k} must be an integer >= 0, got ${v}`);
  }
  for (const [k, v] of [
    ['http.maxHeaderBytes', cfg.http.maxHeaderBytes],
    ['http.maxBodyBytes', cfg.http.maxBodyBytes],
    ['http.headersTimeoutMs', cfg.http.headersTimeoutMs],
    ['http.requestTimeoutMs', cfg.http.requestTimeoutMs],
    ['http.keepAliveTimeoutMs', cfg.http.keepAliveTimeoutMs],
    ['http.maxConnections', cfg.http.maxConnections],
    ['http.maxConnectionsPerSource', cfg.http.maxConnectionsPerSource],
    ['http.loginPerSourceBurst', cfg.http.loginPerSourceBurst],
    ['login.maxUnadmittedSessions', cfg.login.maxUnadmittedSessions],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ConfigError(`${k} must be an integer >= 1, got ${v}`);
  }
  for (const [k, v] of [
    ['http.loginPerSourcePerS', cfg.http.loginPerSourcePerS],
    ['login.recoveriesPerS', cfg.login.recoveriesPerS],
    ['login.selfIssuedPerS', cfg.login.selfIssuedPerS],
  ] as const) {
    if (!(v > 0)) throw new ConfigError(`${k} must be a number > 0, got ${v}`);
  }
  if (cfg.http.headersTimeoutMs > cfg.http.requestTimeoutMs)
    throw new ConfigError(
      `http.headersTimeoutMs (${cfg.http.headersTimeoutMs}) must not exceed http.requestTimeoutMs (${cfg.http.requestTimeoutMs})`,
      'CONFIG_CONFLICT',
    );
  for (const k of ['cert', 'key', 'ca'] as const) if (cfg.http.tls[k]) cfg.http.tls[k] = resolve(cfg.http.tls[k]);
  if (cfg.chain.deployment) cfg.chain.deployment = resolve(cfg.chain.deployment);
  if (cfg.chain.keyFile) cfg.chain.keyFile = resolve(cfg.chain.keyFile);
  if (cfg.hub.authSecretFile) cfg.hub.authSecretFile = resolve(cfg.hub.authSecretFile);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(cfg.gatewayId)) throw new ConfigError(`gatewayId "${cfg.gatewayId}" must be 1-64 characters [A-Za-z0-9._-]`);
  return cfg;
}

/**
 * Whether a listen address reaches only this host: 127.0.0.0/8, ::1 (also IPv4-mapped), localhost.
 * Anything else (0.0.0.0, ::, an interface address, a host name) may face the network.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** The smallest device packet limit: the largest valid frame in a PUBLISH on its 30-byte topic (1 + 3 + 2 + 30 + 2 bytes of header). */
const MIN_DEVICE_PACKET_BYTES = MAX_FRAME_BYTES + 64;

/**
 * The MQTT limits are sane and no listener carries health data in clear on the network
 * unless the operator said so (docs/operations.md, "Encryption in transit").
 * @throws ConfigError naming the key, what it must be and what it is.
 */
function checkMqtt(m: GatewayConfig['mqtt']): void {
  for (const k of ['allowPlain'] as const) if (!['true', 'false'].includes(m[k])) throw new ConfigError(`mqtt.${k} must be true or false, got "${m[k]}"`);
  if (!['true', 'false'].includes(m.tls.requireClientCert))
    throw new ConfigError(`mqtt.tls.requireClientCert must be true or false, got "${m.tls.requireClientCert}"`);
  const atLeast: [string, number, number][] = [
    ['mqtt.maxConnectBytes', m.maxConnectBytes, 256],
    ['mqtt.maxDevicePacketBytes', m.maxDevicePacketBytes, MIN_DEVICE_PACKET_BYTES],
    ['mqtt.maxResearcherPacketBytes', m.maxResearcherPacketBytes, 256],
    ['mqtt.connectDeadlineMs', m.connectDeadlineMs, 1],
    ['mqtt.maxConnections', m.maxConnections, 1],
    ['mqtt.maxConnectionsPerSource', m.maxConnectionsPerSource, 1],
    ['mqtt.maxKeepaliveS', m.maxKeepaliveS, 1],
    ['mqtt.refusalLogIntervalMs', m.refusalLogIntervalMs, 1],
  ];
  for (const [k, v, min] of atLeast) if (!Number.isInteger(v) || v < min) throw new ConfigError(`${k} must be an integer >= ${min}, got ${v}`);
  if (m.maxKeepaliveS > 65_535) throw new ConfigError(`mqtt.maxKeepaliveS must be <= 65535 (MQTT 3.1.1 §3.1.2.10), got ${m.maxKeepaliveS}`);
  const t = m.tls;
  if (Boolean(t.cert) !== Boolean(t.key))
    throw new ConfigError(`mqtt.tls.cert and mqtt.tls.key go together: got cert "${t.cert}", key "${t.key}"`, 'CONFIG_CONFLICT');
  if (t.ca && !t.cert) throw new ConfigError('mqtt.tls.ca needs a TLS listener: set mqtt.tls.cert and mqtt.tls.key too', 'CONFIG_CONFLICT');
  if (t.requireClientCert === 'true' && !t.ca)
    throw new ConfigError(
      "mqtt.tls.requireClientCert true needs mqtt.tls.ca (the CA that issued the devices' certificates) and mqtt.tls.cert / mqtt.tls.key",
      'CONFIG_CONFLICT',
    );
  if (t.cert) {
    t.cert = resolve(t.cert);
    t.key = resolve(t.key);
    if (t.ca) t.ca = resolve(t.ca);
    if (!Number.isInteger(t.port) || t.port < 0 || t.port > 65_535) throw new ConfigError(`mqtt.tls.port must be 0-65535, got ${t.port}`);
  }
  if (!isLoopbackHost(m.host) && m.allowPlain !== 'true') {
    throw new ConfigError(
      `mqtt.host is "${m.host}", not a loopback address: plain MQTT there would carry readings, CONNECT tokens and researchers' streams in clear on the network. ` +
        'Keep mqtt.host on 127.0.0.1 and serve the network over TLS (mqtt.tls.cert, mqtt.tls.key, mqtt.tls.host), or set mqtt.allowPlain true to accept the risk (docs/operations.md, "Encryption in transit")',
      'CONFIG_PLAIN_NOT_LOOPBACK',
    );
  }
}

/** The uplink's settings (docs/uplink.md), when it is on; paths made absolute. @throws ConfigError. */
function checkUplink(u: GatewayConfig['uplink']): void {
  if (!u.url) return;
  if (!/^mqtts?:\/\/[^/]/.test(u.url)) throw new ConfigError(`uplink.url must be an mqtt:// or mqtts:// URL, got "${u.url}"`);
  if (/^mqtts?:\/\/[^/]*@/.test(u.url))
    throw new ConfigError('uplink.url must not carry user info: give uplink.username and uplink.passwordFile', 'CONFIG_CONFLICT');
  if (!u.passwordFile) throw new ConfigError("uplink.url needs uplink.passwordFile (the broker account's password, first line)", 'CONFIG_CONFLICT');
  if (Boolean(u.tls.cert) !== Boolean(u.tls.key)) throw new ConfigError('uplink.tls.cert and uplink.tls.key go together', 'CONFIG_CONFLICT');
  for (const [k, v, max] of [
    ['uplink.inflight', u.inflight, 65_535],
    ['uplink.statusIntervalMs', u.statusIntervalMs, Infinity],
    ['uplink.retryMinMs', u.retryMinMs, u.retryMaxMs],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > max) throw new ConfigError(`${k} must be an integer from 1 to ${max}, got ${v}`);
  }
  u.passwordFile = resolve(u.passwordFile);
  for (const k of ['ca', 'cert', 'key'] as const) if (u.tls[k]) u.tls[k] = resolve(u.tls[k]);
}

/**
 * The configuration a command runs with: `--config FILE` and every other flag as a config key,
 * except the command's own flags (`own`), which it reads itself.
 * @throws ConfigError as loadConfig does.
 */
export function configFromFlags(flags: Record<string, string>, own: readonly string[] = []): GatewayConfig {
  const { config, ...rest } = flags;
  for (const k of own) delete rest[k];
  return loadConfig({ ...(config ? { file: config } : {}), flags: rest });
}

function set(cfg: GatewayConfig, key: string, value: Leaf, source: string): void {
  const path = key.split('.');
  let node = cfg as unknown as Record<string, unknown>;
  for (const p of path.slice(0, -1)) {
    const next = node[p];
    if (typeof next !== 'object' || next === null) throw new ConfigError(`unknown config key "${key}" (${source})`, 'CONFIG_UNKNOWN_KEY');
    node = next as Record<string, unknown>;
  }
  const leaf = path[path.length - 1]!;
  if (!(leaf in node) || typeof node[leaf] === 'object') throw new ConfigError(`unknown config key "${key}" (${source})`, 'CONFIG_UNKNOWN_KEY');
  if (typeof node[leaf] === 'number') {
    const n = typeof value === 'number' ? value : Number(value);
    if (!Number.isFinite(n) || (typeof value === 'string' && value.trim() === ''))
      throw new ConfigError(`config key "${key}" must be a number, got "${value}" (${source})`);
    node[leaf] = n;
  } else node[leaf] = String(value);
}
