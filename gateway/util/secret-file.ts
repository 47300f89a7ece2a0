/**
 * Files a setting names: PEM material, and passwords kept in a file of their own (never on a
 * command line, where `ps` shows them, nor in the configuration file). One reader for the
 * uplink, the hub and `vitalproof broker`.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';

/** The bytes of the file `key` names. @throws ConfigError CONFIG_FILE_UNREADABLE naming the key and the path. */
export function settingFile(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(`${key} ${path}: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
  }
}

/** The first line of a password file; never logged. @throws ConfigError when unreadable or when the first line is empty. */
export function secretLine(path: string, key: string): string {
  const line = settingFile(path, key).toString('utf8').split(/\r?\n/, 1)[0] ?? '';
  if (!line) throw new ConfigError(`${key} ${path}: the first line (the password) is empty`, 'CONFIG_FILE_UNREADABLE');
  return line;
}
