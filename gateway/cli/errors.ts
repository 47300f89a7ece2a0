/**
 * The command line's own failures: a command line that is not valid (an unknown option, an
 * option without its value, a missing argument). Codes per firmware-proto/coded-error.ts; the
 * message is the line the user reads (`error: <message>`, then the command's usage), exit code 2.
 */
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';
import { ConfigError } from '../config.js';

export const CLI_ERRORS = {
  CLI_UNKNOWN_OPTION: 'the command has no such option: see its usage (--help)',
  CLI_OPTION_NEEDS_VALUE: 'the option takes a value and none was given',
  CLI_OPTION_TAKES_NO_VALUE: 'the option is a switch and takes no value',
  CLI_BAD_USAGE: 'the command line is not valid: see the usage',
} as const;
export type CliErrorCode = keyof typeof CLI_ERRORS;

export interface UsageDetail {
  /** The option at fault, as given (`--rpc`). */
  option?: string;
  /** What is wrong, in words (CLI_BAD_USAGE). */
  problem?: string;
}

/** A command line that is not valid: exit code 2 with `error: <message>` and the command's usage. */
export class UsageError extends CodedError<CliErrorCode> {
  declare readonly detail: Readonly<UsageDetail>;
  constructor(
    code: CliErrorCode,
    detail: UsageDetail,
    /** The usage printed after the error line, when the command prints one. */
    readonly usage?: string,
  ) {
    // The message is the line the user reads after `error: ` (as the commands always printed it).
    super(CLI_ERRORS, code, { ...detail }, { message: usageText(code, detail) });
  }
}

function usageText(code: CliErrorCode, { option, problem }: UsageDetail): string {
  switch (code) {
    case 'CLI_UNKNOWN_OPTION':
      return `unknown option ${option}`;
    case 'CLI_OPTION_NEEDS_VALUE':
      return `${option} needs a value`;
    case 'CLI_OPTION_TAKES_NO_VALUE':
      return `${option} takes no value`;
    default:
      return problem ?? CLI_ERRORS[code];
  }
}

/** A usage error in words, with the usage to print after it. */
export function badUsage(problem: string, usage?: string): UsageError {
  return new UsageError('CLI_BAD_USAGE', { problem }, usage);
}

/** The lines a usage or configuration error prints (`error: …`, then the usage); undefined for any other error. */
export function usageErrorLines(e: unknown): string[] | undefined {
  if (e instanceof UsageError) return [`error: ${e.message}`, ...(e.usage !== undefined ? [e.usage] : [])];
  if (e instanceof ConfigError) return [`error: ${e.message}`];
  return undefined;
}

/** What to do about each code (docs/errors.md). */
export const CLI_ERROR_REMEDIES: Remedies<CliErrorCode> = {
  CLI_UNKNOWN_OPTION: "Check the spelling against the command's usage (--help).",
  CLI_OPTION_NEEDS_VALUE: 'Give the option its value: `--option VALUE`.',
  CLI_OPTION_TAKES_NO_VALUE: 'Give the switch alone, without a value.',
  CLI_BAD_USAGE: 'Follow the usage printed under the error.',
};
