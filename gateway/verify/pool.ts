/**
 * Ed25519 verification off the event loop. Jobs submitted in the same tick are batched
 * into one message per worker, so that message passing costs little next to a
 * verification (~140 µs). With `workers: 0` it verifies inline (tools, tests, tiny setups).
 */
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KeyCache, verifyEd25519 } from './ed25519.js';

export interface VerifyJob {
  key: Uint8Array;
  message: Uint8Array;
  signature: Uint8Array;
}

export interface VerifyBatch {
  id: number;
  jobs: VerifyJob[];
}

interface Slot {
  worker: Worker;
  inflight: Map<number, { done: (r: Uint8Array) => void; fail: (e: Error) => void }>;
  load: number;
}

export interface Verifier {
  verify(job: VerifyJob): Promise<boolean>;
  close(): Promise<void>;
}

export class VerifyPool implements Verifier {
  private readonly slots: Slot[] = [];
  private queue: { job: VerifyJob; resolve: (ok: boolean) => void; reject: (e: Error) => void }[] = [];
  private scheduled = false;
  private nextId = 1;
  private readonly inline = new KeyCache();
  private closed = false;
  /** Largest number of jobs sent to a worker in one message (for the status page). */
  maxBatch = 0;

  constructor(
    workers: number,
    private readonly maxBatchJobs = 256,
  ) {
    const file = workerFile();
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(file);
      const slot: Slot = { worker, inflight: new Map(), load: 0 };
      worker.on('message', (m: { id: number; results: Uint8Array }) => {
        const req = slot.inflight.get(m.id);
        slot.inflight.delete(m.id);
        req?.done(m.results);
      });
      worker.on('error', (e) => this.failSlot(slot, e));
      worker.unref();
      this.slots.push(slot);
    }
  }

  verify(job: VerifyJob): Promise<boolean> {
    if (this.closed) return Promise.reject(new Error('verify pool is closed'));
    if (this.slots.length === 0) {
      return Promise.resolve(verifyEd25519(this.inline.get(job.key), job.message, job.signature));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.dispatch());
      }
    });
  }

  private dispatch(): void {
    this.scheduled = false;
    while (this.queue.length > 0) {
      const take = this.queue.splice(0, this.maxBatchJobs);
      const slot = this.slots.reduce((a, b) => (b.load < a.load ? b : a));
      const id = this.nextId++;
      slot.load += take.length;
      this.maxBatch = Math.max(this.maxBatch, take.length);
      slot.inflight.set(id, {
        done: (results) => {
          slot.load -= take.length;
          for (let i = 0; i < take.length; i++) take[i]!.resolve(results[i] === 1);
        },
        fail: (e) => {
          slot.load -= take.length;
          for (const t of take) t.reject(e);
        },
      });
      slot.worker.postMessage({ id, jobs: take.map((t) => t.job) } satisfies VerifyBatch);
    }
  }

  private failSlot(slot: Slot, e: Error): void {
    for (const req of slot.inflight.values()) req.fail(e);
    slot.inflight.clear();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/** The compiled worker next to this file; under vitest (TypeScript sources) the built copy in dist/. */
function workerFile(): string {
  const here = fileURLToPath(new URL('./worker.js', import.meta.url));
  if (existsSync(here)) return here;
  const built = fileURLToPath(new URL('../../dist/gateway/verify/worker.js', import.meta.url));
  if (existsSync(built)) return built;
  throw new Error(`verification worker not found at ${here}; run "npm run build" first`);
}
