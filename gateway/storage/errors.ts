/**
 * The closed set of storage failures. Callers branch on `code`, never on the message;
 * docs/storage.md has the table with how to solve each one.
 */
import { CodedError, isError, type ErrorDetail, type Remedies } from '../../firmware-proto/coded-error.js';

export const STORAGE_ERRORS = {
  INFLUXD_NOT_FOUND:
    'the influxd binary (InfluxDB 1.x) is not on PATH; install it with `apt-get install influxdb`, or configure influx.url to use an existing server',
  INFLUXD_PORT_IN_USE: 'influxd could not bind its port: another process holds it',
  INFLUXD_START_FAILED: 'influxd exited before it answered /ping',
  INFLUXD_START_TIMEOUT: 'influxd did not answer /ping before the deadline',
  INFLUX_UNREACHABLE: 'no connection to InfluxDB (refused, reset or unresolvable)',
  INFLUX_TIMEOUT: 'InfluxDB did not answer within the request timeout',
  INFLUX_REJECTED: 'InfluxDB refused the request (4xx): bad data, type conflict, missing database or permission',
  INFLUX_SERVER_ERROR: 'InfluxDB failed to handle the request (5xx)',
  INFLUX_BAD_RESPONSE: 'InfluxDB answered something this client cannot read',
  QUARANTINE_FULL:
    'the storage quarantine holds storage.quarantineMaxBytes: frames InfluxDB refuses for good now wait in the spool; fix the database and run `vitalproof storage replay`',
  QUARANTINE_WRITE_FAILED:
    'a frame InfluxDB refused for good could not be written to the storage quarantine (disk full, permissions): it stays in the spool and is tried again',
} as const;

export type StorageErrorCode = keyof typeof STORAGE_ERRORS;

/** What to do about each code: docs/storage.md. */
export const STORAGE_ERROR_REMEDIES: Remedies<StorageErrorCode> = {
  INFLUXD_NOT_FOUND: '`apt-get install influxdb`, or set `influx.url`.',
  INFLUXD_PORT_IN_USE: 'A fixed `port` is taken: choose another or free it (free ports are re-picked automatically).',
  INFLUXD_START_FAILED: "Read `detail.output` (influxd's last log lines): permissions on the data dir, a corrupt WAL.",
  INFLUXD_START_TIMEOUT: 'A slow disk replaying a large WAL: raise `startTimeoutMs`.',
  INFLUX_UNREACHABLE: 'Is InfluxDB running, is `influx.url` right; the spool keeps the frames meanwhile.',
  INFLUX_TIMEOUT: 'An overloaded server; the write is retried (safely: writes are idempotent).',
  INFLUX_REJECTED:
    '`detail.error` says why: 401/403 credentials or grants (retried until fixed); 404 database missing (recreated on retry); 400 `field type conflict`: another writer made the measurement with other types, and the frames are quarantined (docs/storage.md, "Storage quarantine").',
  INFLUX_SERVER_ERROR: "InfluxDB's own log.",
  INFLUX_BAD_RESPONSE: 'A proxy in between answering for InfluxDB: point `influx.url` at InfluxDB itself.',
  QUARANTINE_FULL:
    'Fix the database and run `vitalproof storage replay`; meanwhile refused frames wait in the spool (the writer retries with backoff, the spool alarm follows).',
  QUARANTINE_WRITE_FAILED: "Free space or fix the directory's permissions; the frame stays in the spool and is tried again.",
};

/** A coded storage failure; `detail` carries what was expected and what was found. */
export class StorageError extends CodedError<StorageErrorCode> {
  constructor(code: StorageErrorCode, detail: ErrorDetail = {}, options?: ErrorOptions) {
    super(STORAGE_ERRORS, code, detail, options);
  }
}

/** isError(e, StorageError, code), kept for its many callers. */
export function isStorageError(e: unknown, code?: StorageErrorCode): e is StorageError {
  return isError(e, StorageError, code);
}

/**
 * HTTP statuses with which InfluxDB refuses the points themselves: the same bytes fail the
 * same way however often they are sent. 400 is a bad request: a field type conflict (some other
 * writer stored `value` of `heart_rate` as a string in that shard), a line that does not parse,
 * points beyond the retention policy, a series or tag-value limit; InfluxDB 1.x answers a
 * "partial write" with 400 after storing the other points of the request. 413: the request is
 * too large (a proxy's limit), which splitting it cures. 422: InfluxDB 2.x/3.x's 1.x-compatible
 * /write refusing points (unprocessable).
 *
 * Not permanent: 401/403 (credentials, a configuration fault that a retry after the fix cures;
 * every frame would fail alike), 404 (database missing: the sink creates it on retry),
 * 429 (rate limited), 5xx, timeouts and network errors.
 */
export const PERMANENT_WRITE_STATUSES: ReadonlySet<number> = new Set([400, 413, 422]);

/**
 * Whether `e` is InfluxDB refusing the points of a write for good (PERMANENT_WRITE_STATUSES),
 * as opposed to a transient failure that a retry with backoff cures.
 */
export function isPermanentRefusal(e: unknown): e is StorageError {
  return isStorageError(e, 'INFLUX_REJECTED') && PERMANENT_WRITE_STATUSES.has(e.detail['status'] as number);
}
