/**
 * Decoder fuzzing (PROTOCOL.md §3.2). Mutations of the valid vector frames from a seeded
 * PRNG: bit flips, byte insertions and deletions, truncations, splices of two frames, header
 * fields set to boundary values, random buffers of random lengths (beyond MAX_FRAME_BYTES
 * too). For every input:
 *   - decodeFrame throws nothing but a ProtocolError whose code is in FRAME_REASONS;
 *   - its verdict equals that of `specDecode`, a slow, obviously-correct reading of §3.2 with
 *     exact integer range checks;
 *   - whatever it decodes re-encodes to exactly the input body, and body ‖ signature is the
 *     input (strict decoding: one byte string per frame).
 */
import { prng } from '../support/prng.js';
import { describe, expect, it } from 'vitest';
import { decodeFrame, MAX_FRAME_BYTES } from '../../firmware-proto/frame.js';
import { ProtocolError, type FrameReason } from '../../firmware-proto/reasons.js';
// The generators and the reference reading of §3.2 are shared with `npm run fuzz` (scripts/fuzz.ts).
import { judgeDecode, mutateFrame } from '../../scripts/lib/fuzz-frames.js';
import { hexCut } from '../../scripts/lib/fuzz-report.js';

const MUTATIONS = 120_000;
const SEED = 0x7e57_f00d;

describe('decodeFrame under fuzzing', () => {
  it(`agrees with the §3.2 reference, throws only coded ProtocolErrors and round-trips, over ${MUTATIONS} mutations`, () => {
    const r = prng(SEED);
    const failures: string[] = [];
    const seen = new Map<FrameReason | 'decoded', number>();
    const note = (msg: string): void => {
      if (failures.length < 10) failures.push(msg);
    };
    let longest = 0;
    for (let n = 0; n < MUTATIONS; n++) {
      const m = mutateFrame(r);
      longest = Math.max(longest, m.length);
      const v = judgeDecode(m);
      if (!v.ok) {
        note(`#${n}: ${v.code}: ${v.what} for ${hexCut(m, 40)}`);
        continue;
      }
      seen.set(v.outcome, (seen.get(v.outcome) ?? 0) + 1);
    }
    expect(failures).toEqual([]);
    // The fuzzer reached every rule of §3.2, decoded mutated frames, and went beyond the maximum size.
    const decodeReasons: FrameReason[] = [
      'FRAME_TOO_SHORT',
      'FRAME_OVERSIZED',
      'UNKNOWN_VERSION',
      'UNKNOWN_SENSOR',
      'BAD_SCALE',
      'BAD_SAMPLE_COUNT',
      'BAD_INTERVAL',
      'LENGTH_MISMATCH',
      'BAD_SEQUENCE',
      'SAMPLE_OUT_OF_RANGE',
    ];
    for (const c of decodeReasons) expect(seen.get(c) ?? 0, c).toBeGreaterThan(10);
    expect(seen.get('decoded') ?? 0).toBeGreaterThan(1000);
    expect([...seen.values()].reduce((a, b) => a + b, 0)).toBe(MUTATIONS);
    expect(longest).toBeGreaterThan(MAX_FRAME_BYTES);
  });

  it('refuses every length from 0 to MAX_FRAME_BYTES + 64 of zero bytes without throwing anything uncoded', () => {
    const codes = new Set<string>();
    for (let n = 0; n <= MAX_FRAME_BYTES + 64; n += 1) {
      try {
        decodeFrame(new Uint8Array(n));
        codes.add('decoded');
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
        codes.add((e as ProtocolError).code);
      }
    }
    // All-zero bytes: version 0, so every length is refused by size or version, never decoded.
    expect([...codes].sort()).toEqual(['FRAME_OVERSIZED', 'FRAME_TOO_SHORT', 'UNKNOWN_VERSION']);
  });
});
