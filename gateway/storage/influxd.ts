/**
 * Runs a real `influxd` (InfluxDB 1.x) as a child process: the gateway's embedded store
 * when no InfluxDB URL is configured, and the store the integration tests run against.
 * It listens on loopback only, on free ports, with all its files in one data dir.
 *
 * @example
 *   const db = await startInfluxd({ dataDir: '/tmp/vp-influx' });
 *   // ... new InfluxSink({ url: db.url, ... })
 *   await db.stop();
 */
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { Logger } from '../log.js';
import { findFreePorts } from '../util/net.js';
import { StorageError } from './errors.js';
import { renderInfluxdConfig } from './influxd-config.js';
import { spawnServer, terminate, type ChildExit } from '../util/child.js';

export interface InfluxdOptions {
  /** Created if missing; holds influxdb.conf, meta/, data/ and wal/. */
  dataDir: string;
  /** HTTP port on 127.0.0.1. Default: a free one. */
  port?: number;
  log?: Logger;
  /** Default: `influxd` from PATH. */
  binary?: string;
  /** Deadline for /ping to answer 204 after spawning. Default 30 s. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before it sends SIGKILL. Default 10 s. */
  stopTimeoutMs?: number;
}

export interface InfluxdHandle {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly rpcPort: number;
  readonly dataDir: string;
  /** Process id while running, else undefined. */
  readonly pid: number | undefined;
  /** Milliseconds from spawn to the first 204 from /ping, for the latest (re)start. */
  readonly startupMs: number;
  /** SIGTERM, wait for the exit, SIGKILL after stopTimeoutMs. Resolves at once when not running. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit: a crash, for tests. */
  kill(): Promise<void>;
  /** Stops if running, then starts again on the same data dir and the same ports. */
  restart(): Promise<void>;
}

const PING_INTERVAL_MS = 25;
const MAX_PORT_ATTEMPTS = 5;

interface Running {
  child: ChildProcess;
  exited: Promise<ChildExit>;
  output: { tail: string };
}

/**
 * Starts influxd and resolves once it answers /ping.
 * @throws StorageError INFLUXD_NOT_FOUND, INFLUXD_PORT_IN_USE, INFLUXD_START_FAILED, INFLUXD_START_TIMEOUT.
 */
export async function startInfluxd(opts: InfluxdOptions): Promise<InfluxdHandle> {
  const binary = resolveBinary(opts.binary ?? 'influxd');
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const free = await findFreePorts(2);
  const httpPort = opts.port ?? free[0]!;
  const rpcPort = free.find((p) => p !== httpPort)!;
  const d = new Influxd(binary, dataDir, httpPort, rpcPort, opts.port !== undefined, opts);
  await d.start();
  return d;
}

class Influxd implements InfluxdHandle {
  private running: Running | undefined;
  /** Set once /ping answered; an exit after that is a crash unless stop() or kill() asked for it. */
  private ready = false;
  private stopping = false;
  private startedInMs = 0;

  constructor(
    private readonly binary: string,
    readonly dataDir: string,
    private httpPort: number,
    private rpc: number,
    /** The HTTP port was chosen by the caller, or is kept across a restart: never re-pick it. */
    private httpPinned: boolean,
    private readonly opts: InfluxdOptions,
  ) {}

  get port(): number {
    return this.httpPort;
  }

  get rpcPort(): number {
    return this.rpc;
  }

  get startupMs(): number {
    return this.startedInMs;
  }

  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get pid(): number | undefined {
    return this.running?.child.pid;
  }

  /** Spawns and waits for /ping; when a port turns out to be taken, re-picks the ones it may. */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spawnOnce();
        this.httpPinned = true; // restart() must come back on the same URL
        return;
      } catch (e) {
        const taken = (e as StorageError).code === 'INFLUXD_PORT_IN_USE' ? ((e as StorageError).detail['port'] as number) : undefined;
        const canRepick = taken === this.rpcPort || (taken === this.port && !this.httpPinned);
        if (!canRepick || attempt >= MAX_PORT_ATTEMPTS) throw e;
        this.opts.log?.warn({ event: 'influxd_port_taken', port: taken, attempt }, 'influxd port taken; retrying with a fresh one');
        const [fresh] = await findFreePorts(1);
        if (taken === this.rpc) this.rpc = fresh!;
        else this.httpPort = fresh!;
      }
    }
  }

  async stop(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.stopping = true;
    await terminate(r, this.opts.stopTimeoutMs ?? 10_000, () =>
      this.opts.log?.warn({ event: 'influxd_stop_timeout', pid: r.child.pid }, 'influxd ignored SIGTERM; sending SIGKILL'),
    );
  }

  async kill(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.stopping = true;
    r.child.kill('SIGKILL');
    await r.exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private async spawnOnce(): Promise<void> {
    const confPath = join(this.dataDir, 'influxdb.conf');
    writeFileSync(confPath, renderInfluxdConfig({ dataDir: this.dataDir, httpPort: this.port, rpcPort: this.rpcPort }));
    const t0 = performance.now();
    const proc = spawnServer(this.binary, ['run', '-config', confPath], {
      env: influxdEnv(),
      onOutput: (text) => {
        for (const line of text.split('\n')) if (line.trim()) this.opts.log?.warn({ event: 'influxd_output', line }, 'influxd');
      },
    });
    const { child, output } = proc;
    const exited = proc.exited.then((x) => {
      if (this.running?.child === child) this.running = undefined;
      if (this.ready && !this.stopping) this.opts.log?.error({ event: 'influxd_exited', ...x, output: output.tail.trim() }, 'influxd exited unexpectedly');
      return x;
    });
    this.running = { child, exited, output };
    this.ready = false;
    this.stopping = false;
    try {
      await this.waitForPing(exited, output);
    } catch (e) {
      await this.kill();
      throw e;
    }
    this.ready = true;
    this.startedInMs = Math.round(performance.now() - t0);
    this.opts.log?.info({ event: 'influxd_ready', url: this.url, pid: child.pid, ms: this.startedInMs }, 'influxd ready');
  }

  /** Polls /ping until 204, the child's exit, or the deadline, whichever comes first. */
  private async waitForPing(exited: Running['exited'], output: Running['output']): Promise<void> {
    const timeoutMs = this.opts.startTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    let gone: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    void exited.then((x) => (gone = x));
    while (Date.now() < deadline) {
      if (gone) throw startFailure(gone, output.tail, [this.httpPort, this.rpc]);
      if (await Promise.race([pingOnce(this.url), exited.then(() => false)])) return;
      if (gone) throw startFailure(gone, output.tail, [this.httpPort, this.rpc]);
      await Promise.race([exited, new Promise((res) => setTimeout(res, PING_INTERVAL_MS))]);
    }
    throw new StorageError('INFLUXD_START_TIMEOUT', { url: this.url, timeoutMs, output: output.tail.trim() });
  }
}

async function pingOnce(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
    await res.body?.cancel();
    return res.status === 204;
  } catch {
    return false; // not listening yet
  }
}

function startFailure(x: { code: number | null; signal: NodeJS.Signals | null }, tail: string, ports: number[]): StorageError {
  const inUse = /listen tcp [^\s]*:(\d+): bind: address already in use/.exec(tail);
  if (inUse) {
    const port = Number(inUse[1]);
    if (ports.includes(port)) return new StorageError('INFLUXD_PORT_IN_USE', { port, output: tail.trim() });
  }
  return new StorageError('INFLUXD_START_FAILED', { code: x.code, signal: x.signal, output: tail.trim() });
}

/** influxd reads INFLUXDB_* variables as overrides of its config file (e.g. INFLUXDB_HTTP_BIND_ADDRESS): drop them. */
function influxdEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INFLUXDB_')));
}

/** @throws StorageError INFLUXD_NOT_FOUND when `name` is not an executable file, directly or on PATH. */
function resolveBinary(name: string): string {
  const candidates = name.includes('/')
    ? [isAbsolute(name) ? name : resolve(name)]
    : (process.env['PATH'] ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((dir) => join(dir, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here; try the next PATH entry
    }
  }
  throw new StorageError('INFLUXD_NOT_FOUND', { binary: name, path: process.env['PATH'] ?? '' });
}
