/**
 * Runs a real `anvil` (Foundry's EVM node, npm `@foundry-rs/anvil`) as a child process: the
 * gateway's embedded chain when no external RPC URL is configured, and the chain the
 * contract tests run against. It listens on loopback only, on a free port, and its whole
 * chain (accounts, storage, blocks, receipts) is persisted in one data dir.
 *
 * Persistence. anvil's own `--state`/`--state-interval` dumps truncate the file and rewrite
 * it in place, without fsync: a crash or power cut during a dump leaves a file anvil then
 * refuses to load. So this module owns every write: a checkpoint asks anvil for its state
 * (`anvil_dumpState`) and writes it atomically (temp file, fsync, rename, fsync of the dir);
 * anvil only reads it, with `--load-state`, at start. Checkpoints run every
 * `checkpointIntervalMs` when the chain head moved, on `stop()`, and whenever a caller needs
 * a transaction durable (`checkpoint()`, e.g. right after an anchor is confirmed). A SIGKILL
 * or power cut loses at most the blocks since the last checkpoint, never the file.
 *
 * DEV ONLY: the accounts come from the well-known Foundry/Hardhat test mnemonic; their keys
 * are public. Never use them, or this chain, for anything but development, tests and demos.
 *
 * @example
 *   const chain = await startAnvil({ dataDir: 'data/chain' });
 *   const provider = new JsonRpcProvider(chain.url, chain.chainId, { staticNetwork: true });
 *   const deployer = devWallet(0, provider);
 *   // ...
 *   await chain.stop(); // checkpoint, then SIGTERM
 */
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { HDNodeWallet, type Provider } from 'ethers';
import type { Logger } from '../log.js';
import { findFreePort } from '../util/net.js';
import { ChainError } from './errors.js';
import { spawnServer, terminate, type ChildExit } from '../util/child.js';

/** DEV ONLY: the public Foundry/Hardhat test mnemonic. Anyone can spend from its accounts. */
export const DEV_MNEMONIC = 'test test test test test test test test test test test junk';
/** DEV ONLY: derivation path prefix of the dev accounts (account i is DEV_DERIVATION_PATH + i). */
export const DEV_DERIVATION_PATH = "m/44'/60'/0'/0/";
export const DEV_ACCOUNT_COUNT = 10;
/** anvil's default chain id. */
export const DEFAULT_CHAIN_ID = 31337;
/**
 * The EVM rules the embedded chain runs. Pinned rather than anvil's moving "latest", so gas
 * figures and behaviour do not change with an anvil upgrade; Prague is what current Besu and
 * Geth networks run. The contracts are compiled for `paris` and run on it unchanged.
 */
export const DEFAULT_HARDFORK = 'prague';
export const STATE_FILE = 'anvil-state.json';
export const META_FILE = 'anvil.json';

export interface AnvilOptions {
  /** Created if missing; holds anvil-state.json (the chain) and anvil.json (chain id, hardfork). */
  dataDir: string;
  /** Port on 127.0.0.1. Default: a free one (kept across restart()). */
  port?: number;
  /** Default: the one the data dir was created with, else 31337. A different one is refused. */
  chainId?: number;
  /** Default 'prague'. */
  hardfork?: string;
  /** Periodic checkpoint when the head moved; 0 disables (stop() and checkpoint() still write). Default 1000. */
  checkpointIntervalMs?: number;
  log?: Logger;
  /** Default: the binary of the installed @foundry-rs/anvil-<platform>-<arch> package. */
  binary?: string;
  /** Deadline for eth_chainId to answer after spawning. Default 30 s. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before it sends SIGKILL. Default 10 s. */
  stopTimeoutMs?: number;
}

export interface AnvilCheckpoint {
  /** Head block hash and number the state was dumped at (or after). */
  blockHash: string;
  blockNumber: number;
  bytes: number;
  ms: number;
  atMs: number;
}

export interface AnvilHandle {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly chainId: number;
  readonly dataDir: string;
  /** The persisted chain: what the next start loads. */
  readonly statePath: string;
  /** Process id while running, else undefined. */
  readonly pid: number | undefined;
  /** The latest checkpoint written by this handle, if any. */
  readonly lastCheckpoint: AnvilCheckpoint | undefined;
  /** Writes the chain's state to statePath now, atomically, unless the head has not moved since the last one. */
  checkpoint(): Promise<AnvilCheckpoint | undefined>;
  /** Checkpoint, SIGTERM, wait for the exit (SIGKILL after stopTimeoutMs). Resolves at once when not running. */
  stop(): Promise<void>;
  /** SIGKILL without a checkpoint: a crash, for tests. */
  kill(): Promise<void>;
  /** Stops if running, then starts again from statePath on the same port. */
  restart(): Promise<void>;
}

/** DEV ONLY: dev account `index` (0-9) of DEV_MNEMONIC, connected to `provider` if given. */
export function devWallet(index: number, provider: Provider | null = null): HDNodeWallet {
  if (!Number.isInteger(index) || index < 0 || index >= DEV_ACCOUNT_COUNT)
    throw new RangeError(`dev account index must be 0-${DEV_ACCOUNT_COUNT - 1}, got ${index}`);
  return HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `${DEV_DERIVATION_PATH}${index}`).connect(provider);
}

const POLL_INTERVAL_MS = 25;
const MAX_PORT_ATTEMPTS = 5;
const RPC_TIMEOUT_MS = 10_000;
/** stop(): the final checkpoint's deadline. A hung anvil must not hold the gateway's shutdown (the periodic checkpoints keep the loss to about a second). */
const STOP_CHECKPOINT_TIMEOUT_MS = 5_000;
const gunzipAsync = promisify(gunzip);

interface Running {
  child: ChildProcess;
  exited: Promise<ChildExit>;
  output: { tail: string; listening: boolean };
}

/**
 * Starts anvil and resolves once it listens and answers eth_chainId with the expected id.
 * @throws ChainError ANVIL_NOT_FOUND, ANVIL_PORT_IN_USE, ANVIL_START_FAILED, ANVIL_START_TIMEOUT,
 *   ANVIL_STATE_CORRUPT, ANVIL_CHAIN_ID_MISMATCH.
 */
export async function startAnvil(opts: AnvilOptions): Promise<AnvilHandle> {
  const binary = resolveAnvilBinary(opts.binary);
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const meta = readMeta(dataDir);
  const chainId = opts.chainId ?? meta?.chainId ?? DEFAULT_CHAIN_ID;
  if (meta && meta.chainId !== chainId) throw new ChainError('ANVIL_CHAIN_ID_MISMATCH', { dataDir, expected: meta.chainId, got: chainId });
  const hardfork = opts.hardfork ?? meta?.hardfork ?? DEFAULT_HARDFORK;
  if (!meta) writeFileSync(join(dataDir, META_FILE), `${JSON.stringify({ version: 1, chainId, hardfork }, null, 2)}\n`);
  const a = new Anvil(binary, dataDir, chainId, hardfork, opts.port ?? (await findFreePort()), opts.port !== undefined, opts);
  await a.start();
  return a;
}

class Anvil implements AnvilHandle {
  private running: Running | undefined;
  private ready = false;
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private checkpoints: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private last: AnvilCheckpoint | undefined;

  constructor(
    private readonly binary: string,
    readonly dataDir: string,
    readonly chainId: number,
    private readonly hardfork: string,
    private currentPort: number,
    /** The port was chosen by the caller, or is kept across a restart: never re-pick it. */
    private portPinned: boolean,
    private readonly opts: AnvilOptions,
  ) {}

  get port(): number {
    return this.currentPort;
  }

  get url(): string {
    return `http://127.0.0.1:${this.currentPort}`;
  }

  get statePath(): string {
    return join(this.dataDir, STATE_FILE);
  }

  get pid(): number | undefined {
    return this.running?.child.pid;
  }

  get lastCheckpoint(): AnvilCheckpoint | undefined {
    return this.last;
  }

  async start(): Promise<void> {
    checkStateFile(this.statePath);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spawnOnce();
        this.portPinned = true; // restart() must come back on the same URL
        break;
      } catch (e) {
        if (!(e instanceof ChainError && e.code === 'ANVIL_PORT_IN_USE') || this.portPinned || attempt >= MAX_PORT_ATTEMPTS) throw e;
        this.opts.log?.warn({ event: 'anvil_port_taken', port: this.currentPort, attempt }, 'anvil port taken; retrying with a fresh one');
        this.currentPort = await findFreePort();
      }
    }
    const every = this.opts.checkpointIntervalMs ?? 1000;
    if (every > 0) {
      this.timer = setInterval(() => {
        if (this.queued > 0) return; // a slow checkpoint is still running: do not pile up behind it
        this.checkpoint().catch((e: unknown) =>
          this.opts.log?.warn({ event: 'anvil_checkpoint_failed', err: (e as Error).message }, 'anvil checkpoint failed'),
        );
      }, every);
      this.timer.unref();
    }
  }

  checkpoint(): Promise<AnvilCheckpoint | undefined> {
    // One at a time, in call order: a call made after a transaction must dump after it.
    this.queued++;
    const next = this.checkpoints.then(() => this.checkpointOnce()).finally(() => this.queued--);
    this.checkpoints = next.catch(() => undefined);
    return next;
  }

  private async checkpointOnce(): Promise<AnvilCheckpoint | undefined> {
    if (!this.running || !this.ready) return undefined;
    const t0 = performance.now();
    // The head is read before the dump: if it moves in between, the next checkpoint dumps again.
    const head = (await this.rpc('eth_getBlockByNumber', ['latest', false])) as { hash: string; number: string };
    if (this.last?.blockHash === head.hash) return undefined;
    const dumped = (await this.rpc('anvil_dumpState', [])) as string;
    const json = await gunzipAsync(Buffer.from(dumped.replace(/^0x/, ''), 'hex'));
    if (json[0] !== 0x7b /* { */ || json[json.length - 1] !== 0x7d /* } */) {
      throw new ChainError('ANVIL_STATE_CORRUPT', { reason: 'anvil_dumpState returned something that is not a JSON object', bytes: json.length });
    }
    await writeFileAtomic(this.statePath, json);
    this.last = { blockHash: head.hash, blockNumber: Number(head.number), bytes: json.length, ms: Math.round(performance.now() - t0), atMs: Date.now() };
    this.opts.log?.debug({ event: 'anvil_checkpoint', ...this.last }, 'anvil state written');
    return this.last;
  }

  async stop(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.clearTimer();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.checkpoint(),
        new Promise<never>(
          (_res, rej) =>
            (timer = setTimeout(
              () => rej(new ChainError('CHAIN_TIMEOUT', { method: 'anvil_dumpState', timeoutMs: STOP_CHECKPOINT_TIMEOUT_MS })),
              STOP_CHECKPOINT_TIMEOUT_MS,
            )),
        ),
      ]);
    } catch (e) {
      this.opts.log?.error({ event: 'anvil_checkpoint_failed', err: (e as Error).message }, 'final anvil checkpoint failed; stopping anyway');
    } finally {
      clearTimeout(timer);
    }
    this.stopping = true;
    // A stopped process (SIGSTOP, a debugger) would hold SIGTERM until continued: continue it first.
    r.child.kill('SIGCONT');
    await terminate(r, this.opts.stopTimeoutMs ?? 10_000, () =>
      this.opts.log?.warn({ event: 'anvil_stop_timeout', pid: r.child.pid }, 'anvil ignored SIGTERM; sending SIGKILL'),
    );
  }

  async kill(): Promise<void> {
    const r = this.running;
    if (!r) return;
    this.clearTimer();
    this.stopping = true;
    r.child.kill('SIGKILL');
    await r.exited;
    await this.checkpoints; // let an interrupted checkpoint settle before anyone restarts
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private clearTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async spawnOnce(): Promise<void> {
    const args = [
      '--host',
      '127.0.0.1',
      '--port',
      String(this.currentPort),
      '--chain-id',
      String(this.chainId),
      '--hardfork',
      this.hardfork,
      '--mnemonic',
      DEV_MNEMONIC,
      '--accounts',
      String(DEV_ACCOUNT_COUNT),
      '--color',
      'never',
    ];
    if (existsSync(this.statePath)) args.push('--load-state', this.statePath);
    const t0 = performance.now();
    const listeningLine = `Listening on 127.0.0.1:${this.currentPort}`;
    // anvil prints a line per RPC call: keep a tail for error reports, log nothing per call.
    const proc = spawnServer(this.binary, args, {
      onOutput: () => {
        if (!output.listening && output.tail.includes(listeningLine)) output.listening = true;
      },
    });
    const { child } = proc;
    const output = Object.assign(proc.output, { listening: false });
    const exited = proc.exited.then((x) => {
      if (this.running?.child === child) this.running = undefined;
      if (this.ready && !this.stopping) {
        this.clearTimer();
        this.opts.log?.error({ event: 'anvil_exited', ...x, output: output.tail.trim() }, 'anvil exited unexpectedly');
      }
      return x;
    });
    this.running = { child, exited, output };
    this.ready = false;
    this.stopping = false;
    try {
      await this.waitReady(exited, output);
    } catch (e) {
      await this.kill();
      throw e;
    }
    this.ready = true;
    this.opts.log?.info({ event: 'anvil_ready', url: this.url, pid: child.pid, chainId: this.chainId, ms: Math.round(performance.now() - t0) }, 'anvil ready');
  }

  /** Waits for anvil's "Listening on" line (so an answer cannot come from someone else's node) and eth_chainId. */
  private async waitReady(exited: Running['exited'], output: Running['output']): Promise<void> {
    const timeoutMs = this.opts.startTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    let gone: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    void exited.then((x) => (gone = x));
    while (Date.now() < deadline) {
      if (gone) throw startFailure(gone, output.tail, this.currentPort);
      if (output.listening) {
        const id = await this.rpc('eth_chainId', [], 1000).catch(() => undefined);
        if (typeof id === 'string') {
          if (Number(id) !== this.chainId)
            throw new ChainError('ANVIL_START_FAILED', { reason: 'eth_chainId answered another chain id', expected: this.chainId, got: Number(id) });
          return;
        }
      }
      await Promise.race([exited, new Promise((res) => setTimeout(res, POLL_INTERVAL_MS))]);
    }
    throw new ChainError('ANVIL_START_TIMEOUT', { url: this.url, timeoutMs, output: output.tail.trim() });
  }

  private async rpc(method: string, params: unknown[], timeoutMs = RPC_TIMEOUT_MS): Promise<unknown> {
    const res = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.json()) as { result?: unknown; error?: { message: string } };
    if (body.error) throw new Error(`anvil ${method}: ${body.error.message}`);
    return body.result;
  }
}

/** Refuses a state file anvil could not load: starting empty instead would look like a chain reset. */
function checkStateFile(path: string): void {
  rmSync(`${path}.tmp`, { force: true }); // a checkpoint interrupted before its rename
  if (!existsSync(path)) return;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ChainError('ANVIL_STATE_CORRUPT', { path, reason: (e as Error).message });
  }
  const o = doc as Record<string, unknown> | null;
  if (!o || typeof o !== 'object' || typeof o['accounts'] !== 'object' || typeof o['block'] !== 'object') {
    throw new ChainError('ANVIL_STATE_CORRUPT', { path, reason: 'not an anvil state dump (no accounts / block)' });
  }
}

function readMeta(dataDir: string): { chainId: number; hardfork: string } | undefined {
  const path = join(dataDir, META_FILE);
  if (!existsSync(path)) return undefined;
  const m = JSON.parse(readFileSync(path, 'utf8')) as { chainId?: unknown; hardfork?: unknown };
  if (typeof m.chainId !== 'number' || typeof m.hardfork !== 'string')
    throw new ChainError('ANVIL_STATE_CORRUPT', { path, reason: 'anvil.json needs chainId and hardfork' });
  return { chainId: m.chainId, hardfork: m.hardfork };
}

async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

function startFailure(x: { code: number | null; signal: NodeJS.Signals | null }, tail: string, port: number): ChainError {
  if (/Address already in use/i.test(tail)) return new ChainError('ANVIL_PORT_IN_USE', { port, output: tail.trim() });
  return new ChainError('ANVIL_START_FAILED', { code: x.code, signal: x.signal, output: tail.trim() });
}

/** npm platform package of the anvil binary for this machine, e.g. @foundry-rs/anvil-linux-amd64. */
function platformPackage(): { name: string; exe: string } | undefined {
  const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch];
  const os = ({ linux: 'linux', darwin: 'darwin', win32: 'win32' } as Record<string, string>)[process.platform];
  if (!arch || !os) return undefined;
  return { name: `@foundry-rs/anvil-${os}-${arch}`, exe: os === 'win32' ? 'anvil.exe' : 'anvil' };
}

/**
 * The anvil binary: `explicit` if given, else the one inside the installed platform package
 * (the @foundry-rs/anvil wrapper's postinstall is not needed: npm installs the matching
 * optional dependency, which holds the binary itself).
 * @throws ChainError ANVIL_NOT_FOUND
 */
export function resolveAnvilBinary(explicit?: string): string {
  const candidates: string[] = [];
  if (explicit) candidates.push(resolve(explicit));
  else {
    const pkg = platformPackage();
    if (!pkg) throw new ChainError('ANVIL_NOT_FOUND', { reason: `no anvil npm package for ${process.platform}-${process.arch}` });
    try {
      const require = createRequire(import.meta.url);
      candidates.push(join(dirname(require.resolve(`${pkg.name}/package.json`)), 'bin', pkg.exe));
    } catch {
      throw new ChainError('ANVIL_NOT_FOUND', {
        package: pkg.name,
        reason: 'package not installed (npm ci installs it as an optional dependency of @foundry-rs/anvil)',
      });
    }
  }
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not executable or missing
    }
  }
  throw new ChainError('ANVIL_NOT_FOUND', { tried: candidates });
}
