/**
 * TPM2_MakeCredential in software (TPM 2.0 Part 1 §24, Part 3 §12.6): protect `secret` so
 * that only the TPM holding the EK private key, and only for an object with `objectName`
 * loaded, can recover it with TPM2_ActivateCredential.
 *
 *   seed            RSA EK: random, OAEP(nameAlg, label "IDENTITY\0") to the EK
 *                   ECC EK: KDFe(nameAlg, ECDH(ephemeral, EK).x, "IDENTITY", eph.x, EK.x)
 *   symKey          KDFa(nameAlg, seed, "STORAGE", name, "", symmetric.keyBits)
 *   encIdentity     AES-CFB(symKey, iv = 0, TPM2B_DIGEST(secret))
 *   hmacKey         KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
 *   integrityHMAC   HMAC(nameAlg, hmacKey, encIdentity || name)
 */
import {
  constants,
  createCipheriv,
  createECDH,
  createHash,
  createHmac,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { TPM_ALG, hashInfo } from '../tpm/marshal/constants.js';
import {
  marshalCredentialFile,
  marshalIdObject,
  marshalTpm2bEncryptedSecret,
  marshalTpm2bIdObject,
} from '../tpm/marshal/credential.js';
import { publicToKeyObject } from '../tpm/marshal/keys.js';
import type { TpmtPublic } from '../tpm/marshal/public.js';
import { attestationCurve } from './curves.js';
import { checkEkPublic } from './ek-certificate.js';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** A label as the TPM uses it: the ASCII bytes and the terminating zero. */
function label(text: string): Buffer {
  return Buffer.concat([Buffer.from(text, 'ascii'), Buffer.alloc(1)]);
}

/** Counter-mode blocks `block(1) ‖ block(2) ‖ …`, cut to `bits` (a multiple of 8). */
function counterKdf(bits: number, block: (counter: Buffer) => Buffer): Buffer {
  const bytes = bits / 8;
  const parts: Buffer[] = [];
  let total = 0;
  for (let counter = 1; total < bytes; counter++) {
    const b = block(u32(counter));
    parts.push(b);
    total += b.length;
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

/** KDFa (SP 800-108 counter mode with HMAC), Part 1 §11.4.10.2. `bits` is a multiple of 8. */
export function kdfa(
  hash: string,
  key: Uint8Array,
  use: string,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Buffer {
  return counterKdf(bits, (counter) =>
    createHmac(hash, key)
      .update(counter)
      .update(label(use))
      .update(contextU)
      .update(contextV)
      .update(u32(bits))
      .digest(),
  );
}

/** KDFe (SP 800-56A concatenation KDF), Part 1 §11.4.10.3. */
export function kdfe(
  hash: string,
  z: Uint8Array,
  use: string,
  partyU: Uint8Array,
  partyV: Uint8Array,
  bits: number,
): Buffer {
  return counterKdf(bits, (counter) =>
    createHash(hash)
      .update(counter)
      .update(z)
      .update(label(use))
      .update(partyU)
      .update(partyV)
      .digest(),
  );
}

function pad(bytes: Uint8Array, size: number): Buffer {
  const out = Buffer.alloc(size);
  out.set(bytes.subarray(Math.max(0, bytes.length - size)), size - Math.min(size, bytes.length));
  return out;
}

export interface MadeCredential {
  /** TPM2B_ID_OBJECT, marshalled (size prefix included). */
  readonly credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET, marshalled (size prefix included). */
  readonly encryptedSecret: Buffer;
  /** The `tpm2_activatecredential -i` file: BADCC0DE 00000001 || the two above. */
  readonly file: Buffer;
}

/** Injectable randomness (tests); defaults to node:crypto. */
export interface MakeCredentialRandom {
  seed(bytes: number): Buffer;
  ephemeral(curve: string): { publicKey: Buffer; computeSecret(peer: Buffer): Buffer };
}

const defaultRandom: MakeCredentialRandom = {
  seed: (n) => randomBytes(n),
  ephemeral: (curve) => {
    const ecdh = createECDH(curve);
    ecdh.generateKeys();
    return { publicKey: ecdh.getPublicKey(), computeSecret: (peer) => ecdh.computeSecret(peer) };
  },
};

/**
 * TPM2_MakeCredential against `ekPublic` (RSA, or ECC P-256/P-384, with its nameAlg and
 * AES-CFB symmetric as the EK template says) for the object `objectName` (the AK name).
 * `secret` is at most the nameAlg digest size.
 */
export function makeCredential(
  ekPublic: TpmtPublic,
  objectName: Uint8Array,
  secret: Uint8Array,
  random: MakeCredentialRandom = defaultRandom,
): MadeCredential {
  const ek = checkEkPublic(ekPublic);
  const hash = hashInfo(ek.nameAlg);
  if (hash?.node === undefined) throw new RangeError('EK name algorithm not supported');
  if (secret.length === 0 || secret.length > hash.size)
    throw new RangeError('the credential secret must be 1 to digest-size bytes');
  const sym = ek.parameters.symmetric;
  if (sym.algorithm !== TPM_ALG.AES) throw new RangeError('EK symmetric is not AES');

  let seed: Buffer;
  let encrypted: Buffer;
  if (ek.type === TPM_ALG.RSA) {
    seed = random.seed(hash.size);
    encrypted = publicEncrypt(
      {
        key: publicToKeyObject(ek),
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: hash.node,
        oaepLabel: label('IDENTITY'),
      },
      seed,
    );
  } else {
    const curve = attestationCurve(ek.parameters.curveId);
    if (curve === undefined) throw new RangeError('EK curve not supported');
    const ekX = pad(ek.unique.x, curve.size);
    const ekPoint = Buffer.concat([Buffer.from([4]), ekX, pad(ek.unique.y, curve.size)]);
    const eph = random.ephemeral(curve.node);
    const z = eph.computeSecret(ekPoint);
    const ephX = eph.publicKey.subarray(1, 1 + curve.size);
    const ephY = eph.publicKey.subarray(1 + curve.size);
    seed = kdfe(hash.node, z, 'IDENTITY', ephX, ekX, hash.size * 8);
    // TPMS_ECC_POINT: two TPM2B_ECC_PARAMETER.
    encrypted = Buffer.concat([u16(ephX.length), ephX, u16(ephY.length), ephY]);
  }

  const name = Buffer.from(objectName);
  const symKey = kdfa(hash.node, seed, 'STORAGE', name, Buffer.alloc(0), sym.keyBits);
  const plain = Buffer.concat([u16(secret.length), secret]);
  const cipher = createCipheriv(`aes-${sym.keyBits}-cfb`, symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([cipher.update(plain), cipher.final()]);
  const hmacKey = kdfa(
    hash.node,
    seed,
    'INTEGRITY',
    Buffer.alloc(0),
    Buffer.alloc(0),
    hash.size * 8,
  );
  const integrityHmac = createHmac(hash.node, hmacKey).update(encIdentity).update(name).digest();
  seed.fill(0);
  symKey.fill(0);
  hmacKey.fill(0);

  const blob = marshalIdObject({ integrityHmac, encIdentity });
  return {
    credentialBlob: marshalTpm2bIdObject(blob),
    encryptedSecret: marshalTpm2bEncryptedSecret(encrypted),
    file: marshalCredentialFile({ credentialBlob: blob, encryptedSecret: encrypted }),
  };
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
