/**
 * What a simulated wearable keeps in flash across restarts: its next sequence number (the
 * SeqStore of firmware-proto, PROTOCOL.md §8.1); per sensor, where its next frame starts,
 * so a restarted simulator never sends a frame that overlaps one it sent before; and, after
 * a clean stop, the frames still waiting for an acknowledgement (§8.2), so a gateway that
 * was down when the simulator stopped still gets them.
 *
 * Per device, `<id>.json` (counter and clocks) and `<id>.outbox.json` (unacknowledged
 * frames), each replaced atomically (write, fsync, rename) so a crash leaves the old or the
 * new content, never a torn file. The clocks are written with each sequence block, so after
 * a crash they may lag; every sensor then resumes at the restart time instead, which is
 * safe because every frame sent before the crash ended before the real clock did. After a
 * crash the outbox is lost, as RAM would be; the gateway sees those numbers as a gap.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { SeqStore } from '../firmware-proto/device.js';
import { writeFileAtomic } from '../gateway/util/atomic-file.js';

export interface DeviceState extends SeqStore {
  /** Start (ms) of the next frame of a sensor, when known from an earlier run. */
  nextStart(sensor: string): number | undefined;
  setNextStart(sensor: string, ms: number): void;
  /** Frames left unacknowledged by the previous run, oldest first (empty after reading once). */
  takeUnacked(): StoredFrame[];
  /**
   * Clean shutdown: records the exact next sequence number, so a restart after a clean stop
   * skips no numbers (after a crash the counter resumes after its reserved block), and the
   * frames still unacknowledged. The counter must not hand out numbers after this.
   */
  close(exactNextSeq: bigint, unacked?: readonly StoredFrame[]): void;
}

export interface StoredFrame {
  seq: bigint;
  raw: Uint8Array;
  /** Went out on some connection: it is resent as a retransmission. */
  sent: boolean;
}

interface StoredOutbox {
  version: 1;
  frames: { seq: string; sent: boolean; raw: string }[];
}

interface Stored {
  version: 1;
  deviceId: string;
  nextSeq?: string;
  nextStartMs: Record<string, number>;
  /** Written by close(): the counter and clocks are exact. */
  clean: boolean;
}

export class MemoryDeviceState implements DeviceState {
  protected next: bigint | undefined;
  protected readonly starts = new Map<string, number>();
  protected unacked: StoredFrame[] = [];
  load(): bigint | undefined {
    return this.next;
  }
  save(next: bigint): void {
    this.next = next;
  }
  nextStart(sensor: string): number | undefined {
    return this.starts.get(sensor);
  }
  setNextStart(sensor: string, ms: number): void {
    this.starts.set(sensor, ms);
  }
  takeUnacked(): StoredFrame[] {
    return this.unacked.splice(0);
  }
  close(exactNextSeq: bigint, unacked: readonly StoredFrame[] = []): void {
    this.unacked = [...unacked];
    this.save(exactNextSeq);
  }
}

export class FileDeviceState extends MemoryDeviceState {
  readonly path: string;
  readonly outboxPath: string;
  /** After an unclean stop: no sensor restarts before this (the restart time). */
  private floorMs = 0;
  private closing = false;

  /** @throws Error when the state file exists but is not a state file of this device. */
  constructor(
    dir: string,
    readonly deviceId: string,
  ) {
    super();
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, `${deviceId}.json`);
    this.outboxPath = join(dir, `${deviceId}.outbox.json`);
    if (existsSync(this.outboxPath)) {
      const ob = JSON.parse(readFileSync(this.outboxPath, 'utf8')) as StoredOutbox;
      this.unacked = ob.frames.map((f) => ({ seq: BigInt(f.seq), sent: f.sent, raw: new Uint8Array(Buffer.from(f.raw, 'hex')) }));
    }
    if (!existsSync(this.path)) return;
    const doc = JSON.parse(readFileSync(this.path, 'utf8')) as Stored;
    if (doc.version !== 1 || doc.deviceId !== deviceId) throw new Error(`${this.path} is not the state of device ${deviceId}`);
    if (doc.nextSeq !== undefined) this.next = BigInt(doc.nextSeq);
    for (const [k, v] of Object.entries(doc.nextStartMs)) this.starts.set(k, v);
    if (!doc.clean) this.floorMs = Date.now();
  }

  override nextStart(sensor: string): number | undefined {
    const s = super.nextStart(sensor);
    return this.floorMs ? Math.max(s ?? 0, this.floorMs) : s;
  }

  /** Persists before returning: the counter hands out the block's numbers only after this. */
  override save(next: bigint): void {
    super.save(next);
    this.write();
  }

  /** Removes the outbox file once read: from now on its frames live in the running device's outbox. */
  override takeUnacked(): StoredFrame[] {
    rmSync(this.outboxPath, { force: true });
    return super.takeUnacked();
  }

  override close(exactNextSeq: bigint, unacked: readonly StoredFrame[] = []): void {
    if (unacked.length) {
      const doc: StoredOutbox = { version: 1, frames: unacked.map((f) => ({ seq: f.seq.toString(), sent: f.sent, raw: Buffer.from(f.raw).toString('hex') })) };
      writeFileAtomic(this.outboxPath, `${JSON.stringify(doc)}\n`);
    }
    this.closing = true;
    super.close(exactNextSeq, unacked);
  }

  private write(): void {
    const doc: Stored = {
      version: 1,
      deviceId: this.deviceId,
      ...(this.next !== undefined ? { nextSeq: this.next.toString() } : {}),
      nextStartMs: Object.fromEntries(this.starts),
      clean: this.closing,
    };
    writeFileAtomic(this.path, `${JSON.stringify(doc)}\n`);
  }
}
