/**
 * The command line's one argument parser (gateway/cli/args.ts): declared value flags and
 * switches, configuration keys read as they always were, refusals as coded usage errors that
 * print the command's usage; and the overview made from the table of commands.
 */
import { describe, expect, it } from 'vitest';
import { isError } from '../../../firmware-proto/coded-error.js';
import { chainConfigKey, parseArgs, without } from '../../../gateway/cli/args.js';
import { COMMANDS, findCommand, overview } from '../../../gateway/cli/commands.js';
import { UsageError, usageErrorLines } from '../../../gateway/cli/errors.js';
import { ConfigError } from '../../../gateway/config.js';

const spec = { values: ['out', 'from', 'rpc'], switches: ['proofs', 'json'] };

/** The UsageError parseArgs throws for `argv`, or fails. */
function refusal(argv: string[], s: Parameters<typeof parseArgs>[1]): UsageError {
  try {
    parseArgs(argv, s);
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new Error(`parseArgs accepted ${argv.join(' ')}`);
}

describe('parseArgs', () => {
  it("takes the next argument as a value flag's value, and --name=value", () => {
    expect(parseArgs(['export', '7', '--out', 'x.json', '--from=now-1h'], spec)).toEqual({
      positionals: ['export', '7'],
      flags: { out: 'x.json', from: 'now-1h' },
      positionalIndexes: [0, 1],
    });
  });

  it('takes a value that starts with one dash, never one that starts with two', () => {
    expect(parseArgs(['--from', '-15m', '--out', '-'], spec).flags).toEqual({ from: '-15m', out: '-' });
    const e = refusal(['--rpc', '--offline'], spec);
    expect(e.code).toBe('CLI_OPTION_NEEDS_VALUE');
    expect(e.message).toBe('--rpc needs a value');
    expect(refusal(['f.json', '--out'], spec).message).toBe('--out needs a value');
  });

  it('never lets a switch swallow the next argument, and refuses a switch given a value', () => {
    expect(parseArgs(['export', '--proofs', '7', '--json'], spec)).toMatchObject({ positionals: ['export', '7'], flags: { proofs: 'true', json: 'true' } });
    const e = refusal(['--proofs=yes'], spec);
    expect(e.code).toBe('CLI_OPTION_TAKES_NO_VALUE');
    expect(e.message).toBe('--proofs takes no value');
    expect(parseArgs(['--help'], {}).flags).toEqual({ help: 'true' });
  });

  it('reads undeclared --keys as configuration keys, as the gateway always has', () => {
    expect(parseArgs(['run', '--mqtt.port', '1884', '--dataDir=/d', '--verbose', '--log.level', 'debug'], spec)).toEqual({
      positionals: ['run'],
      flags: { 'mqtt.port': '1884', dataDir: '/d', verbose: 'true', 'log.level': 'debug' },
      positionalIndexes: [0],
    });
    expect(parseArgs(['-x', '-'], spec).positionals).toEqual(['-x', '-']);
  });

  it('refuses what a strict command does not know, naming the option as given', () => {
    const strict = { ...spec, aliases: { '-h': 'help' }, others: 'reject' as const, usage: 'usage: x' };
    expect(parseArgs(['-h', '-'], strict)).toMatchObject({ positionals: ['-'], flags: { help: 'true' } });
    for (const [argv, option] of [
      [['--frobnicate'], '--frobnicate'],
      [['--frob=1'], '--frob=1'],
      [['-x'], '-x'],
      [['--dataDir', 'd'], '--dataDir'],
    ] as const) {
      const e = refusal([...argv], strict);
      expect(isError(e, UsageError, 'CLI_UNKNOWN_OPTION')).toBe(true);
      expect(e.message).toBe(`unknown option ${option}`);
      expect(e.usage).toBe('usage: x');
    }
  });

  it('admits only the configuration keys a predicate names', () => {
    const chainSpec = { ...spec, others: chainConfigKey, usage: 'usage: consent' };
    expect(parseArgs(['list', '--dataDir', 'd', '--chain.mode', 'external', '--config', 'c.json'], chainSpec).flags).toEqual({
      dataDir: 'd',
      'chain.mode': 'external',
      config: 'c.json',
    });
    const e = refusal(['list', '--colour=red'], chainSpec);
    expect(e.message).toBe('unknown option --colour');
    expect(usageErrorLines(e)).toEqual(['error: unknown option --colour', 'usage: consent']);
  });

  it('takes the command word out of argv wherever it stands', () => {
    const argv = ['--dataDir', 'd', 'devices', '--json'];
    const { positionals, positionalIndexes } = parseArgs(argv);
    expect(positionals[0]).toBe('devices');
    expect(without(argv, positionalIndexes[0]!)).toEqual(['--dataDir', 'd', '--json']);
  });
});

describe('usage errors', () => {
  it('are coded, and print as the commands always printed them', () => {
    expect(usageErrorLines(new UsageError('CLI_BAD_USAGE', { problem: 'enrol needs an enrolment file' }))).toEqual(['error: enrol needs an enrolment file']);
    expect(usageErrorLines(new ConfigError('config key "mqtt.port" must be a number'))).toEqual(['error: config key "mqtt.port" must be a number']);
    expect(usageErrorLines(new Error('boom'))).toBeUndefined();
    const e = new UsageError('CLI_OPTION_NEEDS_VALUE', { option: '--rpc' }, 'usage: verify');
    expect(isError(e, 'CLI_OPTION_NEEDS_VALUE')).toBe(true);
    expect(e.detail).toEqual({ option: '--rpc' });
    expect(usageErrorLines(e)).toEqual(['error: --rpc needs a value', 'usage: verify']);
  });
});

describe('the table of commands', () => {
  it('makes the overview, one line per command in the order of the table', () => {
    const lines = overview().split('\n');
    expect(lines[0]).toBe(`usage: vitalproof <${COMMANDS.map((c) => c.name).join('|')}> [options]`);
    expect(lines[1]).toBe('  run                 run the gateway (embedded MQTT broker, spool, InfluxDB writer, Merkle batches, anchoring, status endpoint)');
    expect(lines[3]).toBe('  revoke DEVICE_ID    revoke a device; --at ISO_TIME (default now)');
    expect(lines).toHaveLength(COMMANDS.length + 2);
    expect(lines.at(-1)).toMatch(/^options: --config FILE, and any config key as --key value/);
    expect(new Set(COMMANDS.map((c) => c.name)).size).toBe(COMMANDS.length);
    expect(findCommand('research')?.ownHelp).toBe(true);
    expect(findCommand('audit')?.ownHelp).toBeUndefined();
    expect(findCommand('frob')).toBeUndefined();
  });
});
