#!/usr/bin/env node
// Runs before every `npm test`, `npm run demo` and `npm run bench`, ahead of the TypeScript
// build: makes sure node_modules, the `influxd` binary (InfluxDB 1.x), `dbus-daemon` (the
// private bus the BLE simulator and tests run on) and `openssl` (the DEV ONLY CA for TLS) are there.
// Silent when all already are. Plain JS on purpose: nothing is compiled yet.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Each binary the tests and the demo start, and the Debian packages that bring it. */
const BINARIES = [
  { cmd: 'influxd', packages: ['influxdb', 'influxdb-client'], what: 'InfluxDB 1.x', instead: 'The gateway itself can instead use an existing InfluxDB 1.x: set VP_INFLUX_URL (docs/storage.md).' },
  { cmd: 'dbus-daemon', packages: ['dbus-daemon'], what: 'the D-Bus message bus daemon', instead: 'Only the BLE simulator and its tests need it: the gateway on real hardware uses the system bus (docs/ble.md).' },
  { cmd: 'openssl', packages: ['openssl'], what: 'the OpenSSL command line', instead: 'The demo and the tests make a DEV ONLY certificate authority with it for TLS; a hospital gives its own certificates (docs/operations.md).' },
];

function onPath(cmd) {
  return (process.env.PATH ?? '').split(delimiter).filter(Boolean).some((dir) => {
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(cmd, args, env = process.env) {
  console.error(`setup: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.status !== 0) fail(`\`${cmd} ${args.join(' ')}\` failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`);
}

function fail(msg) {
  console.error(`setup: ${msg}`);
  process.exit(1);
}

// 1. Dependencies. npm writes node_modules/.package-lock.json at the end of every install.
if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
  // npm here can write lock files without other platforms' optional packages, which `npm ci`
  // then refuses as out of sync (npm/cli#4828); a plain install is the fallback.
  const ci = existsSync(join(root, 'package-lock.json')) && spawnSync('npm', ['ci'], { cwd: root, stdio: 'inherit' }).status === 0;
  if (!ci) run('npm', ['install', '--no-audit', '--no-fund']);
}

// 2. influxd and dbus-daemon: the tests and the demo start their own (free loopback port, private bus).
const missing = BINARIES.filter((b) => !onPath(b.cmd));
if (missing.length > 0) {
  const packages = missing.flatMap((b) => b.packages);
  const isRoot = process.getuid?.() === 0;
  if (isRoot && onPath('apt-get')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update'], env);
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], env);
    for (const b of missing) if (!onPath(b.cmd)) fail(`apt-get installed ${b.packages.join(' ')} but \`${b.cmd}\` is still not on PATH`);
  } else {
    fail(
      [
        ...missing.map((b) => `\`${b.cmd}\` (${b.what}) is not on PATH; the tests and the demo start their own. ${b.instead}`),
        onPath('apt-get') ? `  Install as root:  apt-get update && apt-get install -y ${packages.join(' ')}` : `  Install the Debian/Ubuntu packages ${packages.join(' ')} or their equivalents.`,
      ].join('\n'),
    );
  }
}
