/**
 * The structures the TPM facade (tpm.native.ts) builds and reads around addon calls: PCR
 * selections, TPML_DIGEST, TPML_DIGEST_VALUES, TPMS_TIME_INFO, an NV space's public area.
 * Byte vectors as the TPM marshals them; every parser answers arbitrary bytes with a value
 * or one of its own parse errors.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCode } from '../../../test/marshal/support.js';
import { unmarshalTpmsTimeInfo } from './attest.js';
import { TpmMarshalError, TpmParseError } from './buffer.js';
import { marshalTpmlDigestValues, unmarshalTpmlDigest } from './digests.js';
import {
  marshalTpm2bNvPublic,
  nvSpacePublic,
  unmarshalTpm2bNvPublic,
  unmarshalTpmsNvPublic,
} from './nv.js';
import {
  marshalTpmlPcrSelection,
  pcrListToSelection,
  pcrSelectionToList,
  unmarshalTpmlPcrSelection,
} from './pcr-selection.js';
import { TPM2B, unmarshalTpm2b } from './tpm2b.js';

describe('structures of the TPM facade', () => {
  it('round-trips a PCR selection (banks in order, PCRs ascending, 3-byte minimum)', () => {
    const bytes = marshalTpmlPcrSelection(
      pcrListToSelection([
        { bank: 'sha256', pcrs: [0, 7, 15, 23] },
        { bank: 'sha1', pcrs: [1] },
      ]),
    );
    expect(bytes.toString('hex')).toBe('00000002' + '000b03818080' + '000403020000');
    expect(pcrSelectionToList(unmarshalTpmlPcrSelection(bytes))).toEqual([
      { bank: 'sha256', pcrs: [0, 7, 15, 23] },
      { bank: 'sha1', pcrs: [1] },
    ]);
  });

  it('reads a TPML_DIGEST and a TPMS_TIME_INFO', () => {
    expect(unmarshalTpmlDigest(Buffer.from('0000000200016100026263', 'hex'))).toEqual([
      Buffer.from('a'),
      Buffer.from('bc'),
    ]);
    const t = Buffer.alloc(25);
    t.writeBigUInt64BE(5n, 0);
    t.writeBigUInt64BE(9n, 8);
    t.writeUInt32BE(2, 16);
    t.writeUInt32BE(3, 20);
    t[24] = 1;
    expect(unmarshalTpmsTimeInfo(t)).toEqual({
      time: 5n,
      clock: 9n,
      resetCount: 2,
      restartCount: 3,
      safe: true,
    });
  });

  it('marshals TPML_DIGEST_VALUES and the TPM2B_NV_PUBLIC of a space', () => {
    expect(
      marshalTpmlDigestValues([{ hash: 'sha1', digest: Buffer.alloc(20, 1) }]).toString('hex'),
    ).toBe('00000001' + '0004' + '01'.repeat(20));
    const nv = marshalTpm2bNvPublic(
      nvSpacePublic({ index: 0x01500001, nameAlg: 'sha256', attributes: 0x2040004, dataSize: 8 }),
    );
    expect(nv.toString('hex')).toBe('000e' + '01500001' + '000b' + '02040004' + '0000' + '0008');
    expect(unmarshalTpm2bNvPublic(nv).dataSize).toBe(8);
  });

  it('refuses what it cannot marshal: a digest of the wrong size, reserved NV attributes', () => {
    expect(() => marshalTpmlDigestValues([{ hash: 'sha256', digest: Buffer.alloc(20) }])).toThrow(
      TpmMarshalError,
    );
    expect(() =>
      nvSpacePublic({ index: 0x01500001, nameAlg: 'sha256', attributes: 0x100, dataSize: 8 }),
    ).toThrow(TpmMarshalError);
  });

  it('rejects truncated input, an oversized count or length and trailing bytes', () => {
    expect(parseCode(() => unmarshalTpm2b(TPM2B.DIGEST, Buffer.from([0x00])))).toBe(
      'tpm_parse_truncated',
    );
    expect(parseCode(() => unmarshalTpm2b(TPM2B.DIGEST, Buffer.from([0x00, 0x05, 1, 2])))).toBe(
      'tpm_parse_truncated',
    );
    expect(parseCode(() => unmarshalTpm2b(TPM2B.DIGEST, Buffer.from([0x00, 0x01, 1, 2])))).toBe(
      'tpm_parse_trailing',
    );
    expect(parseCode(() => unmarshalTpmlDigest(Buffer.from('00000009', 'hex')))).toBe(
      'tpm_parse_oversized',
    );
    expect(parseCode(() => unmarshalTpmlPcrSelection(Buffer.from('00000011', 'hex')))).toBe(
      'tpm_parse_oversized',
    );
    expect(parseCode(() => unmarshalTpmsTimeInfo(Buffer.alloc(26)))).toBe('tpm_parse_trailing');
    expect(parseCode(() => unmarshalTpmsNvPublic(Buffer.alloc(3)))).toBe('tpm_parse_truncated');
  });

  it('never fails with anything but its own parse errors on arbitrary bytes', () => {
    const parsers: [string, (b: Uint8Array) => unknown][] = [
      ['TPM2B_DIGEST', (b) => unmarshalTpm2b(TPM2B.DIGEST, b)],
      ['TPML_PCR_SELECTION', (b) => pcrSelectionToList(unmarshalTpmlPcrSelection(b))],
      ['TPML_DIGEST', unmarshalTpmlDigest],
      ['TPMS_TIME_INFO', unmarshalTpmsTimeInfo],
      ['TPM2B_NV_PUBLIC', unmarshalTpm2bNvPublic],
    ];
    for (const [name, parse] of parsers) {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
          try {
            parse(bytes);
          } catch (e) {
            if (!(e instanceof TpmParseError)) throw new Error(`${name} threw ${String(e)}`);
          }
        }),
        { numRuns: 500 },
      );
    }
  });
});
