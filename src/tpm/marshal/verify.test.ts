import { constants, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { errorCode, fixture } from '../../../test/marshal/support.js';
import { TPM_ALG, TPM_ECC } from './constants.js';
import {
  unmarshalTpm2bPublic,
  unmarshalTpmtPublic,
  type EccPublic,
  type RsaPublic,
  type TpmtPublic,
} from './public.js';
import { unmarshalTpmtSignature, type TpmtSignature } from './signature.js';
import { publicToKeyObject } from './keys.js';
import { ecdsaSignatureToDer, ecdsaSignatureToP1363, verifyTpmtSignature } from './verify.js';

const pub = (n: string): TpmtPublic => unmarshalTpm2bPublic(fixture(`${n}.pub`));
const sig = (n: string): TpmtSignature => unmarshalTpmtSignature(fixture(`${n}.sig`));

const eccAk = pub('ak-ecc') as EccPublic;
const rsaAk = pub('ak-rsa') as RsaPublic;
const quoteEcc = fixture('quote-ecc.attest');
const quoteRsa = fixture('quote-rsa.attest');
const eccSig = sig('quote-ecc');
const rsaSig = sig('quote-rsa');
const P256_N = Buffer.from(
  'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551',
  'hex',
);

describe('verifyTpmtSignature on real TPM signatures', () => {
  it.each([
    ['ak-ecc', 'quote-ecc'],
    ['ak-rsa', 'quote-rsa'],
    ['ak-rsapss', 'quote-rsapss'],
    ['ak-rsa', 'certify'],
    ['ak-ecc', 'nvcertify'],
  ])('%s verifies %s', (key, name) => {
    expect(() => {
      verifyTpmtSignature(pub(key), sig(name), fixture(`${name}.attest`));
    }).not.toThrow();
  });

  it('verifies the Google Cloud vTPM creation attestation and quote (RSASSA, SHA-1 scheme)', () => {
    const g = JSON.parse(fixture('gcp/windows_gcp_shielded_vm.json.raw').toString('utf8')) as {
      AK: { Public: string; CreateAttestation: string; CreateSignature: string };
      Quote: { Quote: string; Signature: string };
    };
    const ak = unmarshalTpmtPublic(Buffer.from(g.AK.Public, 'base64'));
    for (const [m, s] of [
      [g.AK.CreateAttestation, g.AK.CreateSignature],
      [g.Quote.Quote, g.Quote.Signature],
    ] as const) {
      const message = Buffer.from(m, 'base64');
      const signature = unmarshalTpmtSignature(Buffer.from(s, 'base64'));
      expect(() => {
        verifyTpmtSignature(ak, signature, message);
      }).not.toThrow();
      message[message.length - 1] = (message[message.length - 1] ?? 0) ^ 1;
      expect(
        errorCode(() => {
          verifyTpmtSignature(ak, signature, message);
        }),
      ).toBe('tpm_signature_invalid');
    }
  });
});

describe('verifyTpmtSignature rejections', () => {
  it('refuses a modified message or signature', () => {
    const msg = Buffer.from(quoteEcc);
    msg[50] = (msg[50] ?? 0) ^ 1;
    expect(
      errorCode(() => {
        verifyTpmtSignature(eccAk, eccSig, msg);
      }),
    ).toBe('tpm_signature_invalid');
    if (eccSig.sigAlg !== TPM_ALG.ECDSA || rsaSig.sigAlg === TPM_ALG.ECDSA)
      throw new Error('fixture');
    const s = Buffer.from(eccSig.s);
    s[5] = (s[5] ?? 0) ^ 1;
    expect(
      errorCode(() => {
        verifyTpmtSignature(eccAk, { ...eccSig, s }, quoteEcc);
      }),
    ).toBe('tpm_signature_invalid');
    const r = Buffer.from(rsaSig.sig);
    r[100] = (r[100] ?? 0) ^ 1;
    expect(
      errorCode(() => {
        verifyTpmtSignature(rsaAk, { ...rsaSig, sig: r }, quoteRsa);
      }),
    ).toBe('tpm_signature_invalid');
    expect(
      errorCode(() => {
        verifyTpmtSignature(pub('ak-ecc'), eccSig, quoteRsa);
      }),
    ).toBe('tpm_signature_invalid');
  });

  it('refuses a signature scheme that does not fit the key', () => {
    expect(
      errorCode(() => {
        verifyTpmtSignature(rsaAk, eccSig, quoteEcc);
      }),
    ).toBe('tpm_signature_scheme_mismatch');
    expect(
      errorCode(() => {
        verifyTpmtSignature(eccAk, rsaSig, quoteRsa);
      }),
    ).toBe('tpm_signature_scheme_mismatch');
    // An RSASSA key's signature relabelled as RSAPSS, and the reverse.
    if (rsaSig.sigAlg === TPM_ALG.ECDSA) throw new Error('fixture');
    expect(
      errorCode(() => {
        verifyTpmtSignature(rsaAk, { ...rsaSig, sigAlg: TPM_ALG.RSAPSS }, quoteRsa);
      }),
    ).toBe('tpm_signature_scheme_mismatch');
    expect(
      errorCode(() => {
        verifyTpmtSignature(pub('ak-rsapss'), rsaSig, quoteRsa);
      }),
    ).toBe('tpm_signature_scheme_mismatch');
    const keyed = {
      type: TPM_ALG.KEYEDHASH,
      nameAlg: TPM_ALG.SHA256,
      objectAttributes: eccAk.objectAttributes,
      authPolicy: Buffer.alloc(0),
      parameters: { scheme: { scheme: TPM_ALG.NULL } },
      unique: Buffer.alloc(0),
    } as const;
    expect(
      errorCode(() => {
        verifyTpmtSignature(keyed, eccSig, quoteEcc);
      }),
    ).toBe('tpm_signature_scheme_mismatch');
  });

  it("refuses a hash other than the key scheme's, and hashes node cannot verify", () => {
    expect(
      errorCode(() => {
        verifyTpmtSignature(eccAk, { ...eccSig, hash: TPM_ALG.SHA384 }, quoteEcc);
      }),
    ).toBe('tpm_signature_hash_mismatch');
    const unrestricted: EccPublic = {
      ...eccAk,
      parameters: { ...eccAk.parameters, scheme: { scheme: TPM_ALG.NULL } },
    };
    expect(
      errorCode(() => {
        verifyTpmtSignature(unrestricted, { ...eccSig, hash: TPM_ALG.SM3_256 }, quoteEcc);
      }),
    ).toBe('tpm_signature_hash_mismatch');
  });

  it('refuses ECDSA r or s outside [1, n-1]', () => {
    if (eccSig.sigAlg !== TPM_ALG.ECDSA) throw new Error('fixture');
    for (const [r, s] of [
      [Buffer.alloc(0), eccSig.s],
      [Buffer.alloc(32), eccSig.s],
      [eccSig.r, P256_N],
      [Buffer.alloc(33, 0xff), eccSig.s],
    ] as const) {
      expect(
        errorCode(() => {
          verifyTpmtSignature(eccAk, { ...eccSig, r, s }, quoteEcc);
        }),
      ).toBe('tpm_signature_out_of_range');
    }
  });

  it('refuses an RSA signature that is not the modulus size or not below the modulus', () => {
    if (rsaSig.sigAlg === TPM_ALG.ECDSA) throw new Error('fixture');
    expect(
      errorCode(() => {
        verifyTpmtSignature(rsaAk, { ...rsaSig, sig: rsaSig.sig.subarray(1) }, quoteRsa);
      }),
    ).toBe('tpm_signature_out_of_range');
    expect(
      errorCode(() => {
        verifyTpmtSignature(rsaAk, { ...rsaSig, sig: Buffer.alloc(256, 0xff) }, quoteRsa);
      }),
    ).toBe('tpm_signature_out_of_range');
  });

  it('verifies with keys whose scheme is NULL, in any scheme of the key type', () => {
    const message = Buffer.from('not a TPM structure');
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const jwk = publicKey.export({ format: 'jwk' });
    const ecc: EccPublic = {
      ...eccAk,
      parameters: {
        ...eccAk.parameters,
        curveId: TPM_ECC.NIST_P384,
        scheme: { scheme: TPM_ALG.NULL },
      },
      unique: {
        x: Buffer.from(jwk.x ?? '', 'base64url'),
        y: Buffer.from(jwk.y ?? '', 'base64url'),
      },
    };
    const p1363 = sign('sha384', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    const ecdsa: TpmtSignature = {
      sigAlg: TPM_ALG.ECDSA,
      hash: TPM_ALG.SHA384,
      r: p1363.subarray(0, 48),
      s: p1363.subarray(48),
    };
    expect(() => {
      verifyTpmtSignature(ecc, ecdsa, message);
    }).not.toThrow();

    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaPub: RsaPublic = {
      ...rsaAk,
      parameters: { ...rsaAk.parameters, scheme: { scheme: TPM_ALG.NULL } },
      unique: Buffer.from(rsa.publicKey.export({ format: 'jwk' }).n ?? '', 'base64url'),
    };
    const pss = sign('sha512', message, {
      key: rsa.privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 64,
    });
    expect(() => {
      verifyTpmtSignature(
        rsaPub,
        { sigAlg: TPM_ALG.RSAPSS, hash: TPM_ALG.SHA512, sig: pss },
        message,
      );
    }).not.toThrow();
    // A PSS signature with another salt length is not what a TPM makes.
    const pssShortSalt = sign('sha512', message, {
      key: rsa.privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 20,
    });
    expect(
      errorCode(() => {
        verifyTpmtSignature(
          rsaPub,
          { sigAlg: TPM_ALG.RSAPSS, hash: TPM_ALG.SHA512, sig: pssShortSalt },
          message,
        );
      }),
    ).toBe('tpm_signature_invalid');
  });
});

describe('ECDSA signature encodings', () => {
  it('converts a TPM ECDSA signature to DER and IEEE P1363 that node:crypto verifies', () => {
    if (eccSig.sigAlg !== TPM_ALG.ECDSA) throw new Error('fixture');
    const key = publicToKeyObject(eccAk);
    const der = ecdsaSignatureToDer(eccSig, TPM_ECC.NIST_P256);
    expect(der[0]).toBe(0x30);
    expect(verify('sha256', quoteEcc, key, der)).toBe(true);
    const p1363 = ecdsaSignatureToP1363(eccSig, TPM_ECC.NIST_P256);
    expect(p1363.length).toBe(64);
    expect(verify('sha256', quoteEcc, { key, dsaEncoding: 'ieee-p1363' }, p1363)).toBe(true);
  });

  it('encodes high-bit and short integers, and P-521 lengths, as valid DER', () => {
    for (let i = 0; i < 40; i++) {
      const { publicKey, privateKey } = generateKeyPairSync('ec', {
        namedCurve: i % 2 ? 'P-521' : 'P-256',
      });
      const message = randomBytes(16);
      const size = i % 2 ? 66 : 32;
      const p1363 = sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      // A TPM may drop leading zero bytes from r and s.
      const strip = (b: Buffer): Buffer => {
        let j = 0;
        while (j < b.length - 1 && b[j] === 0) j++;
        return b.subarray(j);
      };
      const ecdsa = {
        sigAlg: TPM_ALG.ECDSA,
        hash: TPM_ALG.SHA256,
        r: strip(p1363.subarray(0, size)),
        s: strip(p1363.subarray(size)),
      } as const;
      const curve = i % 2 ? TPM_ECC.NIST_P521 : TPM_ECC.NIST_P256;
      expect(verify('sha256', message, publicKey, ecdsaSignatureToDer(ecdsa, curve))).toBe(true);
      expect(ecdsaSignatureToP1363(ecdsa, curve).equals(p1363)).toBe(true);
    }
  });

  it('refuses out-of-range values and unsupported curves', () => {
    if (eccSig.sigAlg !== TPM_ALG.ECDSA) throw new Error('fixture');
    expect(errorCode(() => ecdsaSignatureToDer({ ...eccSig, s: P256_N }, TPM_ECC.NIST_P256))).toBe(
      'tpm_signature_out_of_range',
    );
    expect(errorCode(() => ecdsaSignatureToP1363(eccSig, TPM_ECC.BN_P256))).toBe(
      'tpm_signature_scheme_mismatch',
    );
  });
});
