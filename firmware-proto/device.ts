/**
 * Device-side protocol logic (PROTOCOL.md §8): the sequence counter that survives
 * reboots, the signer, and the outbound buffer that keeps every frame until the gateway
 * acknowledges it. Transport-free: the simulator's MQTT and BLE links drive it.
 */
import { encodeBody, type FrameBody } from './frame.js';
import { signBody, concat } from './signing.js';

/** Where a device keeps its next sequence number across reboots (flash on a real device). */
export interface SeqStore {
  load(): bigint | undefined;
  save(next: bigint): void;
}

export class MemorySeqStore implements SeqStore {
  private next: bigint | undefined;
  load(): bigint | undefined {
    return this.next;
  }
  save(next: bigint): void {
    this.next = next;
  }
}

/**
 * Sequence numbers never repeat (§8.1). The counter reserves blocks: it persists the end of
 * a block before handing out its first number, so a reboot resumes after the block and
 * can only skip numbers, never reuse one. A block of 1 persists every number (no gaps).
 */
export class SequenceCounter {
  private next: bigint;
  private reservedUpTo: bigint;
  constructor(
    private readonly store: SeqStore,
    private readonly block = 1n,
  ) {
    if (block < 1n) throw new RangeError('block must be ≥ 1');
    this.next = store.load() ?? 1n;
    this.reservedUpTo = this.next;
  }
  take(): bigint {
    if (this.next >= this.reservedUpTo) {
      const upTo = this.next + this.block;
      this.store.save(upTo); // persist first: a number is handed out only once it is covered
      this.reservedUpTo = upTo;
    }
    return this.next++;
  }
  peek(): bigint {
    return this.next;
  }
  /** On a clean shutdown: persist the exact next number, so that a clean restart skips none. */
  persistExact(): void {
    this.store.save(this.next);
    this.reservedUpTo = this.next;
  }
}

export interface OutboxEntry {
  seq: bigint;
  raw: Uint8Array;
  /** Sent at least once on some connection: a resend is a retransmission (§6.3). */
  sent: boolean;
}

/**
 * Store-and-forward buffer (§8.2). Frames stay until acknowledged; after a reconnect every
 * unacknowledged frame is sent again, oldest first. When full, the oldest frame is dropped
 * (the newest data is the most useful at a bedside) and counted; the gap is visible to the
 * gateway and the audit through the sequence numbers.
 */
export class Outbox {
  private readonly entries = new Map<bigint, OutboxEntry>();
  private bytes = 0;
  private droppedCount = 0;
  constructor(readonly maxBytes = 4 * 1024 * 1024) {}

  get size(): number {
    return this.entries.size;
  }
  /** Frames dropped (oldest first) because the buffer was full. */
  get dropped(): number {
    return this.droppedCount;
  }
  get byteSize(): number {
    return this.bytes;
  }

  push(seq: bigint, raw: Uint8Array): void {
    this.remove(seq);
    this.entries.set(seq, { seq, raw, sent: false });
    this.bytes += raw.length;
    while (this.bytes > this.maxBytes && this.entries.size > 1) {
      const oldest = this.entries.keys().next().value as bigint;
      this.remove(oldest);
      this.droppedCount++;
    }
  }

  /** Frames never sent on any connection, oldest first. */
  unsent(): OutboxEntry[] {
    return [...this.entries.values()].filter((e) => !e.sent);
  }

  /** All frames still waiting for an acknowledgement, oldest first: after a reconnect, all are sent again. */
  unacked(): OutboxEntry[] {
    return [...this.entries.values()];
  }

  markSent(seq: bigint): void {
    const e = this.entries.get(seq);
    if (e) e.sent = true;
  }

  /** Per-frame acknowledgement (MQTT PUBACK). */
  ack(seq: bigint): boolean {
    return this.remove(seq);
  }

  /** Cumulative acknowledgement (BLE control characteristic): everything up to seq. */
  ackUpTo(seq: bigint): number {
    let n = 0;
    for (const s of [...this.entries.keys()]) if (s <= seq && this.remove(s)) n++;
    return n;
  }

  private remove(seq: bigint): boolean {
    const e = this.entries.get(seq);
    if (!e) return false;
    this.entries.delete(seq);
    this.bytes -= e.raw.length;
    return true;
  }
}

export type Measurement = Omit<FrameBody, 'deviceId' | 'seq'>;

/** A wearable's protocol core: numbers, signs and buffers frames. */
export class DeviceCore {
  readonly outbox: Outbox;
  constructor(
    readonly deviceId: string,
    private readonly secretKey: Uint8Array,
    readonly counter: SequenceCounter,
    outboxBytes?: number,
  ) {
    this.outbox = new Outbox(outboxBytes);
  }

  /** Numbers and signs a measurement, keeps it in the outbox, and returns the frame bytes. */
  record(m: Measurement): { seq: bigint; raw: Uint8Array } {
    const seq = this.counter.take();
    const raw = signFrame({ ...m, deviceId: this.deviceId, seq }, this.secretKey);
    this.outbox.push(seq, raw);
    return { seq, raw };
  }
}

/** body ‖ Ed25519(FRAME_TAG ‖ body). */
export function signFrame(body: FrameBody, secretKey: Uint8Array): Uint8Array {
  const b = encodeBody(body);
  return concat(b, signBody(b, secretKey));
}
