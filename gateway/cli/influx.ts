/**
 * The InfluxDB a command that reads stored frames talks to (audit, storage replay): influx.url,
 * else the running gateway's (dataDir/gateway.json), else the data dir's embedded influxd,
 * started for the command and stopped by `stop()`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type GatewayConfig } from '../config.js';
import { runningGateway } from '../running.js';
import { startInfluxd } from '../storage/influxd.js';

export interface CommandInflux {
  url: string;
  /** Stops the influxd started for the command, if one was; never throws. */
  stop(): Promise<void>;
}

/** @param what the command, for the error ("the audit", "the replay"). @throws ConfigError when there is no InfluxDB to use. */
export async function influxForCommand(cfg: GatewayConfig, what: string): Promise<CommandInflux> {
  const url = cfg.influx.url || runningGateway(cfg.dataDir)?.influxUrl || '';
  if (url) return { url, stop: () => Promise.resolve() };
  const dir = join(cfg.dataDir, 'influxdb');
  if (!existsSync(dir))
    throw new ConfigError(
      `no InfluxDB: set influx.url, run ${what} while the gateway runs on ${cfg.dataDir}, or point --dataDir at a data dir with an embedded influxd`,
    );
  const influxd = await startInfluxd({ dataDir: dir });
  return { url: influxd.url, stop: () => influxd.stop().catch(() => undefined) };
}
