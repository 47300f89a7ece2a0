/**
 * The systemd notification protocol (sd_notify(3)) for `Type=notify` with a watchdog
 * (deploy/vitalproof.service, docs/operations.md "Running under systemd").
 *
 *   READY=1       once the gateway listens (after spool recovery, so systemd orders dependants after it)
 *   WATCHDOG=1    every WATCHDOG_USEC / 2, only while `healthy()` says so: the event loop turns,
 *                 the health monitor still evaluates, and no alarm that a restart would cure is
 *                 raised (Health.watchdog). systemd restarts the service when pings stop for WatchdogSec.
 *   STATUS=…      the raised alarms, when they change (`systemctl status` shows it)
 *   STOPPING=1    when shutdown begins
 *
 * Node has no unix datagram sockets, so each message is sent by the `systemd-notify` tool that
 * ships with systemd (the unit sets NotifyAccess=all, since the sender is a child process).
 * systemd-notify waits until systemd has read the message (a barrier), so the sender is still
 * alive when systemd looks up which unit it belongs to. Messages go one at a time, in order.
 *
 * Without NOTIFY_SOCKET (not started by systemd, or Type=simple) every call is a no-op and
 * nothing is spawned. A WATCHDOG_PID naming another process means the watchdog is not ours.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';

export interface SdNotifyOptions {
  /** Default process.env: NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID. */
  env?: NodeJS.ProcessEnv;
  /** Whether the watchdog may be fed now, and if not why (shown as STATUS). */
  healthy?: () => { ok: boolean; why?: string };
  /** The status line while healthy (default "running"); alarms are appended. */
  status?: () => string;
  /** Default 'systemd-notify'. */
  command?: string;
  log?: { warn(obj: object, msg?: string): void; info(obj: object, msg?: string): void };
}

/** Longest a systemd-notify run may take (it waits for systemd to read the message). */
const SEND_TIMEOUT_MS = 5000;

/** 'tick': a watchdog period passed; `fed` tells whether WATCHDOG=1 was sent or withheld. */
export class SdNotifier extends EventEmitter<{ tick: [fed: boolean] }> {
  /** False when NOTIFY_SOCKET is unset: every call is a no-op. */
  readonly enabled: boolean;
  /** The watchdog period (ms) from WATCHDOG_USEC, halved as sd_watchdog_enabled(3) advises; undefined without a watchdog. */
  readonly watchdogIntervalMs: number | undefined;
  /** Messages sent (each a systemd-notify run that succeeded). */
  sent = 0;
  /** Watchdog ticks on which the ping was withheld because `healthy()` said no. */
  withheld = 0;
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private lastStatus: string | undefined;
  private failures = 0;
  private readonly command: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly opts: SdNotifyOptions = {}) {
    super();
    this.env = opts.env ?? process.env;
    this.command = opts.command ?? 'systemd-notify';
    this.enabled = Boolean(this.env['NOTIFY_SOCKET']);
    const usec = Number(this.env['WATCHDOG_USEC']);
    const pid = this.env['WATCHDOG_PID'];
    const ours = pid === undefined || pid === '' || Number(pid) === process.pid;
    this.watchdogIntervalMs = this.enabled && ours && Number.isFinite(usec) && usec > 0 ? Math.max(1, Math.floor(usec / 2000)) : undefined;
  }

  /** READY=1 with the current status, then the watchdog timer (if systemd asked for one). */
  ready(): void {
    if (!this.enabled) return;
    this.lastStatus = this.statusLine();
    this.send(['--ready', `--status=${this.lastStatus}`]);
    if (this.watchdogIntervalMs !== undefined && !this.timer) {
      this.timer = setInterval(() => this.watchdogTick(), this.watchdogIntervalMs);
      this.timer.unref();
      this.watchdogTick();
    }
  }

  /** STOPPING=1; no watchdog pings after it. */
  stopping(): void {
    if (!this.enabled) return;
    this.stopTimer();
    this.send(['STOPPING=1', '--status=stopping']);
  }

  /** Resolves once every message queued so far has been handed to systemd (or failed). */
  idle(): Promise<void> {
    return this.queue;
  }

  /** Stops the watchdog timer (no message). */
  close(): void {
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private watchdogTick(): void {
    const h = this.opts.healthy?.() ?? { ok: true };
    const status = this.statusLine(h);
    const args: string[] = [];
    if (h.ok) args.push('WATCHDOG=1');
    else this.withheld++;
    if (status !== this.lastStatus) {
      this.lastStatus = status;
      args.push(`--status=${status}`);
    }
    if (args.length > 0) this.send(args);
    this.emit('tick', h.ok);
  }

  private statusLine(h = this.opts.healthy?.() ?? { ok: true }): string {
    const base = this.opts.status?.() ?? 'running';
    return h.ok ? base : `${base}; watchdog withheld: ${h.why ?? 'unhealthy'}`;
  }

  private send(args: string[]): void {
    this.queue = this.queue.then(
      () =>
        new Promise<void>((resolve) => {
          execFile(this.command, args, { env: this.env, timeout: SEND_TIMEOUT_MS }, (err) => {
            if (err) {
              this.failures++;
              // Logged on the first failure and every 100th: a broken notifier must not flood the log.
              if (this.failures === 1 || this.failures % 100 === 0)
                this.opts.log?.warn({ event: 'sd_notify_failed', failures: this.failures, err: err.message }, 'systemd notification failed');
            } else this.sent++;
            resolve();
          });
        }),
    );
  }
}
