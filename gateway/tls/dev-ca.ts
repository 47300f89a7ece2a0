/**
 * A private development CA made on the spot with the `openssl` CLI (Debian package `openssl`):
 * the demo and the tests use it to run MQTT over TLS and HTTPS without anything downloaded.
 *
 * WARNING: DEV ONLY. The CA key sits unencrypted next to the certificates it signs; a hospital
 * uses certificates from its own PKI (docs/operations.md, "Encryption in transit").
 *
 * Layout of `dir` (created when missing, reused when complete):
 *   ca.crt, ca.key            the CA (EC P-256, valid 30 days)
 *   server.crt, server.key    the gateway: CN and subjectAltName localhost, 127.0.0.1, ::1
 *   client-<name>.crt/.key    client certificates (device mutual TLS), made on demand
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CodedError, type Remedies } from '../../firmware-proto/coded-error.js';

export interface DevCa {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
}

export const DEV_CA_ERRORS = {
  DEV_CA_FAILED: 'openssl could not make the development CA or one of its certificates',
} as const;
export type DevCaErrorCode = keyof typeof DEV_CA_ERRORS;

/** What to do about each code. */
export const DEV_CA_ERROR_REMEDIES: Remedies<DevCaErrorCode> = {
  DEV_CA_FAILED: 'Install openssl (`apt-get install openssl`); the message has what openssl printed. DEV ONLY: a hospital uses its own PKI.',
};

/** openssl is missing or failed; the message says which step and what openssl printed. */
export class DevCaError extends CodedError<DevCaErrorCode> {
  constructor(message: string) {
    super(DEV_CA_ERRORS, 'DEV_CA_FAILED', {}, { message });
  }
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error) throw new DevCaError(`openssl is needed for the development CA (apt-get install openssl): ${r.error.message}`);
  if (r.status !== 0) throw new DevCaError(`openssl ${args[0]} failed: ${r.stderr.trim()}`);
}

/** Paths of an existing or new development CA with a server certificate for the loopback names. */
export function ensureDevCa(dir: string): DevCa {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca: DevCa = { dir, caCert: join(dir, 'ca.crt'), serverCert: join(dir, 'server.crt'), serverKey: join(dir, 'server.key') };
  if ([ca.caCert, join(dir, 'ca.key'), ca.serverCert, ca.serverKey].every((p) => existsSync(p))) return ca;
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '30',
      '-subj',
      '/CN=VitalProof DEV ONLY CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  issue(dir, 'server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n');
  return ca;
}

/**
 * A client certificate signed by the development CA (mutual TLS for a device: CN = the device id).
 * @returns the paths of the certificate and its key.
 */
export function devClientCert(ca: DevCa, name: string): { cert: string; key: string } {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new TypeError(`client name must be 1-64 characters [A-Za-z0-9._-], got "${name}"`);
  const base = `client-${name}`;
  const out = { cert: join(ca.dir, `${base}.crt`), key: join(ca.dir, `${base}.key`) };
  if (!existsSync(out.cert) || !existsSync(out.key)) issue(ca.dir, base, name, 'extendedKeyUsage=clientAuth\n');
  return out;
}

function issue(dir: string, base: string, cn: string, ext: string): void {
  const extFile = `${base}.ext`;
  writeFileSync(join(dir, extFile), ext);
  openssl(
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${cn}`],
    dir,
  );
  openssl(
    ['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${base}.crt`, '-days', '30', '-extfile', extFile],
    dir,
  );
}

/** The PEM text of a file, for tls options. */
export function pem(path: string): Buffer {
  return readFileSync(path);
}
