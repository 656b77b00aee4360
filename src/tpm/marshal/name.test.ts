import { describe, expect, it } from 'vitest';
import {
  errorCode,
  expectOnlyOwnErrors,
  fixture,
  parseCode,
} from '../../../test/marshal/support.js';
import { unmarshalTpmsAttest } from './attest.js';
import { TPM_ALG } from './constants.js';
import { decodeName, encodeName } from './name.js';

describe('TPM names', () => {
  it('decodes object names and the qualified signer of a real quote', () => {
    const name = decodeName(fixture('ak-ecc.name'));
    expect(name).toMatchObject({ kind: 'digest', hashAlg: TPM_ALG.SHA256 });
    expect(encodeName(name).equals(fixture('ak-ecc.name'))).toBe(true);
    expect(decodeName(fixture('ek-ecc384.name'))).toMatchObject({
      kind: 'digest',
      hashAlg: TPM_ALG.SHA384,
    });
    const signer = decodeName(unmarshalTpmsAttest(fixture('quote-ecc.attest')).qualifiedSigner);
    expect(signer.kind).toBe('digest');
  });

  it('decodes handles and empty names', () => {
    expect(decodeName(Buffer.from('4000000b', 'hex'))).toEqual({
      kind: 'handle',
      handle: 0x4000000b,
    });
    expect(encodeName({ kind: 'handle', handle: 0x4000000b }).toString('hex')).toBe('4000000b');
    expect(decodeName(Buffer.alloc(0))).toEqual({ kind: 'empty' });
    expect(encodeName({ kind: 'empty' }).length).toBe(0);
  });

  it('refuses unknown hash algorithms, wrong digest sizes and truncated names', () => {
    expect(parseCode(() => decodeName(Buffer.from('0006' + '00'.repeat(32), 'hex')))).toBe(
      'tpm_parse_invalid',
    );
    expect(parseCode(() => decodeName(Buffer.from('000b' + '00'.repeat(31), 'hex')))).toBe(
      'tpm_parse_invalid',
    );
    expect(parseCode(() => decodeName(Buffer.from('000b' + '00'.repeat(33), 'hex')))).toBe(
      'tpm_parse_invalid',
    );
    expect(parseCode(() => decodeName(Buffer.from('00', 'hex')))).toBe('tpm_parse_truncated');
    expect(
      errorCode(() =>
        encodeName({ kind: 'digest', hashAlg: TPM_ALG.SHA256, digest: Buffer.alloc(20) }),
      ),
    ).toBe('tpm_marshal_invalid');
  });

  it('gives a value or its own error for arbitrary and mutated bytes', () => {
    expectOnlyOwnErrors(decodeName, encodeName, fixture('ak-ecc.name'));
  });
});
