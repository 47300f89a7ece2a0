/**
 * The historical export (docs/research-api.md, GET /research/grants/<id>/readings): pages
 * through a grant's readings (format json, with proofs=1 for proofs) and writes FILE as JSON (a
 * `vitalproof.research-export` document) or CSV (the API's csv columns), and the proof bundles
 * of the exported frames into FILE.proofs.json (a `vitalproof.proof-bundles` collection).
 *
 * Both files are written in pieces to a temporary name and renamed into place only when the
 * last page is in: a failed export leaves nothing half written under FILE.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { BUNDLES_FORMAT, BUNDLE_VERSION } from '../proof/bundle.js';
import { CSV_HEADER } from '../research/readings.js';
import { fsyncDir } from '../util/atomic-file.js';
import { ApiError, apiRequest, type ApiFrame, type ReadingsPage } from './api.js';

export { CSV_HEADER } from '../research/readings.js';
export const EXPORT_FORMAT = 'vitalproof.research-export';

/** The CSV rows of one frame: one per sample and channel (the API's csv columns). */
export function csvRows(f: ApiFrame): string[] {
  const rows: string[] = [];
  for (const r of f.readings)
    for (const [channel, value] of Object.entries(r.values)) rows.push(`${r.timeMs},${f.metric},${channel},${value},${f.deviceId},${f.seq},${f.frameSha256}`);
  return rows;
}

/** Where an export stands, for its progress line. */
export interface ExportState {
  grantId: string;
  pages: number;
  frames: number;
  readings: number;
  proofs: number;
  bytes: number;
  /** The data range being exported (ms), once the first page told it. */
  fromMs?: number;
  toMs?: number;
  /** Device time of the last reading written. */
  lastMs?: number;
  elapsedMs: number;
  done?: boolean;
}

/**
 * A file written in pieces to a temporary name and renamed into place when complete, durably
 * (the file, then its directory, as util/atomic-file.ts writes a whole file at once).
 */
class StagedFile {
  private readonly tmp: string;
  private fd: number;
  bytes = 0;
  constructor(readonly path: string) {
    this.tmp = `${path}.${process.pid}.partial`;
    this.fd = openSync(this.tmp, 'w', 0o644);
  }
  write(s: string): void {
    const b = Buffer.from(s, 'utf8');
    writeSync(this.fd, b);
    this.bytes += b.length;
  }
  commit(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
    renameSync(this.tmp, this.path);
    fsyncDir(dirname(this.path));
  }
  discard(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    rmSync(this.tmp, { force: true });
  }
}

export interface ReadingsExportOptions {
  /** The gateway's API (normalised), written into the export document. */
  base: string;
  grantId: string;
  /** FILE; the bundles go to FILE.proofs.json. */
  out: string;
  format: 'json' | 'csv';
  proofs: boolean;
  /** Data time range (ms; default: the grant's data window). */
  fromMs?: number;
  toMs?: number;
  /** Only these metrics (default: every granted one). */
  metrics?: readonly string[];
  /** Frames per page (the API's default 1000, at most 10000). */
  limit: number;
  /** Runs one request with a session token (withSession of login.ts). */
  withToken: <T>(fn: (token: string) => Promise<T>) => Promise<T>;
  /** After each page is written. */
  onPage?: (state: ExportState) => void;
}

/**
 * One export of a grant's readings into files. `state` tells how far it is at any moment
 * (bytes included), for a progress display.
 * @example
 *   const x = new ReadingsExport({ base, grantId: '7', out: 'hr.json', format: 'json', proofs: true, limit: 1000, withToken });
 *   await x.run(); // hr.json and hr.json.proofs.json
 */
export class ReadingsExport {
  readonly state: ExportState;
  readonly startedAtMs = Date.now();
  /** Frames of the export without a proof bundle, by the gateway's code. */
  readonly skipped = new Map<string, number>();
  private readonly file: StagedFile;
  private readonly proofFile: StagedFile | undefined;

  constructor(private readonly o: ReadingsExportOptions) {
    this.state = { grantId: o.grantId, pages: 0, frames: 0, readings: 0, proofs: 0, bytes: 0, elapsedMs: 0 };
    this.file = new StagedFile(o.out);
    this.proofFile = o.proofs ? new StagedFile(`${o.out}.proofs.json`) : undefined;
  }

  /** FILE.proofs.json, when the export takes proofs. */
  get proofsPath(): string | undefined {
    return this.proofFile?.path;
  }

  /** Bytes written so far, both files. */
  get bytes(): number {
    return this.file.bytes + (this.proofFile?.bytes ?? 0);
  }

  /**
   * Fetches every page and writes the files, then renames them into place.
   * @throws ApiError (or the fetch error) from the gateway; nothing is left under FILE then.
   */
  async run(): Promise<void> {
    const { o, state, file, proofFile } = this;
    const q = new URLSearchParams({ format: 'json' });
    if (o.fromMs !== undefined) q.set('from', String(o.fromMs));
    if (o.toMs !== undefined) q.set('to', String(o.toMs));
    for (const m of o.metrics ?? []) q.append('metric', m);
    if (o.proofs) q.set('proofs', '1');
    q.set('limit', String(o.limit));
    try {
      let cursor: string | null = null;
      let first: ReadingsPage | undefined;
      do {
        if (cursor) q.set('cursor', cursor);
        const path = `/research/grants/${o.grantId}/readings?${q}`;
        const page: ReadingsPage = await o.withToken((token) => apiRequest<ReadingsPage>(o.base, path, { token }));
        if (!Array.isArray(page.frames)) throw new ApiError(200, 'NOT_A_PAGE', 'the answer has no frames', path);
        if (!first) {
          first = page;
          state.fromMs = toMs(page.from);
          // Nothing is recorded in the future: a data window reaching past now ends, for the progress, now.
          const to = toMs(page.to);
          state.toMs = to !== undefined ? Math.min(to, this.startedAtMs) : undefined;
          if (o.format === 'json') {
            file.write(
              `{"format":${JSON.stringify(EXPORT_FORMAT)},"version":1,"gateway":${JSON.stringify(o.base)},"grantId":${JSON.stringify(String(page.grantId ?? o.grantId))},"patient":${JSON.stringify(page.patient)},"from":${JSON.stringify(page.from)},"to":${JSON.stringify(page.to)},"metrics":${JSON.stringify(q.getAll('metric').length ? q.getAll('metric') : null)},"proofs":${o.proofs},"frames":[`,
            );
          } else file.write(`${CSV_HEADER}\n`);
          proofFile?.write(`{"format":${JSON.stringify(BUNDLES_FORMAT)},"version":${BUNDLE_VERSION},"bundles":[`);
        }
        for (const f of page.frames) {
          if (o.format === 'json') file.write(`${state.frames ? ',' : ''}\n${JSON.stringify(f)}`);
          else for (const r of csvRows(f)) file.write(`${r}\n`);
          state.frames++;
          state.readings += f.readings.length;
          const last = f.readings[f.readings.length - 1];
          if (last) state.lastMs = Math.max(state.lastMs ?? 0, last.timeMs);
        }
        for (const x of page.proofsSkipped ?? []) this.skipped.set(x.code, (this.skipped.get(x.code) ?? 0) + 1);
        for (const b of page.proofs ?? []) {
          proofFile?.write(`${state.proofs ? ',' : ''}\n${JSON.stringify(b)}`);
          state.proofs++;
        }
        state.pages++;
        this.tick();
        o.onPage?.(state);
        cursor = page.nextCursor ?? null;
      } while (cursor);
      if (o.format === 'json')
        file.write(
          `\n],"summary":${JSON.stringify({ pages: state.pages, frames: state.frames, readings: state.readings, proofs: state.proofs })},"exportedAtMs":${Date.now()}}\n`,
        );
      proofFile?.write('\n]}\n');
      file.commit();
      proofFile?.commit();
    } catch (e) {
      file.discard();
      proofFile?.discard();
      throw e;
    }
    state.done = true;
    this.tick();
  }

  /** Brings the state's time and bytes up to now. */
  tick(): ExportState {
    this.state.elapsedMs = Date.now() - this.startedAtMs;
    this.state.bytes = this.bytes;
    return this.state;
  }
}

function toMs(v: number | string): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return undefined;
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}
