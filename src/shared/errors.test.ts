import { describe, expect, it } from 'vitest';
import { errorKinds, GrantorError, kind, UnavailableError } from './errors.js';

const withDefaults = errorKinds({ tpm_unavailable: 'the TPM does not answer' });

class DefaultedError extends withDefaults('tpm_unavailable', UnavailableError) {}
class PlainError extends kind('key_store_corrupt') {}

describe('kind(): a failure kind in one line', () => {
  it('keeps the class name, the code, the base and instanceof', () => {
    const e = new DefaultedError();
    expect([e.name, e.code, e.message]).toEqual([
      'DefaultedError',
      'tpm_unavailable',
      'the TPM does not answer',
    ]);
    expect(e).toBeInstanceOf(DefaultedError);
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e).toBeInstanceOf(GrantorError);
    expect(new PlainError('x')).not.toBeInstanceOf(UnavailableError);
  });

  it("takes the caller's message, cause and details over the default", () => {
    const cause = new Error('root');
    const e = new DefaultedError('said more', { cause, details: { rc: 2321 } });
    expect([e.message, e.cause, e.details]).toEqual(['said more', cause, { rc: 2321 }]);
    expect(new PlainError('bad record').message).toBe('bad record');
  });

  it('wants a message where the domain gives no default (checked by tsc)', () => {
    // @ts-expect-error a kind with no default message needs one from its caller
    const e = new PlainError();
    expect(e.code).toBe('key_store_corrupt');
  });

  it('gives each class its own kind: two kinds of one code are not each other', () => {
    class OtherError extends kind('key_store_corrupt') {}
    expect(new OtherError('x')).not.toBeInstanceOf(PlainError);
  });
});
