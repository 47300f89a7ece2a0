/**
 * `vitalproof run`: the gateway itself (gateway/gateway.ts), and `vitalproof hub`: the hub
 * (gateway/hub/hub.ts), each under systemd's notify protocol (deploy/vitalproof.service). The
 * only commands that load them: the command table (commands.ts) loads this module only when
 * one of them is the command.
 */
import { configFromFlags, type GatewayConfig } from '../config.js';
import { startGateway } from '../gateway.js';
import { startHub } from '../hub/hub.js';
import { createLogger, type Logger } from '../log.js';
import type { Health } from '../status/health.js';
import { SdNotifier } from '../status/sd-notify.js';
import { parseArgs } from './args.js';

/** How long a stop may take before the process exits regardless (ms). */
const STOP_DEADLINE_MS = 15_000;

/** What `serve` runs: a started gateway or hub. */
interface Served {
  health: Health;
  fatal: Promise<Error>;
  stop(): Promise<void>;
}

/**
 * Runs the gateway with the configuration of `argv` (--config FILE, any config key as a flag).
 * @returns never: the process ends by process.exit, on a signal or a fatal fault.
 */
export function runCommand(argv: string[]): Promise<number> {
  return serve(argv, startGateway);
}

/** Runs a hub (docs/fleet.md) with the configuration of `argv`. @returns never, as runCommand. */
export function hubCommand(argv: string[]): Promise<number> {
  return serve(argv, startHub);
}

async function serve(argv: string[], start: (cfg: GatewayConfig, log: Logger) => Promise<Served>): Promise<number> {
  const cfg = configFromFlags(parseArgs(argv).flags, ['help']);
  const log = createLogger(cfg.log.level, cfg.log.file || undefined, { maxBytes: cfg.log.maxBytes, keepFiles: cfg.log.keepFiles });
  const gw = await start(cfg, log);
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
  const fault =
    (what: string) =>
    (e: unknown): void => {
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
