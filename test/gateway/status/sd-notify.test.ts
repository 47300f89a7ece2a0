/**
 * The systemd notifier (gateway/status/sd-notify.ts) against a real notification socket: a
 * unix datagram socket bound by python3 (Node cannot create one), receiving what the real
 * `systemd-notify` tool sends, as systemd would. READY=1 at ready, WATCHDOG=1 on every period
 * while healthy, none while not (with the reason as STATUS), STOPPING=1 at shutdown, and
 * nothing at all without NOTIFY_SOCKET.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { SdNotifier } from '../../../gateway/status/sd-notify.js';

/** Binds the socket, prints "bound", then each datagram as a JSON string on its own line (systemd-notify's BARRIER=1 left out). */
const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    d = s.recv(65536).decode()
    if d != "BARRIER=1":
        print(json.dumps(d), flush=True)
`;

let dir: string;
let rx: ChildProcess;
const received: string[] = [];
let waiters: { pred: (m: string) => boolean; resolve: (m: string) => void }[] = [];

function nextMessage(pred: (m: string) => boolean, from = 0): Promise<string> {
  const seen = received.slice(from).find(pred);
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise((resolve) => waiters.push({ pred, resolve }));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vp-sdnotify-'));
  rx = spawn('python3', ['-u', '-c', RECEIVER, join(dir, 'notify.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: rx.stdout! });
  const bound = new Promise<void>((res) => {
    lines.on('line', (l) => {
      if (l === 'bound') return res();
      const m = JSON.parse(l) as string;
      received.push(m);
      const hit = waiters.filter((w) => w.pred(m));
      waiters = waiters.filter((w) => !hit.includes(w));
      for (const w of hit) w.resolve(m);
    });
  });
  await Promise.race([bound, once(rx, 'exit').then(() => Promise.reject(new Error('python3 receiver exited')))]);
});

afterAll(async () => {
  if (rx.exitCode === null) {
    rx.kill('SIGTERM');
    await once(rx, 'exit');
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('sd_notify through systemd-notify', () => {
  it('sends READY=1, feeds the watchdog only while healthy, and says why not', async () => {
    let health: { ok: boolean; why?: string } = { ok: true };
    const n = new SdNotifier({
      env: { ...process.env, NOTIFY_SOCKET: join(dir, 'notify.sock'), WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) },
      healthy: () => health,
      status: () => 'running',
    });
    expect(n.enabled).toBe(true);
    expect(n.watchdogIntervalMs).toBe(100);
    try {
      n.ready();
      expect(await nextMessage((m) => m.includes('READY=1'))).toBe('READY=1\nSTATUS=running');
      await nextMessage((m) => m === 'WATCHDOG=1');

      // Unhealthy: two periods pass without a ping; the status says why.
      health = { ok: false, why: 'CHAIN_HUNG' };
      let withheld = 0;
      await new Promise<void>((res) => {
        const onTick = (fed: boolean): void => {
          if (!fed && ++withheld >= 2) {
            n.off('tick', onTick);
            res();
          }
        };
        n.on('tick', onTick);
      });
      const unhealthyAt = received.length;
      const status = await nextMessage((m) => m.startsWith('STATUS=') && !m.includes('WATCHDOG=1'), 0);
      expect(status).toBe('STATUS=running; watchdog withheld: CHAIN_HUNG');
      const statusIndex = received.indexOf(status);

      // Healthy again: the next ping carries the status back to normal.
      health = { ok: true };
      const back = await nextMessage((m) => m.includes('WATCHDOG=1') && m.includes('STATUS=running'), unhealthyAt);
      expect(back.split('\n').sort()).toEqual(['STATUS=running', 'WATCHDOG=1']);
      // Nothing fed the watchdog between the two status changes (messages arrive in send order).
      expect(received.slice(statusIndex + 1, received.indexOf(back))).not.toContain('WATCHDOG=1');
      expect(n.withheld).toBeGreaterThanOrEqual(2);

      n.stopping();
      await n.idle();
      expect((await nextMessage((m) => m.includes('STOPPING=1'))).split('\n').sort()).toEqual(['STATUS=stopping', 'STOPPING=1']);
      expect(n.sent).toBeGreaterThanOrEqual(5);
    } finally {
      n.close();
    }
  });

  it('does nothing without NOTIFY_SOCKET, and no watchdog that names another process', async () => {
    const off = new SdNotifier({ env: { PATH: process.env['PATH'] ?? '' }, command: 'systemd-notify' });
    expect(off.enabled).toBe(false);
    expect(off.watchdogIntervalMs).toBeUndefined();
    off.ready();
    off.stopping();
    await off.idle();
    expect(off.sent).toBe(0);

    const other = new SdNotifier({
      env: { ...process.env, NOTIFY_SOCKET: join(dir, 'notify.sock'), WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid + 1) },
    });
    expect(other.enabled).toBe(true);
    expect(other.watchdogIntervalMs).toBeUndefined();
  });
});
