#!/usr/bin/env node
// Runs before every `npm test`, `npm run demo` and `npm run bench`, ahead of the TypeScript
// build: makes sure node_modules, the `influxd` binary (InfluxDB 1.x), `dbus-daemon` (the
// private bus the BLE simulator and tests run on), `openssl` (the DEV ONLY CA for TLS) and Mosquitto 2
// (the hospital broker the uplink tests and the fleet demo start) are there.
// Silent when all already are. Plain JS on purpose: nothing is compiled yet.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Each binary the tests and the demo start, and the Debian packages that bring it. */
const BINARIES = [
  {
    cmd: 'influxd',
    packages: ['influxdb', 'influxdb-client'],
    what: 'InfluxDB 1.x',
    instead: 'The gateway itself can instead use an existing InfluxDB 1.x: set VP_INFLUX_URL (docs/storage.md).',
  },
  {
    cmd: 'dbus-daemon',
    packages: ['dbus-daemon'],
    what: 'the D-Bus message bus daemon',
    instead: 'Only the BLE simulator and its tests need it: the gateway on real hardware uses the system bus (docs/ble.md).',
  },
  {
    cmd: 'openssl',
    packages: ['openssl'],
    what: 'the OpenSSL command line',
    instead: 'The demo and the tests make a DEV ONLY certificate authority with it for TLS; a hospital gives its own certificates (docs/operations.md).',
  },
  {
    cmd: 'mosquitto',
    // In /usr/sbin, which a non-root PATH often lacks: looked for at its Debian path too.
    file: '/usr/sbin/mosquitto',
    packages: ['mosquitto'],
    what: 'Mosquitto 2 (the broker, its dynamic-security plugin and mosquitto_ctrl)',
    instead: "The uplink tests and the fleet demo start one as the hospital broker; a gateway uses the hospital's own (docs/uplink.md).",
  },
];

/** Whether a binary of BINARIES is installed: at its Debian path, or on PATH. */
function present(b) {
  return (b.file !== undefined && existsSync(b.file)) || onPath(b.cmd);
}

function onPath(cmd) {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .some((dir) => {
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

// 1. Dependencies. npm writes node_modules/.package-lock.json at the end of every install; an
// install is due when it is missing or lags the committed lock file (after a pull that added or
// bumped a package). `npm ci` installs exactly the lock file and prints one progress line. The lock
// file lists every platform's optional packages (esbuild, rollup, anvil, unrs), so npm 10 and 11
// both accept it; were it out of sync, npm ci says so and we stop rather than paper over it with a
// plain install that rewrites the lock.
if (installDue()) {
  console.error('setup: npm ci (node_modules is missing or behind package-lock.json)');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    fail(
      `\`npm ci\` failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}). If it says package.json and package-lock.json are out of sync, run \`npm install\` and commit package-lock.json.`,
    );
  }
}

/** True when node_modules lacks a package the lock file needs, or holds another version of it. */
function installDue() {
  const installed = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(installed)) return true;
  const want = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages;
  const have = JSON.parse(readFileSync(installed, 'utf8')).packages;
  // Other platforms' optional packages are in the lock file but never installed here.
  return Object.entries(want).some(([path, p]) => path !== '' && !p.optional && have[path]?.version !== p.version);
}

// 2. influxd, dbus-daemon and mosquitto: the tests and the demo start their own (free loopback port, private bus).
const missing = BINARIES.filter((b) => !present(b));
if (missing.length > 0) {
  const packages = missing.flatMap((b) => b.packages);
  const isRoot = process.getuid?.() === 0;
  if (isRoot && onPath('apt-get')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update'], env);
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], env);
    for (const b of missing) if (!present(b)) fail(`apt-get installed ${b.packages.join(' ')} but \`${b.cmd}\` is still not on PATH`);
  } else {
    fail(
      [
        ...missing.map((b) => `\`${b.cmd}\` (${b.what}) is not on PATH; the tests and the demo start their own. ${b.instead}`),
        onPath('apt-get')
          ? `  Install as root:  apt-get update && apt-get install -y ${packages.join(' ')}`
          : `  Install the Debian/Ubuntu packages ${packages.join(' ')} or their equivalents.`,
      ].join('\n'),
    );
  }
}
