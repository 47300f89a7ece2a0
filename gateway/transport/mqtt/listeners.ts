/**
 * The sockets of the embedded broker: a plain TCP listener and, when a certificate is
 * configured, a TLS listener (MQTT over TLS, port 8883 by default). Both are guarded the same
 * way before a byte reaches aedes:
 *
 *   accept ─► caps (admission.ts) ─► [TLS handshake within the deadline] ─► GuardedSocket ─► aedes
 *
 * The TLS listener is a plain net.Server that hands admitted sockets to a tls.Server which
 * never listens itself, so that a connection over a cap is closed before any TLS work is done.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Server as TlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { Admission, sourceOf } from './admission.js';
import { GuardedSocket } from './guarded-socket.js';
import type { MqttRefusal } from './refusals.js';

export interface ListenerLimits {
  /** Largest CONNECT, fixed header included (the only packet allowed before CONNACK). */
  maxConnectBytes: number;
  /** From accept to an admitted CONNECT (and, on TLS, to the end of the handshake first). */
  connectDeadlineMs: number;
  maxConnections: number;
  maxConnectionsPerSource: number;
}

export interface ListenerOptions {
  plain: { host: string; port: number };
  tls?: { host: string; port: number; options: TlsOptions };
  limits: ListenerLimits;
  /** A guarded connection for the broker (aedes `handle`). */
  handle: (conn: GuardedSocket) => void;
  /** A connection closed under `reason` (counted and summed into the log by the caller); `conn` once it reached the guard. */
  refused: (reason: MqttRefusal, source: string, conn?: GuardedSocket) => void;
}

export class MqttListeners {
  plainPort = 0;
  tlsPort: number | undefined;
  private readonly admission: Admission;
  private readonly sockets = new Set<Socket>();
  private readonly servers: Server[] = [];

  constructor(private readonly o: ListenerOptions) {
    this.admission = new Admission({ maxConnections: o.limits.maxConnections, maxPerSource: o.limits.maxConnectionsPerSource });
  }

  /** Connections open now, on both listeners, authenticated or not. */
  get open(): number {
    return this.admission.open;
  }

  async start(): Promise<void> {
    const plain = createServer((s) => this.accepted(s, (raw, source) => this.guard(raw, source, this.o.limits.connectDeadlineMs)));
    this.plainPort = await listen(plain, this.o.plain.host, this.o.plain.port);
    this.servers.push(plain);
    if (this.o.tls) {
      const tlsServer = new TlsServer({ ...this.o.tls.options, handshakeTimeout: this.o.limits.connectDeadlineMs });
      tlsServer.on('secureConnection', (s: TLSSocket) => this.guard(s, sourceOf(s.remoteAddress), this.o.limits.connectDeadlineMs));
      tlsServer.on('tlsClientError', (err: Error & { code?: string }, s: TLSSocket) => {
        this.o.refused(err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'MQTT_CONNECT_TIMEOUT' : 'MQTT_TLS_HANDSHAKE_FAILED', sourceOf(s.remoteAddress));
        s.destroy();
      });
      const front = createServer((s) => this.accepted(s, (raw) => tlsServer.emit('connection', raw)));
      try {
        this.tlsPort = await listen(front, this.o.tls.host, this.o.tls.port);
      } catch (e) {
        await this.stop();
        throw e;
      }
      this.servers.push(front);
    }
  }

  async stop(): Promise<void> {
    const closed = this.servers.splice(0).map((s) => new Promise<void>((res) => s.close(() => res())));
    for (const s of this.sockets) s.destroy();
    await Promise.all(closed);
  }

  /** Caps first: a connection over one is closed before anything else happens. */
  private accepted(raw: Socket, next: (raw: Socket, source: string) => void): void {
    const source = sourceOf(raw.remoteAddress);
    const full = this.admission.take(source);
    if (full) {
      raw.on('error', () => {});
      raw.destroy();
      this.o.refused(full, source);
      return;
    }
    this.sockets.add(raw);
    raw.once('close', () => {
      this.sockets.delete(raw);
      this.admission.release(source);
    });
    // Errors end up as 'close'; a bare socket error must not be unhandled.
    raw.on('error', () => {});
    next(raw, source);
  }

  private guard(s: Socket, source: string, deadlineMs: number): void {
    const conn = new GuardedSocket(s, {
      connectLimit: this.o.limits.maxConnectBytes,
      connectDeadlineMs: deadlineMs,
      onRefused: (reason) => this.o.refused(reason, source, conn),
    });
    this.o.handle(conn);
  }
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => {
      server.off('error', rej);
      const addr = server.address();
      res(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}
