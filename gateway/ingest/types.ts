/** Shapes shared along the ingest pipeline: what the spool holds and what storage receives. */
import type { Frame } from '../../firmware-proto/frame.js';

export type Transport = 'mqtt' | 'ble';

/** A frame the gateway accepted: verified, fresh, and durable in the spool at `lsn`. */
export interface AcceptedFrame {
  /** Position in the spool; strictly increasing in acceptance order. */
  lsn: bigint;
  /** Gateway clock when the frame arrived, ms since the epoch. */
  receivedAtMs: number;
  transport: Transport;
  /** The device's patient pseudonym at acceptance time (never a name or MRN). */
  patient: string;
  /** SHA-256 of the exact frame bytes, hex. */
  sha256: string;
  frame: Frame;
  /** Its Merkle batch and leaf index (gateway/anchor/batcher.ts), once placed. */
  placement?: { batch: bigint; leaf: number };
}

/** What a write did besides storing every frame. */
export interface SinkOutcome {
  /**
   * LSNs of frames the sink did not store because storage refuses them for good, and set aside
   * durably instead (the storage quarantine, docs/storage.md): done with, like stored frames.
   */
  quarantined: ReadonlySet<bigint>;
}

/**
 * Where accepted frames end up (InfluxDB). Writes must be idempotent: a replayed batch
 * overwrites identical points. A write resolves when every frame is stored or set aside (named
 * in the outcome), and throws when a retry is needed.
 */
export interface FrameSink {
  write(frames: readonly AcceptedFrame[]): Promise<SinkOutcome | void>;
}
