import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCode } from '../../../test/marshal/support.js';
import { TpmReader, TpmWriter, marshal, parseAll } from './buffer.js';
import { TpmParseError } from '../errors.js';

describe('TpmReader', () => {
  it('reads big-endian integers', () => {
    const r = new TpmReader(Buffer.from('01020304050607080910111213141516ff', 'hex'), 'T');
    expect(r.u8('a')).toBe(0x01);
    expect(r.u16('b')).toBe(0x0203);
    expect(r.u32('c')).toBe(0x04050607);
    expect(r.u64('d')).toBe(0x0809101112131415n);
    expect(r.u8('e')).toBe(0x16);
    expect(r.u8('f')).toBe(0xff);
    r.end();
  });

  it('reads u32 values with the top bit set as unsigned', () => {
    expect(new TpmReader(Buffer.from('ff544347', 'hex'), 'T').u32('magic')).toBe(0xff544347);
  });

  it('refuses to read past the end without moving', () => {
    const r = new TpmReader(Buffer.from('0102', 'hex'), 'T');
    expect(parseCode(() => r.u32('x'))).toBe('tpm_parse_truncated');
    expect(r.offset).toBe(0);
    expect(r.u16('y')).toBe(0x0102);
  });

  it('checks a TPM2B size against the maximum before reading', () => {
    const r = new TpmReader(Buffer.from('0041' + '00'.repeat(0x41), 'hex'), 'T');
    let err: unknown;
    try {
      r.tpm2b('digest', 64);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TpmParseError);
    expect((err as TpmParseError).code).toBe('tpm_parse_oversized');
    expect((err as TpmParseError).field).toBe('digest.size');
    expect(r.offset).toBe(0);
  });

  it('refuses a TPM2B whose body is truncated, leaving the offset unchanged', () => {
    const r = new TpmReader(Buffer.from('0004aabb', 'hex'), 'T');
    expect(parseCode(() => r.tpm2b('d', 64))).toBe('tpm_parse_truncated');
    expect(r.offset).toBe(0);
  });

  it('returns copies that do not alias the input', () => {
    const input = Buffer.from('0002aabb', 'hex');
    const v = new TpmReader(input, 'T').tpm2b('d', 64);
    input[2] = 0;
    expect(Buffer.from(v).toString('hex')).toBe('aabb');
  });

  it('commits a nested struct offset only on success', () => {
    const r = new TpmReader(Buffer.from('000100', 'hex'), 'T');
    expect(parseCode(() => r.struct((s) => [s.u16('a'), s.u16('b')]))).toBe('tpm_parse_truncated');
    expect(r.offset).toBe(0);
    expect(r.struct((s) => s.u16('a'))).toBe(1);
    expect(r.offset).toBe(2);
  });

  it('requires a sized structure to consume exactly its size', () => {
    const trailing = new TpmReader(Buffer.from('0003000102', 'hex'), 'T');
    expect(parseCode(() => trailing.sized('s', 10, (s) => s.u16('a')))).toBe('tpm_parse_trailing');
    expect(trailing.offset).toBe(0);
    const over = new TpmReader(Buffer.from('000b' + '00'.repeat(11), 'hex'), 'T');
    expect(parseCode(() => over.sized('s', 10, (s) => s.rest('a')))).toBe('tpm_parse_oversized');
    const short = new TpmReader(Buffer.from('000400', 'hex'), 'T');
    expect(parseCode(() => short.sized('s', 10, (s) => s.rest('a')))).toBe('tpm_parse_truncated');
    const empty = new TpmReader(Buffer.from('0000', 'hex'), 'T');
    expect(parseCode(() => empty.sized('s', 10, (s) => s.rest('a')))).toBe('tpm_parse_invalid');
    expect(
      new TpmReader(Buffer.from('0000', 'hex'), 'T').sized('s', 10, (s) => s.rest('a'), true),
    ).toBeUndefined();
  });

  it('parseAll refuses trailing bytes', () => {
    expect(parseCode(() => parseAll(Buffer.from('000100', 'hex'), 'T', (r) => r.u16('a')))).toBe(
      'tpm_parse_trailing',
    );
  });

  it('never throws anything but its own errors on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          parseAll(bytes, 'T', (r) => {
            const a = r.u8('a');
            const d = r.tpm2b('d', 16);
            return { a, d, s: r.sized('s', 8, (s) => s.u32('x'), true) };
          });
        } catch (e) {
          expect(e).toBeInstanceOf(TpmParseError);
        }
      }),
    );
  });
});

describe('TpmWriter', () => {
  it('writes big-endian values and grows past its initial buffer', () => {
    const w = new TpmWriter();
    w.u8(1).u16(0x0203).u32(0xff544347).u64(0x0102030405060708n);
    w.bytes(Buffer.alloc(1000, 7));
    const out = w.finish();
    expect(out.subarray(0, 15).toString('hex')).toBe('010203ff5443470102030405060708');
    expect(out.length).toBe(1015);
  });

  it('writes TPM2B and sized structures', () => {
    expect(marshal((w) => w.tpm2b(Buffer.from('aabb', 'hex'), 64)).toString('hex')).toBe(
      '0002aabb',
    );
    expect(marshal((w) => w.sized((i) => i.u32(1))).toString('hex')).toBe('000400000001');
  });

  it('refuses values it cannot encode', () => {
    const w = new TpmWriter();
    expect(() => w.u8(256)).toThrow(expect.objectContaining({ code: 'tpm_marshal_invalid' }));
    expect(() => w.u16(-1)).toThrow(expect.objectContaining({ code: 'tpm_marshal_invalid' }));
    expect(() => w.u32(1.5)).toThrow(expect.objectContaining({ code: 'tpm_marshal_invalid' }));
    expect(() => w.u64(-1n)).toThrow(expect.objectContaining({ code: 'tpm_marshal_invalid' }));
    expect(() => w.tpm2b(Buffer.alloc(65), 64)).toThrow(
      expect.objectContaining({ code: 'tpm_marshal_invalid' }),
    );
  });
});
