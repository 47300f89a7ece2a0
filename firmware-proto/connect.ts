/**
 * Device authentication to the MQTT broker (PROTOCOL.md §6.1). MQTT 3.1.1 has no
 * challenge round trip, so the device proves possession of its key with a fresh token:
 *
 *   username = device id (16 hex digits)
 *   password = timestamp (uint64 BE, ms) ‖ nonce (16 random bytes) ‖ signature (64)
 *   signature = Ed25519(CONNECT_TAG ‖ device id (8) ‖ len(clientId) (u16 BE) ‖ clientId ‖ timestamp ‖ nonce)
 *
 * The broker accepts a token once, within a window around its own clock.
 */
import * as ed from '@noble/ed25519';
import { randomBytes } from 'node:crypto';
import { CONNECT_TAG, concat } from './signing.js';

export const CONNECT_TOKEN_BYTES = 8 + 16 + 64;

export interface ConnectToken {
  timestampMs: bigint;
  nonce: Uint8Array;
  signature: Uint8Array;
}

export function connectSigningMessage(deviceId: string, clientId: string, timestampMs: bigint, nonce: Uint8Array): Uint8Array {
  const cid = new TextEncoder().encode(clientId);
  const head = new Uint8Array(8 + 2);
  head.set(Buffer.from(deviceId, 'hex'), 0);
  new DataView(head.buffer).setUint16(8, cid.length);
  const ts = new Uint8Array(8);
  new DataView(ts.buffer).setBigUint64(0, timestampMs);
  return concat(CONNECT_TAG, head, cid, ts, nonce);
}

/** A fresh CONNECT password for this device and client id. */
export function makeConnectPassword(
  deviceId: string,
  clientId: string,
  secretKey: Uint8Array,
  nowMs = Date.now(),
  nonce: Uint8Array = randomBytes(16),
): Uint8Array {
  const ts = BigInt(nowMs);
  const sig = ed.sign(connectSigningMessage(deviceId, clientId, ts, nonce), secretKey);
  const out = new Uint8Array(CONNECT_TOKEN_BYTES);
  new DataView(out.buffer).setBigUint64(0, ts);
  out.set(nonce, 8);
  out.set(sig, 24);
  return out;
}

/** Splits a CONNECT password; undefined when it has the wrong length. */
export function parseConnectPassword(pw: Uint8Array): ConnectToken | undefined {
  if (pw.length !== CONNECT_TOKEN_BYTES) return undefined;
  return {
    timestampMs: new DataView(pw.buffer, pw.byteOffset, 8).getBigUint64(0),
    nonce: pw.subarray(8, 24),
    signature: pw.subarray(24),
  };
}
