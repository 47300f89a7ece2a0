/**
 * Child servers (embedded influxd, anvil) must not outlive the gateway. A handler on
 * process 'exit' covers a normal exit but not SIGKILL or an OOM kill; Linux's parent-death
 * signal covers those. `setpriv --pdeathsig KILL` (util-linux, present on every Debian) sets
 * it and then execs the server, so the pid stays the server's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

const SETPRIV = '/usr/bin/setpriv';

/** The command and arguments that run `binary args` killed with SIGKILL when this process dies. */
export function tiedToParent(binary: string, args: readonly string[]): [string, string[]] {
  if (process.platform === 'linux' && existsSync(SETPRIV)) return [SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...args]];
  return [binary, [...args]];
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A server child process: its exit (never rejects), and the tail of what it printed. */
export interface ServerChild {
  child: ChildProcess;
  exited: Promise<ChildExit>;
  output: { tail: string };
}

/** How much of a server's output is kept for error reports. */
export const OUTPUT_TAIL_BYTES = 4096;

/**
 * Spawns `binary args` tied to this process (parent-death signal, and SIGKILL on this
 * process's 'exit'), with stdout and stderr kept as one tail; `onOutput` sees every chunk.
 * A spawn failure resolves `exited` (code and signal null) with the reason in the tail.
 */
export function spawnServer(binary: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; onOutput?: (text: string) => void } = {}): ServerChild {
  const child = spawn(...tiedToParent(binary, args), { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
  const output = { tail: '' };
  const onData = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    output.tail = (output.tail + text).slice(-OUTPUT_TAIL_BYTES);
    opts.onOutput?.(text);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const exited = new Promise<ChildExit>((res) => {
    child.once('error', (err) => {
      output.tail += `\nspawn failed: ${err.message}`;
      res({ code: null, signal: null });
    });
    child.once('close', (code, signal) => res({ code, signal }));
  }).finally(() => process.off('exit', killOnExit));
  return { child, exited, output };
}

/** SIGTERM, wait for the exit; after `timeoutMs` call `onTimeout`, SIGKILL, and wait again. */
export async function terminate(s: { child: ChildProcess; exited: Promise<unknown> }, timeoutMs: number, onTimeout?: () => void): Promise<void> {
  s.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), timeoutMs)));
  const outcome = await Promise.race([s.exited, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    onTimeout?.();
    s.child.kill('SIGKILL');
    await s.exited;
  }
}
