#!/usr/bin/env node
// Runs before every `npm test`, `npm run demo` and `npm run bench`, ahead of the TypeScript
// build: makes sure node_modules and the `influxd` binary (InfluxDB 1.x) are there.
// Silent when both already are. Plain JS on purpose: nothing is compiled yet.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const DEBIAN_PACKAGES = ['influxdb', 'influxdb-client'];

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

// 2. influxd: the tests and the demo start their own on a free loopback port.
if (!onPath('influxd')) {
  const isRoot = process.getuid?.() === 0;
  if (isRoot && onPath('apt-get')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update'], env);
    run('apt-get', ['install', '-y', '--no-install-recommends', ...DEBIAN_PACKAGES], env);
    if (!onPath('influxd')) fail('apt-get installed influxdb but `influxd` is still not on PATH');
  } else {
    fail(
      [
        '`influxd` (InfluxDB 1.x) is not on PATH; the tests and the demo start their own.',
        onPath('apt-get') ? `  Install it as root:  apt-get update && apt-get install -y ${DEBIAN_PACKAGES.join(' ')}` : '  Install InfluxDB 1.x (Debian/Ubuntu package `influxdb`) so that `influxd` is on PATH.',
        '  The gateway itself can instead use an existing InfluxDB 1.x: set VP_INFLUX_URL (docs/storage.md).',
      ].join('\n'),
    );
  }
}
