/**
 * The project's one base for coded errors. It lives in the lowest layer (firmware-proto,
 * which imports nothing of the gateway) so that the protocol decoders, the device simulator
 * and every gateway component share it.
 *
 * A component declares its codes once, as a catalogue (code -> what it means) with its
 * remedies beside it (code -> what to do), and derives its error class from CodedError:
 *
 *   export const STORAGE_ERRORS = { INFLUX_TIMEOUT: 'InfluxDB did not answer ...' } as const;
 *   export type StorageErrorCode = keyof typeof STORAGE_ERRORS;
 *   export const STORAGE_ERROR_REMEDIES: Remedies<StorageErrorCode> = { INFLUX_TIMEOUT: 'An overloaded server; ...' };
 *   export class StorageError extends CodedError<StorageErrorCode> {
 *     constructor(code: StorageErrorCode, detail?: ErrorDetail, options?: ErrorOptions) {
 *       super(STORAGE_ERRORS, code, detail, options);
 *     }
 *   }
 *
 * Callers branch on `code` (isError(e, 'INFLUX_TIMEOUT')), never on the message. `detail`
 * carries what was expected and what was found; the message is `CODE: meaning {detail}`.
 * Codes are unique across every catalogue of the project, so a code alone names one failure.
 * docs/errors.md is generated from the catalogues and their remedies (scripts/lib/errors-doc.ts
 * lists them; `npm run docs:errors`); its test fails on a stale page, an unlisted catalogue or
 * a code that two catalogues share.
 */

/** What was expected and what was found, and any other facts of one failure (JSON-able; bigints print as decimal strings). */
export type ErrorDetail = Record<string, unknown>;

/** A catalogue of codes: each code with one sentence on what it means. */
export type Catalogue<C extends string = string> = Readonly<Record<C, string>>;

/**
 * What to do about each code of a catalogue, declared next to it (docs/errors.md is made from
 * both): the remedy a reader of the message, the log or /status needs.
 */
export type Remedies<C extends string = string> = Readonly<Record<C, string>>;

export interface CodedErrorOptions extends ErrorOptions {
  /**
   * The whole message, where one written for the case says more than the catalogue's sentence
   * with a detail (ConfigError names the key and the value; HttpError is the answer's message).
   */
  message?: string;
}

export class CodedError<C extends string = string> extends Error {
  readonly code: C;
  readonly detail: Readonly<ErrorDetail>;
  constructor(catalogue: Catalogue<C>, code: C, detail: ErrorDetail = {}, options?: CodedErrorOptions) {
    super(options?.message ?? `${code}: ${catalogue[code]}${Object.keys(detail).length ? ` ${detailJson(detail)}` : ''}`, options);
    this.name = new.target.name;
    this.code = code;
    this.detail = detail;
  }
}

/**
 * Whether `e` is a coded error, of `code` when given. With a class, whether it is an error of
 * that component (and of `code`).
 */
export function isError<C extends string>(e: unknown, code?: C): e is CodedError<C>;
export function isError<E extends CodedError>(e: unknown, cls: abstract new (...args: never[]) => E, code?: E['code']): e is E;
export function isError(e: unknown, a?: string | (abstract new (...args: never[]) => CodedError), b?: string): boolean {
  if (!(e instanceof CodedError)) return false;
  if (typeof a === 'function') return e instanceof a && (b === undefined || e.code === b);
  return a === undefined || e.code === a;
}

/** JSON of an error detail; bigints as decimal strings. */
export function detailJson(detail: ErrorDetail): string {
  return JSON.stringify(detail, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}
