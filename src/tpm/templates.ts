/**
 * Key templates: the TCG EK Credential Profile default EK templates and our attestation
 * key (AK) templates, as TPMT_PUBLIC values (marshal with marshalTpm2bPublic for
 * TPM2_CreatePrimary / TPM2_Create).
 */
import { TPM_ALG, TPM_ECC } from './marshal/constants.js';
import {
  objectAttributes,
  type EccPublic,
  type RsaPublic,
  type SymDefObject,
  type TpmtPublic,
} from './marshal/public.js';

/**
 * PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256 ("PolicyA_SHA256" in the EK Credential
 * Profile): the authPolicy of the low-range EK templates.
 */
export const EK_POLICY_A_SHA256 = Buffer.from(
  '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa',
  'hex',
);

/** PolicySecret(TPM_RH_ENDORSEMENT) with SHA-384 ("PolicyA_SHA384"). */
export const EK_POLICY_A_SHA384 = Buffer.from(
  '8bbf2266537c171cb56e403c4dc1d4b64f432611dc386e6f532050c3278c930e143e8bb1133824ccb431053871c6db53',
  'hex',
);

/**
 * The authPolicy of the high-range SHA-384 EK templates (EK Credential Profile 2.3 "PolicyB"
 * for SHA-384: PolicyOR of PolicyA_SHA384 and the PolicyAuthorizeNV branch). It is what
 * swtpm_setup puts on its P-384 EK at 0x81010016. These templates also set userWithAuth,
 * so the EK can be used with its (empty) authValue instead of a policy session.
 */
export const EK_POLICY_B_SHA384 = Buffer.from(
  'b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12',
  'hex',
);

/** What a template takes besides its key type and parameters (its name's hash, who may use it). */
type TemplateBase = Pick<TpmtPublic, 'nameAlg' | 'objectAttributes' | 'authPolicy'>;

/** An ECC template: no KDF, `unique` two zero coordinates of `uniqueSize` bytes. */
function eccTemplate(
  base: TemplateBase,
  params: Omit<EccPublic['parameters'], 'kdf'>,
  uniqueSize: number,
): EccPublic {
  const parameters = { ...params, kdf: { scheme: TPM_ALG.NULL } };
  const unique = { x: Buffer.alloc(uniqueSize), y: Buffer.alloc(uniqueSize) };
  return { type: TPM_ALG.ECC, ...base, parameters, unique };
}

/** An RSA template: the default exponent (0 = 2^16 + 1), `unique` `uniqueSize` zero bytes. */
function rsaTemplate(
  base: TemplateBase,
  params: Omit<RsaPublic['parameters'], 'exponent'>,
  uniqueSize: number,
): RsaPublic {
  const parameters = { ...params, exponent: 0 };
  return { type: TPM_ALG.RSA, ...base, parameters, unique: Buffer.alloc(uniqueSize) };
}

/** The EK templates' storage parameters: AES-CFB of `keyBits`, no signing scheme. */
const ekStorage = (
  keyBits: 128 | 256,
): { symmetric: SymDefObject; scheme: { scheme: typeof TPM_ALG.NULL } } => ({
  symmetric: { algorithm: TPM_ALG.AES, keyBits, mode: TPM_ALG.CFB },
  scheme: { scheme: TPM_ALG.NULL },
});

const ekLowAttributes = objectAttributes(
  'fixedTPM',
  'fixedParent',
  'sensitiveDataOrigin',
  'adminWithPolicy',
  'restricted',
  'decrypt',
);

/** The low-range templates (L-1, L-2): SHA-256 name, PolicyA_SHA256, no userWithAuth. */
const ekLow: TemplateBase = {
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: ekLowAttributes,
  authPolicy: EK_POLICY_A_SHA256,
};

/** Template L-1: RSA-2048, AES-128-CFB, SHA-256 name, unique = 256 zero bytes. */
export const EK_TEMPLATE_RSA2048: RsaPublic = rsaTemplate(
  ekLow,
  { ...ekStorage(128), keyBits: 2048 },
  256,
);

/** Template L-2: ECC NIST P-256, AES-128-CFB, SHA-256 name, unique = two 32-byte zeros. */
export const EK_TEMPLATE_ECC_P256: EccPublic = eccTemplate(
  ekLow,
  { ...ekStorage(128), curveId: TPM_ECC.NIST_P256 },
  32,
);

/**
 * Template H-3: ECC NIST P-384, AES-256-CFB, SHA-384 name, PolicyB_SHA384, userWithAuth,
 * empty unique. swtpm_setup --ecc creates its EK at 0x81010016 from this template.
 */
export const EK_TEMPLATE_ECC_P384: EccPublic = eccTemplate(
  {
    nameAlg: TPM_ALG.SHA384,
    objectAttributes: { ...ekLowAttributes, userWithAuth: true },
    authPolicy: EK_POLICY_B_SHA384,
  },
  { ...ekStorage(256), curveId: TPM_ECC.NIST_P384 },
  0,
);

export type EkKind = 'rsa2048' | 'ecc-p256' | 'ecc-p384';

export const EK_TEMPLATES: Readonly<Record<EkKind, TpmtPublic>> = {
  rsa2048: EK_TEMPLATE_RSA2048,
  'ecc-p256': EK_TEMPLATE_ECC_P256,
  'ecc-p384': EK_TEMPLATE_ECC_P384,
};

/** Persistent handles and EK certificate NV indices of the EK Credential Profile. */
export const EK_HANDLES: Readonly<Record<EkKind, { persistent: number; certNvIndex: number }>> = {
  rsa2048: { persistent: 0x81010001, certNvIndex: 0x01c00002 },
  'ecc-p256': { persistent: 0x81010002, certNvIndex: 0x01c0000a },
  'ecc-p384': { persistent: 0x81010016, certNvIndex: 0x01c00016 },
};

/**
 * A plain P-256 signing key's parameters: ECDSA with SHA-256, no symmetric part (our ECC AK,
 * and the audit anchor's key, src/audit/anchor-policy.ts).
 */
export const ECDSA_P256_SHA256: Omit<EccPublic['parameters'], 'kdf'> = {
  symmetric: { algorithm: TPM_ALG.NULL },
  scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
  curveId: TPM_ECC.NIST_P256,
};

/** A key that signs only what the TPM itself produced (restricted), with an empty authValue. */
const akAttributes = objectAttributes(
  'fixedTPM',
  'fixedParent',
  'sensitiveDataOrigin',
  'userWithAuth',
  'restricted',
  'sign',
);

const ak: TemplateBase = {
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: akAttributes,
  authPolicy: Buffer.alloc(0),
};

/** Restricted signing AK: ECC NIST P-256, ECDSA with SHA-256. */
export const AK_TEMPLATE_ECC_P256: EccPublic = eccTemplate(ak, ECDSA_P256_SHA256, 0);

/**
 * The appliance's own AK (it certifies the audit anchor at every start): the ECC AK with
 * noDA. Its authorisation is empty, so dictionary-attack protection guards nothing; without
 * noDA a TPM in DA lockout (after unorderly shutdowns: a power loss, a killed simulator)
 * refuses it (TPM_RC_LOCKOUT) and the appliance could not start until lockout recovery.
 */
export const APPLIANCE_AK_TEMPLATE: EccPublic = {
  ...AK_TEMPLATE_ECC_P256,
  objectAttributes: { ...akAttributes, noDA: true },
};

/** Restricted signing AK: RSA-2048, RSASSA-PKCS1-v1_5 with SHA-256. */
export const AK_TEMPLATE_RSA2048: RsaPublic = rsaTemplate(
  ak,
  {
    symmetric: { algorithm: TPM_ALG.NULL },
    scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
    keyBits: 2048,
  },
  0,
);

export type AkKind = 'ecc-p256' | 'rsa2048';

export const AK_TEMPLATES: Readonly<Record<AkKind, TpmtPublic>> = {
  'ecc-p256': AK_TEMPLATE_ECC_P256,
  rsa2048: AK_TEMPLATE_RSA2048,
};

/** A template with its `unique` replaced (e.g. to recompute a key's name from its public point). */
export function withUnique<T extends TpmtPublic>(template: T, unique: T['unique']): T {
  return { ...template, unique };
}
