/**
 * The researcher client's errors (codes per firmware-proto/coded-error.ts):
 *   - ApiError: the gateway refused a request (its { error, message } and status; the codes are
 *     the HTTP catalogue's, gateway/http/errors.ts), or answered what the client cannot take
 *     (API_CLIENT_ERRORS; nothing was signed or written for it);
 *   - NoSessionError: no session to speak for the account.
 */
import { CodedError, type Catalogue, type Remedies } from '../../firmware-proto/coded-error.js';
import type { HttpErrorCode } from '../http/errors.js';

/** Answers the client refuses to take, as ApiError codes besides the gateway's own. */
export const API_CLIENT_ERRORS = {
  NOT_JSON: 'the gateway answered with something that is not JSON',
  NOT_A_CHALLENGE: 'the answer to POST /auth/challenge is not a VitalProof login challenge: nothing was signed',
  WRONG_CHALLENGE: "the gateway's login challenge names another account or purpose: nothing was signed",
  NO_TOKEN: 'the answer to POST /auth/login has no session token',
  NOT_A_PAGE: 'a readings page without its frames',
} as const satisfies Catalogue;
export type ApiClientCode = keyof typeof API_CLIENT_ERRORS;

/**
 * The code of an ApiError: the gateway's (HttpErrorCode), the client's own, `HTTP_<status>`
 * for an error answer without a JSON body, or a code a newer gateway answers that this build
 * does not know (kept as it came).
 */
export type ApiErrorCode = HttpErrorCode | ApiClientCode | `HTTP_${number}` | (string & {});

/** A refusal of the API: `{ error: CODE, message }` with its HTTP status (docs/research-api.md). */
export class ApiError extends CodedError<ApiErrorCode> {
  constructor(
    readonly status: number,
    code: ApiErrorCode,
    message: string,
    readonly path: string,
  ) {
    // The gateway's message is the case's own words; the catalogues say what the code means.
    super({} as Catalogue<ApiErrorCode>, code, { status, path }, { message });
  }

  describe(): string {
    return `the gateway refused ${this.path.split('?')[0]}: HTTP ${this.status} ${this.code}${this.message ? `: ${this.message}` : ''}`;
  }
}

export const RESEARCH_CLIENT_ERRORS = {
  CLIENT_NO_SESSION: 'no session with this gateway is saved (or it has ended) and no key was given to log in: vitalproof research login --key-file F',
  CLIENT_SESSION_AMBIGUOUS: 'several accounts have sessions with this gateway: name the account with its key (--key-file)',
} as const satisfies Catalogue;
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
    const { url, sessionFile } = detail;
    super(
      RESEARCH_CLIENT_ERRORS,
      code,
      { ...detail },
      {
        message:
          code === 'CLIENT_SESSION_AMBIGUOUS'
            ? `several accounts have sessions with ${url} in ${sessionFile}: name one with --key-file`
            : `no session with ${url} in ${sessionFile} (or it has ended): vitalproof research login --key-file F --url ${url}`,
      },
    );
  }
}

/** What to do about each code (docs/errors.md). */
export const API_CLIENT_ERROR_REMEDIES: Remedies<ApiClientCode> = {
  NOT_JSON: "Check --url: it must be the gateway's API (a proxy or another server answered).",
  NOT_A_CHALLENGE: 'Check --url: the server is not a VitalProof gateway, or a newer one; nothing was signed.',
  WRONG_CHALLENGE: 'Do not log in to this server: its challenge is for another account or purpose (a server that wants your signature for something else).',
  NO_TOKEN: 'Check --url and the gateway version; log in again.',
  NOT_A_PAGE: 'Check --url and the gateway version.',
};

/** What to do about each code (docs/errors.md). */
export const RESEARCH_CLIENT_ERROR_REMEDIES: Remedies<ResearchClientErrorCode> = {
  CLIENT_NO_SESSION: 'Log in: `vitalproof research login --key-file F`.',
  CLIENT_SESSION_AMBIGUOUS: 'Name the account with its key (--key-file).',
};
