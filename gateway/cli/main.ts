#!/usr/bin/env node
/**
 * vitalproof: the gateway's command line.
 *
 *   vitalproof run     [--config FILE] [--<key> VALUE ...]   run the gateway
 *   vitalproof enrol   FILE [--admin-key-file F]             enrol devices from an enrolment file (on chain by default)
 *   vitalproof revoke  DEVICE_ID [--at ISO_TIME]             revoke a device (frames from then on are refused)
 *   vitalproof devices                                       list enrolled devices
 *   vitalproof status  [--url URL] [--ca FILE]               print a running gateway's status
 *   vitalproof export  --device ID [--seq N | --from T --to T] [--out FILE]   proof bundles
 *   vitalproof verify  FILE… (--rpc URL | --offline)         check proof bundles
 *   vitalproof audit   [--device ID] [--from T] [--to T] [--json FILE]       InfluxDB against signed, anchored frames
 *   vitalproof storage replay [--dry-run]                   write the storage quarantine to InfluxDB again
 *   vitalproof chain   deploy|info                           contracts on an external chain; chain status
 *   vitalproof admin   bind-patient|authorize-gateway|dev-key  bind a patient's address, authorise a gateway
 *   vitalproof consent grant|revoke|list                     the patient's grants, and who saw their data
 *   vitalproof research login|logout|grants|subscribe|export|verify  a researcher's access (docs/research-api.md)
 *
 * Any configuration key can be given as a flag (--mqtt.port 1884), an environment
 * variable (VP_MQTT_PORT=1884) or in the --config file; see docs/operations.md.
 */
import { ConfigError, configFromFlags } from '../config.js';
import { createLogger } from '../log.js';
import { parseArgv } from './args.js';
import { startGateway } from '../gateway.js';
import { openRegistry } from '../registry/open.js';
import { openChainForCli, readKeyFile } from '../chain/runtime.js';
import { enrolFile, EnrolmentError, readEnrolmentFile } from '../registry/enrolment.js';
import { formatStatus } from '../status/format.js';
import { trustCaFile } from '../util/tls-trust.js';
import { SdNotifier } from '../status/sd-notify.js';
import { chainCommand } from './chain.js';
import { exportCommand } from './export.js';
import { verifyCommand } from './verify.js';
import { auditCommand } from './audit.js';
import { storageCommand } from './storage.js';
import { adminCommand } from './admin.js';
import { consentCommand } from './consent.js';
import { researchCommand } from './research.js';
import type { StatusSnapshot } from '../status/http.js';

const USAGE = `usage: vitalproof <run|enrol|revoke|devices|status|export|verify|audit|storage|chain|admin|consent|research> [options]
  run                 run the gateway (embedded MQTT broker, spool, InfluxDB writer, Merkle batches, anchoring, status endpoint)
  enrol FILE          enrol the devices listed in an enrolment file (e.g. from "vp-sim export"); on chain: --admin-key-file F for an external chain
  revoke DEVICE_ID    revoke a device; --at ISO_TIME (default now)
  devices             list enrolled devices
  status              print a running gateway's status; --url http://127.0.0.1:8080 (https://… with --ca FILE for a private CA)
  export              proof bundles of stored frames: --device ID [--seq N | --from T --to T] [--out FILE] [--url URL --ca FILE]
  verify FILE…        check proof bundles: --rpc URL, or --offline
  audit               check what InfluxDB holds against the signed frames and anchored batches: [--device ID] [--from T] [--to T] [--json FILE]
  storage replay      write frames InfluxDB refused for good (the storage quarantine) again, once the database is fixed: [--dry-run]
  chain deploy|info   deploy the contracts on an external chain (--rpc URL --key-file F); show the chain
  admin ...           bind-patient PSEUDONYM ADDRESS, authorize-gateway ADDRESS (hospital / chain admin)
  consent ...         grant, revoke, list [--disclosures]: the patient's consent, with their key (--key-file F)
  research ...        login, logout, grants, subscribe, export, verify: a researcher's access, with their key
options: --config FILE, and any config key as --key value (e.g. --dataDir ./data --mqtt.port 1883 --influx.url http://...)`;


/** How long a stop may take before the process exits regardless (ms). */
const STOP_DEADLINE_MS = 15_000;

async function main(argv: string[]): Promise<number> {
  const { positionals, flags } = parseArgv(argv);
  const cmd = positionals[0];
  if (!cmd || (flags.help && !['admin', 'consent', 'research', 'storage'].includes(cmd))) {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  switch (cmd) {
    case 'run': {
      const cfg = configFromFlags(flags);
      const log = createLogger(cfg.log.level, cfg.log.file || undefined, { maxBytes: cfg.log.maxBytes, keepFiles: cfg.log.keepFiles });
      const gw = await startGateway(cfg, log);
      // systemd (deploy/vitalproof.service): READY=1 now, WATCHDOG=1 only while healthy; a no-op without NOTIFY_SOCKET.
      const notifier = new SdNotifier({
        healthy: () => gw.health.watchdog(Math.max(5000, 3 * cfg.health.intervalMs)),
        status: () => {
          const a = gw.health.list();
          return a.length ? `alarms: ${a.map((x) => x.code).join(', ')}` : 'running';
        },
        log,
      });
      notifier.ready();
      // Whatever happens on the way down, the process ends: a supervisor (systemd, docs/operations.md)
      // restarts a gateway that exits, never one that lingers with its listeners closed.
      const exitAfterStop = async (code: number): Promise<never> => {
        notifier.stopping();
        const deadline = setTimeout(() => {
          log.error({ event: 'stop_timeout', ms: STOP_DEADLINE_MS }, 'shutdown took too long; exiting anyway');
          log.flush();
          process.exit(code === 0 ? 1 : code);
        }, STOP_DEADLINE_MS);
        deadline.unref();
        try {
          await gw.stop();
        } catch (e) {
          log.error({ event: 'stop_failed', err: (e as Error).message }, 'shutdown failed');
          if (code === 0) code = 1;
        }
        log.flush();
        process.exit(code);
      };
      let stopping = false;
      const stop = (sig: string): void => {
        if (stopping) return;
        stopping = true;
        log.info({ event: 'stopping', signal: sig }, 'stopping');
        void exitAfterStop(0);
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      const fault = (what: string) => (e: unknown): void => {
        log.fatal({ event: 'fatal', err: e instanceof Error ? e.message : String(e), what }, 'fatal fault; exiting');
        if (stopping) return;
        stopping = true;
        void exitAfterStop(1);
      };
      process.on('uncaughtException', fault('uncaught exception'));
      process.on('unhandledRejection', fault('unhandled rejection'));
      gw.fatal.then(fault('gateway fault'), fault('gateway fault'));
      return new Promise<number>(() => undefined); // ends by process.exit
    }
    case 'enrol':
    case 'revoke':
    case 'devices':
      return registryCommand(cmd, positionals.slice(1), flags);
    case 'status': {
      const cfg = configFromFlags(flags, ['url', 'ca']);
      if (flags.ca !== undefined) trustCaFile(flags.ca);
      const url = flags.url ?? `${cfg.http.tls.cert ? 'https' : 'http'}://${cfg.http.host}:${cfg.http.port}`;
      const res = await fetch(`${url}/status`);
      console.log(formatStatus((await res.json()) as StatusSnapshot));
      return 0;
    }
    case 'chain':
      return chainCommand(argv.slice(1));
    case 'export':
      return exportCommand(argv.slice(1));
    case 'verify':
      return verifyCommand(argv.slice(1));
    case 'audit':
      return auditCommand(argv.slice(1));
    case 'storage':
      return storageCommand(argv.slice(1));
    case 'admin':
      return adminCommand(argv.slice(1));
    case 'consent':
      return consentCommand(argv.slice(1));
    case 'research':
      return researchCommand(argv.slice(1));
    default:
      console.error(USAGE);
      return 2;
  }
}

/**
 * enrol / revoke / devices, against the configured registry: on chain (the embedded chain of
 * the gateway running on this data dir, or started for the command; or the external one,
 * with --admin-key-file holding a hospital admin's key) or the registry file.
 */
async function registryCommand(cmd: 'enrol' | 'revoke' | 'devices', args: string[], flags: Record<string, string>): Promise<number> {
  const cfg = configFromFlags(flags, ['at', 'admin-key-file']);
  if (cmd === 'enrol' && !args[0]) throw new ConfigError('enrol needs an enrolment file');
  const file = cmd === 'enrol' ? readEnrolmentFile(args[0]!) : undefined; // a file refused as a whole starts no chain
  if (cmd === 'revoke' && !args[0]) throw new ConfigError('revoke needs a device id');
  const at = flags.at ? Date.parse(flags.at) : Date.now();
  if (!Number.isFinite(at)) throw new ConfigError(`--at "${flags.at}" is not a time`);
  const chain = cfg.registry.source === 'chain' ? await openChainForCli(cfg) : undefined;
  try {
    const signer = chain && flags['admin-key-file'] ? readKeyFile(flags['admin-key-file']).connect(chain.provider) : chain?.adminSigner;
    const reg = openRegistry(cfg, chain, undefined, { follow: false, ...(signer && cmd !== 'devices' ? { signer } : {}) });
    try {
      if (cmd === 'enrol') {
        const res = await enrolFile(reg, file!);
        await chain?.makeDurable();
        console.log(`enrolled ${res.enrolled.length}, already enrolled ${res.unchanged.length}, refused ${res.refused.length}${chain ? ` (on chain ${chain.chainId}, DeviceRegistry ${chain.record.deviceRegistry.address})` : ''}`);
        for (const r of res.refused) console.log(`  refused ${r.deviceId}: ${r.reason} (${r.detail})`);
        return res.refused.length ? 1 : 0;
      }
      if (cmd === 'revoke') {
        const rec = await reg.revoke(args[0]!, at);
        await chain?.makeDurable();
        console.log(`revoked ${rec.deviceId} (patient ${rec.patient}) from ${new Date(rec.revokedAtMs!).toISOString()}`);
        return 0;
      }
      await reg.sync?.();
      for (const d of reg.list()) {
        console.log(`${d.deviceId}  ${d.patient.padEnd(16)}  ${d.revokedAtMs ? `revoked ${new Date(d.revokedAtMs).toISOString()}` : 'active'}  ${d.sensors.join(',')}`);
      }
      return 0;
    } finally {
      await reg.close();
    }
  } finally {
    await chain?.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    console.error(e instanceof ConfigError || e instanceof EnrolmentError ? `error: ${e.message}` : e.stack ?? String(e));
    process.exitCode = e instanceof ConfigError ? 2 : 1;
  },
);
