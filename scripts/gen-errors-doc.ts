/**
 * Writes docs/errors.md from the catalogues of codes (scripts/lib/errors-doc.ts).
 *
 *   npm run docs:errors                                        (re)write docs/errors.md
 *   npm run build && node dist/scripts/gen-errors-doc.js --check   exit 1 when it is stale
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { renderErrorsDoc, sharedCodes } from './lib/errors-doc.js';
import { repoRoot } from './lib/fuzz-frames.js';

function main(argv: string[]): number {
  const shared = sharedCodes();
  if (shared.size) {
    for (const [code, names] of shared) console.error(`${code} is in ${names.join(' and ')}: a code names one failure`);
    return 1;
  }
  const path = join(repoRoot(), 'docs', 'errors.md');
  const text = renderErrorsDoc();
  if (argv.includes('--check')) {
    let now = '';
    try {
      now = readFileSync(path, 'utf8');
    } catch {
      // missing: stale
    }
    console.log(now === text ? `${path} is up to date` : `${path} is stale: run npm run docs:errors`);
    return now === text ? 0 : 1;
  }
  writeFileSync(path, text);
  console.log(`wrote ${path}`);
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = main(process.argv.slice(2));
