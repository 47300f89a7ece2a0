/**
 * The researcher client's errors (gateway/research-client/errors.ts): coded, so a caller
 * branches on the code (isError), with the words the command line has always printed.
 */
import { describe, expect, it } from 'vitest';
import { CodedError, isError } from '../../../firmware-proto/coded-error.js';
import { HTTP_STATUS } from '../../../gateway/http/errors.js';
import { ApiError, apiRequest, NoSessionError } from '../../../gateway/research-client/index.js';

describe('ApiError', () => {
  it("is a coded error with the gateway's code, status and message", () => {
    const e = new ApiError(401, 'AUTH_SESSION_EXPIRED', 'the session has expired', '/research/grants?limit=1');
    expect(e).toBeInstanceOf(CodedError);
    expect(isError(e, ApiError, 'AUTH_SESSION_EXPIRED')).toBe(true);
    expect(isError(e, ApiError, 'AUTH_UNKNOWN_SESSION')).toBe(false);
    expect(e.status).toBe(HTTP_STATUS.AUTH_SESSION_EXPIRED);
    expect(e.name).toBe('ApiError');
    expect(e.message).toBe('the session has expired');
    expect(e.detail).toEqual({ status: 401, path: '/research/grants?limit=1' });
    expect(e.describe()).toBe('the gateway refused /research/grants: HTTP 401 AUTH_SESSION_EXPIRED: the session has expired');
  });

  it('keeps a code this build does not know, as a newer gateway answers it', () => {
    expect(new ApiError(403, 'SOME_NEW_CODE', '', '/x').describe()).toBe('the gateway refused /x: HTTP 403 SOME_NEW_CODE');
  });

  it('is not what apiRequest throws when nothing listens: that stays the fetch error (the CLI says "cannot reach")', async () => {
    // Port 1 on loopback: nothing listens there; the client does not dress that up as an answer.
    const e = await apiRequest('http://127.0.0.1:1', '/research/grants').catch((x: unknown) => x);
    expect(e).not.toBeInstanceOf(ApiError);
    expect((e as Error).message).toBe('fetch failed');
  });
});

describe('NoSessionError', () => {
  it('says where it looked and what to do, under its code', () => {
    const none = new NoSessionError('CLIENT_NO_SESSION', { url: 'http://127.0.0.1:8080', sessionFile: '/home/r/.vitalproof/sessions.json' });
    expect(isError(none, NoSessionError, 'CLIENT_NO_SESSION')).toBe(true);
    expect(none.message).toBe(
      'no session with http://127.0.0.1:8080 in /home/r/.vitalproof/sessions.json (or it has ended): vitalproof research login --key-file F --url http://127.0.0.1:8080',
    );
    const two = new NoSessionError('CLIENT_SESSION_AMBIGUOUS', { url: 'http://127.0.0.1:8080', sessionFile: 's.json' });
    expect(two.message).toBe('several accounts have sessions with http://127.0.0.1:8080 in s.json: name one with --key-file');
    expect(two.detail).toEqual({ url: 'http://127.0.0.1:8080', sessionFile: 's.json' });
  });
});
