/**
 * Every error code the gateway's HTTP listener answers (docs/research-api.md, docs/operations.md
 * "HTTP limits"), with its status: one catalogue that every HTTP module answers from and the
 * clients read. A body is always { error: CODE, message }.
 *
 * Codes are declared once, where they belong: the listener's refusals (HTTP_REFUSALS) and the
 * routes' own codes (HTTP_ERRORS) here; logins and sessions in AUTH_ERRORS
 * (gateway/consent/auth.ts); consent verdicts in CONSENT_DECISIONS (gateway/consent/decisions.ts);
 * the proof API's in PROOF_ERRORS (gateway/proof/service.ts). HTTP_STATUS gives each its status.
 */
import { CodedError, type Catalogue, type Remedies } from '../../firmware-proto/coded-error.js';
import { AUTH_ERRORS, type AuthErrorCode } from '../consent/auth.js';
import { CONSENT_DECISIONS, type ConsentDecisionCode } from '../consent/decisions.js';
import { PROOF_ERRORS, type ProofErrorCode } from '../proof/service.js';

/**
 * The closed set of reasons the listener refuses a connection or a request before its route
 * (gateway/http/server.ts). The first two and HTTP_TLS_HANDSHAKE_FAILED close the
 * connection without an answer; the others are answered with their HTTP_STATUS.
 */
export const HTTP_REFUSALS = {
  HTTP_TOO_MANY_CONNECTIONS: 'http.maxConnections connections were open already: the connection was closed at once',
  HTTP_TOO_MANY_FROM_SOURCE: 'http.maxConnectionsPerSource connections from this address (IPv6: this /64) were open already',
  HTTP_HEADERS_TOO_LARGE: 'the request line and headers exceed http.maxHeaderBytes (431)',
  HTTP_BODY_TOO_LARGE: 'the request body exceeds http.maxBodyBytes (413)',
  HTTP_REQUEST_TIMEOUT: 'no complete headers within http.headersTimeoutMs, or no complete request within http.requestTimeoutMs (408)',
  HTTP_MALFORMED: 'bytes that are not HTTP/1.1, or a request target that is not a path (400)',
  HTTP_METHOD_NOT_ALLOWED: 'a CONNECT request: the gateway is no proxy (405)',
  HTTP_TLS_HANDSHAKE_FAILED: 'the TLS handshake failed or timed out: a plain-HTTP client on the HTTPS port, an untrusted or broken client',
  LOGIN_RATE_LIMITED: 'more POST /auth/login from this address than http.loginPerSourcePerS (burst http.loginPerSourceBurst) allow (429)',
} as const satisfies Catalogue;
export type HttpRefusal = keyof typeof HTTP_REFUSALS;
export const ALL_HTTP_REFUSALS = Object.keys(HTTP_REFUSALS) as HttpRefusal[];

/** docs/operations.md, "HTTP limits". */
export const HTTP_REFUSAL_REMEDIES: Remedies<HttpRefusal> = {
  HTTP_TOO_MANY_CONNECTIONS: 'Find who holds them; raise http.maxConnections only for many researchers',
  HTTP_TOO_MANY_FROM_SOURCE: 'One host opens many connections: block it, or raise http.maxConnectionsPerSource for a proxy in front of many clients',
  HTTP_HEADERS_TOO_LARGE: 'Not a VitalProof client; a proxy adding huge headers: raise http.maxHeaderBytes',
  HTTP_BODY_TOO_LARGE: "The API's bodies are under 2 KB: not a VitalProof client",
  HTTP_REQUEST_TIMEOUT: 'Scanners and idle sockets: nothing; a very slow link: raise the timeouts',
  HTTP_MALFORMED: 'Not an HTTP client, or a client that hung up mid-request (a body cut short before its content-length is counted here too)',
  HTTP_METHOD_NOT_ALLOWED: 'Not a client of this API',
  HTTP_TLS_HANDSHAKE_FAILED: 'Use https:// and give clients the CA (--ca FILE)',
  LOGIN_RATE_LIMITED: 'A login loop or a flood: it ends by itself (retry after Retry-After); a shared NAT of many researchers: raise http.loginPerSourceBurst',
};

/** The routes' own codes (gateway/research/http.ts, gateway/proof/http.ts, gateway/status/http.ts). */
export const HTTP_ERRORS = {
  BAD_REQUEST: 'a parameter, the body or the method is not what the route takes; the message says which (405 for a method the route does not take)',
  BAD_CURSOR: 'the cursor is not one this gateway gave out for this grant',
  NOT_PATIENT: "the session's address is not the address bound to the pseudonym",
  UNKNOWN_PATIENT: 'no patient address is bound to the pseudonym on ConsentRegistry',
  UNAVAILABLE: 'the gateway cannot answer this now: no ConsentRegistry (chain off, or a deployment that predates it), or storage or the access log failed',
  OPERATOR_ONLY: 'an operator route (/status, /metrics, the proof API) asked from beyond the gateway host (loopback)',
} as const satisfies Catalogue;
export type HttpRouteCode = keyof typeof HTTP_ERRORS;

/** docs/research-api.md, "Errors". */
export const HTTP_ERROR_REMEDIES: Remedies<HttpRouteCode> = {
  BAD_REQUEST: "Fix the request as the message says (docs/research-api.md lists each route's parameters)",
  BAD_CURSOR: 'Pass nextCursor of the previous page of the same grant unchanged, or start again without a cursor',
  NOT_PATIENT: 'Log in with the account bound to the pseudonym (`vitalproof consent bind`)',
  UNKNOWN_PATIENT: 'Check the pseudonym; bind the patient address to it first',
  UNAVAILABLE:
    'A gateway without a ConsentRegistry serves no consent routes: run it with a chain whose deployment has one; otherwise try again later (the log says what failed)',
  OPERATOR_ONLY: 'Ask on the gateway host (127.0.0.1 or ::1); researchers use /research/…, patients /patient/…',
};

/** Every code an HTTP answer can carry. */
export type HttpErrorCode =
  | Exclude<HttpRefusal, 'HTTP_TOO_MANY_CONNECTIONS' | 'HTTP_TOO_MANY_FROM_SOURCE' | 'HTTP_TLS_HANDSHAKE_FAILED'>
  | HttpRouteCode
  | AuthErrorCode
  | ConsentDecisionCode
  | ProofErrorCode;

/** The status each code is answered with. */
export const HTTP_STATUS: Readonly<Record<HttpErrorCode, number>> = {
  HTTP_HEADERS_TOO_LARGE: 431,
  HTTP_BODY_TOO_LARGE: 413,
  HTTP_REQUEST_TIMEOUT: 408,
  HTTP_MALFORMED: 400,
  HTTP_METHOD_NOT_ALLOWED: 405,
  LOGIN_RATE_LIMITED: 429,
  BAD_REQUEST: 400,
  BAD_CURSOR: 400,
  NOT_PATIENT: 403,
  UNKNOWN_PATIENT: 404,
  UNAVAILABLE: 503,
  OPERATOR_ONLY: 403,
  AUTH_MALFORMED: 401,
  AUTH_BAD_SIGNATURE: 401,
  AUTH_WRONG_ACCOUNT: 401,
  AUTH_WRONG_GATEWAY: 401,
  AUTH_WRONG_PURPOSE: 401,
  AUTH_UNKNOWN_CHALLENGE: 401,
  AUTH_EXPIRED: 401,
  AUTH_CLOCK_SKEW: 401,
  AUTH_REPLAYED: 401,
  AUTH_UNKNOWN_SESSION: 401,
  AUTH_SESSION_EXPIRED: 401,
  AUTH_BUSY: 429,
  UNKNOWN_GRANT: 404,
  NOT_GRANTEE: 403,
  REVOKED: 403,
  EXPIRED: 403,
  SENSOR_NOT_GRANTED: 403,
  OUTSIDE_DATA_WINDOW: 403,
  NO_GRANT: 403,
  FRAME_NOT_FOUND: 404,
  NOT_BATCHED: 409,
  OTHER_GATEWAY: 409,
  NOT_YET_ANCHORED: 409,
  FRAME_TAMPERED: 422,
  DEVICE_UNKNOWN: 409,
  CHAIN_OFF: 409,
};

/** What each answerable code means, from the catalogue that declares it. */
const HTTP_MEANINGS: Catalogue<HttpErrorCode> = { ...HTTP_REFUSALS, ...HTTP_ERRORS, ...AUTH_ERRORS, ...CONSENT_DECISIONS, ...PROOF_ERRORS };

/**
 * An HTTP error answer: a route throws it, the handler answers { error: code, message } with
 * `status`. The message is the answer's, written for the case; the status is the code's
 * (HTTP_STATUS) unless given (BAD_REQUEST for a wrong method is answered 405).
 */
export class HttpError extends CodedError<HttpErrorCode> {
  readonly status: number;
  constructor(code: HttpErrorCode, message: string, options?: { status?: number }) {
    super(HTTP_MEANINGS, code, {}, { message });
    this.status = options?.status ?? HTTP_STATUS[code];
  }
}

/** The body of an error answer. */
export function errorBody(code: HttpErrorCode, message: string): { error: HttpErrorCode; message: string } {
  return { error: code, message };
}

/** The message of a refusal answered with the catalogue's sentence: `CODE: meaning`. */
export function refusalMessage(code: HttpRefusal): string {
  return `${code}: ${HTTP_REFUSALS[code]}`;
}
