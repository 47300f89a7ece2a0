/**
 * `--ca FILE` for the command lines that talk to the gateway's HTTPS API (research, consent,
 * status): FILE's certificates are trusted for this process's fetch() calls, besides the
 * system's roots and NODE_EXTRA_CA_CERTS (which Node itself reads at start; naming a CA in that
 * variable works without --ca too).
 *
 * Node 20's fetch (undici inside Node) takes a custom CA only through an undici dispatcher, and
 * the one it uses by default is the process-wide global dispatcher: the command sets it once,
 * as NODE_EXTRA_CA_CERTS would have. Trust only ever grows (several --ca in one process, as in
 * tests that run the commands in-process, add up); nothing is ever un-trusted.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, setGlobalDispatcher } from 'undici';
import { ConfigError } from '../config.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const added: string[] = [];

/** The PEM certificates of a file. @throws ConfigError when it cannot be read or holds none. */
export function readCaFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`--ca ${path}: cannot read it: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
  }
  const pems = text.match(PEM_CERT) ?? [];
  if (pems.length === 0) throw new ConfigError(`--ca ${path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`, 'CONFIG_FILE_UNREADABLE');
  for (const p of pems) {
    try {
      new X509Certificate(p);
    } catch (e) {
      throw new ConfigError(`--ca ${path}: a certificate in it does not parse: ${(e as Error).message}`, 'CONFIG_FILE_UNREADABLE');
    }
  }
  return pems;
}

/**
 * Trusts the CA certificates of `path` for this process's HTTPS requests through fetch().
 * @throws ConfigError when the file cannot be read or holds no certificate.
 * @example
 *   if (flags['ca']) trustCaFile(flags['ca']);
 *   await fetch('https://127.0.0.1:8443/status');
 */
export function trustCaFile(path: string): void {
  for (const p of readCaFile(path)) if (!added.includes(p)) added.push(p);
  setGlobalDispatcher(new Agent({ connect: { ca: trustedCas() } }));
}

/**
 * What this process trusts once trustCaFile ran: the system's roots, NODE_EXTRA_CA_CERTS and
 * every --ca, for a TLS client other than fetch (mqtts: a `ca` option replaces Node's default
 * list, so it must carry all three). Undefined when no --ca was given: Node's defaults are the
 * same list then, and leaving `ca` out keeps them.
 */
export function trustedCas(): string[] | undefined {
  if (added.length === 0) return undefined;
  const fromEnv = process.env.NODE_EXTRA_CA_CERTS ? safeRead(process.env.NODE_EXTRA_CA_CERTS) : [];
  return [...rootCertificates, ...fromEnv, ...added];
}

/** The certificates added by trustCaFile (for a client that is not fetch, e.g. mqtts). */
export function addedCas(): string[] {
  return [...added];
}

function safeRead(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').match(PEM_CERT) ?? [];
  } catch {
    return []; // Node warned about it at start already
  }
}
