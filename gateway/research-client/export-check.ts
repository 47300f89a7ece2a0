/**
 * Checking an export against its proofs: every exported frame has a bundle whose signed frame
 * hashes to its frameSha256, and every exported reading is a sample of that signed frame
 * (docs/research-api.md, "Command line": `research verify`). The bundles themselves are
 * verified by gateway/proof/verify.ts; this holds the exported readings to them.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeFrame, sampleTimeNs, sampleValue } from '../../firmware-proto/frame.js';
import type { ProofBundle } from '../proof/bundle.js';
import type { ApiFrame } from './api.js';
import { CSV_HEADER, EXPORT_FORMAT } from './export.js';

/** What the cross-check of an export against its bundles found. */
export interface ExportCheck {
  frames: number;
  readings: number;
  /** Frames with a bundle whose signed frame hashes to their frameSha256 and holds each of their readings. */
  matched: number;
  /** Frames without a bundle (not anchored at export time). */
  unproven: string[];
  /** Frames whose readings are not those of the signed frame. */
  mismatched: string[];
}

/**
 * Holds exported frames to the signed frames of `bundles`: a frame's bundle is the one whose raw
 * frame bytes hash (SHA-256) to its frameSha256; each exported reading must be a sample of that
 * frame, at the same time, with the same value in every channel.
 */
export function checkExportAgainstBundles(frames: readonly ApiFrame[], bundles: readonly ProofBundle[]): ExportCheck {
  const byHash = new Map<string, ProofBundle>();
  for (const b of bundles) byHash.set(createHash('sha256').update(Buffer.from(b.frame.raw, 'base64')).digest('hex'), b);
  const r: ExportCheck = { frames: frames.length, readings: 0, matched: 0, unproven: [], mismatched: [] };
  for (const f of frames) {
    r.readings += f.readings.length;
    const name = `${f.deviceId}/${f.seq}`;
    const b = byHash.get(f.frameSha256.toLowerCase().replace(/^0x/, ''));
    if (!b) {
      r.unproven.push(name);
      continue;
    }
    const frame = decodeFrame(Buffer.from(b.frame.raw, 'base64'));
    // A sample's time in ms, fractional when the sampling interval is not whole ms (as the gateway serves it).
    const samples = new Map<number, Record<string, number>>();
    for (let i = 0; i < frame.count; i++) {
      const ns = sampleTimeNs(frame, i);
      samples.set(
        Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6,
        Object.fromEntries(frame.spec.channels.map((c, ci) => [c, sampleValue(frame, i, ci)])),
      );
    }
    const ok =
      frame.deviceId === f.deviceId &&
      frame.seq.toString() === f.seq &&
      frame.spec.name === f.metric &&
      f.readings.every((x) => {
        const s = samples.get(x.timeMs);
        return (
          s !== undefined &&
          Object.keys(x.values).length === Object.keys(s).length &&
          Object.entries(x.values).every(([c, v]) => s[c] !== undefined && Math.abs(s[c]! - v) <= 1e-9 * Math.max(1, Math.abs(v)))
        );
      });
    if (ok) r.matched++;
    else r.mismatched.push(name);
  }
  return r;
}

/** Reads an export file (json, or csv regrouped into frames). @throws Error for a file that is neither. */
export function readExportFile(path: string): { kind: 'json' | 'csv'; frames: ApiFrame[] } | undefined {
  const text = readFileSync(path, 'utf8');
  if (text.startsWith(`${CSV_HEADER}\n`) || text === CSV_HEADER) {
    const frames = new Map<string, ApiFrame>();
    for (const line of text.split('\n').slice(1)) {
      if (!line) continue;
      const [t, metric, channel, value, device, seq, sha] = line.split(',');
      const k = `${device}/${seq}`;
      let f = frames.get(k);
      if (!f) frames.set(k, (f = { metric: metric!, deviceId: device!, seq: seq!, frameSha256: sha!, batch: null, leaf: null, readings: [] }));
      let r = f.readings.find((x) => x.timeMs === Number(t));
      if (!r) f.readings.push((r = { timeMs: Number(t), values: {} }));
      r.values[channel!] = Number(value);
    }
    return { kind: 'csv', frames: [...frames.values()] };
  }
  let doc: { format?: unknown; frames?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    return undefined;
  }
  if (doc.format !== EXPORT_FORMAT || !Array.isArray(doc.frames)) return undefined;
  return { kind: 'json', frames: doc.frames as ApiFrame[] };
}
