/** Splits argv into positionals and --key value / --key=value flags. */
export function parseArgv(argv: string[]): { positionals: string[]; flags: Record<string, string> } {
  const positionals: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) flags[a.slice(2, eq)] = a.slice(eq + 1);
      else {
        const next = argv[i + 1];
        if (next === undefined || next.startsWith('--')) flags[a.slice(2)] = 'true';
        else {
          flags[a.slice(2)] = next;
          i++;
        }
      }
    } else positionals.push(a);
  }
  return { positionals, flags };
}
