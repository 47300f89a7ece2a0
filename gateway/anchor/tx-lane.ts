/**
 * One transaction at a time per account. The frame stream's anchorer and the access log's
 * anchorer send from the same gateway account; each would otherwise read the next nonce, send
 * and replace on its own, and the two would race for nonces (one's transaction replacing the
 * other's, or "nonce too low"). A lane is a FIFO mutex: an anchorer holds it from reading the
 * chain's batch sequence until its transaction has its confirmations (and, when a transaction
 * is stuck, until its same-nonce replacement is mined), so at most one transaction of the
 * account is in flight, and the streams take turns.
 *
 * Anchorers that share a signer object share its lane (txLaneOf); pass `lane` in the
 * AnchorTarget to share one between different signer objects of the same account.
 */
import { EventEmitter } from 'node:events';
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';

export type LaneRelease = () => void;

export const TX_LANE_ERRORS = {
  TX_LANE_ABORTED: 'stopped while waiting for the transaction lane',
} as const;
export type TxLaneErrorCode = keyof typeof TX_LANE_ERRORS;

/** What to do about each code. */
export const TX_LANE_ERROR_REMEDIES: Remedies<TxLaneErrorCode> = {
  TX_LANE_ABORTED: 'Nothing: the anchorer was stopping; its batch is anchored after the next start.',
};

/** An anchorer stopped (its signal aborted) before it got the lane: nothing was sent. */
export class TxLaneAbortedError extends CodedError<TxLaneErrorCode> {
  constructor() {
    super(TX_LANE_ERRORS, 'TX_LANE_ABORTED');
  }
}

/** A FIFO mutex with observable state: 'queued', 'acquired' and 'released' carry the holder's label. */
export class TxLane extends EventEmitter<{ queued: [string]; acquired: [string]; released: [string] }> {
  #holder: string | undefined;
  readonly #queue: { label: string; grant: () => void }[] = [];

  /** Who holds the lane now. */
  get holder(): string | undefined {
    return this.#holder;
  }

  /** How many wait for it. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Resolves with a release function once the caller holds the lane (in call order).
   * @throws TxLaneAbortedError when `signal` aborts while waiting.
   */
  acquire(label: string, signal?: AbortSignal): Promise<LaneRelease> {
    if (signal?.aborted) return Promise.reject(new TxLaneAbortedError());
    if (this.#holder === undefined) {
      this.#holder = label;
      this.emit('acquired', label);
      return Promise.resolve(this.#releaser(label));
    }
    return new Promise((resolve, reject) => {
      const entry = {
        label,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          this.#holder = label;
          this.emit('acquired', label);
          resolve(this.#releaser(label));
        },
      };
      const onAbort = (): void => {
        const i = this.#queue.indexOf(entry);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(new TxLaneAbortedError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(entry);
      this.emit('queued', label);
    });
  }

  #releaser(label: string): LaneRelease {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#holder = undefined;
      this.emit('released', label);
      this.#queue.shift()?.grant();
    };
  }
}

const lanes = new WeakMap<object, TxLane>();

/** The lane of a signer object (created on first use; held weakly, so nothing to reset). */
export function txLaneOf(signer: object): TxLane {
  let l = lanes.get(signer);
  if (!l) {
    l = new TxLane();
    lanes.set(signer, l);
  }
  return l;
}
