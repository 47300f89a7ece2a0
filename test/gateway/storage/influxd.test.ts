import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isStorageError } from '../../../gateway/storage/errors.js';
import { startInfluxd, type InfluxdHandle } from '../../../gateway/storage/influxd.js';
import { findFreePort, findFreePorts } from '../../../gateway/util/net.js';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'vp-influxd-life-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const dir = (name: string): string => join(root, name);

async function pingStatus(url: string): Promise<number | 'down'> {
  try {
    return (await fetch(`${url}/ping`, { signal: AbortSignal.timeout(2000) })).status;
  } catch {
    return 'down';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every listening TCP socket and every UDP socket the process holds, as "proto addr:port" (Linux /proc). */
function sockets(pid: number): string[] {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        return m ? [m[1]!] : [];
      } catch {
        return []; // fd closed while we looked
      }
    }),
  );
  const out: string[] = [];
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${proto}`, 'utf8').trim().split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (!inodes.has(cols[9]!) || (proto.startsWith('tcp') && cols[3] !== '0A')) continue; // 0A = LISTEN
      const [ip, port] = cols[1]!.split(':');
      const v4 = ip!.length === 8 ? Buffer.from(ip!, 'hex').reverse().join('.') : ip;
      out.push(`${proto} ${v4}:${parseInt(port!, 16)}`);
    }
  }
  return out.sort();
}

describe('startInfluxd', () => {
  it('listens on two loopback ports only, keeps its files in the data dir, and ignores INFLUXDB_* overrides', async () => {
    const decoy = await findFreePort();
    process.env['INFLUXDB_HTTP_BIND_ADDRESS'] = `127.0.0.1:${decoy}`;
    let db: InfluxdHandle | undefined;
    try {
      db = await startInfluxd({ dataDir: dir('ports') });
      expect(db.url).toBe(`http://127.0.0.1:${db.port}`);
      expect(db.port).not.toBe(db.rpcPort);
      expect(await pingStatus(db.url)).toBe(204);
      expect(sockets(db.pid!)).toEqual([`tcp 127.0.0.1:${db.port}`, `tcp 127.0.0.1:${db.rpcPort}`].sort());
      // wal/ appears with the first database; nothing else may appear.
      expect(readdirSync(dir('ports')).filter((n) => !['data', 'influxdb.conf', 'meta', 'wal'].includes(n))).toEqual([]);
      expect(readFileSync(join(dir('ports'), 'influxdb.conf'), 'utf8')).toContain(`bind-address = "127.0.0.1:${db.rpcPort}"`);
      expect(db.startupMs).toBeGreaterThan(0);
    } finally {
      delete process.env['INFLUXDB_HTTP_BIND_ADDRESS'];
      await db?.stop();
    }
  });

  it('stops with SIGTERM, restarts on the same port, and survives kill + restart', async () => {
    const db = await startInfluxd({ dataDir: dir('life') });
    const { url, port } = db;
    const pid1 = db.pid!;
    await db.stop();
    expect(alive(pid1)).toBe(false);
    expect(db.pid).toBeUndefined();
    expect(await pingStatus(url)).toBe('down');
    await db.stop(); // already stopped: resolves

    await db.restart();
    expect(db.port).toBe(port);
    expect(await pingStatus(url)).toBe(204);
    const pid2 = db.pid!;
    await db.kill();
    expect(alive(pid2)).toBe(false);
    expect(await pingStatus(url)).toBe('down');
    await db.restart();
    expect(await pingStatus(url)).toBe(204);
    await db.stop();
  });

  it('uses a caller-chosen port, and says so when that port is taken', async () => {
    const [port] = await findFreePorts(1);
    const db = await startInfluxd({ dataDir: dir('fixed'), port });
    expect(db.url).toBe(`http://127.0.0.1:${port}`);
    await db.stop();

    const conns: Socket[] = [];
    const squatter = createServer((c) => void conns.push(c)); // accepts, never answers
    await new Promise<void>((res) => squatter.listen(port, '127.0.0.1', res));
    try {
      const err = await startInfluxd({ dataDir: dir('fixed'), port }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isStorageError(err, 'INFLUXD_PORT_IN_USE')).toBe(true);
      expect((err as Error).message).toContain(`${port}`);
    } finally {
      for (const c of conns) c.destroy();
      await new Promise((res) => squatter.close(res));
    }
  });

  it('explains how to install influxd when the binary is missing', async () => {
    const err = await startInfluxd({ dataDir: dir('missing'), binary: 'influxd-not-installed-here' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isStorageError(err, 'INFLUXD_NOT_FOUND')).toBe(true);
    expect((err as Error).message).toContain('apt-get install influxdb');
    expect(existsSync(join(dir('missing'), 'influxdb.conf'))).toBe(false);
  });
});
