/**
 * What the conformance-vector generators share: a vector set (relative path → file text),
 * comparing it with the files on disk, writing it, and the `--check` / `--out` command line.
 * Each generator owns a list of folders; only `.json` files in them are compared and pruned.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Relative path under firmware-proto/vectors → exact file text. */
export type VectorSet = Map<string, string>;

function repoRoot(from: string): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'firmware-proto'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no repository root above ${from}`);
    dir = up;
  }
}

/** Files that differ between a vector set and a directory (missing, changed, or extra in `dirs`). */
export function diffVectorFiles(files: VectorSet, outDir: string, dirs: readonly string[]): string[] {
  const problems: string[] = [];
  for (const [rel, text] of files) {
    const p = join(outDir, rel);
    if (!existsSync(p)) problems.push(`missing ${rel}`);
    else if (readFileSync(p, 'utf8') !== text) problems.push(`differs ${rel}`);
  }
  for (const d of dirs) {
    const dir = join(outDir, d);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.endsWith('.json') && !files.has(`${d}/${f}`)) problems.push(`extra ${d}/${f}`);
  }
  return problems;
}

/**
 * A generator's command line: `--check` compares and exits 1 when out of date; otherwise the
 * set is written to `--out DIR` (default firmware-proto/vectors), removing stale files in `dirs`.
 * @param what e.g. 'GATT vector'; `summary` describes a written set.
 */
export function runVectorGenerator(
  argv: string[],
  scriptUrl: string,
  o: { build: () => VectorSet; dirs: readonly string[]; what: string; summary: (count: (prefix: string) => number) => string },
): number {
  const outIdx = argv.indexOf('--out');
  const outDir = outIdx >= 0 && argv[outIdx + 1] ? resolve(argv[outIdx + 1]!) : join(repoRoot(dirname(fileURLToPath(scriptUrl))), 'firmware-proto', 'vectors');
  const files = o.build();
  if (argv.includes('--check')) {
    const problems = diffVectorFiles(files, outDir, o.dirs);
    for (const p of problems) console.error(p);
    console.log(problems.length ? `${problems.length} ${o.what} file(s) out of date in ${outDir}` : `${files.size} ${o.what} files up to date in ${outDir}`);
    return problems.length ? 1 : 0;
  }
  for (const d of o.dirs) {
    const dir = join(outDir, d);
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(dir)) if (f.endsWith('.json') && !files.has(`${d}/${f}`)) rmSync(join(dir, f));
  }
  for (const [rel, text] of files) writeFileSync(join(outDir, rel), text);
  const count = (prefix: string): number => [...files.keys()].filter((k) => k.startsWith(prefix)).length;
  console.log(`wrote ${files.size} ${o.what} files to ${outDir}: ${o.summary(count)}`);
  return 0;
}
