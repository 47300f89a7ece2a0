/**
 * A wearable walking out of a gateway's range, on one box: a TCP relay in front of the gateway's
 * MQTT port that passes everything the device sends and, once the device is "leaving", drops the
 * gateway's PUBACKs. The frames still reach the gateway, which accepts them, but the device never
 * learns so: they stay unacknowledged in its state dir and are resent, flagged DUP (PROTOCOL.md
 * §8.2), at the next gateway (docs/fleet.md). Used by test/e2e/handoff.test.ts and the hospital
 * demo (scripts/lib/demo-hospital.ts).
 *
 * MQTT 3.1.1 §2.2: the packet type is the high nibble of the first byte (PUBACK is 4), then the
 * remaining length (1-4 bytes, 7 bits each).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { findFreePort } from '../../gateway/util/net.js';

export interface LeavingRelay {
  /** The relay's loopback port: the device's broker. */
  readonly port: number;
  /** PUBACKs dropped so far. */
  readonly dropped: number;
  /** From now on every PUBACK is dropped: the device is out of range of the answers. */
  leave(): void;
  /** Resolves true once `n` PUBACKs were dropped in all, false after `timeoutMs` without. */
  untilDropped(n: number, timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Starts a relay to 127.0.0.1:`port` that passes each connection's first `acks` PUBACKs
 * (all of them until leave(), by default) and drops every later one.
 */
export async function leavingRelay(port: number, acks = Infinity): Promise<LeavingRelay> {
  const sockets: Socket[] = [];
  let leaving = false;
  let dropped = 0;
  let waiters: { n: number; resolve: (ok: boolean) => void }[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.push(client, upstream);
    client.pipe(upstream);
    let buf = Buffer.alloc(0);
    let passed = 0;
    upstream.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        let len = 0;
        let i = 1;
        for (let shift = 0; i < buf.length; i++, shift += 7) {
          len += (buf[i]! & 0x7f) << shift;
          if ((buf[i]! & 0x80) === 0) break;
        }
        if (i >= buf.length || buf.length < i + 1 + len) return;
        const packet = buf.subarray(0, i + 1 + len);
        buf = buf.subarray(i + 1 + len);
        if (packet[0]! >> 4 !== 4 || (!leaving && passed++ < acks)) client.write(packet);
        else {
          dropped++;
          for (const w of waiters.filter((x) => dropped >= x.n)) w.resolve(true);
          waiters = waiters.filter((x) => dropped < x.n);
        }
      }
    });
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on('close', () => b.destroy());
      a.on('error', () => b.destroy());
    }
  });
  const relayPort = await findFreePort();
  await new Promise<void>((res) => server.listen(relayPort, '127.0.0.1', res));
  return {
    port: relayPort,
    get dropped() {
      return dropped;
    },
    leave: () => void (leaving = true),
    untilDropped: (n, timeoutMs) =>
      dropped >= n
        ? Promise.resolve(true)
        : new Promise<boolean>((resolve) => {
            const w = {
              n,
              resolve: (ok: boolean) => {
                clearTimeout(timer);
                resolve(ok);
              },
            };
            const timer = setTimeout(() => {
              waiters = waiters.filter((x) => x !== w);
              resolve(false);
            }, timeoutMs);
            waiters.push(w);
          }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((res) => server.close(res));
    },
  };
}
