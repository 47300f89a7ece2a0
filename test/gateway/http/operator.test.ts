/** Which HTTP clients count as the operator (the gateway host itself): gateway/http/routes.ts isLoopback. */
import { describe, expect, it } from 'vitest';
import { isLoopback } from '../../../gateway/http/routes.js';

describe('operator routes answer loopback clients only', () => {
  it.each(['127.0.0.1', '127.5.6.7', '::1', '::ffff:127.0.0.1'])('%s is the gateway host', (a) => {
    expect(isLoopback(a)).toBe(true);
  });
  it.each(['10.0.0.5', '192.168.1.20', '::ffff:10.1.2.3', 'fe80::1', '128.0.0.1', '', undefined])('%s is not', (a) => {
    expect(isLoopback(a)).toBe(false);
  });
});
