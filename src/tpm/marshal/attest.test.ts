import { describe, expect, it } from 'vitest';
import {
  errorCode,
  expectParserContract,
  fixture,
  parseCode,
} from '../../../test/marshal/support.js';
import {
  isTpmGenerated,
  marshalTpmsAttest,
  unmarshalTpm2bAttest,
  unmarshalTpmsAttest,
  type TpmsAttest,
} from './attest.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from './constants.js';

const gcp = JSON.parse(fixture('gcp/windows_gcp_shielded_vm.json.raw').toString('utf8')) as {
  AK: { CreateAttestation: string };
  Quote: { Quote: string };
};
const gcpCreation = Buffer.from(gcp.AK.CreateAttestation, 'base64');
const gcpQuote = Buffer.from(gcp.Quote.Quote, 'base64');
const quote = fixture('quote-ecc.attest');
const nonce = Buffer.from(fixture('quote.nonce.hex').toString('utf8'), 'hex');

const clockInfo = { clock: 123456789n, resetCount: 3, restartCount: 1, safe: true };
const base = {
  magic: TPM_GENERATED_VALUE,
  qualifiedSigner: Buffer.from('000b' + '11'.repeat(32), 'hex'),
  extraData: Buffer.alloc(32, 2),
  clockInfo,
  firmwareVersion: 0x2019102300163636n,
};

describe('TPMS_ATTEST from swtpm + tpm2-tools', () => {
  it.each(['quote-ecc', 'quote-rsa', 'quote-rsapss', 'certify', 'nvcertify'])(
    '%s round-trips byte for byte',
    (name) => {
      const bytes = fixture(`${name}.attest`);
      const a = unmarshalTpmsAttest(bytes);
      expect(isTpmGenerated(a)).toBe(true);
      expect(marshalTpmsAttest(a).equals(bytes)).toBe(true);
    },
  );

  it('decodes a quote: nonce in extraData, clock info, two-bank selection, SHA-256 digest', () => {
    const a = unmarshalTpmsAttest(quote);
    expect(Buffer.from(a.extraData).equals(nonce)).toBe(true);
    expect(a.clockInfo.safe).toBe(true);
    expect(a.clockInfo.restartCount).toBe(0);
    expect(a.clockInfo.clock).toBeGreaterThan(0n);
    if (a.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error('expected a quote');
    expect(a.attested.pcrSelect.map((s) => s.hashAlg)).toEqual([TPM_ALG.SHA1, TPM_ALG.SHA256]);
    expect(a.attested.pcrDigest.length).toBe(32);
  });

  it('decodes certify and NV certify bodies', () => {
    const c = unmarshalTpmsAttest(fixture('certify.attest'));
    if (c.attested.type !== TPM_ST.ATTEST_CERTIFY) throw new Error('expected certify');
    expect(Buffer.from(c.attested.name).equals(fixture('ak-ecc.name'))).toBe(true);
    const n = unmarshalTpmsAttest(fixture('nvcertify.attest'));
    if (n.attested.type !== TPM_ST.ATTEST_NV) throw new Error('expected NV');
    expect(n.attested.offset).toBe(0);
    expect(Buffer.from(n.attested.nvContents).toString()).toBe('grantor-nv-fixture-0123456789abc');
    expect(Buffer.from(n.extraData).equals(nonce)).toBe(true);
  });

  it('parses the Google Cloud vTPM creation and quote attestations', () => {
    const creation = unmarshalTpmsAttest(gcpCreation);
    expect(creation.attested.type).toBe(TPM_ST.ATTEST_CREATION);
    expect(marshalTpmsAttest(creation).equals(gcpCreation)).toBe(true);
    const q = unmarshalTpmsAttest(gcpQuote);
    expect(marshalTpmsAttest(q).equals(gcpQuote)).toBe(true);
    expect(q.extraData.length).toBe(0);
    if (q.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error('expected a quote');
    expect(q.attested.pcrSelect).toEqual([
      { hashAlg: TPM_ALG.SHA1, pcrSelect: Buffer.from('ffffff', 'hex') },
    ]);
    expect(q.attested.pcrDigest.length).toBe(20);
  });

  it('round-trips the other attestation kinds', () => {
    const all: TpmsAttest[] = [
      {
        ...base,
        attested: {
          type: TPM_ST.ATTEST_NV_DIGEST,
          indexName: Buffer.alloc(34, 1),
          nvDigest: Buffer.alloc(32, 3),
        },
      },
      {
        ...base,
        attested: {
          type: TPM_ST.ATTEST_TIME,
          time: 99n,
          timeClockInfo: { ...clockInfo, safe: false },
          timeFirmwareVersion: 7n,
        },
      },
      {
        ...base,
        attested: {
          type: TPM_ST.ATTEST_COMMAND_AUDIT,
          auditCounter: 5n,
          digestAlg: TPM_ALG.SHA384,
          auditDigest: Buffer.alloc(48, 4),
          commandDigest: Buffer.alloc(48, 5),
        },
      },
      {
        ...base,
        attested: {
          type: TPM_ST.ATTEST_SESSION_AUDIT,
          exclusiveSession: true,
          sessionDigest: Buffer.alloc(32, 6),
        },
      },
    ];
    // Each member's bytes as Part 2 (10.12) lays them out, written out by hand: no capture
    // holds these kinds, and a round trip alone cannot see two fields in the wrong order.
    const u16 = (v: number): Buffer => Buffer.of(v >> 8, v & 0xff);
    const u32 = (v: number): Buffer => Buffer.concat([u16(v >>> 16), u16(v & 0xffff)]);
    const u64 = (v: number): Buffer => Buffer.concat([u32(Math.floor(v / 2 ** 32)), u32(v >>> 0)]);
    const sized = (n: number, fill: number): Buffer =>
      Buffer.concat([u16(n), Buffer.alloc(n, fill)]);
    // TPMS_CLOCK_INFO of the time member: clock, resetCount, restartCount, safe = NO.
    const clock = Buffer.concat([u64(123456789), u32(3), u32(1), Buffer.of(0)]);
    const tails = [
      Buffer.concat([sized(34, 1), sized(32, 3)]),
      Buffer.concat([u64(99), clock, u64(7)]),
      Buffer.concat([u64(5), u16(0x000c), sized(48, 4), sized(48, 5)]),
      Buffer.concat([Buffer.of(1), sized(32, 6)]),
    ];
    for (const [i, a] of all.entries()) {
      const bytes = marshalTpmsAttest(a);
      expect(unmarshalTpmsAttest(bytes)).toEqual(a);
      const tail = tails[i] ?? Buffer.alloc(0);
      expect(bytes.subarray(bytes.length - tail.length).toString('hex')).toBe(tail.toString('hex'));
    }
  });

  it('parses a TPM2B_ATTEST and refuses an empty one', () => {
    const sized = Buffer.concat([Buffer.of(quote.length >> 8, quote.length & 0xff), quote]);
    expect(unmarshalTpm2bAttest(sized)).toEqual(unmarshalTpmsAttest(quote));
    expect(parseCode(() => unmarshalTpm2bAttest(Buffer.of(0, 0)))).toBe('tpm_parse_invalid');
  });

  it('keeps a wrong magic for the verifier to refuse', () => {
    const bad = Buffer.from(quote);
    bad.writeUInt32BE(0x12345678, 0);
    expect(isTpmGenerated(unmarshalTpmsAttest(bad))).toBe(false);
  });
});

describe('TPMS_ATTEST rejections', () => {
  // Offsets in the quote fixture: magic 0, type 4, qualifiedSigner 6 (2+34), extraData 42 (2+32),
  // clockInfo 76 (17), firmwareVersion 93, pcrSelect 101 (count), ...
  it.each([
    ['qualifiedSigner', 6, 67],
    ['extraData', 42, 67],
    ['pcrSelect.count', 101, 17],
    ['pcrDigest', quote.length - 34, 65],
  ])('refuses an oversized %s', (_field, offset, size) => {
    const bad = Buffer.from(quote);
    if (_field === 'pcrSelect.count') bad.writeUInt32BE(size, offset);
    else bad.writeUInt16BE(size, offset);
    expect(parseCode(() => unmarshalTpmsAttest(bad))).toBe('tpm_parse_oversized');
  });

  it('refuses oversized NV contents', () => {
    const a = unmarshalTpmsAttest(fixture('nvcertify.attest'));
    if (a.attested.type !== TPM_ST.ATTEST_NV) throw new Error('expected NV');
    const bytes = marshalTpmsAttest({
      ...a,
      attested: { ...a.attested, nvContents: Buffer.alloc(2048) },
    });
    bytes.writeUInt16BE(2049, bytes.length - 2050);
    expect(parseCode(() => unmarshalTpmsAttest(Buffer.concat([bytes, Buffer.of(0)])))).toBe(
      'tpm_parse_oversized',
    );
  });

  it('refuses an unknown attestation type, a bad TPMI_YES_NO and a bad PCR bank', () => {
    const type = Buffer.from(quote);
    type.writeUInt16BE(0x8001, 4);
    expect(parseCode(() => unmarshalTpmsAttest(type))).toBe('tpm_parse_invalid');
    const safe = Buffer.from(quote);
    safe[76 + 16] = 2;
    expect(parseCode(() => unmarshalTpmsAttest(safe))).toBe('tpm_parse_invalid');
    const bank = Buffer.from(quote);
    bank.writeUInt16BE(0x0006, 105);
    expect(parseCode(() => unmarshalTpmsAttest(bank))).toBe('tpm_parse_invalid');
  });

  it('refuses values it cannot marshal', () => {
    const a = unmarshalTpmsAttest(quote);
    expect(errorCode(() => marshalTpmsAttest({ ...a, extraData: Buffer.alloc(67) }))).toBe(
      'tpm_marshal_invalid',
    );
  });

  it('refuses every truncation and trailing bytes; arbitrary and mutated bytes give a value or its own error', () => {
    for (const sample of [
      quote,
      fixture('nvcertify.attest'),
      fixture('certify.attest'),
      gcpCreation,
    ]) {
      expectParserContract(unmarshalTpmsAttest, marshalTpmsAttest, sample);
    }
    const sized = (a: TpmsAttest): Buffer => {
      const body = marshalTpmsAttest(a);
      return Buffer.concat([Buffer.of(body.length >> 8, body.length & 0xff), body]);
    };
    expectParserContract(unmarshalTpm2bAttest, sized, sized(unmarshalTpmsAttest(quote)));
  });
});

describe('TPMS_ATTEST marshal guards', () => {
  it('refuses an unknown attestation type smuggled in through a cast', () => {
    const a = unmarshalTpmsAttest(quote);
    expect(
      errorCode(() =>
        marshalTpmsAttest({
          ...a,
          attested: { ...a.attested, type: 0x8001 },
        } as unknown as TpmsAttest),
      ),
    ).toBe('tpm_marshal_invalid');
  });
});
