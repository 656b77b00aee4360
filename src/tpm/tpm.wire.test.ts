import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TpmResponseError } from './tpm-error.js';
import {
  marshalDigestValues,
  marshalNvPublic,
  marshalPcrSelection,
  nvPublicDataSize,
  objectAttributesOf,
  unmarshalDigestList,
  unmarshalPcrSelection,
  unmarshalTimeInfo,
  unwrapTpm2b,
  wrapTpm2b,
} from './tpm.wire.js';

const parsers: [string, (b: Uint8Array) => unknown][] = [
  ['unwrapTpm2b', (b) => unwrapTpm2b(b, 'TPM2B')],
  ['unmarshalPcrSelection', unmarshalPcrSelection],
  ['unmarshalDigestList', unmarshalDigestList],
  ['unmarshalTimeInfo', unmarshalTimeInfo],
  ['nvPublicDataSize', nvPublicDataSize],
  ['objectAttributesOf', objectAttributesOf],
];

describe('tpm.wire', () => {
  it('round-trips a PCR selection (banks in order, PCRs ascending, 3-byte minimum)', () => {
    const bytes = marshalPcrSelection([
      { hash: 'sha256', pcrs: [0, 7, 15, 23] },
      { hash: 'sha1', pcrs: [1] },
    ]);
    expect(bytes.toString('hex')).toBe('00000002' + '000b03818080' + '000403020000');
    expect(unmarshalPcrSelection(bytes)).toEqual([
      { alg: 0x0b, pcrs: [0, 7, 15, 23] },
      { alg: 0x04, pcrs: [1] },
    ]);
  });

  it('reads a TPML_DIGEST and a TPMS_TIME_INFO', () => {
    expect(
      unmarshalDigestList(Buffer.from('00000002000161000262 63'.replace(/ /g, ''), 'hex')),
    ).toEqual([Buffer.from('a'), Buffer.from('bc')]);
    const t = Buffer.alloc(25);
    t.writeBigUInt64BE(5n, 0);
    t.writeBigUInt64BE(9n, 8);
    t.writeUInt32BE(2, 16);
    t.writeUInt32BE(3, 20);
    t[24] = 1;
    expect(unmarshalTimeInfo(t)).toEqual({
      time: 5n,
      clock: 9n,
      resetCount: 2,
      restartCount: 3,
      safe: true,
    });
  });

  it('marshals TPML_DIGEST_VALUES and TPM2B_NV_PUBLIC', () => {
    expect(
      marshalDigestValues([{ hash: 'sha1', digest: Buffer.alloc(20, 1) }]).toString('hex'),
    ).toBe('00000001' + '0004' + '01'.repeat(20));
    const nv = marshalNvPublic({
      index: 0x01500001,
      nameAlg: 'sha256',
      attributes: 0x2040004,
      dataSize: 8,
    });
    expect(nv.toString('hex')).toBe('000e' + '01500001' + '000b' + '02040004' + '0000' + '0008');
    expect(nvPublicDataSize(nv)).toBe(8);
  });

  it('rejects truncated input, an oversized length and trailing bytes with TpmResponseError', () => {
    expect(() => unwrapTpm2b(Buffer.from([0x00]), 'x')).toThrow(TpmResponseError);
    expect(() => unwrapTpm2b(Buffer.from([0x00, 0x05, 1, 2]), 'x')).toThrow(TpmResponseError);
    expect(() => unwrapTpm2b(Buffer.from([0x00, 0x01, 1, 2]), 'x')).toThrow(TpmResponseError);
    expect(() => unmarshalDigestList(Buffer.from('00000009', 'hex'))).toThrow(TpmResponseError);
    expect(() => unmarshalPcrSelection(Buffer.from('00000011', 'hex'))).toThrow(TpmResponseError);
    expect(() => unmarshalTimeInfo(Buffer.alloc(26))).toThrow(TpmResponseError);
    expect(() => nvPublicDataSize(wrapTpm2b(Buffer.alloc(3)))).toThrow(TpmResponseError);
  });

  it('never fails with anything but TpmResponseError on arbitrary bytes', () => {
    for (const [name, parse] of parsers) {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
          try {
            parse(bytes);
          } catch (e) {
            if (!(e instanceof TpmResponseError)) throw new Error(`${name} threw ${String(e)}`);
          }
        }),
        { numRuns: 500 },
      );
    }
  });
});
