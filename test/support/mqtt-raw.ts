/**
 * MQTT 3.1.1 packets as bytes, written by hand (OASIS mqtt-v3.1.1 §2-3), and raw sockets that
 * send them: what an attacker's client sends, which MQTT.js would refuse to (oversized packets,
 * half-sent CONNECTs, a PUBLISH before CONNECT).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { once } from 'node:events';
import { makeConnectPassword } from '../../firmware-proto/connect.js';
import { deviceClientId } from '../../firmware-proto/topics.js';
import { connect, publish, publishHeader as wirePublishHeader, subscribe } from '../../scripts/lib/mqtt-wire.js';

export { varint } from '../../scripts/lib/mqtt-wire.js';

/** A CONNECT packet (§3.1), clean session. */
export function connectPacket(o: { clientId: string; username?: string; password?: Buffer; keepaliveS?: number }): Buffer {
  return connect({ clientId: o.clientId, username: o.username, password: o.password, keepalive: o.keepaliveS ?? 30 });
}

/** A device's CONNECT with a fresh signed token (PROTOCOL.md §6.1). */
export function deviceConnect(deviceId: string, secretKey: Uint8Array, keepaliveS = 30): Buffer {
  const clientId = deviceClientId(deviceId);
  return connectPacket({ clientId, username: deviceId, password: Buffer.from(makeConnectPassword(deviceId, clientId, secretKey, Date.now())), keepaliveS });
}

/** The header of a QoS 1 PUBLISH (§3.3) whose payload is `payloadBytes` long: the bytes before the payload. */
export function publishHeader(topic: string, payloadBytes: number, packetId = 1): Buffer {
  return wirePublishHeader(topic, payloadBytes, { qos: 1, id: packetId });
}

/** A whole QoS 1 PUBLISH. */
export function publishPacket(topic: string, payload: Uint8Array, packetId = 1): Buffer {
  return publish(topic, payload, { qos: 1, id: packetId });
}

/** A SUBSCRIBE (§3.8) of one filter at QoS 0. */
export function subscribePacket(filter: string, packetId = 1): Buffer {
  return subscribe(filter, { id: packetId });
}

/** A raw client: what it received, and whether (and when) the server closed it. */
export class RawClient {
  received = Buffer.alloc(0);
  /** Bytes the kernel accepted from us (socket.bytesWritten) when the socket closed. */
  bytesWrittenAtClose = -1;
  readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
    // Not events.once: it rejects when 'error' (ECONNRESET, EPIPE: how the server ends us) comes first.
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.bytesWrittenAtClose = socket.bytesWritten;
        for (const w of this.waiters.splice(0)) w();
        resolve();
      }),
    );
  }

  static async open(port: number, o: { localAddress?: string; tls?: ConnectionOptions } = {}): Promise<RawClient> {
    const s = o.tls
      ? tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...o.tls, ...(o.localAddress ? { localAddress: o.localAddress } : {}) })
      : netConnect({ host: '127.0.0.1', port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
    const c = new RawClient(s);
    await Promise.race([once(s, o.tls ? 'secureConnect' : 'connect'), c.closed.then(() => Promise.reject(new Error('closed before connecting')))]);
    return c;
  }

  get isClosed(): boolean {
    return this.bytesWrittenAtClose >= 0;
  }

  /** Resolves with the CONNACK return code, or undefined when the socket closed without one. */
  async connack(): Promise<number | undefined> {
    for (;;) {
      if (this.received.length >= 4 && this.received[0] === 0x20) return this.received[3];
      if (this.isClosed) return undefined;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Resolves true once `n` bytes arrived after the CONNACK (e.g. a PUBACK: 4 bytes), false when the socket closed first. */
  async receivedAfterConnack(n: number): Promise<boolean> {
    for (;;) {
      if (this.received.length >= 4 + n) return true;
      if (this.isClosed) return false;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /**
   * Writes `header`, then `bodyBytes` bytes of filler in 1 MiB chunks, honouring backpressure,
   * until all is handed to the socket or the server closes it. Resolves with the bytes handed
   * over (socket.bytesWritten) by then.
   */
  async flood(header: Buffer, bodyBytes: number): Promise<number> {
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    if (!this.isClosed) this.socket.write(header);
    let left = bodyBytes;
    while (left > 0 && !this.isClosed) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!this.socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        await new Promise<void>((r) => {
          this.socket.once('drain', r);
          void this.closed.then(r);
        });
      }
    }
    return this.isClosed ? this.bytesWrittenAtClose : this.socket.bytesWritten;
  }

  close(): void {
    this.socket.destroy();
  }
}
