/** Loopback port helpers for servers the project starts itself (influxd, anvil, brokers in tests). */
import { createServer, type Server } from 'node:net';

/**
 * Free TCP ports on `host`, all distinct: each is found by listening on port 0, and all
 * listeners stay open until every port is known, so the kernel cannot hand one out twice.
 * WARNING: a port is only free until someone else binds it; whoever uses it must still
 * handle EADDRINUSE (retry with fresh ports).
 */
export async function findFreePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  if (!Number.isInteger(count) || count < 1) throw new TypeError(`count must be a positive integer, got ${count}`);
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const s = createServer();
      servers.push(s);
      ports.push(await listenEphemeral(s, host));
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
  }
}

/** One free TCP port on `host` (see findFreePorts for the caveat). */
export async function findFreePort(host = '127.0.0.1'): Promise<number> {
  const [port] = await findFreePorts(1, host);
  return port!;
}

/** True for the error a listener gets when its address is taken. */
export function isAddrInUse(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE';
}

function listenEphemeral(s: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen({ port: 0, host, exclusive: true }, () => {
      const addr = s.address();
      if (addr && typeof addr === 'object') resolve(addr.port);
      else reject(new Error(`no port for listener on ${host}`));
    });
  });
}
