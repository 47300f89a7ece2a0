/**
 * `vitalproof verify FILE [FILE…] (--rpc URL | --offline) [--deployment FILE] [--json]`:
 * verifies proof bundles (a single bundle or a collection per file) and says, check by check,
 * what holds. Exit code 0 when every bundle is ok, 1 when any check failed, 2 for a usage
 * error or a file that is not readable or not a valid bundle (nothing is verified then).
 *
 *   --rpc URL          JSON-RPC endpoint of the chain the bundles are anchored on
 *   --offline          check frame, signature and inclusion only; never touches the network
 *   --deployment FILE  the hospital's deployment record (deployment.json): the chain id and the
 *                      registry addresses every bundle must name (else they come from the bundle)
 *   --json             one machine-readable JSON document instead of text
 *
 * No side effects at import: gateway/cli/main.ts calls verifyCommand.
 */
import { readFileSync } from 'node:fs';
import { JsonRpcProvider } from 'ethers';
import { isChainError } from '../chain/errors.js';
import { readDeploymentRecord } from '../chain/deploy.js';
import { isBundleFormatError, parseBundles, type ProofBundle } from '../proof/bundle.js';
import { parseArgs, type FlagSpec } from './args.js';
import { badUsage, UsageError } from './errors.js';
import { ONLINE_CHECKS, VerifyCache, verifyBundle, type BundleVerdict, type CheckResult, type TrustedDeployment } from '../proof/verify.js';

export const VERIFY_USAGE = `usage: vitalproof verify FILE [FILE…] (--rpc URL | --offline) [--deployment FILE] [--json]
  FILE               a proof bundle, or a collection of them ("vitalproof.proof-bundles")
  --rpc URL          JSON-RPC endpoint of the chain the bundles are anchored on: checks the
                     anchor and the device registry as well
  --offline          checks only the frame, its signature and its Merkle inclusion; never
                     touches the network (anchor and device are reported as not checked)
  --deployment FILE  deployment record (deployment.json) whose chain and registries every
                     bundle must name; without it the addresses are taken from the bundles
  --json             print one JSON document instead of text
exit code: 0 every bundle verified, 1 a check failed, 2 usage error or invalid bundle file`;

/** Format of the --json document. */
export const VERIFY_REPORT_FORMAT = 'vitalproof.verify-report';

/** Bundles verified at once: their chain reads share JSON-RPC batches and the cache. */
const CONCURRENCY = 16;
const PROBE_TIMEOUT_MS = 15_000;
const MARK: Record<CheckResult['status'], string> = { pass: '✓', fail: '✗', skip: '–' };

interface Args {
  files: string[];
  rpc?: string;
  offline: boolean;
  json: boolean;
  deployment?: string;
  help: boolean;
}

/**
 * Runs `vitalproof verify` with `argv` (the arguments after "verify").
 * @param out receives stdout lines (the report); @param err stderr lines (usage and file errors).
 * @returns the exit code: 0 all bundles ok, 1 some check failed, 2 usage error or invalid file.
 * @example
 * process.exitCode = await verifyCommand(['export.json', '--rpc', 'http://127.0.0.1:8545']);
 */
export async function verifyCommand(argv: string[], out: (line: string) => void = console.log, err: (line: string) => void = console.error): Promise<number> {
  let args: Args;
  try {
    args = readArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`error: ${e.message}`);
    err(VERIFY_USAGE);
    return 2;
  }
  if (args.help) {
    out(VERIFY_USAGE);
    return 0;
  }

  // Read and parse every file before verifying anything: a bad file is a usage error (2).
  const items: { file: string; index: number; count: number; bundle: ProofBundle }[] = [];
  let bad = false;
  for (const file of args.files) {
    const bundles = readBundleFile(file, err);
    if (!bundles) {
      bad = true;
      continue;
    }
    bundles.forEach((bundle, index) => items.push({ file, index, count: bundles.length, bundle }));
  }
  let trusted: TrustedDeployment | undefined;
  if (args.deployment) {
    trusted = readTrusted(args.deployment, err);
    if (!trusted) bad = true;
  }
  if (bad) return 2;

  let provider: JsonRpcProvider | undefined;
  let cache = new VerifyCache();
  if (!args.offline) {
    const rpc = args.rpc as string;
    // Ask the chain id once, then use a static network: no detection round trip per call, and
    // no endless retrying when the endpoint is down (every online check says so instead).
    const chainId = probeChainId(rpc);
    cache = new VerifyCache({ chainId });
    const known = await chainId.catch(() => undefined);
    provider = new JsonRpcProvider(rpc, known ?? 1, { staticNetwork: true, batchStallTime: 2 });
  }
  try {
    const verdicts = await verifyAll(
      items.map((i) => i.bundle),
      { ...(provider ? { provider } : {}), offline: args.offline, ...(trusted ? { trusted } : {}), cache },
      (i, v) => {
        if (!args.json) printVerdict(out, items[i]!, i, items.length, v);
      },
    );
    const failed = verdicts.filter((v) => !v.ok).length;
    if (args.json) {
      out(
        JSON.stringify(
          {
            format: VERIFY_REPORT_FORMAT,
            version: 1,
            ok: failed === 0,
            offline: args.offline,
            rpc: args.rpc ?? null,
            trusted: trusted ?? null,
            bundles: verdicts.map((v, i) => ({ file: items[i]!.file, index: items[i]!.index, ...v })),
          },
          null,
          2,
        ),
      );
    } else {
      out(summary(verdicts, args.offline, trusted !== undefined));
    }
    return failed === 0 ? 0 : 1;
  } finally {
    provider?.destroy();
  }
}

/** vitalproof verify's flags (research verify passes them through). */
export const VERIFY_FLAGS: FlagSpec = {
  values: ['rpc', 'deployment'],
  switches: ['offline', 'json'],
  aliases: { '-h': 'help' },
  others: 'reject',
  usage: VERIFY_USAGE,
};

function readArgs(argv: string[]): Args {
  const { positionals, flags } = parseArgs(argv, VERIFY_FLAGS);
  const a: Args = { files: positionals, offline: flags['offline'] !== undefined, json: flags['json'] !== undefined, help: flags['help'] !== undefined };
  if (flags['rpc'] !== undefined) a.rpc = flags['rpc'];
  if (flags['deployment'] !== undefined) a.deployment = flags['deployment'];
  if (a.help) return a;
  if (a.files.length === 0) throw badUsage('no bundle file given');
  if (a.offline && a.rpc !== undefined) throw badUsage('--offline and --rpc exclude each other: --offline never touches the network');
  if (!a.offline && a.rpc === undefined) {
    throw badUsage(
      'choose --rpc URL (check everything, the chain included) or --offline (frame, signature and Merkle inclusion only; anchor and device not checked)',
    );
  }
  if (a.rpc !== undefined) {
    let url: URL;
    try {
      url = new URL(a.rpc);
    } catch {
      throw badUsage(`--rpc "${a.rpc}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badUsage(`--rpc must be an http(s) JSON-RPC URL, got ${url.protocol}`);
  }
  return a;
}

function readBundleFile(file: string, err: (line: string) => void): ProofBundle[] | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    err(`error: ${file}: cannot read it: ${(e as Error).message}`);
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    err(`error: ${file}: not JSON: ${(e as Error).message}`);
    return undefined;
  }
  try {
    const bundles = parseBundles(json);
    if (bundles.length === 0) {
      err(`error: ${file}: the collection holds no bundles; there is nothing to verify`);
      return undefined;
    }
    return bundles;
  } catch (e) {
    if (!isBundleFormatError(e)) throw e;
    err(`error: ${file}: not a valid proof bundle: field ${e.field || '(top level)'}: ${e.message}`);
    return undefined;
  }
}

function readTrusted(path: string, err: (line: string) => void): TrustedDeployment | undefined {
  try {
    const record = readDeploymentRecord(path);
    if (!record) {
      err(`error: --deployment ${path}: no such file`);
      return undefined;
    }
    return { chainId: record.chainId, anchorRegistry: record.anchorRegistry.address, deviceRegistry: record.deviceRegistry.address };
  } catch (e) {
    if (!isChainError(e)) throw e;
    err(`error: --deployment ${path}: ${e.message}`);
    return undefined;
  }
}

/**
 * eth_chainId through ethers' own transport (the one the checks use), with a deadline. The
 * probe provider's static network is a placeholder: `send` does not consult it.
 */
async function probeChainId(rpc: string): Promise<number> {
  const probe = new JsonRpcProvider(rpc, 1, { staticNetwork: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
    });
    const id = await Promise.race([probe.send('eth_chainId', []), deadline]);
    return Number(BigInt(id as string));
  } catch (e) {
    throw new Error(`eth_chainId at ${rpc} failed: ${(e as { shortMessage?: string }).shortMessage ?? (e as Error).message}`, { cause: e });
  } finally {
    clearTimeout(timer);
    probe.destroy();
  }
}

/** Verifies with bounded concurrency; `each` sees the verdicts in input order, as soon as possible. */
async function verifyAll(
  bundles: ProofBundle[],
  opts: Parameters<typeof verifyBundle>[1],
  each: (index: number, v: BundleVerdict) => void,
): Promise<BundleVerdict[]> {
  const settled = bundles.map(() => {
    let settle!: (v: Promise<BundleVerdict>) => void;
    const promise = new Promise<BundleVerdict>((resolve) => (settle = resolve));
    return { promise, settle };
  });
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < bundles.length; i = next++) {
      const v = verifyBundle(bundles[i]!, opts);
      settled[i]!.settle(v);
      await v.catch(() => undefined); // its failure (a bug) surfaces in the loop below
    }
  };
  const workers = Array.from({ length: Math.min(CONCURRENCY, bundles.length) }, worker);
  const verdicts: BundleVerdict[] = [];
  for (let i = 0; i < bundles.length; i++) {
    const v = await settled[i]!.promise;
    verdicts.push(v);
    each(i, v);
  }
  await Promise.all(workers);
  return verdicts;
}

function printVerdict(out: (line: string) => void, item: { file: string; index: number; count: number }, i: number, total: number, v: BundleVerdict): void {
  const s = v.subject;
  const where = item.count > 1 ? `${item.file} #${item.index}` : item.file;
  out(
    `[${i + 1}/${total}] ${where}: device ${s.deviceId} seq ${s.seq} (${s.sensor}) · batch ${s.batchSeq} leaf ${s.leafIndex} of ${s.treeSize} · gateway ${s.gateway} on chain ${s.chainId}`,
  );
  for (const c of v.checks) out(`  ${MARK[c.status]} ${c.check.padEnd(9)} ${c.code ? `${c.code}: ` : ''}${c.message}`);
  const failed = v.checks.filter((c) => c.status === 'fail').map((c) => c.check);
  const skipped = v.checks.filter((c) => c.status === 'skip').map((c) => c.check);
  if (failed.length > 0) out(`  => FAILED: ${failed.join(', ')}`);
  else if (skipped.length > 0) out(`  => OK offline: ${skipped.join(', ')} not checked`);
  else out('  => OK');
  out('');
}

function summary(verdicts: BundleVerdict[], offline: boolean, pinned: boolean): string {
  const ok = verdicts.filter((v) => v.ok).length;
  const n = verdicts.length;
  let line = `${n} bundle${n === 1 ? '' : 's'}: ${ok} ok, ${n - ok} failed`;
  if (offline) line += ` (offline: ${ONLINE_CHECKS.join(' and ')} checks skipped; run with --rpc URL to check them)`;
  else if (!pinned) line += ' (registry addresses taken from the bundles; pass --deployment FILE to pin them)';
  return line;
}
