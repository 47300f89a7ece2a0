/**
 * The command line's one argument parser, and the readers of argument values every command
 * shares (times, metrics, addresses, pseudonyms).
 *
 * Each command declares its flags: those that take a value (`--name VALUE`, `--name=VALUE`; a
 * value may start with one dash, as `--from -15m` does, never with two) and the switches that
 * take none (`--name`). Undeclared `--key` flags are configuration keys (docs/operations.md:
 * `--mqtt.port 1884`, `--dataDir D`) and are read as they always were: with the next argument
 * as value unless it starts with `--`. A command that takes no configuration rejects them, or
 * admits only the ones its `others` predicate names.
 */
import { getAddress, isAddress } from 'ethers';
import { sensorByName } from '../../firmware-proto/catalogue.js';
import { ConfigError } from '../config.js';
import { PSEUDONYM } from '../registry/registry.js';
import { UsageError } from './errors.js';

export interface FlagSpec {
  /** Flags that take a value. */
  values?: readonly string[];
  /** Flags that take none (`help` is always one). */
  switches?: readonly string[];
  /** Other spellings of a flag: `{ '-h': 'help' }`. */
  aliases?: Readonly<Record<string, string>>;
  /**
   * Undeclared `--flags` and `-x`: 'config' (default) takes `--key` as a configuration key and
   * `-x` as a positional; 'reject' refuses both; a predicate admits the configuration keys it
   * names and refuses the rest.
   */
  others?: 'config' | 'reject' | ((name: string) => boolean);
  /** The command's usage, printed after a usage error. */
  usage?: string;
}

export interface ParsedArgs {
  positionals: string[];
  /** Flags by name; a switch given is 'true'. */
  flags: Record<string, string>;
  /** Where each positional stood in argv. */
  positionalIndexes: number[];
}

/**
 * Splits argv into positionals and flags as `spec` declares them.
 * @throws UsageError for an unknown option, a value flag without its value, a switch given one.
 * @example parseArgs(['export', '7', '--out', 'x.json', '--proofs'], { values: ['out'], switches: ['proofs'] })
 *   // { positionals: ['export', '7'], flags: { out: 'x.json', proofs: 'true' }, ... }
 */
export function parseArgs(argv: readonly string[], spec: FlagSpec = {}): ParsedArgs {
  const values = new Set(spec.values ?? []);
  const switches = new Set(['help', ...(spec.switches ?? [])]);
  const others = spec.others ?? 'config';
  const out: ParsedArgs = { positionals: [], flags: {}, positionalIndexes: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const alias = spec.aliases?.[arg];
    const isFlag = alias !== undefined || (arg.startsWith('--') && arg.length > 2) || (others === 'reject' && arg.startsWith('-') && arg !== '-');
    if (!isFlag) {
      out.positionals.push(arg);
      out.positionalIndexes.push(i);
      continue;
    }
    const eq = arg.indexOf('=');
    const given = eq > 0 ? arg.slice(0, eq) : arg;
    const name = alias ?? (given.startsWith('--') ? given.slice(2) : given);
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const next = argv[i + 1];
    if (switches.has(name)) {
      if (inline !== undefined) throw new UsageError('CLI_OPTION_TAKES_NO_VALUE', { option: given }, spec.usage);
      out.flags[name] = 'true';
    } else if (values.has(name)) {
      if (inline !== undefined) out.flags[name] = inline;
      else if (next === undefined || next.startsWith('--')) throw new UsageError('CLI_OPTION_NEEDS_VALUE', { option: given }, spec.usage);
      else {
        out.flags[name] = next;
        i++;
      }
    } else if (others === 'reject' || (typeof others === 'function' && !others(name)) || !given.startsWith('--')) {
      throw new UsageError('CLI_UNKNOWN_OPTION', { option: typeof others === 'function' ? `--${name}` : arg }, spec.usage);
    } else if (inline !== undefined) out.flags[name] = inline;
    else if (next === undefined || next.startsWith('--')) out.flags[name] = 'true';
    else {
      out.flags[name] = next;
      i++;
    }
  }
  return out;
}

/** `argv` without the argument at `index` (a command's own arguments, the command word taken out). */
export function without(argv: readonly string[], index: number): string[] {
  return [...argv.slice(0, index), ...argv.slice(index + 1)];
}

/** The configuration keys a chain command admits besides its own flags: --config, --dataDir, --gatewayId and any dotted key. */
export function chainConfigKey(name: string): boolean {
  return name.includes('.') || ['config', 'dataDir', 'gatewayId'].includes(name);
}

// ---- values --------------------------------------------------------------------------------

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A time on the command line: Unix ms (digits), ISO 8601 (a date, or a date and time; without a
 * zone it is UTC), `now`, or `now` plus or minus a duration (`now-1h`, `now+30d`; `+7d` and
 * `-15m` are short for them); `now` is taken to the whole second (to the ms with an offset in ms).
 * @throws ConfigError naming `name` when `v` is none of these.
 * @example parseTimeArg('--expires', 'now+30d', Date.now())
 */
export function parseTimeArg(name: string, v: string, nowMs: number): number {
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s);
  const rel = /^(?:now)?(?:([+-])(\d+(?:\.\d+)?)(ms|s|m|h|d|w))?$/.exec(s);
  if (rel && (s === 'now' || rel[1])) {
    // Relative to now in whole seconds (unless the offset is in ms): readable, and the same for every option of one command.
    const base = rel[3] === 'ms' ? nowMs : Math.floor(nowMs / 1000) * 1000;
    return rel[1] ? Math.round(base + (rel[1] === '-' ? -1 : 1) * Number(rel[2]) * UNIT_MS[rel[3]!]!) : base;
  }
  if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(s)) {
    const t = Date.parse(/[T ]\d{2}:\d{2}/.test(s) && !/(Z|[+-]\d{2}:?\d{2})$/.test(s) ? `${s.replace(' ', 'T')}Z` : s.replace(' ', 'T'));
    if (Number.isFinite(t) && t >= 0) return t;
  }
  throw new ConfigError(`${name} "${v}" is not a time: Unix ms, ISO 8601 (2026-05-04T10:00:00Z), now, or now±N(ms|s|m|h|d|w) like now-1h`);
}

/** "heart_rate,spo2" → their catalogue entries, in the order given, without repeats. @throws ConfigError for an unknown name. */
export function parseMetrics(v: string): { name: string; code: number }[] {
  const names = [
    ...new Set(
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
  if (names.length === 0) throw new ConfigError('--metrics needs at least one sensor name (e.g. heart_rate,spo2)');
  return names.map((n) => {
    try {
      const s = sensorByName(n);
      return { name: s.name, code: s.code };
    } catch (e) {
      throw new ConfigError(`--metrics: ${(e as Error).message}`);
    }
  });
}

/** A positive integer option. @throws ConfigError */
export function positive(name: string, v: string): number {
  if (!/^[1-9]\d*$/.test(v)) throw new ConfigError(`${name} must be a positive integer, got "${v}"`);
  return Number(v);
}

/** @throws ConfigError unless `p` is a pseudonym (gateway/registry/registry.ts PSEUDONYM). */
export function checkPseudonym(p: string): void {
  if (!PSEUDONYM.test(p)) throw new ConfigError(`"${p}" is not a pseudonym: 3-64 characters [A-Za-z0-9._-]`);
}

/** An Ethereum address argument, EIP-55. @throws ConfigError naming `name`. */
export function addressArg(name: string, v: string): string {
  if (!isAddress(v)) throw new ConfigError(`${name} must be an Ethereum address (0x and 40 hex digits), got "${v}"`);
  return getAddress(v);
}
