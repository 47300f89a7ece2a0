/**
 * `npm run fuzz`: generated inputs against the frame decoder, the GATT reassembler, and a real
 * gateway process's HTTP API and MQTT listener (docs/fuzzing.md). Deterministic from the seed:
 * the same --seed and --inputs give the same inputs (but for what must be current: CONNECT
 * tokens, fresh frames' times). Prints inputs per target, inputs/s, the gateway's peak RSS and
 * the outcomes by code; exits 1 when any input got an outcome its target does not allow, the
 * gateway exited, an honest frame went missing, the counters do not account for the inputs, the
 * gateway logged at error level or flooded its log with warnings, or its memory grew beyond the
 * bound.
 *
 *   npm run fuzz -- [--inputs 1000000] [--seed 1] [--target all|frame,gatt,http,mqtt] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { positiveInt } from './lib/duration.js';
import { formatReport, mib } from './lib/fuzz-report.js';
import { budgets, LOG_FLOOD_PER_MINUTE, RSS_GROWTH_BOUND, runFuzz, TARGETS, type Target } from './lib/fuzz-run.js';

async function main(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      inputs: { type: 'string', default: '1000000' },
      seed: { type: 'string', default: '1' },
      target: { type: 'string', default: 'all' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(`usage: npm run fuzz -- [--inputs 1000000] [--seed 1] [--target all|${TARGETS.join(',')}] [--json FILE]`);
    return 0;
  }
  const inputs = positiveInt('inputs', v.inputs);
  const seed = Number(v.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new TypeError(`--seed must be an integer 0 … 2^32-1, got "${v.seed}"`);
  const targets = (v.target === 'all' ? [...TARGETS] : v.target.split(',').map((t) => t.trim())) as Target[];
  for (const t of targets) if (!TARGETS.includes(t)) throw new TypeError(`--target must be all or a list of ${TARGETS.join(', ')}; got "${t}"`);
  const b = budgets(inputs, targets);
  console.log(`fuzz: seed ${seed}, ${inputs.toLocaleString('en-US')} inputs: ${targets.map((t) => `${t} ${b[t].toLocaleString('en-US')}`).join(', ')}`);
  const t0 = Date.now();
  const r = await runFuzz({ inputs, seed, targets, log: (l) => console.log(`  [${((Date.now() - t0) / 1000).toFixed(0)} s] ${l}`) });
  console.log('');
  for (const rep of r.reports) console.log(formatReport(rep));
  if (r.gateway) {
    const g = r.gateway;
    console.log(
      `gateway pid ${g.pid}: started in ${(g.startMs / 1000).toFixed(1)} s; RSS baseline ${mib(g.rss.baselineBytes)}, peak ${mib(g.rss.peakBytes)} (bound: baseline + ${mib(RSS_GROWTH_BOUND)}), after ${mib(g.rss.afterBytes)}, VmHWM ${mib(g.rss.hwmBytes)}; ${g.exited ? 'EXITED' : 'still running at the end'}`,
    );
    console.log(
      `  honest frames: ${g.honest.sent} published, missing from storage ${g.honest.missing.length}, stored twice ${g.honest.duplicated.length}; log lines ${g.logLines}; error lines ${g.errorLines}${g.errorLines > g.errors.length ? ` (the first ${g.errors.length}:)` : ''}`,
    );
    for (const e of g.errors) console.log(`  error line: ${e}`);
    for (const f of g.logFloods) console.log(`  log flood: ${f.event}, ${f.maxPerMinute} warning lines in one minute (at most ${LOG_FLOOD_PER_MINUTE})`);
  }
  const s = r.elapsedMs / 1000;
  console.log(
    `total: ${r.inputs.toLocaleString('en-US')} inputs in ${s.toFixed(1)} s (${Math.round(r.inputs / s).toLocaleString('en-US')} inputs/s); unexpected: ${r.unexpected}`,
  );
  if (v.json) writeFileSync(v.json, `${JSON.stringify(r, null, 2)}\n`);
  return r.unexpected === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`fuzz: ${e.stack ?? e.message}`);
    process.exit(2);
  },
);
