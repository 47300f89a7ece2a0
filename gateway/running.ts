/**
 * What a running gateway tells the command-line tools on the same data dir: the file
 * dataDir/gateway.json, written when the gateway is ready and removed when it stops. The
 * command-line tools read it here without loading the gateway itself.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './util/atomic-file.js';

/** What a running gateway tells the command-line tools on the same data dir (dataDir/gateway.json). */
export interface RunningGateway {
  pid: number;
  gatewayId: string;
  influxUrl: string;
  httpUrl: string;
  mqttPort: number;
  /** The MQTT over TLS listener's port, when it runs (mqtt.tls.cert). */
  mqttTlsPort?: number;
  chainUrl?: string;
  /** 'hub' for `vitalproof hub` (gateway/hub/); absent for a gateway. */
  role?: 'hub';
}

const RUNTIME_FILE = 'gateway.json';

/** The gateway running on this data dir, if any (its pid is alive). */
export function runningGateway(dataDir: string): RunningGateway | undefined {
  const p = join(dataDir, RUNTIME_FILE);
  if (!existsSync(p)) return undefined;
  try {
    const r = JSON.parse(readFileSync(p, 'utf8')) as RunningGateway;
    process.kill(r.pid, 0);
    return r;
  } catch {
    return undefined;
  }
}

export function writeRunningGateway(dataDir: string, r: RunningGateway): void {
  writeFileAtomic(join(dataDir, RUNTIME_FILE), `${JSON.stringify(r, null, 2)}\n`);
}

export function clearRunningGateway(dataDir: string): void {
  rmSync(join(dataDir, RUNTIME_FILE), { force: true });
}
