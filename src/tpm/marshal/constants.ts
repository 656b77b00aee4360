/** TPM 2.0 constants (TPM 2.0 Library Part 2, TCG Algorithm Registry). */

export const TPM_GENERATED_VALUE = 0xff544347;

export const TPM_ALG = {
  ERROR: 0x0000,
  RSA: 0x0001,
  TDES: 0x0003,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  MGF1: 0x0007,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  SHA3_256: 0x0027,
  SHA3_384: 0x0028,
  SHA3_512: 0x0029,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;

/** Structure tags. */
export const TPM_ST = {
  RSP_COMMAND: 0x00c4,
  NULL: 0x8000,
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_NV: 0x8014,
  ATTEST_COMMAND_AUDIT: 0x8015,
  ATTEST_SESSION_AUDIT: 0x8016,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_TIME: 0x8019,
  ATTEST_CREATION: 0x801a,
  ATTEST_NV_DIGEST: 0x801c,
  CREATION: 0x8021,
  VERIFIED: 0x8022,
  AUTH_SECRET: 0x8023,
  HASHCHECK: 0x8024,
  AUTH_SIGNED: 0x8025,
} as const;

/** Hierarchy and permanent handles used in policies and names. */
export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
} as const;

/** Command codes that appear in policy digests. */
export const TPM_CC = {
  PolicySecret: 0x00000151,
  PolicyOR: 0x00000171,
} as const;

/** TPMA_OBJECT bits. */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
  x509sign: 1 << 19,
} as const;

/** Bits of TPMA_OBJECT that are reserved and must be clear. */
export const TPMA_OBJECT_RESERVED = 0xfff0f309;

/** TPMA_NV bits (the TPM_NT type lives in bits 4..7). */
export const TPMA_NV = {
  ppWrite: 1 << 0,
  ownerWrite: 1 << 1,
  authWrite: 1 << 2,
  policyWrite: 1 << 3,
  policyDelete: 1 << 10,
  writeLocked: 1 << 11,
  writeAll: 1 << 12,
  writeDefine: 1 << 13,
  writeStClear: 1 << 14,
  globalLock: 1 << 15,
  ppRead: 1 << 16,
  ownerRead: 1 << 17,
  authRead: 1 << 18,
  policyRead: 1 << 19,
  noDA: 1 << 25,
  orderly: 1 << 26,
  clearStClear: 1 << 27,
  readLocked: 1 << 28,
  written: 1 << 29,
  platformCreate: 1 << 30,
  readStClear: 2 ** 31,
} as const;

export const TPMA_NV_TPM_NT_SHIFT = 4;
export const TPMA_NV_TPM_NT_MASK = 0xf0;
/** Bits of TPMA_NV that are reserved and must be clear (8..9, 20..24). */
export const TPMA_NV_RESERVED = 0x01f00300;

/** NV index types (TPM_NT). */
export const TPM_NT = {
  ORDINARY: 0x0,
  COUNTER: 0x1,
  BITS: 0x2,
  EXTEND: 0x4,
  PIN_FAIL: 0x8,
  PIN_PASS: 0x9,
} as const;

/** ECC curve identifiers (TPM_ECC_CURVE). */
export const TPM_ECC = {
  NONE: 0x0000,
  NIST_P192: 0x0001,
  NIST_P224: 0x0002,
  NIST_P256: 0x0003,
  NIST_P384: 0x0004,
  NIST_P521: 0x0005,
  BN_P256: 0x0010,
  BN_P638: 0x0011,
  SM2_P256: 0x0020,
} as const;

export type HashAlgId =
  | typeof TPM_ALG.SHA1
  | typeof TPM_ALG.SHA256
  | typeof TPM_ALG.SHA384
  | typeof TPM_ALG.SHA512
  | typeof TPM_ALG.SM3_256
  | typeof TPM_ALG.SHA3_256
  | typeof TPM_ALG.SHA3_384
  | typeof TPM_ALG.SHA3_512;

export type HashName =
  'sha1' | 'sha256' | 'sha384' | 'sha512' | 'sm3_256' | 'sha3_256' | 'sha3_384' | 'sha3_512';

/**
 * The hash algorithms the TPM facade reads, extends and names NV indices with: those PC
 * Client TPMs implement and node:crypto computes.
 */
export type HashAlgName = Extract<HashName, 'sha1' | 'sha256' | 'sha384' | 'sha512'>;

const HASH_ALG_NAMES: ReadonlySet<string> = new Set<HashAlgName>([
  'sha1',
  'sha256',
  'sha384',
  'sha512',
]);

export function isHashAlgName(name: string): name is HashAlgName {
  return HASH_ALG_NAMES.has(name);
}

interface HashInfo {
  readonly id: HashAlgId;
  readonly name: HashName;
  readonly size: number;
  /** node:crypto algorithm name, where node supports it. */
  readonly node: string | undefined;
}

const HASHES: readonly HashInfo[] = [
  { id: TPM_ALG.SHA1, name: 'sha1', size: 20, node: 'sha1' },
  { id: TPM_ALG.SHA256, name: 'sha256', size: 32, node: 'sha256' },
  { id: TPM_ALG.SHA384, name: 'sha384', size: 48, node: 'sha384' },
  { id: TPM_ALG.SHA512, name: 'sha512', size: 64, node: 'sha512' },
  { id: TPM_ALG.SM3_256, name: 'sm3_256', size: 32, node: undefined },
  { id: TPM_ALG.SHA3_256, name: 'sha3_256', size: 32, node: 'sha3-256' },
  { id: TPM_ALG.SHA3_384, name: 'sha3_384', size: 48, node: 'sha3-384' },
  { id: TPM_ALG.SHA3_512, name: 'sha3_512', size: 64, node: 'sha3-512' },
];

/** The largest digest (TPMU_HA); bounds TPM2B_DIGEST, TPM2B_DATA's digest use, etc. */
export const MAX_DIGEST_SIZE = 64;

export function hashInfo(id: number): HashInfo | undefined {
  return HASHES.find((h) => h.id === id);
}

export function hashInfoByName(name: string): HashInfo | undefined {
  return HASHES.find((h) => h.name === name);
}

export function isHashAlg(id: number): id is HashAlgId {
  return hashInfo(id) !== undefined;
}

/** Digest size in bytes of a TPM hash algorithm, or undefined if it is not one. */
export function hashSize(id: number): number | undefined {
  return hashInfo(id)?.size;
}

/** Size limits from TPM 2.0 Part 2 (as tpm2-tss defines them). */
export const TPM_MAX = {
  DIGEST: MAX_DIGEST_SIZE,
  /** TPM2B_DATA: sizeof(TPMT_HA). */
  DATA: 2 + MAX_DIGEST_SIZE,
  /** TPM2B_NAME: sizeof(TPMU_NAME). */
  NAME: 2 + MAX_DIGEST_SIZE,
  RSA_KEY_BYTES: 512,
  ECC_KEY_BYTES: 128,
  NV_BUFFER: 2048,
  NV_INDEX_SIZE: 2048,
  /** TPML_DIGEST count (a PCR_Read answers at most 8 digests). */
  DIGESTS: 8,
  /** TPML_PCR_SELECTION count (TPM2_NUM_PCR_BANKS). */
  PCR_BANKS: 16,
  /** TPMS_PCR_SELECTION.sizeofSelect (TPM2_PCR_SELECT_MAX). */
  PCR_SELECT: 4,
  /** TPM2B_ID_OBJECT: sizeof(TPMS_ID_OBJECT) = two TPM2B_DIGEST. */
  ID_OBJECT: 2 * (2 + MAX_DIGEST_SIZE),
  /** TPM2B_ENCRYPTED_SECRET: sizeof(TPMU_ENCRYPTED_SECRET), the RSA case. */
  ENCRYPTED_SECRET: 512,
} as const;
