/**
 * TPM structures produced live by swtpm through tpm2-tools: parsed, re-marshalled byte for
 * byte, and checked (names, templates, signatures, PCR digests, nonces, credentials).
 */
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TPM_ALG,
  TPM_NT,
  TPM_ST,
  isTpmGenerated,
  marshalCredentialFile,
  marshalTpmsAttest,
  marshalTpmtSignature,
  nvAttributes,
  nvIndexName,
  objectName,
  pcrDigest,
  pcrSelectionToList,
  publicToKeyObject,
  splitPcrValues,
  unmarshalCredentialFile,
  unmarshalTpm2bPublic,
  unmarshalTpmsAttest,
  unmarshalTpmtSignature,
  verifyTpmtSignature,
  type TpmsAttest,
  type TpmtPublic,
} from '../../src/tpm/marshal/index.js';
import { AK_TEMPLATES, EK_TEMPLATES, withUnique } from '../../src/tpm/templates.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { checkPublic, errorCode } from './support.js';
import { tpmTools, type Tools } from './tools.js';

let tpm: SimTpm;
let t: Tools;

beforeAll(async () => {
  tpm = await startSimTpm();
  t = await tpmTools(tpm);
});

afterAll(async () => {
  await tpm.destroy();
  await t.cleanup();
});

/** The public area and name tpm2-tools wrote, checked (checkPublic), `template` but for unique. */
async function readPublic(
  file: string,
  nameFile: string,
  template?: TpmtPublic,
): Promise<{ pub: TpmtPublic; name: Buffer }> {
  const name = await t.read(nameFile);
  return { pub: checkPublic(await t.read(file), name, template, file), name };
}

/** An attestation tpm2-tools wrote (its objects flushed), checked for a byte-exact round trip. */
async function readAttest(file: string): Promise<{ bytes: Buffer; attest: TpmsAttest }> {
  await t.flush();
  const bytes = await t.read(file);
  const attest = unmarshalTpmsAttest(bytes);
  expect(marshalTpmsAttest(attest).equals(bytes)).toBe(true);
  return { bytes, attest };
}

describe('EK templates against the EKs swtpm holds', () => {
  it.each([
    ['0x81010001', 'rsa', EK_TEMPLATES.rsa2048],
    ['0x81010016', 'p384', EK_TEMPLATES['ecc-p384']],
  ] as const)(
    '%s equals our template except unique, and the names agree',
    async (handle, tag, template) => {
      await t.tpm2('readpublic', '-c', handle, '-o', `ek-${tag}.pub`, '-n', `ek-${tag}.name`);
      const { pub, name } = await readPublic(`ek-${tag}.pub`, `ek-${tag}.name`, template);
      expect(objectName(withUnique(template, pub.unique)).equals(name)).toBe(true);
    },
  );

  it('tpm2_createek with the TCG RSA template recreates the persistent RSA EK', async () => {
    await t.tpm2('createek', '-G', 'rsa', '-c', 'ek-rsa.ctx', '-u', 'ek-rsa-new.pub');
    await t.flush();
    const fresh = unmarshalTpm2bPublic(await t.read('ek-rsa-new.pub'));
    const persistent = unmarshalTpm2bPublic(await t.read('ek-rsa.pub'));
    expect(fresh).toEqual(persistent);
  });

  it('tpm2_createek -G ecc makes the L-2 P-256 EK', async () => {
    await t.tpm2('createek', '-G', 'ecc', '-c', 'ek-p256.ctx', '-u', 'ek-p256.pub');
    await t.tpm2('readpublic', '-c', 'ek-p256.ctx', '-n', 'ek-p256.name');
    await t.flush();
    await readPublic('ek-p256.pub', 'ek-p256.name', EK_TEMPLATES['ecc-p256']);
  });
});

describe('attestation keys, quotes, certify, NV and credentials', () => {
  const aks: Record<'ecc' | 'rsa', { pub: TpmtPublic; name: Buffer }> = {} as never;

  beforeAll(async () => {
    for (const [k, alg, scheme, template] of [
      ['ecc', 'ecc', 'ecdsa', AK_TEMPLATES['ecc-p256']],
      ['rsa', 'rsa', 'rsassa', AK_TEMPLATES.rsa2048],
    ] as const) {
      await t.tpm2(
        'createak',
        '-C',
        '0x81010001',
        '-c',
        `ak-${k}.ctx`,
        '-G',
        alg,
        '-g',
        'sha256',
        '-s',
        scheme,
      );
      await t.tpm2('readpublic', '-c', `ak-${k}.ctx`, '-o', `ak-${k}.pub`, '-n', `ak-${k}.name`);
      await t.tpm2('readpublic', '-c', `ak-${k}.ctx`, '-f', 'pem', '-o', `ak-${k}.pem`);
      await t.flush();
      aks[k] = await readPublic(`ak-${k}.pub`, `ak-${k}.name`, template);
    }
  });

  it('AKs (our AK templates but for unique: readPublic) have the keys of the PEM tpm2-tools exports', async () => {
    for (const k of ['ecc', 'rsa'] as const) {
      const pem = createPublicKey(await t.read(`ak-${k}.pem`));
      expect(publicToKeyObject(aks[k].pub).equals(pem)).toBe(true);
    }
  });

  it.each(['ecc', 'rsa'] as const)(
    'a tpm2_quote by the %s AK parses and verifies, with the nonce and the recomputed PCR digest',
    async (k) => {
      const event = randomBytes(32);
      await t.tpm2('pcrextend', `16:sha256=${event.toString('hex')}`);
      const nonce = randomBytes(32);
      await t.tpm2(
        'quote',
        ...[
          '-c',
          `ak-${k}.ctx`,
          '-l',
          'sha256:0,7,16+sha1:16',
          '-q',
          nonce.toString('hex'),
          '-g',
          'sha256',
        ],
        ...['-m', `q-${k}.attest`, '-s', `q-${k}.sig`, '-o', `q-${k}.pcrs`, '-F', 'values'],
      );
      const { bytes: attestBytes, attest } = await readAttest(`q-${k}.attest`);
      const sigBytes = await t.read(`q-${k}.sig`);
      const signature = unmarshalTpmtSignature(sigBytes);
      expect(marshalTpmtSignature(signature).equals(sigBytes)).toBe(true);

      expect(isTpmGenerated(attest)).toBe(true);
      expect(Buffer.from(attest.extraData).equals(nonce)).toBe(true);
      expect(Buffer.from(attest.qualifiedSigner).length).toBe(34);
      verifyTpmtSignature(aks[k].pub, signature, attestBytes);

      if (attest.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error('not a quote');
      const sel = attest.attested.pcrSelect;
      expect(pcrSelectionToList(sel)).toEqual([
        { bank: 'sha256', pcrs: [0, 7, 16] },
        { bank: 'sha1', pcrs: [16] },
      ]);
      const values = splitPcrValues(sel, await t.read(`q-${k}.pcrs`));
      expect(
        pcrDigest(TPM_ALG.SHA256, sel, values).equals(Buffer.from(attest.attested.pcrDigest)),
      ).toBe(true);
      // PCRs start at zero; PCR 16 is the chain of our extends, so never zero.
      expect(values.sha256?.[0]).toEqual(Buffer.alloc(32));
      expect(values.sha256?.[16]).not.toEqual(Buffer.alloc(32));

      // A different nonce or a tampered PCR value no longer matches.
      const tampered = { ...values, sha256: { ...values.sha256, 7: Buffer.alloc(32, 1) } };
      expect(
        pcrDigest(TPM_ALG.SHA256, sel, tampered).equals(Buffer.from(attest.attested.pcrDigest)),
      ).toBe(false);
      const flipped = Buffer.from(attestBytes);
      flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;
      expect(
        errorCode(() => {
          verifyTpmtSignature(aks[k].pub, signature, flipped);
        }),
      ).toBe('tpm_signature_invalid');

      // tpm2_checkquote agrees on the same bytes.
      await t.tpm2(
        'checkquote',
        ...['-u', `ak-${k}.pub`, '-m', `q-${k}.attest`, '-s', `q-${k}.sig`, '-f', `q-${k}.pcrs`],
        ...['-g', 'sha256', '-q', nonce.toString('hex'), '-l', 'sha256:0,7,16+sha1:16'],
      );
    },
  );

  it('PCR values in a quote follow the extends we made', async () => {
    await t.tpm2('pcrreset', '23');
    const e1 = randomBytes(32);
    await t.tpm2('pcrextend', `23:sha256=${e1.toString('hex')}`);
    await t.tpm2(
      'quote',
      '-c',
      'ak-ecc.ctx',
      '-l',
      'sha256:23',
      '-g',
      'sha256',
      '-m',
      'q23.attest',
      '-o',
      'q23.pcrs',
      '-F',
      'values',
    );
    await t.flush();
    const attest = unmarshalTpmsAttest(await t.read('q23.attest'));
    if (attest.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error('not a quote');
    const expected = createHash('sha256')
      .update(Buffer.concat([Buffer.alloc(32), e1]))
      .digest();
    const values = splitPcrValues(attest.attested.pcrSelect, await t.read('q23.pcrs'));
    expect(values.sha256?.[23]).toEqual(expected);
    expect(
      pcrDigest(TPM_ALG.SHA256, attest.attested.pcrSelect, { sha256: { 23: expected } }).equals(
        Buffer.from(attest.attested.pcrDigest),
      ),
    ).toBe(true);
  });

  it('tpm2_certify of the ECC AK by the RSA AK names the ECC AK and verifies', async () => {
    await t.tpm2(
      'certify',
      '-c',
      'ak-ecc.ctx',
      '-C',
      'ak-rsa.ctx',
      '-g',
      'sha256',
      '-o',
      'c.attest',
      '-s',
      'c.sig',
    );
    const { bytes, attest } = await readAttest('c.attest');
    if (attest.attested.type !== TPM_ST.ATTEST_CERTIFY) throw new Error('not certify');
    expect(Buffer.from(attest.attested.name).equals(aks.ecc.name)).toBe(true);
    const signature = unmarshalTpmtSignature(await t.read('c.sig'));
    verifyTpmtSignature(aks.rsa.pub, signature, bytes);
    expect(
      errorCode(() => {
        verifyTpmtSignature(aks.ecc.pub, signature, bytes);
      }),
    ).toBe('tpm_signature_scheme_mismatch');
  });

  it('NV indices: our names equal tpm2_nvreadpublic, and tpm2_nvcertify parses and verifies', async () => {
    const owner = ['ownerWrite', 'authWrite', 'ownerRead', 'authRead'] as const;
    const cases = [
      {
        index: 0x01500020,
        nt: TPM_NT.ORDINARY,
        size: 16,
        attrs: 'ownerread|ownerwrite|authread|authwrite',
      },
      {
        index: 0x01500021,
        nt: TPM_NT.COUNTER,
        size: 8,
        attrs: 'ownerread|ownerwrite|authread|authwrite|nt=counter',
      },
      {
        index: 0x01500022,
        nt: TPM_NT.EXTEND,
        size: 32,
        attrs: 'ownerread|ownerwrite|authread|authwrite|nt=extend',
      },
    ];
    for (const c of cases) {
      const hex = `0x${c.index.toString(16)}`;
      await t.tpm2('nvdefine', hex, '-C', 'o', '-s', String(c.size), '-g', 'sha256', '-a', c.attrs);
      const before = nvIndexName({
        nvIndex: c.index,
        nameAlg: TPM_ALG.SHA256,
        attributes: nvAttributes(c.nt, ...owner),
        authPolicy: Buffer.alloc(0),
        dataSize: c.size,
      });
      expect(await t.tpm2('nvreadpublic', hex)).toContain(`name: ${before.toString('hex')}`);
    }
    const contents = randomBytes(16);
    await t.write('nv.bin', contents);
    await t.tpm2('nvwrite', '0x1500020', '-C', 'o', '-i', 'nv.bin');
    const written = nvIndexName({
      nvIndex: 0x01500020,
      nameAlg: TPM_ALG.SHA256,
      attributes: nvAttributes(TPM_NT.ORDINARY, ...owner, 'written'),
      authPolicy: Buffer.alloc(0),
      dataSize: 16,
    });
    expect(await t.tpm2('nvreadpublic', '0x1500020')).toContain(`name: ${written.toString('hex')}`);

    const nonce = randomBytes(32);
    await t.tpm2(
      'nvcertify',
      ...['-C', 'ak-ecc.ctx', '-g', 'sha256', '-c', '0x1500020', '-q', nonce.toString('hex')],
      ...['--size', '16', '--offset', '0'],
      ...['--attestation', 'nv.attest', '-o', 'nv.sig', '0x1500020'],
    );
    const { bytes, attest } = await readAttest('nv.attest');
    expect(Buffer.from(attest.extraData).equals(nonce)).toBe(true);
    if (attest.attested.type !== TPM_ST.ATTEST_NV) throw new Error('not NV');
    expect(Buffer.from(attest.attested.indexName).equals(written)).toBe(true);
    expect(Buffer.from(attest.attested.nvContents).equals(contents)).toBe(true);
    verifyTpmtSignature(aks.ecc.pub, unmarshalTpmtSignature(await t.read('nv.sig')), bytes);
  });

  /** tpm2_makecredential (no TPM) of a fresh secret for the ECC AK under `ekPub`, into `out`. */
  async function makeCredential(ekPub: string, out: string): Promise<Buffer> {
    const secret = randomBytes(32);
    await t.write(`${out}.secret`, secret);
    await t.tpm2(
      'makecredential',
      ...['-T', 'none', '-u', ekPub, '-s', `${out}.secret`, '-n', aks.ecc.name.toString('hex')],
      ...['-o', out],
    );
    return secret;
  }

  /** tpm2_activatecredential of `cred` for the ECC AK under the EK at `ek`, into `out`. */
  function activate(ek: string, cred: string, out: string, ...auth: string[]): Promise<string> {
    return t.tpm2(
      'activatecredential',
      '-c',
      'ak-ecc.ctx',
      '-C',
      ek,
      '-i',
      cred,
      '-o',
      out,
      ...auth,
    );
  }

  it('a credential file re-marshalled from our structures activates under the RSA EK (policy session)', async () => {
    const secret = await makeCredential('ek-rsa.pub', 'cred.bin');
    const original = await t.read('cred.bin');
    const parsed = unmarshalCredentialFile(original);
    const ours = marshalCredentialFile({
      credentialBlob: Buffer.from(parsed.credentialBlob),
      encryptedSecret: Buffer.from(parsed.encryptedSecret),
    });
    expect(ours.equals(original)).toBe(true);
    await t.write('cred-ours.bin', ours);
    await t.tpm2('startauthsession', '--policy-session', '-S', 'session.ctx');
    await t.tpm2('policysecret', '-S', 'session.ctx', '-c', 'e');
    await activate('0x81010001', 'cred-ours.bin', 'out.bin', '-P', 'session:session.ctx');
    await t.flush();
    expect((await t.read('out.bin')).equals(secret)).toBe(true);
  });

  it('the P-384 EK (H-3 template, userWithAuth) activates with its empty authValue, not a bare PolicySecret', async () => {
    const secret = await makeCredential('ek-p384.pub', 'cred384.bin');
    const parsed = unmarshalCredentialFile(await t.read('cred384.bin'));
    // ECC EK: the encrypted secret is an ephemeral P-384 point (two 48-byte TPM2B coordinates).
    expect(parsed.encryptedSecret.length).toBe(2 + 48 + 2 + 48);
    await activate('0x81010016', 'cred384.bin', 'out384.bin');
    await t.flush();
    expect((await t.read('out384.bin')).equals(secret)).toBe(true);

    await t.tpm2('startauthsession', '--policy-session', '-g', 'sha384', '-S', 's384.ctx');
    await t.tpm2('policysecret', '-S', 's384.ctx', '-c', 'e');
    await expect(
      activate('0x81010016', 'cred384.bin', 'x.bin', '-P', 'session:s384.ctx'),
    ).rejects.toThrow(/policy check failed/);
    await t.flush();
  });
});
