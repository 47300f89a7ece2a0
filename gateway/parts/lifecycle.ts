/**
 * What every part of the gateway (./*.ts, composed by gateway/gateway.ts) is handed: the
 * configuration, the log, the counters and alarms, and the lifecycle it registers its shutdown
 * steps and fatal faults with.
 */
import type { GatewayConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Health } from '../status/health.js';
import type { Metrics } from '../status/metrics.js';

/**
 * Shutdown steps and the fatal fault. Steps run in the reverse order of their registration, so
 * a part stops before the parts it was started on (the servers before the spool, the spool
 * before the chain), and every step runs even when an earlier one throws, synchronously or
 * not: a fault on the way down (a full disk failing the last batch seal) must not leave
 * servers or children behind.
 */
export class Lifecycle {
  /** Resolves when a fatal fault stops the gateway (a corrupt spool, a batch that cannot be sealed). */
  readonly fatal: Promise<Error>;
  private resolveFatal!: (e: Error) => void;
  private readonly steps: (() => unknown)[] = [];

  constructor(private readonly log: Logger) {
    this.fatal = new Promise<Error>((res) => (this.resolveFatal = res));
  }

  /** Registers a shutdown step: it runs after every step registered later. */
  onStop(step: () => unknown): void {
    this.steps.push(step);
  }

  /** A fault the gateway cannot go on after: `fatal` resolves with it (the CLI stops the gateway and exits). */
  fail(e: Error): void {
    this.resolveFatal(e);
  }

  /** Runs every registered step, last first; a failing step is logged (`shutdown_step_failed`) and the next runs. */
  async stop(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (e) {
        this.log.warn({ event: 'shutdown_step_failed', err: (e as Error).message }, 'shutdown step failed');
      }
    }
  }
}

/** What a part is started with. */
export interface PartContext {
  config: GatewayConfig;
  log: Logger;
  metrics: Metrics;
  /** Dependency health and alarms (docs/operations.md, "Alarms"). */
  health: Health;
  life: Lifecycle;
}
