import { describe, expect, it } from 'vitest';
import { ERROR_CODES, ERROR_STATUS, isErrorCode, type ErrorCode } from './error-codes.js';
import { GrantorError } from './errors.js';

describe('the one table of error codes', () => {
  it('is the only vocabulary of GrantorError.code (checked by tsc)', () => {
    // @ts-expect-error a code that is not a line of ERROR_CODES does not compile
    const unknown = new GrantorError('no_such_code', 'x');
    const known: ErrorCode = new GrantorError('hsm_unavailable', 'x').code;
    expect([unknown.code, known]).toEqual(['no_such_code', 'hsm_unavailable']);
  });

  it('answers on the wire exactly the codes with a status, each with it', () => {
    const withStatus = Object.entries(ERROR_CODES).filter(([, s]) => typeof s === 'number');
    expect(Object.entries(ERROR_STATUS)).toEqual(withStatus);
    expect(Object.keys(ERROR_STATUS)).not.toContain('tpm_parse_truncated');
    expect(Object.keys(ERROR_STATUS)).not.toContain('grant_malformed');
  });

  it('tells a code of the table from another string', () => {
    expect(['policy_denied', 'state_held', 'toString', 'ENOENT'].map(isErrorCode)).toEqual([
      true,
      true,
      false,
      false,
    ]);
  });
});
