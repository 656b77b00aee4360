/** TPMS_NV_PUBLIC / TPM2B_NV_PUBLIC (TPM 2.0 Part 2, 13.5) and NV index names. */
import { createHash } from 'node:crypto';
import { TpmMarshalError, marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import {
  TPMA_NV,
  TPMA_NV_RESERVED,
  TPMA_NV_TPM_NT_MASK,
  TPMA_NV_TPM_NT_SHIFT,
  TPM_MAX,
  TPM_NT,
  hashInfo,
  hashInfoByName,
  isHashAlg,
  type HashAlgId,
  type HashAlgName,
} from './constants.js';
import { TpmParseOversizedError } from '../errors.js';

export type NvType = (typeof TPM_NT)[keyof typeof TPM_NT];

export type NvAttributes = { readonly [K in keyof typeof TPMA_NV]: boolean } & {
  readonly nt: NvType;
};

export interface TpmsNvPublic {
  readonly nvIndex: number;
  readonly nameAlg: HashAlgId;
  readonly attributes: NvAttributes;
  readonly authPolicy: Uint8Array;
  readonly dataSize: number;
}

const NV_BITS = Object.keys(TPMA_NV) as (keyof typeof TPMA_NV)[];
const NV_TYPES = new Set<number>(Object.values(TPM_NT));

/** NV index handles are 0x01xxxxxx (TPM_HT_NV_INDEX). */
export function isNvIndexHandle(h: number): boolean {
  return h >>> 24 === 0x01;
}

/** Decode TPMA_NV; undefined when a reserved bit is set or the TPM_NT is unknown. */
export function decodeNvAttributes(bits: number): NvAttributes | undefined {
  if ((bits & TPMA_NV_RESERVED) !== 0) return undefined;
  const nt = (bits & TPMA_NV_TPM_NT_MASK) >>> TPMA_NV_TPM_NT_SHIFT;
  if (!NV_TYPES.has(nt)) return undefined;
  const out: Record<string, boolean | number> = { nt };
  for (const k of NV_BITS) out[k] = ((bits >>> 0) & TPMA_NV[k]) >>> 0 !== 0;
  return out as unknown as NvAttributes;
}

export function encodeNvAttributes(a: NvAttributes): number {
  if (!NV_TYPES.has(a.nt)) throw new TpmMarshalError('attributes.nt', 'unknown NV type');
  let bits = a.nt << TPMA_NV_TPM_NT_SHIFT;
  for (const k of NV_BITS) if (a[k]) bits = (bits | TPMA_NV[k]) >>> 0;
  return bits >>> 0;
}

/** Attributes from the names that are set, and the NV type. */
export function nvAttributes(nt: NvType, ...set: (keyof typeof TPMA_NV)[]): NvAttributes {
  const out: Record<string, boolean | number> = { nt };
  for (const k of NV_BITS) out[k] = set.includes(k);
  return out as unknown as NvAttributes;
}

export function readTpmsNvPublic(r: TpmReader): TpmsNvPublic {
  return r.struct((s) => {
    const indexAt = s.offset;
    const nvIndex = s.u32('nvIndex');
    if (!isNvIndexHandle(nvIndex)) throw s.invalid('nvIndex', 'not an NV index handle', indexAt);
    const algAt = s.offset;
    const nameAlg = s.u16('nameAlg');
    if (!isHashAlg(nameAlg))
      throw s.invalid('nameAlg', `not a hash algorithm: 0x${nameAlg.toString(16)}`, algAt);
    const attrAt = s.offset;
    const attributes = decodeNvAttributes(s.u32('attributes'));
    if (attributes === undefined)
      throw s.invalid('attributes', 'reserved bit or unknown TPM_NT', attrAt);
    const authPolicy = s.tpm2b('authPolicy', TPM_MAX.DIGEST);
    const sizeAt = s.offset;
    const dataSize = s.u16('dataSize');
    if (dataSize > TPM_MAX.NV_INDEX_SIZE) {
      throw new TpmParseOversizedError(s.at('dataSize', sizeAt), dataSize, TPM_MAX.NV_INDEX_SIZE);
    }
    return { nvIndex, nameAlg, attributes, authPolicy, dataSize };
  });
}

export function writeTpmsNvPublic(w: TpmWriter, p: TpmsNvPublic): void {
  if (!isNvIndexHandle(p.nvIndex)) throw new TpmMarshalError('nvIndex', 'not an NV index handle');
  if (!isHashAlg(p.nameAlg)) throw new TpmMarshalError('nameAlg', 'not a hash algorithm');
  if (p.dataSize > TPM_MAX.NV_INDEX_SIZE) throw new TpmMarshalError('dataSize', 'too large');
  w.u32(p.nvIndex, 'nvIndex')
    .u16(p.nameAlg, 'nameAlg')
    .u32(encodeNvAttributes(p.attributes), 'attributes');
  w.tpm2b(p.authPolicy, TPM_MAX.DIGEST, 'authPolicy').u16(p.dataSize, 'dataSize');
}

/** Largest TPMS_NV_PUBLIC: index, nameAlg, attributes, authPolicy (2+64), dataSize. */
export const MAX_TPMS_NV_PUBLIC_SIZE = 4 + 2 + 4 + 2 + TPM_MAX.DIGEST + 2;

export function unmarshalTpmsNvPublic(bytes: Uint8Array): TpmsNvPublic {
  return parseAll(bytes, 'TPMS_NV_PUBLIC', readTpmsNvPublic);
}

export function readTpm2bNvPublic(r: TpmReader): TpmsNvPublic {
  const p = r.sized('nvPublic', MAX_TPMS_NV_PUBLIC_SIZE, readTpmsNvPublic);
  if (p === undefined) throw r.invalid('nvPublic', 'empty');
  return p;
}

export function unmarshalTpm2bNvPublic(bytes: Uint8Array): TpmsNvPublic {
  return parseAll(bytes, 'TPM2B_NV_PUBLIC', readTpm2bNvPublic);
}

export function marshalTpmsNvPublic(p: TpmsNvPublic): Buffer {
  return marshal((w) => {
    writeTpmsNvPublic(w, p);
  });
}

export function marshalTpm2bNvPublic(p: TpmsNvPublic): Buffer {
  return marshal((w) => {
    w.sized((inner) => {
      writeTpmsNvPublic(inner, p);
    }, 'nvPublic');
  });
}

/** The NV index Name: nameAlg (u16) || H_nameAlg(TPMS_NV_PUBLIC). */
export function nvIndexName(p: TpmsNvPublic): Buffer {
  const info = hashInfo(p.nameAlg);
  if (info?.node === undefined) throw new TpmMarshalError('nameAlg', 'no name for this nameAlg');
  const digest = createHash(info.node).update(marshalTpmsNvPublic(p)).digest();
  return marshal((w) => w.u16(info.id, 'nameAlg').bytes(digest));
}

/** What NV_DefineSpace needs to know about a new index, in the facade's terms. */
export interface NvSpace {
  readonly index: number;
  readonly nameAlg: HashAlgName;
  /** TPMA_NV bits, including the TPM_NT type in bits 4-7. */
  readonly attributes: number;
  readonly authPolicy?: Uint8Array;
  /** Bytes of data: 8 for counters and bit fields, the digest size for extend indices. */
  readonly dataSize: number;
}

/** The TPMS_NV_PUBLIC of a space (its attributes decoded; reserved bits refused). */
export function nvSpacePublic(space: NvSpace): TpmsNvPublic {
  const nameAlg = hashInfoByName(space.nameAlg)?.id;
  if (nameAlg === undefined) throw new TpmMarshalError('nameAlg', 'not a hash algorithm');
  const attributes = decodeNvAttributes(space.attributes >>> 0);
  if (attributes === undefined)
    throw new TpmMarshalError('attributes', 'reserved bit or unknown TPM_NT');
  return {
    nvIndex: space.index >>> 0,
    nameAlg,
    attributes,
    authPolicy: space.authPolicy ?? new Uint8Array(0),
    dataSize: space.dataSize,
  };
}

/** TPM_CC_NV_Increment and TPM_CC_NV_Extend (TPM 2.0 Part 2, 6.5.2). */
const TPM_CC_NV_INCREMENT = 0x134;
const TPM_CC_NV_EXTEND = 0x136;

/**
 * cpHashA of an NV write whose authHandle is the index itself (TPM 2.0 Part 1, 18.7):
 * SHA-256(TPM_CC ‖ name(authHandle) ‖ name(nvIndex) ‖ parameters), the index's name twice;
 * NV_Extend's parameters are the TPM2B_MAX_NV_BUFFER of `data`, NV_Increment has none.
 * `name` is the index's name as the command finds it (TPMA_NV_WRITTEN as it is then): a
 * PolicySigned signature over this digest authorises exactly this command on this index.
 */
export function nvWriteCpHash(
  name: Uint8Array,
  write: { readonly kind: 'increment' } | { readonly kind: 'extend'; readonly data: Uint8Array },
): Buffer {
  const command = marshal((w) => {
    w.u32(write.kind === 'extend' ? TPM_CC_NV_EXTEND : TPM_CC_NV_INCREMENT, 'commandCode');
    w.bytes(name).bytes(name);
    if (write.kind === 'extend') w.tpm2b(write.data, TPM_MAX.NV_BUFFER, 'data');
  });
  return createHash('sha256').update(command).digest();
}
