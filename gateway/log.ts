/**
 * Structured logs (JSON lines, pino). Log lines carry device ids and patient pseudonyms at
 * most: never names, never readings.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, file?: string): Logger {
  const dest = file ? pino.destination({ dest: file, mkdir: true, sync: false }) : pino.destination(1);
  return pino({ level, base: { svc: 'vitalproof' }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}
