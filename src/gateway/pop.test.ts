import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GrantorError } from '../shared/errors.js';
import { parsePopHeader } from './pop.js';

const encode = (value: unknown): string =>
  Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
const codeOf = (value: string | undefined): string | undefined => {
  try {
    parsePopHeader(value);
    return undefined;
  } catch (err) {
    return err instanceof GrantorError ? err.code : 'not a GrantorError';
  }
};

describe('parsePopHeader (the Grant-PoP header, read by the Enforcer and the example gateway)', () => {
  const good = { challenge: 'c', signature: 's', publicKey: { kty: 'EC' } };

  it('reads challenge, signature and public key', () => {
    expect(parsePopHeader(encode(good))).toEqual({
      challenge: 'c',
      proof: { signature: 's', publicKey: { kty: 'EC' } },
    });
  });

  it.each([
    ['absent', undefined],
    ['too long', 'A'.repeat(4097)],
    ['not JSON', 'bm90IGpzb24'],
    ['duplicate members', Buffer.from('{"challenge":"a","challenge":"b"}').toString('base64url')],
    ['no challenge', encode({ ...good, challenge: undefined })],
    ['a numeric signature', encode({ ...good, signature: 1 })],
    ['a key that is a list', encode({ ...good, publicKey: [] })],
    ['a null key', encode({ ...good, publicKey: null })],
  ])('%s: grant_pop_invalid', (_what, value) => {
    expect(codeOf(value)).toBe('grant_pop_invalid');
  });

  it('any header value: a presentation or grant_pop_invalid, never a crash', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.base64String(), fc.json().map(encode)), (value) => {
        const code = codeOf(value);
        expect(code === undefined || code === 'grant_pop_invalid').toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
