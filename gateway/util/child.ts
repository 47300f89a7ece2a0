/**
 * Child servers (embedded influxd, anvil) must not outlive the gateway. A handler on
 * process 'exit' covers a normal exit but not SIGKILL or an OOM kill; Linux's parent-death
 * signal covers those. `setpriv --pdeathsig KILL` (util-linux, present on every Debian) sets
 * it and then execs the server, so the pid stays the server's own.
 */
import { existsSync } from 'node:fs';

const SETPRIV = '/usr/bin/setpriv';

/** The command and arguments that run `binary args` killed with SIGKILL when this process dies. */
export function tiedToParent(binary: string, args: readonly string[]): [string, string[]] {
  if (process.platform === 'linux' && existsSync(SETPRIV)) return [SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...args]];
  return [binary, [...args]];
}
