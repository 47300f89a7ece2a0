/**
 * docs/errors.md is made from the catalogues of codes (scripts/lib/errors-doc.ts): it must be
 * current, hold every code of every catalogue, and no code may name two failures.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HTTP_STATUS } from '../../../gateway/http/errors.js';
import { ERROR_SECTIONS, renderErrorsDoc, sharedCodes, type ErrorSection } from '../../../scripts/lib/errors-doc.js';
import { repoRoot } from '../../../scripts/lib/fuzz-frames.js';

const root = repoRoot();
const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');

/** Catalogues that are not ours to document: BlueZ's own D-Bus error names, answered by the simulator. */
const NOT_OUR_CODES = new Set(['BLUEZ_ERRORS']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

describe('docs/errors.md', () => {
  it('is what npm run docs:errors writes from the catalogues now', () => {
    expect(doc, 'docs/errors.md is stale: run npm run docs:errors').toBe(renderErrorsDoc());
  });

  it('has a row for every code of every catalogue, with what to do', () => {
    const missing: string[] = [];
    for (const s of ERROR_SECTIONS) {
      for (const code of Object.keys(s.means)) {
        if (!doc.includes(`| \`${code}\` |`)) missing.push(`${s.name}.${code}`);
        expect(s.todo[code]?.trim(), `${s.name}.${code} has no remedy`).toBeTruthy();
      }
    }
    expect(missing).toEqual([]);
  });

  it('lists every catalogue declared in the code', () => {
    const listed = new Set(ERROR_SECTIONS.map((s) => `${s.file}:${s.name}`));
    const declared: string[] = [];
    for (const dir of ['firmware-proto', 'gateway', 'device-sim']) {
      for (const f of sourceFiles(join(root, dir))) {
        for (const m of readFileSync(f, 'utf8').matchAll(/^export const ([A-Z][A-Z0-9_]*_(?:ERRORS|REASONS|REFUSALS|DECISIONS)) = \{/gm)) {
          if (!NOT_OUR_CODES.has(m[1]!)) declared.push(`${relative(root, f)}:${m[1]}`);
        }
      }
    }
    expect(declared.length).toBeGreaterThan(20);
    expect(declared.filter((d) => !listed.has(d))).toEqual([]);
  });

  it('shows every code an HTTP answer carries with its status', () => {
    const http = new Map(ERROR_SECTIONS.filter((s) => s.http).flatMap((s) => Object.keys(s.means).map((c) => [c, s.name] as const)));
    for (const [code, status] of Object.entries(HTTP_STATUS)) {
      expect(http.has(code), `${code} (HTTP ${status}) is in no HTTP section`).toBe(true);
      expect(doc).toContain(`| \`${code}\` | ${status} |`);
    }
  });
});

describe('codes across catalogues', () => {
  it('no two catalogues share a code, beyond the one shared on purpose', () => {
    expect([...sharedCodes()]).toEqual([]);
  });

  it('a code in two catalogues is found', () => {
    const a: ErrorSection = { title: 'A', name: 'A_ERRORS', file: 'a.ts', intro: '', means: { SAME: 'a', ONLY_A: 'a' }, todo: { SAME: 'x', ONLY_A: 'x' } };
    const b: ErrorSection = { title: 'B', name: 'B_ERRORS', file: 'b.ts', intro: '', means: { SAME: 'b' }, todo: { SAME: 'y' } };
    expect([...sharedCodes([a, b])]).toEqual([['SAME', ['A_ERRORS', 'B_ERRORS']]]);
    // NOT_YET_ANCHORED is allowed in the proof API and access proofs only.
    const c: ErrorSection = { ...b, name: 'C_ERRORS', means: { NOT_YET_ANCHORED: 'c' }, todo: { NOT_YET_ANCHORED: 'z' } };
    const proofs = ERROR_SECTIONS.find((s) => s.name === 'PROOF_ERRORS')!;
    expect([...sharedCodes([proofs, c])]).toEqual([['NOT_YET_ANCHORED', ['PROOF_ERRORS', 'C_ERRORS']]]);
  });
});
