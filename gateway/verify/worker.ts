/** Verification worker: receives batches, answers one boolean per job, in order. */
import { parentPort } from 'node:worker_threads';
import { KeyCache, verifyEd25519 } from './ed25519.js';
import type { VerifyBatch } from './pool.js';

const keys = new KeyCache();

parentPort!.on('message', (batch: VerifyBatch) => {
  const results = new Uint8Array(batch.jobs.length);
  for (let i = 0; i < batch.jobs.length; i++) {
    const j = batch.jobs[i]!;
    results[i] = verifyEd25519(keys.get(j.key), j.message, j.signature) ? 1 : 0;
  }
  parentPort!.postMessage({ id: batch.id, results }, [results.buffer]);
});
