import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fixture, parseCode } from '../../../test/marshal/support.js';
import { marshal } from './buffer.js';
import { TPM_ALG, TPM_ECC } from './constants.js';
import { TpmParseError } from '../errors.js';
import {
  decodeObjectAttributes,
  encodeObjectAttributes,
  marshalTpm2bPublic,
  marshalTpmtPublic,
  objectAttributes,
  objectName,
  unmarshalTpm2bPublic,
  unmarshalTpmtPublic,
  type TpmtPublic,
} from './public.js';

const PUBLICS = ['ek-rsa2048', 'ek-ecc256', 'ek-ecc384', 'ak-ecc', 'ak-rsa', 'ak-rsapss'];

describe('TPM2B_PUBLIC / TPMT_PUBLIC from swtpm + tpm2-tools', () => {
  it.each(PUBLICS)('%s round-trips byte for byte and its name matches the TPM', (name) => {
    const bytes = fixture(`${name}.pub`);
    const pub = unmarshalTpm2bPublic(bytes);
    expect(marshalTpm2bPublic(pub).equals(bytes)).toBe(true);
    expect(marshalTpmtPublic(pub).equals(bytes.subarray(2))).toBe(true);
    expect(unmarshalTpmtPublic(bytes.subarray(2))).toEqual(pub);
    expect(objectName(pub).equals(fixture(`${name}.name`))).toBe(true);
  });

  it('parses the Google Cloud vTPM AK (TPMT_PUBLIC without size prefix) and round-trips it', () => {
    const gcp = JSON.parse(fixture('gcp/windows_gcp_shielded_vm.json.raw').toString('utf8')) as {
      AK: { Public: string };
    };
    const bytes = Buffer.from(gcp.AK.Public, 'base64');
    const pub = unmarshalTpmtPublic(bytes);
    expect(marshalTpmtPublic(pub).equals(bytes)).toBe(true);
    if (pub.type !== TPM_ALG.RSA) throw new Error('expected RSA');
    expect(pub.objectAttributes).toMatchObject({
      restricted: true,
      sign: true,
      fixedTPM: true,
      decrypt: false,
    });
    expect(pub.parameters.scheme).toEqual({ scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA1 });
    expect(pub.unique.length).toBe(256);
  });

  it('decodes the ECC AK fields', () => {
    const pub = unmarshalTpm2bPublic(fixture('ak-ecc.pub'));
    expect(pub.type).toBe(TPM_ALG.ECC);
    if (pub.type !== TPM_ALG.ECC) return;
    expect(pub.nameAlg).toBe(TPM_ALG.SHA256);
    // TPMA_OBJECT (Part 2, 8.3.2) as tpm2_createak sets it: fixedTPM (bit 1), fixedParent (4),
    // sensitiveDataOrigin (5), userWithAuth (6), restricted (16), sign (18).
    const bits = [1, 4, 5, 6, 16, 18].reduce((a, b) => a | (1 << b), 0);
    expect(pub.objectAttributes).toEqual(decodeObjectAttributes(bits));
    expect(pub.parameters).toEqual({
      symmetric: { algorithm: TPM_ALG.NULL },
      scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
      curveId: TPM_ECC.NIST_P256,
      kdf: { scheme: TPM_ALG.NULL },
    });
    expect(pub.unique.x.length).toBe(32);
    expect(pub.unique.y.length).toBe(32);
  });

  it('decodes the RSA EK fields', () => {
    const pub = unmarshalTpm2bPublic(fixture('ek-rsa2048.pub'));
    if (pub.type !== TPM_ALG.RSA) throw new Error('expected RSA');
    expect(pub.parameters).toEqual({
      symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB },
      scheme: { scheme: TPM_ALG.NULL },
      keyBits: 2048,
      exponent: 0,
    });
    expect(pub.unique.length).toBe(256);
    expect(encodeObjectAttributes(pub.objectAttributes)).toBe(0x000300b2);
  });

  it('round-trips KEYEDHASH and SYMCIPHER objects', () => {
    const base = {
      nameAlg: TPM_ALG.SHA256,
      objectAttributes: objectAttributes('fixedTPM'),
      authPolicy: Buffer.alloc(0),
    };
    const objects: TpmtPublic[] = [
      {
        ...base,
        type: TPM_ALG.KEYEDHASH,
        parameters: { scheme: { scheme: TPM_ALG.NULL } },
        unique: Buffer.alloc(32, 1),
      },
      {
        ...base,
        type: TPM_ALG.KEYEDHASH,
        parameters: { scheme: { scheme: TPM_ALG.HMAC, hashAlg: TPM_ALG.SHA384 } },
        unique: Buffer.alloc(0),
      },
      {
        ...base,
        type: TPM_ALG.KEYEDHASH,
        parameters: {
          scheme: { scheme: TPM_ALG.XOR, hashAlg: TPM_ALG.SHA256, kdf: TPM_ALG.KDF1_SP800_108 },
        },
        unique: Buffer.alloc(0),
      },
      {
        ...base,
        type: TPM_ALG.SYMCIPHER,
        parameters: { symmetric: { algorithm: TPM_ALG.AES, keyBits: 256, mode: TPM_ALG.CFB } },
        unique: Buffer.alloc(32, 2),
      },
    ];
    for (const o of objects) {
      const bytes = marshalTpm2bPublic(o);
      const back = unmarshalTpm2bPublic(bytes);
      expect(back).toEqual(o);
      expect(marshalTpm2bPublic(back).equals(bytes)).toBe(true);
    }
  });

  it('round-trips ECDAA schemes with their count', () => {
    const ak = unmarshalTpm2bPublic(fixture('ak-ecc.pub'));
    if (ak.type !== TPM_ALG.ECC) throw new Error('expected ECC');
    const ecdaa: TpmtPublic = {
      ...ak,
      parameters: {
        ...ak.parameters,
        scheme: { scheme: TPM_ALG.ECDAA, hashAlg: TPM_ALG.SHA256, count: 7 },
      },
    };
    expect(unmarshalTpm2bPublic(marshalTpm2bPublic(ecdaa))).toEqual(ecdaa);
  });
});

describe('TPMT_PUBLIC rejections', () => {
  const ak = fixture('ak-ecc.pub');

  it('rejects every truncation with tpm_parse_truncated', () => {
    const tpmt = ak.subarray(2);
    for (let n = 0; n < tpmt.length; n++) {
      expect(parseCode(() => unmarshalTpmtPublic(tpmt.subarray(0, n)))).toBe('tpm_parse_truncated');
    }
    expect(parseCode(() => unmarshalTpm2bPublic(ak.subarray(0, ak.length - 1)))).toBe(
      'tpm_parse_truncated',
    );
  });

  it('rejects trailing bytes, outside and inside the size prefix', () => {
    expect(parseCode(() => unmarshalTpm2bPublic(Buffer.concat([ak, Buffer.of(0)])))).toBe(
      'tpm_parse_trailing',
    );
    expect(
      parseCode(() => unmarshalTpmtPublic(Buffer.concat([ak.subarray(2), Buffer.of(0)]))),
    ).toBe('tpm_parse_trailing');
    const inner = Buffer.concat([ak, Buffer.of(0)]);
    inner.writeUInt16BE(ak.length - 1, 0);
    expect(parseCode(() => unmarshalTpm2bPublic(inner))).toBe('tpm_parse_trailing');
  });

  it('rejects oversized length fields', () => {
    const policy = Buffer.from(ak);
    policy.writeUInt16BE(65, 2 + 8); // authPolicy.size > 64
    expect(parseCode(() => unmarshalTpm2bPublic(policy))).toBe('tpm_parse_oversized');
    const outer = Buffer.concat([Buffer.of(0xff, 0xff), ak.subarray(2)]);
    expect(parseCode(() => unmarshalTpm2bPublic(outer))).toBe('tpm_parse_oversized');
    const ecc = Buffer.from(ak);
    ecc.writeUInt16BE(129, ecc.length - 2 - 32 - 2 - 32); // unique.x.size > 128
    expect(parseCode(() => unmarshalTpm2bPublic(ecc))).toBe('tpm_parse_oversized');
  });

  it('rejects an empty TPM2B_PUBLIC', () => {
    expect(parseCode(() => unmarshalTpm2bPublic(Buffer.of(0, 0)))).toBe('tpm_parse_invalid');
  });

  it.each([
    ['type', 2, 0x0005],
    ['nameAlg', 4, 0x0006],
    ['symmetric', 2 + 2 + 2 + 4 + 2, 0x000a],
    ['scheme', 2 + 2 + 2 + 4 + 2 + 2, 0x0014],
    ['scheme hash', 2 + 2 + 2 + 4 + 2 + 4, 0x0010],
    ['kdf', 2 + 2 + 2 + 4 + 2 + 6 + 2, 0x0018],
  ])('rejects an invalid %s selector', (_name, offset, value) => {
    const bad = Buffer.from(ak);
    bad.writeUInt16BE(value, offset);
    expect(parseCode(() => unmarshalTpm2bPublic(bad))).toBe('tpm_parse_invalid');
  });

  it('rejects reserved object attribute bits', () => {
    for (const bit of [0, 3, 8, 9, 12, 15, 20, 31]) {
      const bad = Buffer.from(ak);
      bad.writeUInt32BE((bad.readUInt32BE(6) | (2 ** bit)) >>> 0, 6);
      expect(parseCode(() => unmarshalTpm2bPublic(bad))).toBe('tpm_parse_invalid');
    }
  });

  it('never throws anything but its own errors on arbitrary or mutated bytes', () => {
    const codes = new Set([
      'tpm_parse_truncated',
      'tpm_parse_oversized',
      'tpm_parse_trailing',
      'tpm_parse_invalid',
    ]);
    const check = (bytes: Uint8Array): void => {
      for (const parse of [unmarshalTpm2bPublic, unmarshalTpmtPublic]) {
        try {
          const pub = parse(bytes);
          expect(marshalTpmtPublic(pub).length).toBeGreaterThan(0);
        } catch (e) {
          expect(e).toBeInstanceOf(TpmParseError);
          expect(codes.has((e as TpmParseError).code)).toBe(true);
        }
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), check), { numRuns: 500 });
    fc.assert(
      fc.property(fc.nat(ak.length - 1), fc.integer({ min: 0, max: 255 }), (i, v) => {
        const m = Buffer.from(ak);
        m[i] = v;
        check(m);
      }),
      { numRuns: 500 },
    );
  });
});

describe('object attributes and names', () => {
  it('encodes and decodes every attribute bit', () => {
    const all = decodeObjectAttributes(0x000f0cf6);
    expect(all).toBeDefined();
    if (all === undefined) return;
    expect(Object.values(all).every((v) => v)).toBe(true);
    expect(encodeObjectAttributes(all)).toBe(0x000f0cf6);
    expect(decodeObjectAttributes(1)).toBeUndefined();
  });

  it('refuses to name an object whose nameAlg is NULL', () => {
    const ak = unmarshalTpm2bPublic(fixture('ak-ecc.pub'));
    expect(() => objectName({ ...ak, nameAlg: TPM_ALG.NULL })).toThrow(
      expect.objectContaining({ code: 'tpm_marshal_invalid' }),
    );
  });

  it('refuses to marshal fields that do not fit', () => {
    const ak = unmarshalTpm2bPublic(fixture('ak-rsa.pub'));
    if (ak.type !== TPM_ALG.RSA) throw new Error('expected RSA');
    expect(() => marshalTpmtPublic({ ...ak, authPolicy: Buffer.alloc(65) })).toThrow(
      expect.objectContaining({ code: 'tpm_marshal_invalid' }),
    );
    expect(() => marshalTpmtPublic({ ...ak, unique: Buffer.alloc(513) })).toThrow(
      expect.objectContaining({ code: 'tpm_marshal_invalid' }),
    );
    expect(() => marshal((w) => w.u16(0x10000))).toThrow(
      expect.objectContaining({ code: 'tpm_marshal_invalid' }),
    );
  });
});

describe('TPMT_PUBLIC marshal guards', () => {
  it('refuses an unknown object type or nameAlg smuggled in through a cast', () => {
    const ak = unmarshalTpm2bPublic(fixture('ak-ecc.pub'));
    expect(() => marshalTpmtPublic({ ...ak, type: 0x0005 } as unknown as TpmtPublic)).toThrow(
      expect.objectContaining({ code: 'tpm_marshal_invalid' }),
    );
    expect(() => marshalTpmtPublic({ ...ak, nameAlg: 0x0006 } as unknown as TpmtPublic)).toThrow(
      expect.objectContaining({ code: 'tpm_marshal_invalid' }),
    );
  });
});
