/**
 * The stream aedes reads from and writes to instead of the raw socket: a Duplex that passes
 * bytes through unchanged, but
 *
 * - runs every byte the client sends through a PacketGuard (packet-guard.ts) first, and
 *   destroys the socket the moment a fixed header breaks a rule, so an oversized packet is
 *   refused on its 2 to 5 header bytes, before any of its body is buffered;
 * - holds whatever follows the CONNECT until the broker has decided on it (admit()), so the
 *   packets after it are judged against the limit of the role the broker admitted;
 * - closes the socket when no CONNECT was admitted within the deadline (slow or silent
 *   clients: a half-sent CONNECT counts as none).
 *
 * Reads are paced by aedes: when it stops reading (authentication, a busy pipeline) the socket
 * is paused, so a connection never holds more than the guard's limit plus one socket read.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { PacketGuard, type ScanResult } from './packet-guard.js';
import type { MqttRefusal } from './refusals.js';

export type RefusalDetail = Extract<ScanResult, { refused: string }>['detail'] | { deadlineMs: number };

export interface GuardedSocketOptions {
  /** Largest CONNECT, fixed header included. */
  connectLimit: number;
  /** From now until admit(). */
  connectDeadlineMs: number;
  /** Told once, just before the socket is destroyed. */
  onRefused: (reason: MqttRefusal, detail: RefusalDetail) => void;
}

/** What the TLS layer says of the client: a client certificate the CA verified, and its subject CN. */
export interface PeerIdentity {
  tls: boolean;
  /** The client presented a certificate that chains to mqtt.tls.ca. */
  authorized: boolean;
  /** The subject CN of that certificate, when there is one. */
  commonName?: string;
}

export class GuardedSocket extends Duplex {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly peer: PeerIdentity;
  private readonly guard: PacketGuard;
  /** Bytes after the CONNECT, waiting for admit(). */
  private held: Buffer | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private refused = false;

  constructor(
    private readonly socket: Socket,
    private readonly o: GuardedSocketOptions,
  ) {
    super({ allowHalfOpen: false });
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    this.peer = peerIdentity(socket);
    this.guard = new PacketGuard(o.connectLimit);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.push(null));
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => this.destroy());
    this.deadline = setTimeout(() => this.refuse('MQTT_CONNECT_TIMEOUT', { deadlineMs: o.connectDeadlineMs }), o.connectDeadlineMs);
  }

  /** The broker accepted the CONNECT: no deadline any more, and packets may be up to `limit` bytes. */
  admit(limit: number): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
    this.guard.admit(limit);
    const h = this.held;
    this.held = undefined;
    if (h) this.scan(h);
    if (!this.held && !this.destroyed) this.socket.resume();
  }

  override _read(): void {
    if (!this.held) this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (e?: Error | null) => void): void {
    this.socket.cork();
    chunks.forEach(({ chunk }, i) => (i === chunks.length - 1 ? this.socket.write(chunk, cb) : this.socket.write(chunk)));
    this.socket.uncork();
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.socket.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    clearTimeout(this.deadline);
    this.held = undefined;
    this.socket.destroy();
    cb(err);
  }

  private onData(chunk: Buffer): void {
    if (this.refused) return;
    if (this.held) {
      // Only what the socket had read before pause() took effect.
      this.held = Buffer.concat([this.held, chunk]);
      return;
    }
    this.scan(chunk);
  }

  private scan(chunk: Buffer): void {
    const r = this.guard.scan(chunk);
    if ('refused' in r) return this.refuse(r.refused, r.detail);
    if (r.pass > 0 && !this.push(r.pass === chunk.length ? chunk : chunk.subarray(0, r.pass))) this.socket.pause();
    if (r.pass < chunk.length) {
      this.held = chunk.subarray(r.pass);
      this.socket.pause();
    }
  }

  private refuse(reason: MqttRefusal, detail: RefusalDetail): void {
    if (this.refused || this.destroyed) return;
    this.refused = true;
    this.o.onRefused(reason, detail);
    this.destroy();
  }
}

function peerIdentity(socket: Socket): PeerIdentity {
  if (!(socket instanceof TLSSocket)) return { tls: false, authorized: false };
  const cert = socket.getPeerCertificate();
  const cn = cert && typeof cert.subject?.CN === 'string' ? cert.subject.CN : undefined;
  return { tls: true, authorized: socket.authorized, ...(cn !== undefined ? { commonName: cn } : {}) };
}
