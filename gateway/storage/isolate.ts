/**
 * Finds the frames InfluxDB refuses for good inside a write, by bisection: write the whole
 * group; if InfluxDB refuses it for good (isPermanentRefusal), write each half, and so on down to
 * single frames, which are the refused ones. The other frames are stored on the way. A write of
 * n frames with k refused ones costs O(k log n) requests; every frame refused costs 2n − 1.
 *
 * Rewriting is harmless: points depend only on the frame (schema.ts), so a half written again
 * after a partial write (InfluxDB 1.x stores the rest of a request that hit a type conflict)
 * overwrites identical points.
 */
import { isPermanentRefusal, type StorageError } from './errors.js';

/**
 * Writes `groups` (one per frame) through `write`, calling `refused` for each group InfluxDB
 * refuses for good, in order, awaited before the next write.
 * @throws the first failure that is not a permanent refusal (network, 5xx, timeout,
 *   credentials); what was written or refused before it stays so, and a retry is safe.
 */
export async function writeIsolating<G extends { lines: readonly string[] }>(
  groups: readonly G[],
  write: (lines: string[]) => Promise<void>,
  refused: (group: G, e: StorageError) => Promise<void> | void,
): Promise<void> {
  if (groups.length === 0) return;
  try {
    await write(groups.flatMap((g) => g.lines));
    return;
  } catch (e) {
    if (!isPermanentRefusal(e)) throw e;
    if (groups.length === 1) {
      await refused(groups[0]!, e);
      return;
    }
  }
  const mid = groups.length >> 1;
  await writeIsolating(groups.slice(0, mid), write, refused);
  await writeIsolating(groups.slice(mid), write, refused);
}
