/**
 * Structures produced by our addon (src/tpm/tpm.native.ts) on swtpm, parsed with our
 * marshal code: byte-exact round trips, names, templates, signatures and PCR digests.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TPM_ALG,
  TPM_NT,
  TPM_ST,
  encodeNvAttributes,
  isTpmGenerated,
  marshalCredentialFile,
  marshalTpm2bEncryptedSecret,
  marshalTpm2bIdObject,
  marshalTpm2bNvPublic,
  marshalTpm2bPublic,
  marshalTpmsAttest,
  marshalTpmtPublic,
  marshalTpmtSignature,
  nvAttributes,
  nvIndexName,
  objectName,
  pcrDigest,
  unmarshalCredentialFile,
  unmarshalTpm2bNvPublic,
  unmarshalTpm2bPublic,
  unmarshalTpmsAttest,
  unmarshalTpmtSignature,
  verifyTpmtSignature,
  type PcrValues,
  type TpmsNvPublic,
} from '../../src/tpm/marshal/index.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import type { LoadedObject } from '../../src/tpm/tpm.port.js';
import {
  AK_TEMPLATE_ECC_P256,
  AK_TEMPLATE_RSA2048,
  EK_HANDLES,
  EK_TEMPLATE_ECC_P384,
  EK_TEMPLATE_RSA2048,
} from '../../src/tpm/templates.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { SRK_ECC_P256 } from '../tpm/helpers.js';
import { toolEnv } from './tools.js';

const run = promisify(execFile);

let sim: SimTpm;
let tpm: NativeTpm;
let dir: string;
const SRK = 0x81000002;

const akKeys: Partial<Record<'ecc' | 'rsa', { public: Buffer; private: Buffer }>> = {};

function akOf(k: 'ecc' | 'rsa'): { public: Buffer; private: Buffer } {
  const ak = akKeys[k];
  if (ak === undefined) throw new Error(`AK ${k} not created`);
  return ak;
}

function withAk<T>(k: 'ecc' | 'rsa', use: (ak: LoadedObject) => Promise<T>): Promise<T> {
  return tpm.withLoaded(() => tpm.load(SRK, akOf(k)), use);
}

beforeAll(async () => {
  sim = await startSimTpm();
  dir = await mkdtemp(join(tmpdir(), 'grantor-marshal-addon-'));
  tpm = await NativeTpm.open(sim.tcti);
  // A storage key to hold the AKs (the EK would need its policy for every load).
  const srk = await tpm.createPrimary('owner', SRK_ECC_P256);
  try {
    akKeys.ecc = await tpm.create(srk.handle, marshalTpmtPublic(AK_TEMPLATE_ECC_P256));
    akKeys.rsa = await tpm.create(srk.handle, marshalTpmtPublic(AK_TEMPLATE_RSA2048));
    await tpm.makePersistent(srk.handle, SRK);
  } finally {
    await tpm.flush(srk.handle);
  }
});

afterAll(async () => {
  await tpm.close();
  await sim.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('public areas from the addon', () => {
  it.each([
    ['rsa2048', EK_TEMPLATE_RSA2048],
    ['ecc-p384', EK_TEMPLATE_ECC_P384],
  ] as const)(
    'CreatePrimary with our %s EK template recreates the EK swtpm_setup made',
    async (kind, template) => {
      const persistent = await tpm.readPublic(EK_HANDLES[kind].persistent);
      const parsed = unmarshalTpm2bPublic(persistent.public);
      expect(marshalTpm2bPublic(parsed).equals(persistent.public)).toBe(true);
      expect(objectName(parsed).equals(persistent.name)).toBe(true);

      const fresh = await tpm.createPrimary('endorsement', marshalTpmtPublic(template));
      try {
        expect(fresh.public.equals(persistent.public)).toBe(true);
        expect(fresh.name.equals(persistent.name)).toBe(true);
      } finally {
        await tpm.flush(fresh.handle);
      }
    },
  );

  it.each([
    ['ecc', AK_TEMPLATE_ECC_P256],
    ['rsa', AK_TEMPLATE_RSA2048],
  ] as const)(
    'the %s AK public area round-trips and its name is the loaded name',
    async (k, template) => {
      const pub = unmarshalTpm2bPublic(akOf(k).public);
      expect(marshalTpm2bPublic(pub).equals(akOf(k).public)).toBe(true);
      expect({ ...pub, unique: undefined }).toEqual({ ...template, unique: undefined });
      const name = await withAk(k, (ak) => Promise.resolve(ak.name));
      expect(objectName(pub).equals(name)).toBe(true);
    },
  );
});

describe('attestations from the addon', () => {
  it.each(['ecc', 'rsa'] as const)('a %s AK quote parses, round-trips and verifies', async (k) => {
    await tpm.pcrExtend(16, [{ hash: 'sha256', digest: randomBytes(32) }]);
    const nonce = randomBytes(32);
    const selection = [
      { bank: 'sha256', pcrs: [0, 16] },
      { bank: 'sha1', pcrs: [16] },
    ] as const;
    const { attest, signature } = await withAk(k, (ak) => tpm.quote(ak.handle, selection, nonce));
    const read = await tpm.pcrRead(selection);
    const a = unmarshalTpmsAttest(attest);
    const s = unmarshalTpmtSignature(signature);
    expect(marshalTpmsAttest(a).equals(attest)).toBe(true);
    expect(marshalTpmtSignature(s).equals(signature)).toBe(true);
    expect(isTpmGenerated(a)).toBe(true);
    expect(Buffer.from(a.extraData).equals(nonce)).toBe(true);
    verifyTpmtSignature(unmarshalTpm2bPublic(akOf(k).public), s, attest);
    if (a.attested.type !== TPM_ST.ATTEST_QUOTE) throw new Error('not a quote');
    const values: Record<string, Record<number, Uint8Array>> = {};
    for (const v of read.values) (values[v.bank] ??= {})[v.pcr] = v.digest;
    expect(pcrDigest(TPM_ALG.SHA256, a.attested.pcrSelect, values as PcrValues)).toEqual(
      Buffer.from(a.attested.pcrDigest),
    );
  });

  it('a Certify of the ECC AK by the RSA AK names the ECC AK', async () => {
    const nonce = randomBytes(16);
    const { attest, signature, name } = await withAk('ecc', (ecc) =>
      withAk('rsa', async (rsa) => ({
        ...(await tpm.certify(ecc.handle, rsa.handle, nonce)),
        name: ecc.name,
      })),
    );
    const a = unmarshalTpmsAttest(attest);
    expect(marshalTpmsAttest(a).equals(attest)).toBe(true);
    if (a.attested.type !== TPM_ST.ATTEST_CERTIFY) throw new Error('not certify');
    expect(Buffer.from(a.attested.name).equals(name)).toBe(true);
    verifyTpmtSignature(
      unmarshalTpm2bPublic(akOf('rsa').public),
      unmarshalTpmtSignature(signature),
      attest,
    );
  });

  it('NV public areas round-trip, names agree, and NV_Certify verifies', async () => {
    const space: TpmsNvPublic = {
      nvIndex: 0x01500030,
      nameAlg: TPM_ALG.SHA256,
      attributes: nvAttributes(TPM_NT.COUNTER, 'authWrite', 'authRead', 'noDA'),
      authPolicy: Buffer.alloc(0),
      dataSize: 8,
    };
    await tpm.nvDefine({
      index: space.nvIndex,
      nameAlg: 'sha256',
      attributes: encodeNvAttributes(space.attributes),
      dataSize: 8,
    });
    const before = await tpm.nvReadPublic(space.nvIndex);
    expect(unmarshalTpm2bNvPublic(before.public)).toEqual(space);
    expect(marshalTpm2bNvPublic(space).equals(before.public)).toBe(true);
    expect(nvIndexName(space).equals(before.name)).toBe(true);

    await tpm.nvIncrement(space.nvIndex);
    const after = await tpm.nvReadPublic(space.nvIndex);
    const written = unmarshalTpm2bNvPublic(after.public);
    expect(written.attributes.written).toBe(true);
    expect(nvIndexName(written).equals(after.name)).toBe(true);

    const nonce = randomBytes(32);
    const { attest, signature } = await withAk('ecc', (ak) =>
      tpm.nvCertify(ak.handle, space.nvIndex, nonce),
    );
    const a = unmarshalTpmsAttest(attest);
    expect(marshalTpmsAttest(a).equals(attest)).toBe(true);
    if (a.attested.type !== TPM_ST.ATTEST_NV) throw new Error('not NV');
    expect(Buffer.from(a.attested.indexName).equals(after.name)).toBe(true);
    expect(Buffer.from(a.attested.nvContents).readBigUInt64BE(0)).toBe(1n);
    verifyTpmtSignature(
      unmarshalTpm2bPublic(akOf('ecc').public),
      unmarshalTpmtSignature(signature),
      attest,
    );
  });

  it('a credential from tpm2_makecredential, split by our parser, activates through the addon', async () => {
    const ek = await tpm.readPublic(EK_HANDLES.rsa2048.persistent);
    const secret = randomBytes(32);
    await writeFile(join(dir, 'ek.pub'), ek.public);
    await writeFile(join(dir, 'secret'), secret);
    const got = await withAk('ecc', async (ak) => {
      await run(
        'tpm2_makecredential',
        ['-T', 'none', '-u', 'ek.pub', '-s', 'secret', '-n', ak.name.toString('hex'), '-o', 'cred'],
        { cwd: dir, env: toolEnv() },
      );
      const file = await readFile(join(dir, 'cred'));
      const cred = unmarshalCredentialFile(file);
      expect(marshalCredentialFile(cred).equals(file)).toBe(true);
      return tpm.activateCredential(
        ak.handle,
        EK_HANDLES.rsa2048.persistent,
        marshalTpm2bIdObject(cred.credentialBlob),
        marshalTpm2bEncryptedSecret(cred.encryptedSecret),
      );
    });
    expect(got.equals(secret)).toBe(true);
  });
});
