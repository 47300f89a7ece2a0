/** gateway/chain/ids.ts: the contracts' fixed-size ids from the gateway's identifiers (no chain needed). */
import { describe, expect, it } from 'vitest';
import { deviceIdFromBytes8, deviceIdToBytes8, patientRefOf, siteIdOf } from '../../../gateway/chain/ids.js';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);

describe('chain ids', () => {
  it('maps a PROTOCOL.md §2.1 device id to bytes8 and back', () => {
    expect(deviceIdToBytes8('2bf670914b489316')).toBe('0x2bf670914b489316');
    expect(deviceIdFromBytes8('0x2BF670914B489316')).toBe('2bf670914b489316');
  });

  it('refuses anything that is not a device id', () => {
    for (const bad of ['2BF670914B489316', '2bf670914b48931', '0x2bf670914b489316', '2bf670914b4893160', '']) {
      expect(() => deviceIdToBytes8(bad), bad).toThrowError(TypeError);
    }
    expect(() => deviceIdFromBytes8('0x2bf670914b4893')).toThrowError(TypeError);
  });

  it('patientRef is HMAC-SHA256(key, "VitalProof/patient-ref/v1" ‖ pseudonym) (vector computed with Python hmac)', () => {
    expect(patientRefOf('pt-0001', KEY)).toBe('0x4fccfd93031b0275f2e4972942c664e0e25cd16ec1e194f99e60306f81d1d0a7');
  });

  it('patientRef depends on the key, so the chain cannot be matched against a list of pseudonyms', () => {
    const other = Uint8Array.from(KEY, (b) => b ^ 0xff);
    expect(patientRefOf('pt-0001', other)).not.toBe(patientRefOf('pt-0001', KEY));
    expect(patientRefOf('pt-0002', KEY)).not.toBe(patientRefOf('pt-0001', KEY));
    expect(() => patientRefOf('pt-0001', KEY.subarray(0, 31))).toThrowError(/at least 32 bytes/);
    expect(() => patientRefOf('', KEY)).toThrowError(TypeError);
  });

  it('site id is SHA-256("VitalProof/site-id/v1" ‖ label) (vector computed with Python hashlib)', () => {
    expect(siteIdOf('st-marys/icu')).toBe('0xf86b925248e31c005eb69ccdeaf15cabb40d13ecc97c4fa4ca8fa75e6c823246');
    expect(() => siteIdOf('')).toThrowError(TypeError);
  });
});
