/**
 * A wearable's MQTT link (PROTOCOL.md §6): MQTT 3.1.1, clean session, QoS 1.
 *
 * Connections: one MqttClient per attempt, with MQTT.js' own reconnect switched off. The
 * CONNECT password is a token signed over a fresh timestamp and nonce, and the gateway
 * accepts each token once; MQTT.js would resend the same options.password on its automatic
 * reconnect, so this link redials itself, with exponential backoff and jitter, making a new
 * token for every attempt.
 *
 * Delivery: one ordered queue holds the frames DeviceCore recorded and the one-shot fault
 * publications, so a skewed frame with its own sequence number still precedes the honest
 * frame after it. At most `maxInFlight` publishes wait for their PUBACK. A frame leaves the
 * outbox on its PUBACK; when a connection drops, its unacknowledged frames go back to the
 * front of the queue, oldest first, and are published again with the DUP flag (the gateway
 * then recognises an honest retransmission of a frame it already accepted). One-shot
 * publications are never resent: resending a faulty frame would make the gateway count it
 * twice.
 *
 * TLS: a `mqtts://` broker URL with `tls` material (the CA that signed the gateway's
 * certificate, and for mutual TLS the device's certificate and key, CN = device id) speaks MQTT
 * over TLS (docs/operations.md, "Encryption in transit"); the gateway's certificate is always
 * verified, never skipped.
 */
import { readFileSync } from 'node:fs';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { makeConnectPassword } from '../firmware-proto/connect.js';
import type { Outbox } from '../firmware-proto/device.js';
import { deviceClientId, frameTopic } from '../firmware-proto/topics.js';
import { newLinkCounters, Waiters, type ConnectAttempt, type FrameLink, type LinkCounters } from './link.js';

/** PEM material for mqtts:// (the contents, not paths: readTlsFiles reads them). */
export interface MqttTlsMaterial {
  /** CA certificate(s) the gateway's certificate must chain to; without it, the system's CAs. */
  ca?: Buffer;
  /** The device's client certificate and key, for gateways that require mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
}

/**
 * Reads the PEM files of `--ca`, `--cert` and `--key`.
 * @throws TypeError naming the option and file when one cannot be read, or when only one of cert and key is given.
 */
export function readTlsFiles(paths: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined }): MqttTlsMaterial {
  if (Boolean(paths.cert) !== Boolean(paths.key)) throw new TypeError('a client certificate needs its key: give --cert and --key together');
  const out: MqttTlsMaterial = {};
  for (const k of ['ca', 'cert', 'key'] as const) {
    const p = paths[k];
    if (!p) continue;
    try {
      out[k] = readFileSync(p);
    } catch (e) {
      throw new TypeError(`--${k} ${p}: ${(e as Error).message}`, { cause: e });
    }
  }
  return out;
}

export interface MqttLinkOptions {
  /** e.g. mqtt://127.0.0.1:1883, or mqtts://gateway.ward3:8883 with `tls` */
  brokerUrl: string;
  /** For mqtts:// brokers. */
  tls?: MqttTlsMaterial;
  deviceId: string;
  secretKey: Uint8Array;
  /** The outbox of the device's DeviceCore: the link marks frames sent and acknowledges them there. */
  outbox: Outbox;
  /** Publishes waiting for a PUBACK at once. Default 32. */
  maxInFlight?: number;
  /** waitForRoom() resolves below this backlog. Default 256. */
  highWater?: number;
  /** Reconnect delay: first retry after `initialMs`, doubling up to `maxMs`, ±25 % jitter. */
  backoff?: { initialMs: number; maxMs: number };
  connectTimeoutMs?: number;
  keepaliveS?: number;
  /** For the jitter; default Math.random. */
  random?: () => number;
  /** The real clock, for CONNECT tokens. */
  now?: () => number;
}

type Item = { ord: number; type: 'frame'; seq: bigint } | { ord: number; type: 'extra'; topic: string; payload: Uint8Array; settle: (acked: boolean) => void };

const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

function clientOptions(
  deviceId: string,
  secretKey: Uint8Array,
  nowMs: number,
  connectTimeoutMs: number,
  keepaliveS: number,
  tls: MqttTlsMaterial = {},
): IClientOptions {
  const clientId = deviceClientId(deviceId);
  return {
    ...tls,
    rejectUnauthorized: true,
    protocolVersion: 4,
    clean: true,
    clientId,
    username: deviceId,
    password: asBuffer(makeConnectPassword(deviceId, clientId, secretKey, nowMs)),
    reconnectPeriod: 0,
    connectTimeout: connectTimeoutMs,
    keepalive: keepaliveS,
    resubscribe: false,
    queueQoSZero: false,
  };
}

export class MqttLink implements FrameLink {
  readonly counters: LinkCounters = newLinkCounters();
  /** Unacknowledged frames: an index over the outbox, which offers no lookup by seq. */
  private readonly frames = new Map<bigint, { raw: Uint8Array; sent: boolean }>();
  private queue: Item[] = [];
  private head = 0;
  private readonly inflight = new Map<number, Item>();
  private extrasPending = 0;
  private ord = 0;
  private client: MqttClient | undefined;
  /** Bumped whenever a connection ends: callbacks of older connections are ignored. */
  private epoch = 0;
  private isConnected = false;
  private started = false;
  private stopping = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Disconnect faults not carried out yet: one abrupt disconnect each, in order. */
  private afterDestroy: ((ok: boolean) => void)[] = [];
  /** PUBACKs on the current connection: a disconnect fault waits for traffic to flow both ways. */
  private acksOnConnection = 0;
  private reconnectWaiters: ((ok: boolean) => void)[] = [];
  private readonly waiters = new Waiters();
  private readonly ackListeners: ((seq: bigint, raw: Uint8Array) => void)[] = [];
  private readonly maxInFlight: number;
  private readonly highWater: number;
  private readonly now: () => number;

  /** @throws TypeError for a broker URL MQTT.js cannot dial (it would throw later, inside a reconnect timer). */
  constructor(private readonly o: MqttLinkOptions) {
    checkBrokerUrl(o.brokerUrl);
    this.maxInFlight = o.maxInFlight ?? 32;
    this.highWater = o.highWater ?? 256;
    this.now = o.now ?? Date.now;
  }

  get deviceId(): string {
    return this.o.deviceId;
  }
  get connected(): boolean {
    return this.isConnected;
  }
  get backlog(): number {
    return this.frames.size + this.extrasPending;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.dial();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.timer);
    const c = this.client;
    // Say DISCONNECT when nothing is in flight; otherwise just close (the frames stay in the outbox).
    const graceful = this.isConnected && this.inflight.size === 0;
    this.client = undefined;
    this.dropConnection();
    for (const it of this.queue.splice(this.head)) if (it.type === 'extra') this.settleExtra(it, false);
    this.head = 0;
    this.queue = [];
    for (const f of [...this.afterDestroy.splice(0), ...this.reconnectWaiters.splice(0)]) f(false);
    this.waiters.releaseAll();
    if (c) await new Promise<void>((res) => c.end(!graceful, {}, () => res()));
  }

  enqueueFrame(seq: bigint, raw: Uint8Array, sentBefore = false): void {
    this.frames.set(seq, { raw, sent: sentBefore });
    // The outbox drops its oldest frames when full (PROTOCOL.md §8.2); forget them here too.
    while (this.frames.size > this.o.outbox.size) this.frames.delete(this.frames.keys().next().value as bigint);
    this.queue.push({ ord: this.ord++, type: 'frame', seq });
    this.pump();
  }

  sendExtra(payload: Uint8Array, opts?: { asDevice?: string }): Promise<boolean> {
    if (this.stopping) return Promise.resolve(false);
    return new Promise((settle) => {
      this.extrasPending++;
      this.queue.push({ ord: this.ord++, type: 'extra', topic: frameTopic(opts?.asDevice ?? this.o.deviceId), payload, settle });
      this.pump();
    });
  }

  abruptDisconnect(): Promise<boolean> {
    if (this.stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.afterDestroy.push(resolve);
      this.maybeDestroy();
    });
  }

  onAck(listener: (seq: bigint, raw: Uint8Array) => void): void {
    this.ackListeners.push(listener);
  }

  waitForRoom(signal?: AbortSignal): Promise<boolean> {
    return this.waitFor(() => this.backlog < this.highWater, signal);
  }

  idle(signal?: AbortSignal): Promise<boolean> {
    return this.waitFor(() => this.backlog === 0, signal);
  }

  private waitFor(ready: () => boolean, signal?: AbortSignal): Promise<boolean> {
    return this.waiters.wait(ready, signal, this.stopping);
  }

  private notify(): void {
    this.waiters.notify();
  }

  private dial(): void {
    if (this.stopping) return;
    const epoch = ++this.epoch;
    // A fresh token for every attempt: the gateway accepts each one once (PROTOCOL.md §6.1).
    const client = connect(
      this.o.brokerUrl,
      clientOptions(this.o.deviceId, this.o.secretKey, this.now(), this.o.connectTimeoutMs ?? 10_000, this.o.keepaliveS ?? 30, this.o.tls),
    );
    this.client = client;
    client.on('connect', () => {
      if (epoch === this.epoch) this.onConnected();
    });
    client.on('error', (err: Error & { code?: unknown }) => {
      if (epoch !== this.epoch || this.isConnected) return;
      // A refused CONNACK carries its return code as a number; socket errors carry a string code.
      if (typeof err.code === 'number') this.counters.refusals[err.code] = (this.counters.refusals[err.code] ?? 0) + 1;
      else this.counters.connectErrors++;
    });
    client.on('close', () => {
      if (epoch === this.epoch) this.onClosed();
    });
  }

  private onConnected(): void {
    this.isConnected = true;
    this.attempt = 0;
    this.acksOnConnection = 0;
    this.counters.connects++;
    for (const f of this.reconnectWaiters.splice(0)) f(true);
    this.pump();
  }

  private onClosed(): void {
    const wasConnected = this.isConnected;
    this.dropConnection();
    if (this.stopping) return;
    const { initialMs, maxMs } = this.o.backoff ?? { initialMs: 100, maxMs: 10_000 };
    const base = wasConnected ? initialMs : Math.min(maxMs, initialMs * 2 ** this.attempt);
    this.attempt++;
    this.timer = setTimeout(() => this.dial(), base * (0.75 + 0.5 * (this.o.random ?? Math.random)()));
  }

  /** Forgets the current connection: its in-flight frames go back to the queue front, its in-flight extras are lost. */
  private dropConnection(): void {
    const c = this.client;
    this.client = undefined;
    this.isConnected = false;
    this.epoch++;
    // Its listeners stay (the epoch check mutes them): the 'error' one keeps a late socket error from being unhandled.
    if (c && !c.disconnecting) c.end(true);
    const back: Item[] = [];
    for (const it of [...this.inflight.values()].sort((a, b) => a.ord - b.ord)) {
      if (it.type === 'frame') back.push(it);
      else {
        this.counters.extrasLost++;
        this.settleExtra(it, false);
      }
    }
    this.inflight.clear();
    this.queue = [...back, ...this.queue.slice(this.head)];
    this.head = 0;
    this.notify();
  }

  private pump(): void {
    const client = this.client;
    if (!this.isConnected || !client) return;
    while (this.inflight.size < this.maxInFlight && this.head < this.queue.length) {
      // A pending disconnect fault holds back faulty frames until it has fired (see maybeDestroy).
      if (this.afterDestroy.length > 0 && this.queue[this.head]!.type === 'extra') break;
      const item = this.queue[this.head++]!;
      if (item.type === 'frame') {
        const f = this.frames.get(item.seq);
        if (!f) continue; // dropped by the outbox
        const dup = f.sent;
        f.sent = true;
        this.o.outbox.markSent(item.seq);
        this.counters.sent++;
        if (dup) this.counters.retransmitted++;
        this.publish(client, item, frameTopic(this.o.deviceId), f.raw, dup);
      } else {
        this.counters.extrasSent++;
        this.publish(client, item, item.topic, item.payload, false);
      }
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.maybeDestroy();
  }

  private publish(client: MqttClient, item: Item, topic: string, payload: Uint8Array, dup: boolean): void {
    const epoch = this.epoch;
    this.inflight.set(item.ord, item);
    client.publish(topic, asBuffer(payload), { qos: 1, dup }, (err) => {
      if (epoch !== this.epoch) return; // that connection is gone; dropConnection requeued the item
      if (err) {
        // A local publish failure leaves the connection in doubt: end it and resend on the next one.
        client.stream.destroy();
        return;
      }
      this.inflight.delete(item.ord);
      this.acksOnConnection++;
      if (item.type === 'frame') this.acked(item.seq);
      else {
        this.counters.extrasAcked++;
        this.settleExtra(item, true);
      }
      this.pump();
      this.notify();
    });
  }

  private acked(seq: bigint): void {
    const f = this.frames.get(seq);
    if (!f) return;
    this.frames.delete(seq);
    this.o.outbox.ack(seq);
    this.counters.acked++;
    for (const l of this.ackListeners) l(seq, f.raw);
  }

  private settleExtra(it: Extract<Item, { type: 'extra' }>, acked: boolean): void {
    this.extrasPending--;
    it.settle(acked);
  }

  /**
   * A disconnect fault fires while no faulty frame is in flight, so none is lost and the
   * tally stays exact (pump holds faulty frames back meanwhile), and mid-stream when there
   * is a stream: after a first PUBACK on this connection, so the broker has taken frames
   * whose PUBACKs may still be on the way and the resends include real duplicates. With
   * nothing in flight it fires at once.
   */
  private maybeDestroy(): void {
    if (this.afterDestroy.length === 0 || !this.isConnected || !this.client) return;
    if (this.acksOnConnection === 0 && this.inflight.size > 0) return;
    for (const it of this.inflight.values()) if (it.type === 'extra') return;
    this.counters.abruptDisconnects++;
    this.reconnectWaiters.push(this.afterDestroy.shift()!);
    // No DISCONNECT packet: the broker sees the socket vanish. Handle the loss now, not on the
    // 'close' event, so nothing is published on (or destroyed twice in) the dying connection.
    this.client.stream.destroy();
    this.onClosed();
  }
}

const DIALABLE = new Set(['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'tls:', 'ws:', 'wss:']);

export function checkBrokerUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`broker URL "${url}" is not a URL (e.g. mqtt://127.0.0.1:1883)`);
  }
  if (!DIALABLE.has(u.protocol) || !u.hostname) throw new TypeError(`broker URL "${url}" must be mqtt://HOST:PORT (or mqtts, ws, wss)`);
}

/**
 * One connection attempt and nothing more (the unknown_device fault): resolves with the
 * CONNACK verdict; a connection that is let in is closed again at once.
 */
export function connectOnce(
  brokerUrl: string,
  deviceId: string,
  secretKey: Uint8Array,
  opts: { timeoutMs?: number; now?: () => number; tls?: MqttTlsMaterial } = {},
): Promise<ConnectAttempt> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ConnectAttempt): void => {
      if (done) return;
      done = true;
      client.end(true);
      resolve(r);
    };
    const client = connect(brokerUrl, clientOptions(deviceId, secretKey, (opts.now ?? Date.now)(), opts.timeoutMs ?? 10_000, 30, opts.tls));
    client.on('connect', () => finish({ connected: true }));
    client.on('error', (err: Error & { code?: unknown }) =>
      finish(typeof err.code === 'number' ? { connected: false, returnCode: err.code } : { connected: false, error: err.message }),
    );
    client.on('close', () => finish({ connected: false, error: 'closed without CONNACK' }));
  });
}
