/**
 * The uplink (docs/uplink.md): every durable accepted frame goes from the spool to the
 * hospital broker at QoS 1, in spool order, with a durable cursor (./cursor.ts), like the
 * storage writer's checkpoint:
 *
 *   spool ──WalReader──▶ window of `inflight` QoS 1 PUBLISHes ──PUBACK──▶ cursor file ──▶ spool position 'uplink'
 *
 * - One ordered stream: records are published in LSN order on one connection; the cursor moves
 *   to the highest LSN below which every PUBLISH was acknowledged, is written to disk, and only
 *   then does the spool position move (gateway/spool/positions.ts), so the spool keeps every
 *   frame the broker has not acknowledged, through a broker outage and a gateway crash.
 * - On every (re)connection the stream starts again after the cursor: a frame whose PUBACK was
 *   lost is sent twice; the receiver recognises it by (device, seq, sha256). Per device, the
 *   first copy of each frame arrives in sequence order.
 * - Anchors: after the frames, one message per anchored frame batch, from its own cursor over
 *   the batch store, so anchors confirmed while the broker was down are published on return.
 * - Status: retained, every statusIntervalMs, with the last will "offline".
 * - Outages: reconnection with capped exponential backoff; one log line when an outage starts
 *   (uplink_down) and one when it ends (uplink_recovered), not one per attempt.
 *
 * The password is handed in, never logged, never in status(): errors are mqtt.js messages.
 */
import { brokerClientOptions } from './broker-client.js';
import { connect, type MqttClient } from 'mqtt';
import type { BatchStore } from '../anchor/batch-store.js';
import type { Placement } from '../anchor/batcher.js';
import { frameIdentity } from '../../firmware-proto/frame.js';
import { readSpoolRecord, sha256Hex } from '../ingest/spool-record.js';
import type { Logger } from '../log.js';
import type { SpoolPosition } from '../spool/positions.js';
import { WalReader, type Wal } from '../spool/wal.js';
import { encodeUplink, type UplinkAnchor, type UplinkFrame, type UplinkStatusMessage } from './envelope.js';
import { writeUplinkCursor, type UplinkCursor } from './cursor.js';
import { uplinkTopics, type UplinkTopics } from './topics.js';

export interface UplinkOptions {
  gatewayId: string;
  /** mqtt:// or mqtts:// */
  url: string;
  username: string;
  password: string;
  clientId: string;
  /** PEM material for mqtts://: the broker's CA, and a client certificate and key when the broker asks for one. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** PUBLISHes awaiting their PUBACK at most. */
  inflight: number;
  retryMinMs: number;
  retryMaxMs: number;
  statusIntervalMs: number;
  wal: Wal;
  /** The spool position 'uplink'. */
  position: SpoolPosition;
  /** Where the cursor is recorded, and what it held at start. */
  cursorPath: string;
  cursor: UplinkCursor;
  /** The frame's Merkle batch and leaf (the batcher keeps them until the uplink is past). */
  placementOf: (lsn: bigint) => Placement;
  batches: BatchStore;
  /** The gateway's figures for the status message. */
  health: () => Pick<UplinkStatusMessage, 'framesPerS' | 'spoolDepth' | 'storageLag'>;
  log: Logger;
  /** After the spool position advanced (records may have been released). */
  onAdvanced?: () => void;
}

/** What /status shows of the uplink (never the password). */
export interface UplinkStatus {
  enabled: true;
  /** The broker URL without any user info. */
  url: string;
  clientId: string;
  connected: boolean;
  /** Since when `connected` has held its value (Unix ms). */
  sinceMs: number;
  published: { frames: number; anchors: number };
  /** Every frame up to this spool position is acknowledged by the broker. */
  cursor: string;
  lastAnchorPublished: string;
  /** Durable frames the broker has not acknowledged yet, and how long the oldest of them has waited. */
  lag: { records: number; ms: number };
  outages: number;
  lastError?: string;
}

/** How often the acknowledged cursor is written while frames flow (a crash resends at most this much). */
const CURSOR_FLUSH_MS = 100;
/** How often an idle stream looks for new anchors and a stopped gateway. */
const IDLE_WAKE_MS = 250;
/** How long a clean stop waits for the "offline" status and the DISCONNECT each. */
const STOP_STEP_MS = 2000;

interface InFlight {
  lsn: bigint;
  acked: boolean;
}

export class Uplink {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private client: MqttClient | undefined;
  private readonly topics: UplinkTopics;
  private cursor: UplinkCursor;
  /** The cursor as last written to disk. */
  private written: UplinkCursor;
  private connected = false;
  private sinceMs = Date.now();
  private downSinceMs: number | undefined;
  private attempts = 0;
  private outages = 0;
  private lastError: string | undefined;
  private readonly published = { frames: 0, anchors: 0 };
  private kick: (() => void) | undefined;

  constructor(private readonly o: UplinkOptions) {
    this.topics = uplinkTopics(o.gatewayId);
    this.cursor = { ...o.cursor };
    this.written = { ...o.cursor };
    if (o.inflight < 1) throw new RangeError(`uplink inflight must be >= 1, got ${o.inflight}`);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Publishes "offline" (retained) when connected, writes the cursor, and disconnects. */
  async stop(): Promise<void> {
    this.abort.abort();
    if (!this.connected) this.client?.end(true); // a connection attempt in progress
    this.kick?.();
    await this.loop;
  }

  status(): UplinkStatus {
    return {
      enabled: true,
      url: safeUrl(this.o.url),
      clientId: this.o.clientId,
      connected: this.connected,
      sinceMs: this.sinceMs,
      published: { ...this.published },
      cursor: this.cursor.lsn.toString(),
      lastAnchorPublished: this.cursor.anchors.toString(),
      lag: this.lag(),
      outages: this.outages,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Records the broker has not acknowledged, and the age of the oldest (read from the spool). */
  private lag(): { records: number; ms: number } {
    const records = this.o.wal.durableLsn - this.cursor.lsn;
    if (records <= 0n) return { records: 0, ms: 0 };
    const r = new WalReader(this.o.wal, this.cursor.lsn + 1n);
    try {
      const [rec] = r.read(1);
      return { records: Number(records), ms: rec ? Math.max(0, Date.now() - readSpoolRecord(rec.lsn, rec.payload).receivedAtMs) : 0 };
    } catch {
      return { records: Number(records), ms: 0 };
    } finally {
      r.close();
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let delay = this.o.retryMinMs;
    while (!signal.aborted) {
      try {
        const client = await this.connect();
        delay = this.o.retryMinMs;
        await this.session(client);
      } catch (e) {
        this.down(e as Error);
      }
      if (signal.aborted) break;
      await new Promise<void>((res) => {
        const t = setTimeout(res, delay);
        this.kick = () => {
          clearTimeout(t);
          res();
        };
      });
      delay = Math.min(this.o.retryMaxMs, delay * 2);
    }
    this.flushCursor();
  }

  private async connect(): Promise<MqttClient> {
    this.attempts++;
    const will: UplinkStatusMessage = { v: 1, kind: 'status', gateway: this.o.gatewayId, state: 'offline' };
    const opts = brokerClientOptions(this.o, {
      clean: true,
      reconnectPeriod: 0,
      will: { topic: this.topics.status, payload: encodeUplink(will), qos: 1, retain: true },
    });
    const client = connect(this.o.url, opts);
    this.client = client;
    let onError: ((e: Error) => void) | undefined;
    let onClose: (() => void) | undefined;
    try {
      await new Promise<void>((res, rej) => {
        onError = rej;
        onClose = () => rej(new Error('connection to the broker closed before CONNACK'));
        client.once('connect', () => res());
        client.once('error', onError);
        client.once('close', onClose);
      });
    } catch (e) {
      client.end(true);
      this.client = undefined;
      throw e;
    } finally {
      client.removeListener('error', onError!);
      client.removeListener('close', onClose!);
    }
    this.up();
    return client;
  }

  private up(): void {
    if (this.downSinceMs !== undefined) {
      this.o.log.info(
        { event: 'uplink_recovered', attempts: this.attempts, downMs: Date.now() - this.downSinceMs, cursor: this.cursor.lsn.toString() },
        'uplink to the hospital broker is back; resending from its cursor',
      );
    } else
      this.o.log.info(
        { event: 'uplink_connected', url: safeUrl(this.o.url), clientId: this.o.clientId, cursor: this.cursor.lsn.toString() },
        'uplink connected to the hospital broker',
      );
    this.downSinceMs = undefined;
    this.attempts = 0;
    this.lastError = undefined;
    this.connected = true;
    this.sinceMs = Date.now();
  }

  private down(e: Error): void {
    const was = this.connected || this.downSinceMs === undefined;
    this.lastError = e.message;
    if (this.connected) this.sinceMs = Date.now();
    this.connected = false;
    if (was && this.downSinceMs === undefined && !this.abort.signal.aborted) {
      this.downSinceMs = Date.now();
      this.outages++;
      this.o.log.warn(
        { event: 'uplink_down', err: e.message, cursor: this.cursor.lsn.toString() },
        'uplink to the hospital broker is down; frames stay in the spool',
      );
    }
  }

  /**
   * One connection: publish from the cursor on, keeping up to `inflight` unacknowledged;
   * returns on stop, throws when the connection fails or a PUBLISH is refused.
   */
  private async session(client: MqttClient): Promise<void> {
    const signal = this.abort.signal;
    let failure: Error | undefined;
    const fail = (e: Error): void => {
      failure ??= e;
      this.kick?.();
    };
    client.on('close', () => fail(new Error('connection to the broker closed')));
    client.on('error', (e) => fail(e));
    const reader = new WalReader(this.o.wal, this.cursor.lsn + 1n);
    const window: InFlight[] = [];
    let anchorInFlight = false;
    const onAck = (): void => {
      let lsn = this.cursor.lsn;
      while (window.length > 0 && window[0]!.acked) lsn = window.shift()!.lsn;
      if (lsn > this.cursor.lsn) this.cursor = { ...this.cursor, lsn };
      this.kick?.();
    };
    const flusher = setInterval(() => {
      try {
        this.flushCursor();
      } catch (e) {
        fail(e as Error); // the cursor cannot be written: nothing more is sent until it can
      }
    }, CURSOR_FLUSH_MS);
    const statusTimer = setInterval(() => this.publishStatus(client, 'online'), this.o.statusIntervalMs);
    try {
      this.publishStatus(client, 'online');
      while (!signal.aborted && !failure) {
        // Frames, in spool order, up to the window.
        const room = this.o.inflight - window.length;
        const recs = room > 0 ? reader.read(room) : [];
        for (const r of recs) {
          const entry: InFlight = { lsn: r.lsn, acked: false };
          window.push(entry);
          const m = this.frameOf(r.lsn, r.payload);
          client.publish(this.topics.frames(m.device), encodeUplink(m), { qos: 1 }, (err) => {
            if (err) return fail(refused('frame', r.lsn, err));
            entry.acked = true;
            this.published.frames++;
            onAck();
          });
        }
        // Anchors, one at a time, each once every frame of its batch has been sent.
        const nextAnchor = this.cursor.anchors + 1n;
        if (!anchorInFlight && nextAnchor <= this.o.batches.lastAnchored) {
          const m = this.anchorOf(nextAnchor);
          if (!m) {
            this.cursor = { ...this.cursor, anchors: nextAnchor }; // no such anchor on disk: nothing to publish
          } else if (m.lastLsn < reader.position) {
            anchorInFlight = true;
            client.publish(this.topics.anchors, encodeUplink(m), { qos: 1 }, (err) => {
              anchorInFlight = false;
              if (err) return fail(refused('anchor', nextAnchor, err));
              this.cursor = { ...this.cursor, anchors: nextAnchor };
              this.published.anchors++;
              this.kick?.();
            });
          } // else its batch's last frames are still to be sent: the anchor follows them
        }
        if (recs.length > 0 && window.length < this.o.inflight) continue;
        // A full window waits for an acknowledgement only: new records cannot be sent anyway.
        await this.idle(window.length < this.o.inflight ? reader.position - 1n : undefined);
      }
      if (failure) throw failure;
      // A clean stop: what was acknowledged is recorded; the retained status says offline.
      this.flushCursor();
      // A broker that stops answering must not hold the gateway's shutdown: each step has a deadline.
      const offline = new Promise<void>((res) =>
        client.publish(this.topics.status, encodeUplink(this.statusMessage('offline')), { qos: 1, retain: true }, () => res()),
      );
      await within(STOP_STEP_MS, offline);
      await within(STOP_STEP_MS, client.endAsync());
    } finally {
      clearInterval(flusher);
      clearInterval(statusTimer);
      reader.close();
      this.client = undefined;
      if (failure || !signal.aborted) client.end(true);
    }
  }

  /** Waits for a new durable record after `lsn` (when given), an acknowledgement, a failure, the stop, or the idle tick. */
  private async idle(lsn: bigint | undefined): Promise<void> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      ...(lsn !== undefined ? [this.o.wal.waitForDurableAfter(lsn, ac.signal)] : []),
      new Promise<void>((res) => {
        this.kick = res;
        timer = setTimeout(res, IDLE_WAKE_MS);
      }),
    ]);
    clearTimeout(timer);
    ac.abort();
  }

  private frameOf(lsn: bigint, payload: Buffer): UplinkFrame {
    const r = readSpoolRecord(lsn, payload);
    const id = frameIdentity(r.raw); // accepted: decoded and verified once already
    const p = this.o.placementOf(lsn);
    return {
      v: 1,
      kind: 'frame',
      gateway: this.o.gatewayId,
      device: id.deviceId,
      seq: id.seq,
      sha256: sha256Hex(r.raw),
      frame: Buffer.from(r.raw),
      transport: r.transport,
      receivedAtMs: r.receivedAtMs,
      lsn,
      patient: r.patient,
      batch: p.batch,
      leaf: p.leaf,
    };
  }

  private anchorOf(seq: bigint): UplinkAnchor | undefined {
    const a = this.o.batches.anchorOf(seq);
    const b = this.o.batches.get(seq);
    if (!a || !b) return undefined;
    return {
      v: 1,
      kind: 'anchor',
      gateway: this.o.gatewayId,
      batch: seq,
      root: b.root,
      leafCount: b.leafCount,
      firstLsn: b.firstLsn,
      lastLsn: b.lastLsn,
      txHash: a.txHash,
      block: a.blockNumber,
      chainId: a.chainId,
      contract: a.contract,
      chainAddress: a.gateway,
      confirmedAtMs: a.confirmedAtMs,
    };
  }

  private statusMessage(state: 'online' | 'offline'): UplinkStatusMessage {
    return {
      v: 1,
      kind: 'status',
      gateway: this.o.gatewayId,
      state,
      atMs: Date.now(),
      ...this.o.health(),
      uplinkLag: Math.max(0, Number(this.o.wal.durableLsn - this.cursor.lsn)),
      lastAnchoredBatch: this.o.batches.lastAnchored,
    };
  }

  private publishStatus(client: MqttClient, state: 'online' | 'offline'): void {
    client.publish(this.topics.status, encodeUplink(this.statusMessage(state)), { qos: 1, retain: true }, () => undefined);
  }

  /** Writes the cursor when it moved, then advances the spool position (never the other way round). */
  private flushCursor(): void {
    const c = this.cursor;
    if (c.lsn === this.written.lsn && c.anchors === this.written.anchors) return;
    writeUplinkCursor(this.o.cursorPath, c);
    this.written = c;
    if (c.lsn > this.o.position.lsn()) {
      this.o.position.advance(c.lsn);
      this.o.onAdvanced?.();
    }
  }
}

/** Resolves when `p` settles or after `ms`, whichever is first. */
async function within(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise((res) => (timer = setTimeout(res, ms)))]);
  clearTimeout(timer);
}

/** A PUBLISH the broker refused (an MQTT 5 PUBACK reason ≥ 0x80, e.g. 0x87 Not authorized: check the broker ACLs). */
function refused(what: string, at: bigint, err: Error & { code?: number }): Error {
  return new Error(`broker refused the ${what} at ${at}: ${err.message}${err.code !== undefined ? ` (reason 0x${err.code.toString(16)})` : ''}`);
}

/** A broker URL without user info (a password in a URL must never reach the log or /status). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid URL)';
  }
}
