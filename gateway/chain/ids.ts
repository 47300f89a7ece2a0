/**
 * How the gateway's identifiers become the contracts' fixed-size arguments.
 *
 * - device id (16 lowercase hex digits, PROTOCOL.md §2.1) ↔ bytes8.
 * - patient pseudonym → `patientRef` (bytes32): a keyed hash, so the public chain never holds
 *   the pseudonym itself. A plain hash would not do: pseudonyms are short and structured, so
 *   anyone could hash candidates and match them, and link the chain to any other dataset that
 *   uses the same pseudonyms. With the hospital's key, only the hospital can.
 * - site label → `site` (bytes32): a hash of the label, so ward or site names stay off chain.
 */
import { createHash, createHmac } from 'node:crypto';

/** PROTOCOL.md §2.1 device id: 16 lowercase hex digits. */
const DEVICE_ID = /^[0-9a-f]{16}$/;
const PATIENT_REF_LABEL = 'VitalProof/patient-ref/v1';
const SITE_ID_LABEL = 'VitalProof/site-id/v1';
/** A key shorter than this makes the keyed hash guessable again. */
export const MIN_PATIENT_REF_KEY_BYTES = 32;

/** '3f2a9c0d4e5b6a71' → '0x3f2a9c0d4e5b6a71'. @throws TypeError when not a device id. */
export function deviceIdToBytes8(deviceId: string): string {
  if (!DEVICE_ID.test(deviceId)) throw new TypeError(`device id must be 16 lowercase hex digits, got "${deviceId}"`);
  return `0x${deviceId}`;
}

/** '0x3F2A…' (bytes8 from the chain) → '3f2a…'. @throws TypeError when not 8 bytes of hex. */
export function deviceIdFromBytes8(value: string): string {
  const id = value.toLowerCase().replace(/^0x/, '');
  if (!DEVICE_ID.test(id)) throw new TypeError(`bytes8 device id expected, got "${value}"`);
  return id;
}

/**
 * patientRef = HMAC-SHA256(key, "VitalProof/patient-ref/v1" ‖ UTF-8 pseudonym), as 0x-hex.
 * The key is the hospital's secret (at least 32 random bytes), kept off chain with the
 * pseudonym list; the same pseudonym gives the same reference for every device of the patient.
 * @throws TypeError for an empty pseudonym or a short key.
 * @example patientRefOf('P-0042', randomBytes(32)) // '0x…' (32 bytes)
 */
export function patientRefOf(pseudonym: string, key: Uint8Array): string {
  if (!pseudonym) throw new TypeError('pseudonym must not be empty');
  if (key.length < MIN_PATIENT_REF_KEY_BYTES) throw new TypeError(`patient-ref key must be at least ${MIN_PATIENT_REF_KEY_BYTES} bytes, got ${key.length}`);
  return `0x${createHmac('sha256', key).update(PATIENT_REF_LABEL).update(pseudonym, 'utf8').digest('hex')}`;
}

/** site = SHA-256("VitalProof/site-id/v1" ‖ UTF-8 label), as 0x-hex. @throws TypeError for an empty label. */
export function siteIdOf(label: string): string {
  if (!label) throw new TypeError('site label must not be empty');
  return `0x${createHash('sha256').update(SITE_ID_LABEL).update(label, 'utf8').digest('hex')}`;
}
