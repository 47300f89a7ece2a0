/**
 * The researcher's saved sessions: ~/.vitalproof/sessions.json (docs/research-api.md, "Command
 * line"), one entry per gateway URL and account, with the gateway's id.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { getAddress } from 'ethers';
import { ConfigError } from '../config.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { normaliseUrl } from './api.js';

export interface SavedSession {
  /** The gateway's HTTP API, normalised (no trailing slash). */
  url: string;
  /** The account, EIP-55. */
  address: string;
  /** The gateway's id, from the challenge it issued (MQTT logins name it). */
  gatewayId: string;
  token: string;
  expiresAtMs: number;
  savedAtMs: number;
}

export const SESSIONS_FORMAT = 'vitalproof.sessions';

/** ~/.vitalproof/sessions.json. */
export function defaultSessionFile(): string {
  return join(homedir(), '.vitalproof', 'sessions.json');
}

/**
 * The saved sessions: one JSON file, mode 0600 in a directory created with mode 0700, written
 * atomically (a temporary file of this process's own, renamed: two commands may write at once);
 * ended sessions are dropped at each write. A bearer token is a password for an hour: keep the
 * file to yourself.
 */
export class SessionStore {
  constructor(readonly path: string) {}

  all(): SavedSession[] {
    if (!existsSync(this.path)) return [];
    let doc: { format?: unknown; sessions?: unknown };
    try {
      doc = JSON.parse(readFileSync(this.path, 'utf8')) as typeof doc;
    } catch (e) {
      throw new ConfigError(`session file ${this.path} is not readable JSON (${(e as Error).message}): delete it and log in again`);
    }
    if (doc.format !== SESSIONS_FORMAT || !Array.isArray(doc.sessions)) throw new ConfigError(`${this.path} is not a VitalProof session file`);
    return (doc.sessions as SavedSession[]).filter(
      (s) => typeof s?.url === 'string' && typeof s.address === 'string' && typeof s.token === 'string' && typeof s.expiresAtMs === 'number',
    );
  }

  /** The session of `address` with `url`, or the only one with `url` when no address is given ('ambiguous' when several). */
  find(url: string, address?: string): SavedSession | 'ambiguous' | undefined {
    const u = normaliseUrl(url);
    const mine = this.all().filter((s) => s.url === u && (address === undefined || s.address === getAddress(address)));
    if (address === undefined) {
      const live = mine.filter((s) => s.expiresAtMs > Date.now());
      if (live.length > 1) return 'ambiguous';
      return live[0] ?? mine[0];
    }
    return mine[0];
  }

  save(s: SavedSession): void {
    this.write([...this.all().filter((x) => !(x.url === s.url && x.address === s.address)), s]);
  }

  remove(url: string, address: string): void {
    const u = normaliseUrl(url);
    const rest = this.all().filter((x) => !(x.url === u && x.address === address));
    this.write(rest);
  }

  private write(all: SavedSession[]): void {
    const now = Date.now();
    const sessions = all.filter((x) => x.expiresAtMs > now);
    const dir = dirname(this.path);
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(this.path, `${JSON.stringify({ format: SESSIONS_FORMAT, version: 1, sessions }, null, 2)}\n`, { mode: 0o600, uniqueTemp: true });
  }
}
