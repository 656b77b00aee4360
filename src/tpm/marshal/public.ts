/**
 * TPMT_PUBLIC / TPM2B_PUBLIC (TPM 2.0 Part 2, 12.2) for RSA, ECC, KEYEDHASH and SYMCIPHER
 * objects, and object names (nameAlg || H(TPMT_PUBLIC)).
 */
import { createHash } from 'node:crypto';
import { TpmMarshalError, marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import {
  TPMA_OBJECT,
  TPMA_OBJECT_RESERVED,
  TPM_ALG,
  TPM_ECC,
  TPM_MAX,
  hashInfo,
  isHashAlg,
  type HashAlgId,
} from './constants.js';

type Alg = typeof TPM_ALG;

export interface ObjectAttributes {
  readonly fixedTPM: boolean;
  readonly stClear: boolean;
  readonly fixedParent: boolean;
  readonly sensitiveDataOrigin: boolean;
  readonly userWithAuth: boolean;
  readonly adminWithPolicy: boolean;
  readonly noDA: boolean;
  readonly encryptedDuplication: boolean;
  readonly restricted: boolean;
  readonly decrypt: boolean;
  readonly sign: boolean;
  readonly x509sign: boolean;
}

const ATTRIBUTE_NAMES = Object.keys(TPMA_OBJECT) as (keyof typeof TPMA_OBJECT)[];

/** Decode TPMA_OBJECT; undefined when a reserved bit is set. */
export function decodeObjectAttributes(bits: number): ObjectAttributes | undefined {
  if ((bits & TPMA_OBJECT_RESERVED) !== 0) return undefined;
  const out: Record<string, boolean> = {};
  for (const name of ATTRIBUTE_NAMES) out[name] = (bits & TPMA_OBJECT[name]) !== 0;
  return out as unknown as ObjectAttributes;
}

export function encodeObjectAttributes(a: ObjectAttributes): number {
  let bits = 0;
  for (const name of ATTRIBUTE_NAMES) if (a[name]) bits |= TPMA_OBJECT[name];
  return bits >>> 0;
}

/** Attributes from a list of the names that are set (all others clear). */
export function objectAttributes(...set: (keyof ObjectAttributes)[]): ObjectAttributes {
  const out: Record<string, boolean> = {};
  for (const name of ATTRIBUTE_NAMES) out[name] = set.includes(name);
  return out as unknown as ObjectAttributes;
}

/** TPMT_SYM_DEF_OBJECT. */
export type SymDefObject =
  | { readonly algorithm: Alg['NULL'] }
  | {
      readonly algorithm: Alg['AES'] | Alg['SM4'] | Alg['CAMELLIA'];
      readonly keyBits: number;
      readonly mode: Alg['CFB'] | Alg['CBC'] | Alg['CTR'] | Alg['OFB'] | Alg['ECB'] | Alg['NULL'];
    };

/** TPMT_RSA_SCHEME. */
export type RsaScheme =
  | { readonly scheme: Alg['NULL'] | Alg['RSAES'] }
  | { readonly scheme: Alg['RSASSA'] | Alg['RSAPSS'] | Alg['OAEP']; readonly hashAlg: HashAlgId };

/** TPMT_ECC_SCHEME. */
export type EccScheme =
  | { readonly scheme: Alg['NULL'] }
  | {
      readonly scheme: Alg['ECDSA'] | Alg['ECDH'] | Alg['SM2'] | Alg['ECSCHNORR'] | Alg['ECMQV'];
      readonly hashAlg: HashAlgId;
    }
  | { readonly scheme: Alg['ECDAA']; readonly hashAlg: HashAlgId; readonly count: number };

/** TPMT_KDF_SCHEME. */
export type KdfScheme =
  | { readonly scheme: Alg['NULL'] }
  | {
      readonly scheme: Alg['MGF1'] | Alg['KDF1_SP800_56A'] | Alg['KDF2'] | Alg['KDF1_SP800_108'];
      readonly hashAlg: HashAlgId;
    };

/** TPMT_KEYEDHASH_SCHEME. */
export type KeyedHashScheme =
  | { readonly scheme: Alg['NULL'] }
  | { readonly scheme: Alg['HMAC']; readonly hashAlg: HashAlgId }
  | { readonly scheme: Alg['XOR']; readonly hashAlg: HashAlgId; readonly kdf: KdfScheme['scheme'] };

interface PublicBase {
  /** TPM_ALG_NULL only for objects without a name (not produced by Create/CreatePrimary). */
  readonly nameAlg: HashAlgId | Alg['NULL'];
  readonly objectAttributes: ObjectAttributes;
  readonly authPolicy: Uint8Array;
}

export interface RsaPublic extends PublicBase {
  readonly type: Alg['RSA'];
  readonly parameters: {
    readonly symmetric: SymDefObject;
    readonly scheme: RsaScheme;
    readonly keyBits: number;
    /** 0 means the default exponent 65537. */
    readonly exponent: number;
  };
  /** The modulus (TPM2B_PUBLIC_KEY_RSA). */
  readonly unique: Uint8Array;
}

export interface EccPoint {
  readonly x: Uint8Array;
  readonly y: Uint8Array;
}

export interface EccPublic extends PublicBase {
  readonly type: Alg['ECC'];
  readonly parameters: {
    readonly symmetric: SymDefObject;
    readonly scheme: EccScheme;
    readonly curveId: number;
    readonly kdf: KdfScheme;
  };
  readonly unique: EccPoint;
}

export interface KeyedHashPublic extends PublicBase {
  readonly type: Alg['KEYEDHASH'];
  readonly parameters: { readonly scheme: KeyedHashScheme };
  readonly unique: Uint8Array;
}

export interface SymCipherPublic extends PublicBase {
  readonly type: Alg['SYMCIPHER'];
  readonly parameters: { readonly symmetric: SymDefObject };
  readonly unique: Uint8Array;
}

/** TPMT_PUBLIC. */
export type TpmtPublic = RsaPublic | EccPublic | KeyedHashPublic | SymCipherPublic;

/**
 * Largest TPMT_PUBLIC: type, nameAlg, attributes, authPolicy (2+64), ECC parameters
 * (the largest: 6 symmetric + 6 ECDAA scheme + 2 curve + 4 kdf), RSA unique (2+512).
 */
export const MAX_TPMT_PUBLIC_SIZE =
  2 + 2 + 4 + (2 + TPM_MAX.DIGEST) + 18 + (2 + TPM_MAX.RSA_KEY_BYTES);

// ---------------------------------------------------------------------------------------
// unmarshal

function readHashAlg(r: TpmReader, field: string): HashAlgId {
  const start = r.offset;
  const alg = r.u16(field);
  if (!isHashAlg(alg)) throw r.invalid(field, `not a hash algorithm: 0x${alg.toString(16)}`, start);
  return alg;
}

function readSymDefObject(r: TpmReader, field: string): SymDefObject {
  return r.struct((s) => {
    const start = s.offset;
    const algorithm = s.u16(`${field}.algorithm`);
    if (algorithm === TPM_ALG.NULL) return { algorithm };
    if (algorithm !== TPM_ALG.AES && algorithm !== TPM_ALG.SM4 && algorithm !== TPM_ALG.CAMELLIA) {
      throw s.invalid(
        `${field}.algorithm`,
        `not a symmetric object algorithm: 0x${algorithm.toString(16)}`,
        start,
      );
    }
    const keyBits = s.u16(`${field}.keyBits`);
    const modeAt = s.offset;
    const mode = s.u16(`${field}.mode`);
    if (
      mode !== TPM_ALG.CFB &&
      mode !== TPM_ALG.CBC &&
      mode !== TPM_ALG.CTR &&
      mode !== TPM_ALG.OFB &&
      mode !== TPM_ALG.ECB &&
      mode !== TPM_ALG.NULL
    ) {
      throw s.invalid(`${field}.mode`, `not a symmetric mode: 0x${mode.toString(16)}`, modeAt);
    }
    return { algorithm, keyBits, mode };
  });
}

// The schemes of each kind that carry only a hash algorithm as their details.
const RSA_HASHED = [TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP] as const;
const ECC_HASHED = [
  TPM_ALG.ECDSA,
  TPM_ALG.ECDH,
  TPM_ALG.SM2,
  TPM_ALG.ECSCHNORR,
  TPM_ALG.ECMQV,
] as const;
const KDF_HASHED = [
  TPM_ALG.MGF1,
  TPM_ALG.KDF1_SP800_56A,
  TPM_ALG.KDF2,
  TPM_ALG.KDF1_SP800_108,
] as const;

function oneOf<T extends number>(v: number, set: readonly T[]): v is T {
  return (set as readonly number[]).includes(v);
}

/**
 * A TPMT_*_SCHEME: its selector, then the details `details` reads for it, or undefined for a
 * selector that is not of this kind (`what`), which fails at the selector's offset.
 */
function readScheme<S>(
  r: TpmReader,
  field: string,
  what: string,
  details: (s: TpmReader, scheme: number, hashAlg: () => HashAlgId) => S | undefined,
): S {
  return r.struct((s) => {
    const start = s.offset;
    const scheme = s.u16(`${field}.scheme`);
    const read = details(s, scheme, () => readHashAlg(s, `${field}.hashAlg`));
    if (read === undefined) {
      throw s.invalid(`${field}.scheme`, `not ${what}: 0x${scheme.toString(16)}`, start);
    }
    return read;
  });
}

function readRsaScheme(r: TpmReader, field: string): RsaScheme {
  return readScheme(r, field, 'an RSA scheme', (_s, scheme, hashAlg): RsaScheme | undefined => {
    if (scheme === TPM_ALG.NULL || scheme === TPM_ALG.RSAES) return { scheme };
    if (oneOf(scheme, RSA_HASHED)) return { scheme, hashAlg: hashAlg() };
    return undefined;
  });
}

function readEccScheme(r: TpmReader, field: string): EccScheme {
  return readScheme(r, field, 'an ECC scheme', (s, scheme, hashAlg): EccScheme | undefined => {
    if (scheme === TPM_ALG.NULL) return { scheme };
    if (oneOf(scheme, ECC_HASHED)) return { scheme, hashAlg: hashAlg() };
    if (scheme === TPM_ALG.ECDAA) {
      return { scheme, hashAlg: hashAlg(), count: s.u16(`${field}.count`) };
    }
    return undefined;
  });
}

function readKdfScheme(r: TpmReader, field: string): KdfScheme {
  return readScheme(r, field, 'a KDF scheme', (_s, scheme, hashAlg): KdfScheme | undefined => {
    if (scheme === TPM_ALG.NULL) return { scheme };
    if (oneOf(scheme, KDF_HASHED)) return { scheme, hashAlg: hashAlg() };
    return undefined;
  });
}

function readKeyedHashScheme(r: TpmReader, field: string): KeyedHashScheme {
  return readScheme(
    r,
    field,
    'a keyed-hash scheme',
    (s, scheme, hashAlg): KeyedHashScheme | undefined => {
      if (scheme === TPM_ALG.NULL) return { scheme };
      if (scheme === TPM_ALG.HMAC) return { scheme, hashAlg: hashAlg() };
      if (scheme !== TPM_ALG.XOR) return undefined;
      const xorHash = hashAlg();
      const kdfAt = s.offset;
      const kdf = s.u16(`${field}.kdf`);
      if (kdf !== TPM_ALG.NULL && !oneOf(kdf, KDF_HASHED)) {
        throw s.invalid(`${field}.kdf`, `not a KDF: 0x${kdf.toString(16)}`, kdfAt);
      }
      return { scheme, hashAlg: xorHash, kdf };
    },
  );
}

/** Read a TPMT_PUBLIC from `r` (nested use). */
export function readTpmtPublic(r: TpmReader): TpmtPublic {
  return r.struct((s) => {
    const typeAt = s.offset;
    const type = s.u16('type');
    const nameAt = s.offset;
    const nameAlg = s.u16('nameAlg');
    if (nameAlg !== TPM_ALG.NULL && !isHashAlg(nameAlg)) {
      throw s.invalid('nameAlg', `not a hash algorithm: 0x${nameAlg.toString(16)}`, nameAt);
    }
    const attrAt = s.offset;
    const bits = s.u32('objectAttributes');
    const objectAttributes = decodeObjectAttributes(bits);
    if (objectAttributes === undefined)
      throw s.invalid('objectAttributes', 'reserved bit set', attrAt);
    const authPolicy = s.tpm2b('authPolicy', TPM_MAX.DIGEST);
    const base = { nameAlg, objectAttributes, authPolicy };
    switch (type) {
      case TPM_ALG.RSA: {
        const symmetric = readSymDefObject(s, 'parameters.symmetric');
        const scheme = readRsaScheme(s, 'parameters.scheme');
        const keyBits = s.u16('parameters.keyBits');
        const exponent = s.u32('parameters.exponent');
        const unique = s.tpm2b('unique.rsa', TPM_MAX.RSA_KEY_BYTES);
        return { type, ...base, parameters: { symmetric, scheme, keyBits, exponent }, unique };
      }
      case TPM_ALG.ECC: {
        const symmetric = readSymDefObject(s, 'parameters.symmetric');
        const scheme = readEccScheme(s, 'parameters.scheme');
        const curveId = s.u16('parameters.curveID');
        const kdf = readKdfScheme(s, 'parameters.kdf');
        const x = s.tpm2b('unique.ecc.x', TPM_MAX.ECC_KEY_BYTES);
        const y = s.tpm2b('unique.ecc.y', TPM_MAX.ECC_KEY_BYTES);
        return { type, ...base, parameters: { symmetric, scheme, curveId, kdf }, unique: { x, y } };
      }
      case TPM_ALG.KEYEDHASH: {
        const scheme = readKeyedHashScheme(s, 'parameters.scheme');
        const unique = s.tpm2b('unique.keyedHash', TPM_MAX.DIGEST);
        return { type, ...base, parameters: { scheme }, unique };
      }
      case TPM_ALG.SYMCIPHER: {
        const symmetric = readSymDefObject(s, 'parameters.symmetric');
        const unique = s.tpm2b('unique.sym', TPM_MAX.DIGEST);
        return { type, ...base, parameters: { symmetric }, unique };
      }
      default:
        throw s.invalid('type', `not a public object type: 0x${type.toString(16)}`, typeAt);
    }
  });
}

/** Parse a complete TPMT_PUBLIC (no size prefix). */
export function unmarshalTpmtPublic(bytes: Uint8Array): TpmtPublic {
  return parseAll(bytes, 'TPMT_PUBLIC', readTpmtPublic);
}

/** Read a TPM2B_PUBLIC from `r` (nested use); a zero size is refused. */
export function readTpm2bPublic(r: TpmReader): TpmtPublic {
  const pub = r.sized('publicArea', MAX_TPMT_PUBLIC_SIZE, readTpmtPublic);
  if (pub === undefined) throw r.invalid('publicArea', 'empty');
  return pub;
}

/** Parse a complete TPM2B_PUBLIC, as `tpm2_createek -u` / `tpm2_createak -u` write it. */
export function unmarshalTpm2bPublic(bytes: Uint8Array): TpmtPublic {
  return parseAll(bytes, 'TPM2B_PUBLIC', readTpm2bPublic);
}

// ---------------------------------------------------------------------------------------
// marshal

function writeHashAlg(w: TpmWriter, alg: number, field: string): void {
  if (!isHashAlg(alg)) throw new TpmMarshalError(field, 'not a hash algorithm');
  w.u16(alg, field);
}

function writeSymDefObject(w: TpmWriter, s: SymDefObject, field: string): void {
  w.u16(s.algorithm, `${field}.algorithm`);
  if (s.algorithm === TPM_ALG.NULL) return;
  w.u16(s.keyBits, `${field}.keyBits`).u16(s.mode, `${field}.mode`);
}

function writeSchemeWithHash(
  w: TpmWriter,
  s: { scheme: number; hashAlg?: HashAlgId },
  field: string,
): void {
  w.u16(s.scheme, `${field}.scheme`);
  if (s.hashAlg !== undefined) writeHashAlg(w, s.hashAlg, `${field}.hashAlg`);
}

function writeEccScheme(w: TpmWriter, s: EccScheme, field: string): void {
  writeSchemeWithHash(w, s, field);
  if (s.scheme === TPM_ALG.ECDAA) w.u16(s.count, `${field}.count`);
}

function writeKeyedHashScheme(w: TpmWriter, s: KeyedHashScheme, field: string): void {
  writeSchemeWithHash(w, s, field);
  if (s.scheme === TPM_ALG.XOR) w.u16(s.kdf, `${field}.kdf`);
}

/** Write a TPMT_PUBLIC to `w` (nested use). */
export function writeTpmtPublic(w: TpmWriter, p: TpmtPublic): void {
  w.u16(p.type, 'type');
  if (p.nameAlg !== TPM_ALG.NULL) writeHashAlg(w, p.nameAlg, 'nameAlg');
  else w.u16(p.nameAlg, 'nameAlg');
  w.u32(encodeObjectAttributes(p.objectAttributes), 'objectAttributes');
  w.tpm2b(p.authPolicy, TPM_MAX.DIGEST, 'authPolicy');
  switch (p.type) {
    case TPM_ALG.RSA:
      writeSymDefObject(w, p.parameters.symmetric, 'parameters.symmetric');
      writeSchemeWithHash(w, p.parameters.scheme, 'parameters.scheme');
      w.u16(p.parameters.keyBits, 'parameters.keyBits').u32(
        p.parameters.exponent,
        'parameters.exponent',
      );
      w.tpm2b(p.unique, TPM_MAX.RSA_KEY_BYTES, 'unique.rsa');
      return;
    case TPM_ALG.ECC:
      writeSymDefObject(w, p.parameters.symmetric, 'parameters.symmetric');
      writeEccScheme(w, p.parameters.scheme, 'parameters.scheme');
      w.u16(p.parameters.curveId, 'parameters.curveID');
      writeSchemeWithHash(w, p.parameters.kdf, 'parameters.kdf');
      w.tpm2b(p.unique.x, TPM_MAX.ECC_KEY_BYTES, 'unique.ecc.x');
      w.tpm2b(p.unique.y, TPM_MAX.ECC_KEY_BYTES, 'unique.ecc.y');
      return;
    case TPM_ALG.KEYEDHASH:
      writeKeyedHashScheme(w, p.parameters.scheme, 'parameters.scheme');
      w.tpm2b(p.unique, TPM_MAX.DIGEST, 'unique.keyedHash');
      return;
    case TPM_ALG.SYMCIPHER:
      writeSymDefObject(w, p.parameters.symmetric, 'parameters.symmetric');
      w.tpm2b(p.unique, TPM_MAX.DIGEST, 'unique.sym');
      return;
    default:
      // Only reachable through a cast; never emit a half-written structure.
      throw new TpmMarshalError('type', 'not a public object type');
  }
}

/** Marshal a TPMT_PUBLIC (no size prefix). */
export function marshalTpmtPublic(p: TpmtPublic): Buffer {
  return marshal((w) => {
    writeTpmtPublic(w, p);
  });
}

/** Marshal a TPM2B_PUBLIC (u16 size || TPMT_PUBLIC), e.g. as a CreatePrimary template. */
export function marshalTpm2bPublic(p: TpmtPublic): Buffer {
  return marshal((w) => {
    w.sized((inner) => {
      writeTpmtPublic(inner, p);
    }, 'publicArea');
  });
}

/**
 * The object's Name: nameAlg (u16) || H_nameAlg(TPMT_PUBLIC). An object whose nameAlg is
 * TPM_ALG_NULL has no computable name.
 */
export function objectName(p: TpmtPublic): Buffer {
  const info = hashInfo(p.nameAlg);
  if (info?.node === undefined) throw new TpmMarshalError('nameAlg', 'no name for this nameAlg');
  const digest = createHash(info.node).update(marshalTpmtPublic(p)).digest();
  return marshal((w) => w.u16(info.id, 'nameAlg').bytes(digest));
}

/** The ECC curve ids node:crypto (and JWK) can use. */
export const ECC_CURVES = {
  [TPM_ECC.NIST_P256]: { jwk: 'P-256', node: 'prime256v1', size: 32 },
  [TPM_ECC.NIST_P384]: { jwk: 'P-384', node: 'secp384r1', size: 48 },
  [TPM_ECC.NIST_P521]: { jwk: 'P-521', node: 'secp521r1', size: 66 },
} as const satisfies Record<number, { jwk: string; node: string; size: number }>;
