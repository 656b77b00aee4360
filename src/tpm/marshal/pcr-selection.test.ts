import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { errorCode, expectParserContract, parseCode } from '../../../test/marshal/support.js';
import { TPM_ALG } from './constants.js';
import {
  concatPcrValues,
  marshalTpmlPcrSelection,
  pcrDigest,
  pcrListToSelection,
  pcrSelectionToList,
  splitPcrValues,
  unmarshalTpmlPcrSelection,
} from './pcr-selection.js';

// tpm2-tools' encoding of sha1:0,16+sha256:0,1,2,3,16,23
const TOOLS = Buffer.from('00000002' + '0004' + '03' + '010001' + '000b' + '03' + '0f0081', 'hex');

describe('TPML_PCR_SELECTION', () => {
  it('converts to and from the friendly list form as tpm2-tools encodes it', () => {
    const list = [
      { bank: 'sha1' as const, pcrs: [0, 16] },
      { bank: 'sha256' as const, pcrs: [0, 1, 2, 3, 16, 23] },
    ];
    const sel = pcrListToSelection(list);
    expect(marshalTpmlPcrSelection(sel).equals(TOOLS)).toBe(true);
    expect(pcrSelectionToList(unmarshalTpmlPcrSelection(TOOLS))).toEqual(list);
  });

  it('sizes sizeofSelect: at least 3 bytes, more for PCRs above 23', () => {
    expect(pcrListToSelection([{ bank: 'sha256', pcrs: [] }])[0]?.pcrSelect).toEqual(
      Buffer.alloc(3),
    );
    expect(pcrListToSelection([{ bank: 'sha256', pcrs: [7] }])[0]?.pcrSelect).toEqual(
      Buffer.from('800000', 'hex'),
    );
    expect(pcrListToSelection([{ bank: 'sha384', pcrs: [24, 31] }])[0]?.pcrSelect).toEqual(
      Buffer.from('00000081', 'hex'),
    );
    // An unsorted, duplicated list gives the same bitmap.
    expect(pcrListToSelection([{ bank: 'sha1', pcrs: [3, 1, 3] }])).toEqual(
      pcrListToSelection([{ bank: 'sha1', pcrs: [1, 3] }]),
    );
  });

  it('refuses lists it cannot encode', () => {
    expect(errorCode(() => pcrListToSelection([{ bank: 'sha256', pcrs: [32] }]))).toBe(
      'tpm_marshal_invalid',
    );
    expect(errorCode(() => pcrListToSelection([{ bank: 'sha256', pcrs: [-1] }]))).toBe(
      'tpm_marshal_invalid',
    );
    expect(errorCode(() => pcrListToSelection([{ bank: 'sha256', pcrs: [1.5] }]))).toBe(
      'tpm_marshal_invalid',
    );
    expect(
      errorCode(() =>
        pcrListToSelection([
          { bank: 'sha256', pcrs: [1] },
          { bank: 'sha256', pcrs: [2] },
        ]),
      ),
    ).toBe('tpm_marshal_invalid');
    expect(
      errorCode(() =>
        marshalTpmlPcrSelection([{ hashAlg: TPM_ALG.SHA256, pcrSelect: Buffer.alloc(5) }]),
      ),
    ).toBe('tpm_marshal_invalid');
  });

  it('refuses oversized counts and selects, unknown banks', () => {
    expect(parseCode(() => unmarshalTpmlPcrSelection(Buffer.from('00000011', 'hex')))).toBe(
      'tpm_parse_oversized',
    );
    expect(
      parseCode(() => unmarshalTpmlPcrSelection(Buffer.from('00000001000b050000000000', 'hex'))),
    ).toBe('tpm_parse_oversized');
    expect(
      parseCode(() => unmarshalTpmlPcrSelection(Buffer.from('000000010006030000ff', 'hex'))),
    ).toBe('tpm_parse_invalid');
  });

  it('accepts an empty list and a zero-length select', () => {
    expect(unmarshalTpmlPcrSelection(Buffer.from('00000000', 'hex'))).toEqual([]);
    expect(
      pcrSelectionToList(unmarshalTpmlPcrSelection(Buffer.from('00000001000b00', 'hex'))),
    ).toEqual([{ bank: 'sha256', pcrs: [] }]);
  });

  it('refuses truncation and trailing bytes; arbitrary and mutated bytes give a value or its own error', () => {
    expectParserContract(unmarshalTpmlPcrSelection, marshalTpmlPcrSelection, TOOLS);
  });
});

describe('PCR values and digests', () => {
  const sel = unmarshalTpmlPcrSelection(TOOLS);
  const flat = Buffer.concat([
    Buffer.alloc(20, 1),
    Buffer.alloc(20, 2),
    ...[3, 4, 5, 6, 7, 8].map((v) => Buffer.alloc(32, v)),
  ]);

  it('splits concatenated values by selection and digests them in selection order', () => {
    const values = splitPcrValues(sel, flat);
    expect(values.sha1?.[16]).toEqual(Buffer.alloc(20, 2));
    expect(values.sha256?.[23]).toEqual(Buffer.alloc(32, 8));
    expect(concatPcrValues(sel, values).equals(flat)).toBe(true);
    const d = pcrDigest(TPM_ALG.SHA256, sel, values);
    expect(d.equals(createHash('sha256').update(flat).digest())).toBe(true);
    expect(
      pcrDigest(TPM_ALG.SHA1, sel, values).equals(createHash('sha1').update(flat).digest()),
    ).toBe(true);
  });

  it('refuses missing, short and surplus values', () => {
    expect(errorCode(() => splitPcrValues(sel, flat.subarray(1)))).toBe('tpm_pcr_values_invalid');
    expect(errorCode(() => splitPcrValues(sel, Buffer.concat([flat, Buffer.of(0)])))).toBe(
      'tpm_pcr_values_invalid',
    );
    const values = splitPcrValues(sel, flat);
    expect(errorCode(() => concatPcrValues(sel, { sha1: values.sha1 ?? {} }))).toBe(
      'tpm_pcr_values_invalid',
    );
    expect(
      errorCode(() =>
        concatPcrValues(sel, { ...values, sha1: { 0: Buffer.alloc(20), 16: Buffer.alloc(32) } }),
      ),
    ).toBe('tpm_pcr_values_invalid');
    expect(errorCode(() => pcrDigest(TPM_ALG.SM3_256, sel, values))).toBe('tpm_pcr_values_invalid');
  });
});
