/**
 * Compiles contracts/**\/*.sol with the pinned `solc` npm package (standard-JSON interface)
 * and writes gateway/chain/artifacts.ts: ABIs (`as const`), bytecode, and ethers v6 types
 * for every method, event, error and struct. The generated file is committed, so a clean
 * clone builds and tests without compiling Solidity; test/gateway/chain/artifacts.test.ts fails
 * when it no longer matches the sources.
 *
 * Usage (after `npm run build`):
 *   node dist/scripts/build-contracts.js           regenerate gateway/chain/artifacts.ts
 *   node dist/scripts/build-contracts.js --check   exit 1 if it is out of date
 *
 * Any compiler error fails the build; warnings are printed.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';

const require = createRequire(import.meta.url);

/** Solidity ABI entry, as solc emits it. */
export interface AbiParam {
  name: string;
  type: string;
  internalType?: string;
  indexed?: boolean;
  components?: AbiParam[];
}
export interface AbiEntry {
  type: 'function' | 'event' | 'error' | 'constructor' | 'fallback' | 'receive';
  name?: string;
  inputs?: AbiParam[];
  outputs?: AbiParam[];
  stateMutability?: 'pure' | 'view' | 'nonpayable' | 'payable';
  anonymous?: boolean;
}

export interface CompiledContract {
  name: string;
  sourceName: string;
  abi: AbiEntry[];
  bytecode: string;
  deployedBytecode: string;
  /** NatSpec as solc extracted it (not written to the artifacts; the tests check it is there). */
  userdoc: { methods?: Record<string, { notice?: string }>; events?: Record<string, { notice?: string }>; errors?: Record<string, { notice?: string }[]> };
}

export interface CompileResult {
  solcVersion: string;
  evmVersion: string;
  /** SHA-256 over every source (OpenZeppelin's included), the optimizer settings and the EVM version. */
  inputHash: string;
  contracts: CompiledContract[];
  warnings: string[];
}

/** The contracts the TypeScript side deploys and talks to, in output order. */
export const DEPLOYABLE = ['DeviceRegistry', 'AnchorRegistry', 'ConsentRegistry'] as const;

/**
 * `paris` (no PUSH0, no transient storage) runs unchanged on every post-merge EVM chain and on
 * permissioned chains still on London-era rules (GoQuorum, older Besu genesis files); the cost
 * is about 2 gas per PUSH0 the newer targets would use. anvil (hardfork `prague` here) runs it too.
 */
export const EVM_VERSION = 'paris';
export const OPTIMIZER_RUNS = 200;
const GENERATED = 'gateway/chain/artifacts.ts';

/** The project root: the nearest ancestor of this file with a package.json (works from dist/ too). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('build-contracts: no package.json above this script');
    dir = up;
  }
  return dir;
}

function listSol(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listSol(join(dir, e.name)) : e.name.endsWith('.sol') ? [join(dir, e.name)] : []))
    .sort();
}

/** Compiles every contracts/**\/*.sol. @throws Error listing every compiler error. */
export function compileContracts(root = projectRoot()): CompileResult {
  const solc = require('solc') as {
    version(): string;
    compile(input: string, cb: { import: (p: string) => { contents: string } | { error: string } }): string;
  };
  const ozDir = dirname(require.resolve('@openzeppelin/contracts/package.json'));
  const sources: Record<string, { content: string }> = {};
  for (const file of listSol(join(root, 'contracts'))) {
    sources[relative(root, file).split(sep).join('/')] = { content: readFileSync(file, 'utf8') };
  }
  const settings = {
    optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
    evmVersion: EVM_VERSION,
    outputSelection: { '*': { '*': ['abi', 'userdoc', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  };
  const loaded: Record<string, string> = {};
  const findImports = (path: string): { contents: string } | { error: string } => {
    try {
      let contents: string;
      if (path.startsWith('@openzeppelin/contracts/')) contents = readFileSync(join(ozDir, path.slice('@openzeppelin/contracts/'.length)), 'utf8');
      else if (path.startsWith('contracts/')) contents = readFileSync(join(root, path), 'utf8');
      else return { error: `import ${path} is neither under contracts/ nor @openzeppelin/contracts/` };
      loaded[path] = contents;
      return { contents };
    } catch (e) {
      return { error: `cannot read ${path}: ${(e as Error).message}` };
    }
  };
  const input = { language: 'Solidity', sources, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports })) as {
    errors?: { severity: 'error' | 'warning' | 'info'; formattedMessage: string }[];
    contracts?: Record<
      string,
      Record<string, { abi: AbiEntry[]; userdoc: CompiledContract['userdoc']; evm: { bytecode: { object: string }; deployedBytecode: { object: string } } }>
    >;
  };
  const problems = output.errors ?? [];
  const errors = problems.filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(`solc ${solc.version()} failed:\n${errors.map((e) => e.formattedMessage).join('\n')}`);
  const warnings = problems.filter((e) => e.severity === 'warning').map((e) => e.formattedMessage);

  const contracts: CompiledContract[] = [];
  for (const name of DEPLOYABLE) {
    const sourceName = `contracts/${name}.sol`;
    const c = output.contracts?.[sourceName]?.[name];
    if (!c) throw new Error(`solc produced no ${name} in ${sourceName}`);
    if (!c.evm.bytecode.object) throw new Error(`${name} has no bytecode (abstract?)`);
    contracts.push({
      name,
      sourceName,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      userdoc: c.userdoc,
    });
  }
  const all = {
    ...sources,
    ...Object.fromEntries(
      Object.entries(loaded)
        .sort()
        .map(([k, v]) => [k, { content: v }]),
    ),
  };
  const inputHash = createHash('sha256')
    .update(JSON.stringify({ sources: all, optimizer: settings.optimizer, evmVersion: settings.evmVersion }))
    .digest('hex');
  return { solcVersion: solc.version(), evmVersion: EVM_VERSION, inputHash, contracts, warnings };
}

// ---------------------------------------------------------------------------------------------
// TypeScript generation: ethers v6 types from the ABI (what TypeChain would write, for our few types).

/** Struct name from solc's internalType: "struct IDeviceRegistry.Device[]" -> "Device". */
function structName(p: AbiParam): string {
  const m = /^struct (?:[A-Za-z0-9_]+\.)?([A-Za-z0-9_]+)/.exec(p.internalType ?? '');
  if (!m) throw new Error(`tuple ${p.name} has no struct internalType`);
  return m[1]!;
}

/** Structs met while rendering types: their fields, and which ones are taken as arguments. */
interface Structs {
  fields: Map<string, AbiParam[]>;
  asInput: Set<string>;
}

function tsType(p: AbiParam, dir: 'in' | 'out', structs: Structs): string {
  const arr = /^(.*)\[(\d*)\]$/.exec(p.type);
  if (arr) return `${tsType({ ...p, type: arr[1]! }, dir, structs)}[]`;
  if (p.type === 'tuple') {
    const name = structName(p);
    const known = structs.fields.get(name);
    if (known && JSON.stringify(known) !== JSON.stringify(p.components)) throw new Error(`two different structs named ${name}`);
    structs.fields.set(name, p.components ?? []);
    if (dir === 'out') return name;
    structs.asInput.add(name);
    return `${name}Input`;
  }
  if (p.type === 'address') return dir === 'in' ? 'AddressLike' : 'string';
  if (p.type === 'bool') return 'boolean';
  if (p.type === 'string') return 'string';
  if (/^bytes\d*$/.test(p.type)) return dir === 'in' ? 'BytesLike' : 'string';
  if (/^u?int\d*$/.test(p.type)) return dir === 'in' ? 'BigNumberish' : 'bigint';
  throw new Error(`no TypeScript type for ABI type ${p.type}`);
}

function tuple(params: AbiParam[] | undefined, dir: 'in' | 'out', structs: Structs): string {
  return `[${(params ?? []).map((p, i) => `${p.name || `arg${i}`}: ${tsType(p, dir, structs)}`).join(', ')}]`;
}

function renderContractTypes(c: CompiledContract, structs: Structs): string {
  const lines: string[] = [];
  const fns = c.abi.filter((e) => e.type === 'function').sort((a, b) => cmp(a.name!, b.name!));
  lines.push(`/** ${c.name} as ethers v6 sees it: \`new Contract(address, ${lcFirst(c.name)}Abi, runner) as unknown as ${c.name}Contract\`. */`);
  lines.push(`export interface ${c.name}Contract extends BaseContract {`);
  for (const f of fns) {
    const outs = f.outputs ?? [];
    const ret = outs.length === 0 ? 'void' : outs.length === 1 ? tsType(outs[0]!, 'out', structs) : 'Result';
    const args = tuple(f.inputs, 'in', structs);
    if (f.stateMutability === 'view' || f.stateMutability === 'pure') lines.push(`  ${f.name}: ConstantContractMethod<${args}, ${ret}>;`);
    else lines.push(`  ${f.name}: ContractMethod<${args}, ${ret}, ContractTransactionResponse>;`);
  }
  lines.push('}');
  const events = c.abi.filter((e) => e.type === 'event').sort((a, b) => cmp(a.name!, b.name!));
  lines.push(`/** Arguments of each ${c.name} event, as decoded. */`);
  lines.push(`export interface ${c.name}Events {`);
  for (const e of events) lines.push(`  ${e.name}: ${tuple(e.inputs, 'out', structs)};`);
  lines.push('}');
  const errors = c.abi.filter((e) => e.type === 'error').sort((a, b) => cmp(a.name!, b.name!));
  lines.push(`/** Arguments of each ${c.name} custom error, as decoded. */`);
  lines.push(`export interface ${c.name}Errors {`);
  for (const e of errors) lines.push(`  ${e.name}: ${tuple(e.inputs, 'out', structs)};`);
  lines.push('}');
  return lines.join('\n');
}

function renderStruct(name: string, fields: AbiParam[], structs: Structs): string {
  const out = fields.map((f) => `  readonly ${f.name}: ${tsType(f, 'out', structs)};`).join('\n');
  let text = `/** Solidity struct ${name}, as ethers decodes it (an array-like result with these named fields). */\nexport interface ${name} {\n${out}\n}`;
  if (structs.asInput.has(name)) {
    const inp = fields.map((f) => `  ${f.name}: ${tsType(f, 'in', structs)};`).join('\n');
    text += `\n/** Solidity struct ${name}, as an argument. */\nexport interface ${name}Input {\n${inp}\n}`;
  }
  return text;
}

/** Code-unit order: the output must not depend on the locale. */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function lcFirst(s: string): string {
  return s[0]!.toLowerCase() + s.slice(1);
}

/** The text of gateway/chain/artifacts.ts for a compile result. Deterministic. */
export function renderArtifacts(r: CompileResult): string {
  const structs: Structs = { fields: new Map(), asInput: new Set() };
  const types = r.contracts.map((c) => renderContractTypes(c, structs));
  const structTexts: string[] = [];
  for (const [name, fields] of [...structs.fields].sort(([a], [b]) => cmp(a, b))) structTexts.push(renderStruct(name, fields, structs));
  const consts = r.contracts.map((c) => {
    const abi = `[\n${c.abi.map((e) => `  ${JSON.stringify(e)},`).join('\n')}\n] as const`;
    return [
      `export const ${lcFirst(c.name)}Abi = ${abi};`,
      '',
      `/** ${c.name} (${c.sourceName}): creation bytecode, and the runtime code expected at a deployed address. */`,
      `export const ${lcFirst(c.name)}Artifact = {`,
      `  contractName: '${c.name}',`,
      `  sourceName: '${c.sourceName}',`,
      `  abi: ${lcFirst(c.name)}Abi,`,
      `  bytecode: '${c.bytecode}',`,
      `  deployedBytecode: '${c.deployedBytecode}',`,
      '} as const;',
    ].join('\n');
  });
  const body = [...structTexts, ...types].join('\n');
  const ethersTypes = [
    'AddressLike',
    'BaseContract',
    'BigNumberish',
    'BytesLike',
    'ConstantContractMethod',
    'ContractMethod',
    'ContractTransactionResponse',
    'Result',
  ];
  const used = ethersTypes.filter((t) => new RegExp(`\\b${t}\\b`).test(body));
  return [
    '// GENERATED by scripts/build-contracts.ts from contracts/**/*.sol: do not edit.',
    '// Regenerate: npm run build:contracts. test/gateway/chain/artifacts.test.ts checks it is current.',
    `import type { ${used.join(', ')} } from 'ethers';`,
    '',
    `export const SOLC_VERSION = '${r.solcVersion}';`,
    `export const EVM_VERSION = '${r.evmVersion}';`,
    `export const OPTIMIZER_RUNS = ${OPTIMIZER_RUNS};`,
    '/** SHA-256 of the sources (OpenZeppelin included), optimizer settings and EVM version compiled here. */',
    `export const INPUT_SHA256 = '${r.inputHash}';`,
    '',
    ...structTexts.flatMap((s) => [s, '']),
    ...types.flatMap((t) => [t, '']),
    ...consts.flatMap((t) => [t, '']),
  ].join('\n');
}

export function generatedPath(root = projectRoot()): string {
  return join(root, GENERATED);
}

function main(argv: string[]): number {
  const root = projectRoot();
  const r = compileContracts(root);
  for (const w of r.warnings) console.warn(w);
  const text = renderArtifacts(r);
  const path = generatedPath(root);
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '';
  if (argv.includes('--check')) {
    if (current !== text) {
      console.error(`${GENERATED} is out of date with contracts/: run \`npm run build:contracts\``);
      return 1;
    }
    console.log(`${GENERATED} is up to date (solc ${r.solcVersion}, evm ${r.evmVersion})`);
    return 0;
  }
  if (current === text) console.log(`${GENERATED} unchanged (solc ${r.solcVersion}, evm ${r.evmVersion})`);
  else {
    writeFileSync(path, text);
    console.log(
      `wrote ${GENERATED} (solc ${r.solcVersion}, evm ${r.evmVersion}): ${r.contracts.map((c) => `${c.name} ${(c.deployedBytecode.length - 2) / 2} bytes`).join(', ')}`,
    );
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 1;
  }
}
