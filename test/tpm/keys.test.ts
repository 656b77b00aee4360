/**
 * Keys against a real swtpm: EK primaries from the TCG templates (compared with the EKs
 * swtpm_setup persisted), EK certificates from NV, AKs under the EK (policy session) and
 * under an SRK, persistence, public parts and names (checked with src/tpm/marshal), and
 * Certify. Every transient object is flushed; the last test checks no slot leaked.
 */
import { X509Certificate, verify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectName, unmarshalTpm2bPublic } from '../../src/tpm/marshal/public.js';
import { EK_HANDLES } from '../../src/tpm/templates.js';
import { TpmError } from '../../src/tpm/errors.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import type { LoadedObject } from '../../src/tpm/tpm.port.js';
import type { SimTpm } from '../rig/sim.js';
import {
  AK_ECC_P256,
  AK_RSA2048,
  EK_ECC_P256,
  EK_ECC_P384_HIGH,
  EK_RSA2048,
  SRK_ECC_P256,
  closeSimTpm,
  expectSignedAttest,
  openSimTpm,
  parseSignature,
  publicKeyOf,
  tpm2,
} from './helpers.js';

let sim: SimTpm;
let tpm: NativeTpm;
const EK_RSA = EK_HANDLES.rsa2048.persistent;
const EK_P384 = EK_HANDLES['ecc-p384'].persistent;

beforeAll(async () => {
  ({ sim, tpm } = await openSimTpm());
});

afterAll(() => closeSimTpm({ sim, tpm }));

function caCerts(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (p) => new X509Certificate(p),
  );
}

describe('EK primaries and certificates', () => {
  it('recreates the persistent RSA-2048 EK from template L-1 (same name)', async () => {
    const persistent = await tpm.readPublic(EK_RSA);
    const name = await tpm.withLoaded(
      () => tpm.createPrimary('endorsement', EK_RSA2048),
      async (ek) => {
        expect(ek.handle >>> 24).toBe(0x80);
        return (await tpm.readPublic(ek.handle)).name;
      },
    );
    expect(name.equals(persistent.name)).toBe(true);
  });

  it('recreates the persistent ECC P-384 EK from template H-3 (same name)', async () => {
    const persistent = await tpm.readPublic(EK_P384);
    const ek = await tpm.createPrimary('endorsement', EK_ECC_P384_HIGH);
    try {
      expect(ek.name.equals(persistent.name)).toBe(true);
    } finally {
      await tpm.flush(ek.handle);
    }
  });

  it('creates an ECC P-256 EK whose name matches its public area', async () => {
    const ek = await tpm.createPrimary('endorsement', EK_ECC_P256);
    try {
      const pub = unmarshalTpm2bPublic(ek.public);
      expect(pub.type).toBe(0x0023);
      expect(objectName(pub).equals(ek.name)).toBe(true);
      expect((await tpm.readPublic(ek.handle)).public.equals(ek.public)).toBe(true);
    } finally {
      await tpm.flush(ek.handle);
    }
  });

  it('reads both EK certificates from NV; each is for its EK and issued by the local CA', async () => {
    const [issuer] = caCerts(sim.ekCaPem);
    expect(issuer).toBeDefined();
    for (const kind of ['rsa2048', 'ecc-p384'] as const) {
      const der = await tpm.nvRead(EK_HANDLES[kind].certNvIndex);
      expect(der.length).toBeGreaterThan(512); // more than one NV chunk
      const cert = new X509Certificate(der);
      expect(cert.verify(issuer!.publicKey)).toBe(true);
      const ekKey = publicKeyOf((await tpm.readPublic(EK_HANDLES[kind].persistent)).public);
      expect(cert.publicKey.export({ format: 'der', type: 'spki' })).toEqual(
        ekKey.export({ format: 'der', type: 'spki' }),
      );
    }
  });

  it('rejects a template that is not a TPMT_PUBLIC (MU layer)', async () => {
    const err = await tpm
      .createPrimary('endorsement', Buffer.from([0x00, 0x01, 0x00]))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'mu' });
  });
});

describe('attestation keys', () => {
  it('creates ECC and RSA AKs under the RSA EK with the EK policy session', async () => {
    for (const template of [AK_ECC_P256, AK_RSA2048]) {
      const ak = await tpm.create(EK_RSA, template, { parentAuth: { ekPolicy: true } });
      const pub = unmarshalTpm2bPublic(ak.public);
      expect(pub.objectAttributes.restricted && pub.objectAttributes.sign).toBe(true);
      await tpm.withLoaded(
        () => tpm.load(EK_RSA, ak, { parentAuth: { ekPolicy: true } }),
        async (loaded) => {
          expect(loaded.name.equals(objectName(pub))).toBe(true);
          const read = await tpm.readPublic(loaded.handle);
          expect(read.name.equals(loaded.name)).toBe(true);
          expect(read.public.equals(ak.public)).toBe(true);
        },
      );
    }
  });

  it('refuses to create under the RSA EK without the policy session', async () => {
    const err = await tpm.create(EK_RSA, AK_ECC_P256).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm', command: 'Create' });
  });

  it('creates an AK under an SRK and makes it persistent, then evicts it', async () => {
    const persistent = 0x81000123;
    const srk = await tpm.createPrimary('owner', SRK_ECC_P256);
    let loaded: LoadedObject | undefined;
    try {
      const ak = await tpm.create(srk.handle, AK_ECC_P256);
      loaded = await tpm.load(srk.handle, ak);
      await tpm.makePersistent(loaded.handle, persistent);
      const read = await tpm.readPublic(persistent);
      expect(read.name.equals(loaded.name)).toBe(true);
    } finally {
      if (loaded !== undefined) await tpm.flush(loaded.handle);
      await tpm.flush(srk.handle);
    }
    await tpm.evictPersistent(persistent);
    const err = await tpm.readPublic(persistent).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm' });
    expect((err as TpmError).baseRc).toBe(0x08b);
  });

  it('rejects a non-persistent target handle', async () => {
    await expect(tpm.makePersistent(0x80000000, 0x80000001)).rejects.toMatchObject({
      code: 'bad_request',
    });
  });

  it('certifies an ECC AK with an RSA AK; the signature verifies with node:crypto', async () => {
    const srk = await tpm.createPrimary('owner', SRK_ECC_P256);
    try {
      const eccAk = await tpm.create(srk.handle, AK_ECC_P256);
      const rsaAk = await tpm.create(srk.handle, AK_RSA2048);
      await tpm.withLoaded(
        () => tpm.load(srk.handle, eccAk),
        (ecc) =>
          tpm.withLoaded(
            () => tpm.load(srk.handle, rsaAk),
            async (rsa) => {
              const nonce = Buffer.from('certify-nonce-0123456789abcdef');
              const { attest, signature } = await tpm.certify(ecc.handle, rsa.handle, nonce);
              // TPM_ST_ATTEST_CERTIFY
              const certified = expectSignedAttest(
                { attest, signature },
                rsaAk.public,
                0x8017,
                nonce,
              );
              // TPMS_CERTIFY_INFO: name then qualifiedName of the certified object.
              const nameLen = certified.readUInt16BE(0);
              expect(certified.subarray(2, 2 + nameLen).equals(ecc.name)).toBe(true);
              const sig = parseSignature(signature);
              expect(sig.alg).toBe(0x0014); // RSASSA
              const tampered = Buffer.from(attest);
              tampered[tampered.length - 1]! ^= 1;
              expect(verify('sha256', tampered, publicKeyOf(rsaAk.public), sig.bytes)).toBe(false);
            },
          ),
      );
    } finally {
      await tpm.flush(srk.handle);
    }
  });

  it('left no transient object loaded', async () => {
    await tpm.close();
    const out = await tpm2(sim.tcti, 'tpm2_getcap', ['handles-transient']);
    expect(out.trim()).toBe('');
    tpm = await NativeTpm.open(sim.tcti);
  });
});
