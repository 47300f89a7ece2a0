/**
 * The spool's read positions: one per consumer (the storage writer, the frame batcher, and the
 * uplink to the hospital broker when configured), each the last LSN that consumer has made
 * durable elsewhere (in storage with the checkpoint that covers it; in a sealed Merkle batch;
 * acknowledged by the hospital broker). This is the one place that decides what the spool may
 * release and where its numbering resumes:
 *
 *   released up to   min over the consumers       a record goes only when every consumer is done with it
 *   next LSN ≥       max over the consumers + 1   no position a consumer recorded is handed out twice
 *                                                 (the spool's `minNextLsn`, even when its tail was lost)
 *
 * Positions live in memory. Each consumer persists its own (the checkpoint file, the batch
 * store), registers it here at start-up, and advances it only once the new position is durable
 * on its side, so a crash can only leave the spool holding more than it needs, never less.
 *
 * @example
 *   const positions = new SpoolPositions({ storage: checkpointLsn, batches: lastSealedLsn });
 *   const wal = await Wal.open(dir, { minNextLsn: positions.nextLsnFloor });
 *   positions.attach(wal);
 *   positions.advance('batches', sealed.lastLsn); // releases nothing until storage is past it too
 */
import type { Wal } from './wal.js';

/** What the positions release: the spool (gateway/spool/wal.ts). */
export type Releasable = Pick<Wal, 'releasedLsn' | 'release'>;

export class SpoolPositions<Name extends string> {
  private readonly at = new Map<Name, bigint>();
  private readonly listeners = new Map<Name, ((lsn: bigint) => void)[]>();
  private spool: Releasable | undefined;

  /** @param recorded every consumer with the position it recorded durably before this start. */
  constructor(recorded: Record<Name, bigint>) {
    for (const [name, lsn] of Object.entries(recorded) as [Name, bigint][]) this.at.set(name, lsn);
    if (this.at.size === 0) throw new RangeError('a spool needs at least one consumer');
  }

  /** The last LSN `name` has made durable elsewhere. */
  lsn(name: Name): bigint {
    const v = this.at.get(name);
    if (v === undefined) throw new RangeError(`no spool consumer named ${name}: the consumers are ${[...this.at.keys()].join(', ')}`);
    return v;
  }

  /** Whether `name` is a consumer of this spool (the uplink is one only when it is configured). */
  has(name: Name): boolean {
    return this.at.has(name);
  }

  /** One above the highest recorded position: the lowest LSN the spool may hand out next (WalOptions.minNextLsn). */
  get nextLsnFloor(): bigint {
    let max = 0n;
    for (const v of this.at.values()) if (v > max) max = v;
    return max + 1n;
  }

  /** The lowest recorded position: every consumer is done with every record up to here. */
  get releasable(): bigint {
    let min: bigint | undefined;
    for (const v of this.at.values()) if (min === undefined || v < min) min = v;
    return min!;
  }

  /** From now on, advancing a position releases the spool up to `releasable`. */
  attach(spool: Releasable): void {
    this.spool = spool;
  }

  /**
   * Records that `name` has made every record up to `lsn` durable elsewhere, tells its
   * listeners, and releases what every consumer is done with. A position only moves forward:
   * a lower `lsn` leaves it as it is.
   */
  advance(name: Name, lsn: bigint): void {
    if (lsn > this.lsn(name)) this.at.set(name, lsn);
    for (const l of this.listeners.get(name) ?? []) l(lsn);
    const upTo = this.releasable;
    if (this.spool && upTo > this.spool.releasedLsn) this.spool.release(upTo);
  }

  /** Calls `listener` after each advance of `name` (the batcher drops the placements storage has confirmed). */
  onAdvance(name: Name, listener: (lsn: bigint) => void): void {
    this.lsn(name); // a name that is not a consumer is a wiring mistake: fail at start-up
    this.listeners.set(name, [...(this.listeners.get(name) ?? []), listener]);
  }

  /** The position of one consumer, to hand to it. */
  position(name: Name): SpoolPosition {
    this.lsn(name);
    return {
      name,
      lsn: () => this.lsn(name),
      advance: (lsn) => this.advance(name, lsn),
    };
  }
}

/** One consumer's position, as that consumer holds it. */
export interface SpoolPosition {
  readonly name: string;
  /** The last LSN this consumer has made durable elsewhere. */
  lsn(): bigint;
  /** Call once everything up to `lsn` is durable on the consumer's side. */
  advance(lsn: bigint): void;
}
