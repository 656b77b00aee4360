/**
 * TPM2_MakeCredential in TypeScript, proven by tpm2_activatecredential on swtpm recovering
 * the secret, for the RSA-2048 EK (0x81010001) and the ECC P-384 EK (0x81010016).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCredential } from '../../src/attestation/make-credential.js';
import { objectName, unmarshalTpm2bPublic } from '../../src/tpm/marshal/public.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { tpm2Tools, type Tools, createEccAk } from './tools.js';

let tpm: SimTpm;
let tools: Tools;

beforeAll(async () => {
  tpm = await startSimTpm();
  tools = await tpm2Tools(tpm.tcti);
  await createEccAk(tools);
  await tools.tpm2('readpublic', ['-c', '0x81010001', '-o', 'ek-rsa.pub']);
  await tools.tpm2('readpublic', ['-c', '0x81010016', '-o', 'ek-ecc.pub']);
});

afterAll(async () => {
  await tools.close();
  await tpm.destroy();
});

async function activate(ek: string, file: Buffer, policy: 'sha256' | 'none'): Promise<Buffer> {
  await tools.write('cred.bin', file);
  await tools.write('out.bin', '');
  const args = ['-c', 'ak.ctx', '-C', ek, '-i', 'cred.bin', '-o', 'out.bin'];
  if (policy === 'none') {
    await tools.tpm2('activatecredential', args);
  } else {
    // The L-1 RSA EK template has no userWithAuth: PolicySecret(TPM_RH_ENDORSEMENT).
    await tools.raw('startauthsession', ['--policy-session', '-S', 'session.ctx', '-g', policy]);
    await tools.raw('policysecret', ['-S', 'session.ctx', '-c', 'e']);
    await tools.tpm2('activatecredential', [...args, '-P', 'session:session.ctx']);
  }
  return tools.read('out.bin');
}

describe('makeCredential against swtpm', () => {
  it('the AK name we compute is the one tpm2_createak reports', async () => {
    const ak = unmarshalTpm2bPublic(await tools.read('ak.pub'));
    expect(objectName(ak).equals(await tools.read('ak.name'))).toBe(true);
  });

  it('tpm2_activatecredential recovers the secret with the RSA-2048 EK', async () => {
    const ek = unmarshalTpm2bPublic(await tools.read('ek-rsa.pub'));
    const name = objectName(unmarshalTpm2bPublic(await tools.read('ak.pub')));
    const secret = randomBytes(32);
    const made = makeCredential(ek, name, secret);
    expect((await activate('0x81010001', made.file, 'sha256')).equals(secret)).toBe(true);
  });

  it('tpm2_activatecredential recovers the secret with the ECC P-384 EK (ECDH, KDFe, AES-256)', async () => {
    const ek = unmarshalTpm2bPublic(await tools.read('ek-ecc.pub'));
    const name = objectName(unmarshalTpm2bPublic(await tools.read('ak.pub')));
    const secret = randomBytes(48);
    const made = makeCredential(ek, name, secret);
    // swtpm's H-3 P-384 EK has userWithAuth (PolicyB is an OR), so its empty auth works.
    expect((await activate('0x81010016', made.file, 'none')).equals(secret)).toBe(true);
  });

  it('the TPM refuses a credential made for another object name (integrity check)', async () => {
    const ek = unmarshalTpm2bPublic(await tools.read('ek-rsa.pub'));
    const name = objectName(unmarshalTpm2bPublic(await tools.read('ak.pub')));
    const other = Buffer.from(name);
    other[other.length - 1] = (other[other.length - 1] ?? 0) ^ 1;
    const made = makeCredential(ek, other, randomBytes(32));
    await expect(activate('0x81010001', made.file, 'sha256')).rejects.toThrow();
  });
});
