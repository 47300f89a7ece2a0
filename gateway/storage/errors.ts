/**
 * The closed set of storage failures. Callers branch on `code`, never on the message;
 * docs/storage.md has the table with how to solve each one.
 */
export const STORAGE_ERRORS = {
  INFLUXD_NOT_FOUND: 'the influxd binary (InfluxDB 1.x) is not on PATH; install it with `apt-get install influxdb`, or configure influx.url to use an existing server',
  INFLUXD_PORT_IN_USE: 'influxd could not bind its port: another process holds it',
  INFLUXD_START_FAILED: 'influxd exited before it answered /ping',
  INFLUXD_START_TIMEOUT: 'influxd did not answer /ping before the deadline',
  INFLUX_UNREACHABLE: 'no connection to InfluxDB (refused, reset or unresolvable)',
  INFLUX_TIMEOUT: 'InfluxDB did not answer within the request timeout',
  INFLUX_REJECTED: 'InfluxDB refused the request (4xx): bad data, type conflict, missing database or permission',
  INFLUX_SERVER_ERROR: 'InfluxDB failed to handle the request (5xx)',
  INFLUX_BAD_RESPONSE: 'InfluxDB answered something this client cannot read',
} as const;

export type StorageErrorCode = keyof typeof STORAGE_ERRORS;

/** A coded storage failure; `detail` carries what was expected and what was found. */
export class StorageError extends Error {
  readonly code: StorageErrorCode;
  readonly detail: Readonly<Record<string, unknown>>;
  constructor(code: StorageErrorCode, detail: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    const extra = Object.keys(detail).length ? ` ${JSON.stringify(detail, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}` : '';
    super(`${code}: ${STORAGE_ERRORS[code]}${extra}`, options);
    this.name = 'StorageError';
    this.code = code;
    this.detail = detail;
  }
}

export function isStorageError(e: unknown, code?: StorageErrorCode): e is StorageError {
  return e instanceof StorageError && (code === undefined || e.code === code);
}
