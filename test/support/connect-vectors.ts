/** The CONNECT conformance vectors (firmware-proto/vectors/connect/), read once for every suite that checks them. */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ConnectReason } from '../../firmware-proto/reasons.js';

export interface ConnectVector {
  desc: string;
  gateway: {
    nowMs: string;
    startedAtMs: string;
    windowMs: number;
    devices: { deviceId: string; publicKey: string; revokedAtMs: string | null }[];
    usedNonces: string[];
  };
  connect: { clientId: string; username: string; password: string };
  token?: { secretKey: string; deviceId: string; clientId: string; timestampMs: string; nonce: string };
  wantReason: ConnectReason | null;
  connackReturnCode: 0 | 4 | 5;
}

const DIR = fileURLToPath(new URL('../../firmware-proto/vectors/connect/', import.meta.url));

/** [name, vector] pairs, sorted by file name. */
export const connectVectors: readonly [string, ConnectVector][] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(DIR + f, 'utf8')) as ConnectVector]);
