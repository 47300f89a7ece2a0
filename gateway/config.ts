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

export interface GatewayConfig {
  /** Spool, registry, quarantine, embedded influxd data: everything the gateway writes. */
  dataDir: string;
  /** Names this gateway in stored points and (later) on chain. */
  gatewayId: string;
  mqtt: { host: string; port: number; connectWindowMs: number };
  http: { host: string; port: number };
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
  ingest: { maxFutureSkewMs: number; maxBacklogMs: number; verifyWorkers: number };
  storage: { batchFrames: number; retryMinMs: number; retryMaxMs: number };
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
    /** Live deliveries are summed into one entry per subscription per this many ms. */
    liveIntervalMs: number;
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
  log: { level: string; file: string };
}

export const DEFAULTS: GatewayConfig = {
  dataDir: './data',
  gatewayId: 'gw-local',
  mqtt: { host: '127.0.0.1', port: 1883, connectWindowMs: 30_000 },
  http: { host: '127.0.0.1', port: 8080 },
  influx: { url: '', database: 'vitalproof', username: '', password: '', timeoutMs: 10_000 },
  spool: { quotaBytes: 1024 * 1024 * 1024, alarmRatio: 0.8, segmentBytes: 64 * 1024 * 1024, minFreeBytes: 64 * 1024 * 1024 },
  ingest: { maxFutureSkewMs: 30_000, maxBacklogMs: 7 * 24 * 3600_000, verifyWorkers: 2 },
  storage: { batchFrames: 1000, retryMinMs: 200, retryMaxMs: 10_000 },
  batch: { intervalMs: 10_000, maxFrames: 50_000 },
  chain: { mode: 'embedded', rpcUrl: '', deployment: '', keyFile: '', embeddedPort: 0, confirmations: 1, txTimeoutMs: 60_000, retryMinMs: 500, retryMaxMs: 15_000, rpcTimeoutMs: 10_000 },
  health: { intervalMs: 1000, probeTimeoutMs: 2000, anchorsBehindIntervals: 3, anchorsBehindMinMs: 30_000 },
  consent: { pollIntervalMs: 250 },
  accessLog: { intervalMs: 10_000, maxEntries: 50_000, liveIntervalMs: 5_000 },
  registry: { source: 'chain', site: 'default' },
  ble: { mode: 'off', adapter: '', scanIntervalMs: 1000, maxConnections: 32, connectTimeoutMs: 10_000, reconnectMinMs: 500, reconnectMaxMs: 30_000, stallMs: 10_000, refuseHoldMs: 60_000 },
  log: { level: 'info', file: '' },
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
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
  return `VP_${key.replace(/([a-z])([A-Z])/g, '$1_$2').replace(/\./g, '_').toUpperCase()}`;
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
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
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
  if (cfg.registry.source === 'chain' && cfg.chain.mode === 'off') throw new ConfigError('registry.source "chain" needs a chain: set chain.mode to embedded or external, or registry.source to file');
  if (cfg.chain.mode === 'external' && (!cfg.chain.rpcUrl || !cfg.chain.keyFile)) throw new ConfigError('chain.mode external needs chain.rpcUrl and chain.keyFile (and chain.deployment, or dataDir/chain/deployment.json)');
  if (!['on', 'off'].includes(cfg.ble.mode)) throw new ConfigError(`ble.mode must be on or off, got "${cfg.ble.mode}"`);
  if (!Number.isInteger(cfg.ble.maxConnections) || cfg.ble.maxConnections < 1) throw new ConfigError(`ble.maxConnections must be an integer >= 1, got ${cfg.ble.maxConnections}`);
  if (!Number.isInteger(cfg.chain.confirmations) || cfg.chain.confirmations < 1) throw new ConfigError(`chain.confirmations must be an integer >= 1, got ${cfg.chain.confirmations}`);
  for (const [k, v] of [['consent.pollIntervalMs', cfg.consent.pollIntervalMs], ['accessLog.intervalMs', cfg.accessLog.intervalMs], ['accessLog.maxEntries', cfg.accessLog.maxEntries], ['accessLog.liveIntervalMs', cfg.accessLog.liveIntervalMs]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ConfigError(`${k} must be an integer >= 1, got ${v}`);
  }
  for (const [k, v] of [['chain.rpcTimeoutMs', cfg.chain.rpcTimeoutMs], ['health.intervalMs', cfg.health.intervalMs], ['health.probeTimeoutMs', cfg.health.probeTimeoutMs], ['health.anchorsBehindIntervals', cfg.health.anchorsBehindIntervals], ['health.anchorsBehindMinMs', cfg.health.anchorsBehindMinMs]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ConfigError(`${k} must be an integer >= 1, got ${v}`);
  }
  if (cfg.chain.deployment) cfg.chain.deployment = resolve(cfg.chain.deployment);
  if (cfg.chain.keyFile) cfg.chain.keyFile = resolve(cfg.chain.keyFile);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(cfg.gatewayId)) throw new ConfigError(`gatewayId "${cfg.gatewayId}" must be 1-64 characters [A-Za-z0-9._-]`);
  return cfg;
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
    if (typeof next !== 'object' || next === null) throw new ConfigError(`unknown config key "${key}" (${source})`);
    node = next as Record<string, unknown>;
  }
  const leaf = path[path.length - 1]!;
  if (!(leaf in node) || typeof node[leaf] === 'object') throw new ConfigError(`unknown config key "${key}" (${source})`);
  if (typeof node[leaf] === 'number') {
    const n = typeof value === 'number' ? value : Number(value);
    if (!Number.isFinite(n) || (typeof value === 'string' && value.trim() === '')) throw new ConfigError(`config key "${key}" must be a number, got "${value}" (${source})`);
    node[leaf] = n;
  } else node[leaf] = String(value);
}
