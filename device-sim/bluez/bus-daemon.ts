/**
 * A private D-Bus message bus for the simulated BlueZ: its own `dbus-daemon`, listening on a
 * socket in a directory of the caller's, so that a simulator and a gateway meet on it without
 * touching the host's system bus (or its real BlueZ). The gateway's unchanged node-ble code
 * finds it through `DBUS_SYSTEM_BUS_ADDRESS`.
 *
 * The daemon runs as a child tied to this process (gateway/util/child.ts): it never outlives it,
 * even after a SIGKILL.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';
import { spawnServer, terminate } from '../../gateway/util/child.js';

export const DBUS_DAEMON = '/usr/bin/dbus-daemon';

/** How long the daemon may take to print its address before the start counts as failed. */
const START_LIMIT_MS = 10_000;
const STOP_LIMIT_MS = 3_000;

export const BUS_DAEMON_ERRORS = {
  BUS_DAEMON_EXITED: 'dbus-daemon exited before printing its address',
  BUS_DAEMON_TIMEOUT: 'dbus-daemon printed no address in time',
} as const;
export type BusDaemonErrorCode = keyof typeof BUS_DAEMON_ERRORS;

/** What to do about each code. */
export const BUS_DAEMON_ERROR_REMEDIES: Remedies<BusDaemonErrorCode> = {
  BUS_DAEMON_EXITED: 'Read what it printed (in the message): `apt-get install dbus` for /usr/bin/dbus-daemon; a directory it cannot write its socket in.',
  BUS_DAEMON_TIMEOUT: "Check the machine's load; read what it printed (in the message).",
};

/** The daemon did not come up: what it printed travels with the error. */
export class BusDaemonError extends CodedError<BusDaemonErrorCode> {
  readonly output: string;
  constructor(code: BusDaemonErrorCode, message: string, output: string) {
    super(BUS_DAEMON_ERRORS, code, {}, { message: `${code}: ${message}${output.trim() ? `\n${output.trim()}` : ''}` });
    this.output = output;
  }
}

export interface PrivateBus {
  /** The D-Bus address, e.g. `unix:path=/tmp/x/bus,guid=…`: export it as DBUS_SYSTEM_BUS_ADDRESS. */
  address: string;
  /** The dbus-daemon's pid (for CPU accounting); undefined if it has already exited. */
  pid: number | undefined;
  /** Terminates the daemon; every connection to it closes. */
  stop(): Promise<void>;
}

/**
 * The daemon's configuration. Not a system bus (no `<type>system</type>`: no activation, no
 * users to switch to, no pid file), one Unix socket in `dir`, EXTERNAL authentication (the
 * kernel vouches for the peer's uid), and a policy that lets any local user connect, own any
 * name (`org.bluez` for the simulator) and send and receive everything: the socket's directory
 * is the access control.
 */
export function privateBusConfig(dir: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=${join(dir, 'bus')}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`;
}

/**
 * Starts a private bus in `dir` (which must exist; the socket is `dir/bus`, at most ~100
 * characters of path on Linux) and resolves once the daemon has printed its address.
 * @throws BusDaemonError BUS_DAEMON_EXITED when the daemon quits first (bad dir, socket in use),
 *   BUS_DAEMON_TIMEOUT when it prints nothing within 10 s.
 * @example
 *   const bus = await startPrivateBus({ dir: mkdtempSync(join(tmpdir(), 'vp-bus-')) });
 *   process.env.DBUS_SYSTEM_BUS_ADDRESS = bus.address;
 *   …
 *   await bus.stop();
 */
export async function startPrivateBus(o: { dir: string }): Promise<PrivateBus> {
  const config = join(o.dir, 'bus.conf');
  mkdirSync(o.dir, { recursive: true });
  writeFileSync(config, privateBusConfig(o.dir));
  let printed = '';
  let onLine: ((address: string) => void) | undefined;
  const addressLine = new Promise<string>((res) => (onLine = res));
  const server = spawnServer(DBUS_DAEMON, [`--config-file=${config}`, '--nofork', '--nosyslog', '--print-address=1'], {
    onOutput: (text) => {
      printed += text;
      const m = /^(unix:[^\s]+)\s*$/m.exec(printed);
      if (m) onLine!(m[1]!);
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), START_LIMIT_MS)));
  const first = await Promise.race([addressLine, server.exited.then(() => 'exited' as const), limit]);
  clearTimeout(timer);
  if (first === 'exited')
    throw new BusDaemonError('BUS_DAEMON_EXITED', `dbus-daemon exited before printing its address (config ${config})`, server.output.tail);
  if (first === 'timeout') {
    await terminate(server, STOP_LIMIT_MS);
    throw new BusDaemonError('BUS_DAEMON_TIMEOUT', `dbus-daemon printed no address within ${START_LIMIT_MS} ms`, server.output.tail);
  }
  let stopped: Promise<void> | undefined;
  return {
    address: first,
    pid: server.child.pid,
    stop: () => (stopped ??= terminate(server, STOP_LIMIT_MS)),
  };
}
