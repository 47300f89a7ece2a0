/** `vitalproof status`: a running gateway's status (GET /status), as text. */
import { configFromFlags } from '../config.js';
import { formatStatus } from '../status/format.js';
import type { StatusSnapshot } from '../status/http.js';
import { trustCaFile } from '../util/tls-trust.js';
import { parseArgs } from './args.js';

/** Runs `vitalproof status [--url URL] [--ca FILE]` with `argv` (the arguments after "status"). */
export async function statusCommand(argv: string[]): Promise<number> {
  const { flags } = parseArgs(argv, { values: ['url', 'ca'] });
  const cfg = configFromFlags(flags, ['url', 'ca']);
  if (flags['ca'] !== undefined) trustCaFile(flags['ca']);
  const url = flags['url'] ?? `${cfg.http.tls.cert ? 'https' : 'http'}://${cfg.http.host}:${cfg.http.port}`;
  const res = await fetch(`${url}/status`);
  console.log(formatStatus((await res.json()) as StatusSnapshot));
  return 0;
}
