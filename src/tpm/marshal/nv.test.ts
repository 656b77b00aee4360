import { describe, expect, it } from 'vitest';
import {
  errorCode,
  expectParserContract,
  fixture,
  parseCode,
} from '../../../test/marshal/support.js';
import { unmarshalTpmsAttest } from './attest.js';
import { TPM_ALG, TPM_NT, TPM_ST } from './constants.js';
import {
  decodeNvAttributes,
  encodeNvAttributes,
  marshalTpm2bNvPublic,
  marshalTpmsNvPublic,
  nvAttributes,
  nvIndexName,
  nvSpacePublic,
  nvWriteCpHash,
  unmarshalTpm2bNvPublic,
  unmarshalTpmsNvPublic,
  type TpmsNvPublic,
} from './nv.js';

/** The indices `tpm2_nvreadpublic` printed: index, name, nameAlg, attributes, size. */
function readpublicEntries(): {
  index: number;
  name: string;
  alg: number;
  attrs: number;
  size: number;
}[] {
  const text = fixture('nv-readpublic.out').toString('utf8');
  return text
    .split(/\n(?=0x)/)
    .filter((b) => b.trim() !== '')
    .map((block) => {
      const get = (re: RegExp): string => {
        const m = re.exec(block);
        if (m?.[1] === undefined) throw new Error(`fixture field missing: ${re.source}`);
        return m[1];
      };
      return {
        index: Number(get(/^(0x[0-9a-f]+):/m)),
        name: get(/name: ([0-9a-f]+)/),
        alg: Number(get(/hash algorithm:\n\s+friendly: \w+\n\s+value: (0x[0-9A-F]+)/)),
        attrs: Number(get(/attributes:\n\s+friendly: .*\n\s+value: (0x[0-9A-F]+)/)),
        size: Number(get(/size: (\d+)/)),
      };
    });
}

const ordinary: TpmsNvPublic = {
  nvIndex: 0x01500010,
  nameAlg: TPM_ALG.SHA256,
  attributes: nvAttributes(
    TPM_NT.ORDINARY,
    'ownerWrite',
    'authWrite',
    'ownerRead',
    'authRead',
    'written',
  ),
  authPolicy: Buffer.alloc(0),
  dataSize: 32,
};

describe('TPMS_NV_PUBLIC and NV names', () => {
  it('computes the names tpm2_nvreadpublic reports for ordinary, counter, extend and EK cert indices', () => {
    const entries = readpublicEntries();
    expect(entries.length).toBe(6);
    for (const e of entries) {
      const attributes = decodeNvAttributes(e.attrs);
      if (attributes === undefined) throw new Error('fixture attributes invalid');
      expect(encodeNvAttributes(attributes)).toBe(e.attrs);
      const pub: TpmsNvPublic = {
        nvIndex: e.index,
        nameAlg: e.alg as typeof TPM_ALG.SHA256,
        attributes,
        authPolicy: Buffer.alloc(0),
        dataSize: e.size,
      };
      expect(nvIndexName(pub).toString('hex')).toBe(e.name);
    }
    const types = entries.map((e) => decodeNvAttributes(e.attrs)?.nt);
    expect(types.slice(0, 3)).toEqual([TPM_NT.ORDINARY, TPM_NT.COUNTER, TPM_NT.EXTEND]);
  });

  it('matches the index name inside an NV_Certify attestation', () => {
    const a = unmarshalTpmsAttest(fixture('nvcertify.attest'));
    if (a.attested.type !== TPM_ST.ATTEST_NV) throw new Error('expected NV');
    expect(nvIndexName(ordinary).equals(Buffer.from(a.attested.indexName))).toBe(true);
  });

  it('round-trips TPMS_NV_PUBLIC and TPM2B_NV_PUBLIC, including the top attribute bit', () => {
    const p: TpmsNvPublic = {
      ...ordinary,
      attributes: nvAttributes(TPM_NT.EXTEND, 'readStClear', 'policyRead', 'noDA'),
      authPolicy: Buffer.alloc(32, 9),
    };
    expect(unmarshalTpmsNvPublic(marshalTpmsNvPublic(p))).toEqual(p);
    expect(unmarshalTpm2bNvPublic(marshalTpm2bNvPublic(p))).toEqual(p);
    expect(marshalTpmsNvPublic(p).readUInt32BE(6)).toBe(0x82080040);
  });

  it('refuses trailing bytes inside the size and oversized sizes', () => {
    const bytes = marshalTpm2bNvPublic({ ...ordinary, authPolicy: Buffer.alloc(32, 1) });
    const inner = Buffer.concat([bytes, Buffer.of(0)]);
    inner.writeUInt16BE(bytes.length - 1, 0);
    expect(parseCode(() => unmarshalTpm2bNvPublic(inner))).toBe('tpm_parse_trailing');
    const policy = Buffer.from(bytes);
    policy.writeUInt16BE(65, 2 + 10);
    expect(parseCode(() => unmarshalTpm2bNvPublic(policy))).toBe('tpm_parse_oversized');
    const data = Buffer.from(bytes);
    data.writeUInt16BE(2049, bytes.length - 2);
    expect(parseCode(() => unmarshalTpm2bNvPublic(data))).toBe('tpm_parse_oversized');
    expect(parseCode(() => unmarshalTpm2bNvPublic(Buffer.from('0100', 'hex')))).toBe(
      'tpm_parse_oversized',
    );
    expect(parseCode(() => unmarshalTpm2bNvPublic(Buffer.from('0000', 'hex')))).toBe(
      'tpm_parse_invalid',
    );
  });

  it('refuses a non-NV handle, a bad nameAlg, reserved attribute bits and unknown NV types', () => {
    const bytes = marshalTpmsNvPublic(ordinary);
    const handle = Buffer.from(bytes);
    handle.writeUInt32BE(0x81000001, 0);
    expect(parseCode(() => unmarshalTpmsNvPublic(handle))).toBe('tpm_parse_invalid');
    const alg = Buffer.from(bytes);
    alg.writeUInt16BE(TPM_ALG.NULL, 4);
    expect(parseCode(() => unmarshalTpmsNvPublic(alg))).toBe('tpm_parse_invalid');
    for (const bits of [1 << 8, 1 << 9, 1 << 20, 1 << 24, 3 << 4, 5 << 4, 0xf << 4]) {
      const attrs = Buffer.from(bytes);
      attrs.writeUInt32BE((attrs.readUInt32BE(6) | bits) >>> 0, 6);
      expect(parseCode(() => unmarshalTpmsNvPublic(attrs))).toBe('tpm_parse_invalid');
    }
  });

  it('refuses to marshal what it cannot encode', () => {
    expect(errorCode(() => marshalTpmsNvPublic({ ...ordinary, nvIndex: 0x81000001 }))).toBe(
      'tpm_marshal_invalid',
    );
    expect(errorCode(() => marshalTpmsNvPublic({ ...ordinary, dataSize: 4096 }))).toBe(
      'tpm_marshal_invalid',
    );
    expect(
      errorCode(() =>
        marshalTpmsNvPublic({
          ...ordinary,
          attributes: { ...ordinary.attributes, nt: 3 as typeof TPM_NT.BITS },
        }),
      ),
    ).toBe('tpm_marshal_invalid');
  });

  it('refuses every truncation and trailing bytes; arbitrary and mutated bytes give a value or its own error', () => {
    for (const p of [ordinary, { ...ordinary, authPolicy: Buffer.alloc(32, 1) }]) {
      expectParserContract(unmarshalTpm2bNvPublic, marshalTpm2bNvPublic, marshalTpm2bNvPublic(p));
      expectParserContract(unmarshalTpmsNvPublic, marshalTpmsNvPublic, marshalTpmsNvPublic(p));
    }
  });
});

describe('nvWriteCpHash', () => {
  // Captured on swtpm with tpm2-tools 5.4: `tpm2_nvdefine -a <attributes>`, then
  // `tpm2_nvextend -C <index> -i data --cphash` / `tpm2_nvincrement -C <index> --cphash`
  // (TPM2B_DIGEST output, size prefix dropped) and `tpm2_nvreadpublic` for the names.
  const WRITTEN = 1 << 29;
  const extend = {
    index: 0x01500099,
    nameAlg: 'sha256' as const,
    attributes: 0x2060042,
    dataSize: 32,
  };
  const counter = {
    index: 0x01500098,
    nameAlg: 'sha256' as const,
    attributes: 0x2060012,
    dataSize: 8,
  };
  const name = (space: typeof extend, written: boolean) =>
    nvIndexName(
      nvSpacePublic({ ...space, attributes: space.attributes | (written ? WRITTEN : 0) }),
    );
  const abc = Buffer.from('abc');

  it('computes the names tpm2_nvreadpublic reported', () => {
    expect(name(extend, false).toString('hex')).toBe(
      '000bd5fdd08334d3eaf7bbf82358fd3affb0d7c2bd0af5190c8f30ecca1730f0fd64',
    );
    expect(name(extend, true).toString('hex')).toBe(
      '000bd669e9f5560acbdf6920d4bfde659ce357ad327b898aae5dbeddf96a78e2a32c',
    );
    expect(name(counter, false).toString('hex')).toBe(
      '000ba8aff5ed102bbc05dbf03a66103a03b8f54773bf62b5c1864f9a4ab6c84072cf',
    );
  });

  it('equals tpm2_nvextend --cphash, before and after the first write', () => {
    expect(nvWriteCpHash(name(extend, false), { kind: 'extend', data: abc }).toString('hex')).toBe(
      'fe4928e3213c125b550a9911621aa0c0b4a8c21b3f480fe7afec87c609002beb',
    );
    expect(nvWriteCpHash(name(extend, true), { kind: 'extend', data: abc }).toString('hex')).toBe(
      '4f2acfb3e274bfd788bcc1117a963fd899b5664d83a14c600d19aceba0b301dc',
    );
  });

  it('equals tpm2_nvincrement --cphash', () => {
    expect(nvWriteCpHash(name(counter, false), { kind: 'increment' }).toString('hex')).toBe(
      '5cb61a6afcf659576c651aca80fe8c54e1eee76fe0c231e16d5b6dea12f4ad45',
    );
  });

  it('differs for other data, another command and another name', () => {
    const n = name(extend, true);
    const base = nvWriteCpHash(n, { kind: 'extend', data: abc });
    expect(nvWriteCpHash(n, { kind: 'extend', data: Buffer.from('abd') }).equals(base)).toBe(false);
    expect(nvWriteCpHash(n, { kind: 'increment' }).equals(base)).toBe(false);
    expect(nvWriteCpHash(name(extend, false), { kind: 'extend', data: abc }).equals(base)).toBe(
      false,
    );
  });
});
