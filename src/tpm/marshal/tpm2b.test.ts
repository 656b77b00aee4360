import { describe, expect, it } from 'vitest';
import {
  errorCode,
  expectParserContract,
  fixture,
  parseCode,
} from '../../../test/marshal/support.js';
import { TPM2B, marshalTpm2b, unmarshalTpm2b } from './tpm2b.js';

describe('TPM2B buffers', () => {
  it('reads an AK name as TPM2B_NAME, as tpm2-tools carries it', () => {
    const name = fixture('ak-ecc.name');
    const tpm2b = marshalTpm2b(TPM2B.NAME, name);
    expect(tpm2b.readUInt16BE(0)).toBe(34);
    expect(unmarshalTpm2b(TPM2B.NAME, tpm2b).equals(name)).toBe(true);
  });

  it.each(Object.values(TPM2B))('$name accepts its maximum and refuses one more byte', (kind) => {
    const max = Buffer.alloc(kind.max, 7);
    expect(unmarshalTpm2b(kind, marshalTpm2b(kind, max)).equals(max)).toBe(true);
    const over = Buffer.concat([Buffer.of(0, 0), Buffer.alloc(kind.max + 1)]);
    over.writeUInt16BE(kind.max + 1, 0);
    expect(parseCode(() => unmarshalTpm2b(kind, over))).toBe('tpm_parse_oversized');
    expect(errorCode(() => marshalTpm2b(kind, Buffer.alloc(kind.max + 1)))).toBe(
      'tpm_marshal_invalid',
    );
  });

  it('refuses truncation and trailing bytes; arbitrary and mutated bytes give a value or its own error', () => {
    for (const size of [32, 48]) {
      expectParserContract(
        (b) => unmarshalTpm2b(TPM2B.DIGEST, b),
        (v) => marshalTpm2b(TPM2B.DIGEST, v),
        marshalTpm2b(TPM2B.DIGEST, Buffer.alloc(size, size === 32 ? 1 : 3)),
      );
    }
  });
});
