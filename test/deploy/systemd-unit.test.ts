/**
 * deploy/vitalproof.service as far as it can be checked without systemd running as PID 1:
 * `systemd-analyze verify` loads it offline and reports unknown keys, bad values and a missing
 * executable (a corrupted copy shows the check can fail), and the settings the operations guide
 * relies on are there: notify with a watchdog, restart on failure, a dedicated user, the state
 * directory the gateway's data dir points at, hardening, and no MemoryDenyWriteExecute (V8's JIT
 * would not start under it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const UNIT = fileURLToPath(new URL('../../deploy/vitalproof.service', import.meta.url));
let dir: string;

function verify(path: string): { status: number | null; output: string } {
  const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
  if (r.error) throw new Error(`systemd-analyze could not run (package systemd): ${r.error.message}`);
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/** key → values of the [Service] (or any) section, comments dropped. */
function settings(text: string, section: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      current = sec[1]!;
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf('=');
    const k = line.slice(0, eq);
    out.set(k, [...(out.get(k) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vp-unit-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('deploy/vitalproof.service', () => {
  it('passes systemd-analyze verify without a single complaint', () => {
    expect(verify(UNIT)).toEqual({ status: 0, output: '' });
  });

  it('a misspelt key or a missing executable would be caught', () => {
    const text = readFileSync(UNIT, 'utf8');
    writeFileSync(join(dir, 'typo.service'), text.replace('NoNewPrivileges=yes', 'NoNewPrivilegez=yes'));
    expect(verify(join(dir, 'typo.service')).output).toMatch(/Unknown key 'NoNewPrivilegez'/);
    writeFileSync(join(dir, 'noexec.service'), text.replace('ExecStart=/usr/bin/node ', 'ExecStart=/nonexistent/node '));
    const r = verify(join(dir, 'noexec.service'));
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/is not executable/);
  });

  it('runs the gateway as notify with a watchdog, restarts on failure, as its own user, in its state dir', () => {
    const s = settings(readFileSync(UNIT, 'utf8'), 'Service');
    const one = (k: string): string | undefined => s.get(k)?.[0];
    expect(one('Type')).toBe('notify');
    expect(one('NotifyAccess')).toBe('all'); // systemd-notify is a child of the main process
    expect(one('WatchdogSec')).toMatch(/^\d+s$/);
    expect(one('Restart')).toBe('on-failure');
    expect(one('RestartSec')).toMatch(/^\d+s$/);
    expect(one('User')).toBe('vitalproof');
    expect(one('StateDirectory')).toBe('vitalproof');
    expect(s.get('Environment')).toContain('VP_DATA_DIR=/var/lib/vitalproof');
    expect(one('ReadWritePaths')).toBe('/var/lib/vitalproof');
    expect(one('ExecStart')).toMatch(/\/dist\/gateway\/cli\/main\.js run\b/);
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['PrivateTmp', 'yes'],
      ['ProtectHome', 'yes'],
      ['KillMode', 'mixed'],
    ])
      expect(one(k!), k).toBe(v);
    expect(Number(one('LimitNOFILE'))).toBeGreaterThanOrEqual(4096);
    expect(s.has('MemoryDenyWriteExecute')).toBe(false);
  });
});
