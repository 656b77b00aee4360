/**
 * The checks every fixture set written by test/fixtures/tpm/make-fixtures.sh must pass:
 * byte-exact round trips, names, templates, signatures, nonces, PCR digests, NV names.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import {
  TPM_ALG,
  TPM_ST,
  decodeNvAttributes,
  isTpmGenerated,
  marshalCredentialFile,
  marshalTpmsAttest,
  marshalTpmtSignature,
  nvIndexName,
  pcrDigest,
  pcrSelectionToList,
  splitPcrValues,
  unmarshalCredentialFile,
  unmarshalTpmsAttest,
  unmarshalTpmtSignature,
  verifyTpmtSignature,
  type TpmtPublic,
} from '../../src/tpm/marshal/index.js';
import { AK_TEMPLATES, EK_TEMPLATES } from '../../src/tpm/templates.js';
import { checkPublic } from './support.js';

export const FIXTURE_FILES = [
  'ak-ecc.name',
  'ak-ecc.pub',
  'ak-rsa.name',
  'ak-rsa.pub',
  'ak-rsapss.name',
  'ak-rsapss.pub',
  'certify.attest',
  'certify.sig',
  'credential-ecc384.blob',
  'credential-rsa.blob',
  'ek-ecc256.name',
  'ek-ecc256.pub',
  'ek-ecc384.name',
  'ek-ecc384.pub',
  'ek-rsa2048.name',
  'ek-rsa2048.pub',
  'nv-readpublic.out',
  'nvcertify.attest',
  'nvcertify.sig',
  'quote-ecc.attest',
  'quote-ecc.pcrs',
  'quote-ecc.sig',
  'quote-rsa.attest',
  'quote-rsa.pcrs',
  'quote-rsa.sig',
  'quote-rsapss.attest',
  'quote-rsapss.pcrs',
  'quote-rsapss.sig',
  'quote.nonce.hex',
];

export function checkFixtureSet(dir: string): void {
  const f = (name: string): Buffer => readFileSync(join(dir, name));
  const generated = readdirSync(dir).filter((n) => FIXTURE_FILES.includes(n));
  expect(generated.sort()).toEqual([...FIXTURE_FILES].sort());

  const publics: Record<string, TpmtPublic> = {};
  for (const [name, template] of [
    ['ek-rsa2048', EK_TEMPLATES.rsa2048],
    ['ek-ecc256', EK_TEMPLATES['ecc-p256']],
    ['ek-ecc384', EK_TEMPLATES['ecc-p384']],
    ['ak-ecc', AK_TEMPLATES['ecc-p256']],
    ['ak-rsa', AK_TEMPLATES.rsa2048],
    ['ak-rsapss', undefined],
  ] as const) {
    publics[name] = checkPublic(f(`${name}.pub`), f(`${name}.name`), template, name);
  }
  const key = (name: string): TpmtPublic => {
    const p = publics[name];
    if (p === undefined) throw new Error(`no public ${name}`);
    return p;
  };

  const nonce = Buffer.from(f('quote.nonce.hex').toString('utf8').trim(), 'hex');
  const attested = (name: string, signer: string): ReturnType<typeof unmarshalTpmsAttest> => {
    const bytes = f(`${name}.attest`);
    const sigBytes = f(`${name}.sig`);
    const a = unmarshalTpmsAttest(bytes);
    const s = unmarshalTpmtSignature(sigBytes);
    expect(marshalTpmsAttest(a).equals(bytes), name).toBe(true);
    expect(marshalTpmtSignature(s).equals(sigBytes), name).toBe(true);
    expect(isTpmGenerated(a), name).toBe(true);
    verifyTpmtSignature(key(signer), s, bytes);
    return a;
  };

  for (const k of ['ecc', 'rsa', 'rsapss']) {
    const a = attested(`quote-${k}`, `ak-${k}`);
    expect(Buffer.from(a.extraData).equals(nonce)).toBe(true);
    if (a.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error('not a quote');
    expect(pcrSelectionToList(a.attested.pcrSelect)).toEqual([
      { bank: 'sha1', pcrs: [0, 16] },
      { bank: 'sha256', pcrs: [0, 1, 2, 3, 16, 23] },
    ]);
    const values = splitPcrValues(a.attested.pcrSelect, f(`quote-${k}.pcrs`));
    expect(
      pcrDigest(TPM_ALG.SHA256, a.attested.pcrSelect, values).equals(
        Buffer.from(a.attested.pcrDigest),
      ),
    ).toBe(true);
  }

  const certify = attested('certify', 'ak-rsa');
  if (certify.attested.type !== TPM_ST.ATTEST_CERTIFY) throw new Error('not certify');
  expect(Buffer.from(certify.attested.name).equals(f('ak-ecc.name'))).toBe(true);

  const nv = attested('nvcertify', 'ak-ecc');
  if (nv.attested.type !== TPM_ST.ATTEST_NV) throw new Error('not NV');
  expect(Buffer.from(nv.extraData).equals(nonce)).toBe(true);
  expect(Buffer.from(nv.attested.nvContents).toString()).toBe('grantor-nv-fixture-0123456789abc');

  // Every index tpm2_nvreadpublic listed: our name from its fields equals the TPM's.
  const blocks = f('nv-readpublic.out')
    .toString('utf8')
    .split(/\n(?=0x)/);
  let indices = 0;
  for (const block of blocks) {
    const m =
      /^(0x[0-9a-f]+):\n\s+name: ([0-9a-f]+)\n\s+hash algorithm:\n.*\n\s+value: (0x[0-9A-F]+)\n\s+attributes:\n.*\n\s+value: (0x[0-9A-F]+)\n\s+size: (\d+)/.exec(
        block.trim(),
      );
    if (m === null) continue;
    const [, index, name, alg, attrs, size] = m;
    const attributes = decodeNvAttributes(Number(attrs));
    if (attributes === undefined) throw new Error(`bad attributes for ${index ?? ''}`);
    const computed = nvIndexName({
      nvIndex: Number(index),
      nameAlg: Number(alg) as typeof TPM_ALG.SHA256,
      attributes,
      authPolicy: Buffer.alloc(0),
      dataSize: Number(size),
    });
    expect(computed.toString('hex')).toBe(name);
    if (Number(index) === 0x01500010)
      expect(computed.equals(Buffer.from(nv.attested.indexName))).toBe(true);
    indices++;
  }
  expect(indices).toBeGreaterThanOrEqual(6);

  for (const k of ['rsa', 'ecc384']) {
    const bytes = f(`credential-${k}.blob`);
    expect(marshalCredentialFile(unmarshalCredentialFile(bytes)).equals(bytes)).toBe(true);
  }
}
