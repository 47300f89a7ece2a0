/**
 * `vitalproof research verify FILE`: `vitalproof verify` on the bundles of an export (its
 * FILE.proofs.json) or of a bundle file, then the exported readings held to the signed frames
 * (gateway/research-client/export-check.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { isBundleFormatError, parseBundles, type ProofBundle } from '../proof/bundle.js';
import { checkExportAgainstBundles, readExportFile } from '../research-client/index.js';
import { parseArgs } from './args.js';
import { badUsage } from './errors.js';
import type { CliIo } from './output.js';
import { RESEARCH_USAGE } from './research-common.js';
import { VERIFY_FLAGS, verifyCommand } from './verify.js';

/**
 * Runs `vitalproof research verify` with `argv` (the arguments after "verify").
 * @returns the exit code: 0 every bundle verified and every exported reading matches, 1 not, 2 usage error.
 */
export async function researchVerify(argv: string[], io: CliIo): Promise<number> {
  // vitalproof verify's own options pass through unchanged; the one file may be an export or bundles.
  const { positionals: files, flags } = parseArgs(argv, VERIFY_FLAGS);
  if (files.length !== 1) throw badUsage('research verify needs one FILE: an export (with its FILE.proofs.json) or a bundle file', RESEARCH_USAGE);
  const file = files[0]!;
  if (!existsSync(file)) throw badUsage(`research verify: no such file ${file}`);
  const exp = readExportFile(file);
  const bundleFile = exp ? `${file}.proofs.json` : file;
  if (exp && !existsSync(bundleFile)) {
    io.err(`error: ${bundleFile} does not exist: export with --proofs to verify what was exported`);
    return 2;
  }
  const flagArgs = argv.filter((a) => a !== file);
  const code = await verifyCommand([bundleFile, ...flagArgs], io.out, io.err);
  if (!exp || code === 2) return code;
  let bundles: ProofBundle[];
  try {
    bundles = parseBundles(JSON.parse(readFileSync(bundleFile, 'utf8')));
  } catch (e) {
    if (!isBundleFormatError(e)) throw e;
    return 2;
  }
  const c = checkExportAgainstBundles(exp.frames, bundles);
  const json = flags['json'] !== undefined;
  const line = `export ${file}: ${c.frames} frames, ${c.readings} readings; ${c.matched} frames match their signed, proven frame, ${c.mismatched.length} do not, ${c.unproven.length} have no proof`;
  if (json) io.err(line);
  else io.out(line);
  for (const m of c.mismatched.slice(0, 20)) io.err(`  MISMATCH ${m}: the exported readings are not those of the signed frame`);
  if (c.unproven.length)
    io.err(
      `  ${c.unproven.length} frame${c.unproven.length === 1 ? ' was' : 's were'} not anchored when exported (e.g. ${c.unproven.slice(0, 3).join(', ')}): export again later to prove them`,
    );
  return code !== 0 || c.mismatched.length || c.unproven.length ? 1 : 0;
}
