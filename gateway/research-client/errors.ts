/**
 * The researcher client's own failures (besides the gateway's refusals, ApiError): no session
 * to speak for the account. Codes per firmware-proto/coded-error.ts; a command line words them
 * for its user from the detail (gateway/cli/research.ts).
 */
import { CodedError } from '../../firmware-proto/coded-error.js';

export const RESEARCH_CLIENT_ERRORS = {
  CLIENT_NO_SESSION: 'no session with this gateway is saved (or it has ended) and no key was given to log in: vitalproof research login --key-file F',
  CLIENT_SESSION_AMBIGUOUS: 'several accounts have sessions with this gateway: name the account with its key (--key-file)',
} as const;
export type ResearchClientErrorCode = keyof typeof RESEARCH_CLIENT_ERRORS;

/** Where the session was looked for: the gateway's API URL and the session file. */
export interface SessionLookup {
  url: string;
  sessionFile: string;
}

/** No usable session, and no key to log in with (or several accounts, and no key to choose one). */
export class NoSessionError extends CodedError<ResearchClientErrorCode> {
  declare readonly detail: Readonly<SessionLookup>;
  constructor(code: ResearchClientErrorCode, detail: SessionLookup) {
    super(RESEARCH_CLIENT_ERRORS, code, { ...detail });
  }
}
