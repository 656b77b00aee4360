/** TPML_PCR_SELECTION / TPMS_PCR_SELECTION, list helpers and PCR digests. */
import { createHash } from 'node:crypto';
import { PcrValuesError, TpmParseOversizedError } from '../errors.js';
import { TpmMarshalError, marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import { TPM_MAX, hashInfo, hashInfoByName, type HashAlgId, type HashName } from './constants.js';

export { PcrValuesError } from '../errors.js';

/** TPMS_PCR_SELECTION as marshalled: the bank, and a bitmap (PCR n = byte n>>3, bit n&7). */
export interface PcrSelection {
  readonly hashAlg: HashAlgId;
  readonly pcrSelect: Uint8Array;
}

/** TPML_PCR_SELECTION: the order is significant (it is the order of PCR values in a quote). */
export type TpmlPcrSelection = readonly PcrSelection[];

/** The friendly form: `{ bank: 'sha256', pcrs: [0, 1, 7] }`. */
export interface PcrBankSelection {
  readonly bank: HashName;
  readonly pcrs: readonly number[];
}

/** PC Client TPMs implement 24 PCRs, so selections carry at least 3 bytes (PCR_SELECT_MIN). */
export const PCR_SELECT_MIN = 3;

export function readTpmlPcrSelection(r: TpmReader, field = 'pcrSelect'): PcrSelection[] {
  return r.struct((s) => {
    const countAt = s.offset;
    const count = s.u32(`${field}.count`);
    if (count > TPM_MAX.PCR_BANKS) {
      throw new TpmParseOversizedError(s.at(`${field}.count`, countAt), count, TPM_MAX.PCR_BANKS);
    }
    const out: PcrSelection[] = [];
    for (let i = 0; i < count; i++) {
      const at = `${field}[${i}]`;
      const hashAt = s.offset;
      const hashAlg = s.u16(`${at}.hash`);
      if (hashInfo(hashAlg) === undefined) {
        throw s.invalid(`${at}.hash`, `not a hash algorithm: 0x${hashAlg.toString(16)}`, hashAt);
      }
      const sizeAt = s.offset;
      const size = s.u8(`${at}.sizeofSelect`);
      if (size > TPM_MAX.PCR_SELECT) {
        throw new TpmParseOversizedError(
          s.at(`${at}.sizeofSelect`, sizeAt),
          size,
          TPM_MAX.PCR_SELECT,
        );
      }
      out.push({ hashAlg: hashAlg as HashAlgId, pcrSelect: s.bytes(`${at}.pcrSelect`, size) });
    }
    return out;
  });
}

export function writeTpmlPcrSelection(w: TpmWriter, sel: TpmlPcrSelection): void {
  if (sel.length > TPM_MAX.PCR_BANKS)
    throw new TpmMarshalError('pcrSelect.count', 'too many banks');
  w.u32(sel.length, 'pcrSelect.count');
  for (const s of sel) {
    if (hashInfo(s.hashAlg) === undefined)
      throw new TpmMarshalError('pcrSelect.hash', 'not a hash algorithm');
    if (s.pcrSelect.length > TPM_MAX.PCR_SELECT) {
      throw new TpmMarshalError('pcrSelect.sizeofSelect', `more than ${TPM_MAX.PCR_SELECT} bytes`);
    }
    w.u16(s.hashAlg).u8(s.pcrSelect.length).bytes(s.pcrSelect);
  }
}

export function unmarshalTpmlPcrSelection(bytes: Uint8Array): PcrSelection[] {
  return parseAll(bytes, 'TPML_PCR_SELECTION', (r) => readTpmlPcrSelection(r));
}

export function marshalTpmlPcrSelection(sel: TpmlPcrSelection): Buffer {
  return marshal((w) => {
    writeTpmlPcrSelection(w, sel);
  });
}

/** The selected PCR indices of one bank, ascending. */
export function selectedPcrs(sel: PcrSelection): number[] {
  const pcrs: number[] = [];
  sel.pcrSelect.forEach((byte, i) => {
    for (let bit = 0; bit < 8; bit++) if ((byte >> bit) & 1) pcrs.push(i * 8 + bit);
  });
  return pcrs;
}

/** Friendly form, in selection order (a bank listed twice stays listed twice). */
export function pcrSelectionToList(sel: TpmlPcrSelection): PcrBankSelection[] {
  return sel.map((s) => {
    const info = hashInfo(s.hashAlg);
    if (info === undefined) throw new TpmMarshalError('pcrSelect.hash', 'not a hash algorithm');
    return { bank: info.name, pcrs: selectedPcrs(s) };
  });
}

/**
 * From the friendly form: sizeofSelect is the larger of PCR_SELECT_MIN and the bytes needed
 * for the highest PCR (as tpm2-tools and the reference TPM do).
 */
export function pcrListToSelection(list: readonly PcrBankSelection[]): PcrSelection[] {
  const seen = new Set<string>();
  return list.map(({ bank, pcrs }) => {
    const info = hashInfoByName(bank);
    if (info === undefined) throw new TpmMarshalError('pcrSelect.hash', `unknown bank ${bank}`);
    if (seen.has(bank)) throw new TpmMarshalError('pcrSelect.hash', `bank ${bank} listed twice`);
    seen.add(bank);
    let max = -1;
    for (const p of pcrs) {
      if (!Number.isInteger(p) || p < 0 || p >= TPM_MAX.PCR_SELECT * 8) {
        throw new TpmMarshalError('pcrSelect.pcrs', `PCR index out of range: ${p}`);
      }
      max = Math.max(max, p);
    }
    const pcrSelect = Buffer.alloc(Math.max(PCR_SELECT_MIN, Math.ceil((max + 1) / 8)));
    for (const p of pcrs) pcrSelect[p >> 3] = (pcrSelect[p >> 3] ?? 0) | (1 << (p & 7));
    return { hashAlg: info.id, pcrSelect };
  });
}

/** PCR values by bank and index, e.g. `{ sha256: { 0: <32 bytes>, 7: ... } }`. */
export type PcrValues = Readonly<Partial<Record<HashName, Readonly<Record<number, Uint8Array>>>>>;

/** The selected PCR values, concatenated in selection order (the input of pcrDigest). */
export function concatPcrValues(sel: TpmlPcrSelection, values: PcrValues): Buffer {
  const parts: Uint8Array[] = [];
  for (const { bank, pcrs } of pcrSelectionToList(sel)) {
    const size = hashInfoByName(bank)?.size;
    for (const pcr of pcrs) {
      const v = values[bank]?.[pcr];
      if (v === undefined)
        throw new PcrValuesError(`no value for PCR ${bank}:${pcr}`, { bank, pcr });
      if (v.length !== size)
        throw new PcrValuesError(`PCR ${bank}:${pcr} has the wrong length`, { bank, pcr });
      parts.push(v);
    }
  }
  return Buffer.concat(parts);
}

/** The quote's pcrDigest: H_hashAlg(selected PCR values in selection order). */
export function pcrDigest(hashAlg: HashAlgId, sel: TpmlPcrSelection, values: PcrValues): Buffer {
  const info = hashInfo(hashAlg);
  if (info?.node === undefined)
    throw new PcrValuesError('digest algorithm not supported', { bank: String(hashAlg) });
  return createHash(info.node).update(concatPcrValues(sel, values)).digest();
}

/**
 * Split concatenated PCR values (as `tpm2_quote -o FILE -F values` or `tpm2_pcrread -o`
 * write them) into PcrValues by the selection.
 */
export function splitPcrValues(sel: TpmlPcrSelection, bytes: Uint8Array): PcrValues {
  const out: Partial<Record<HashName, Record<number, Uint8Array>>> = {};
  let offset = 0;
  for (const { bank, pcrs } of pcrSelectionToList(sel)) {
    const size = hashInfoByName(bank)?.size ?? 0;
    const bankValues = (out[bank] ??= {});
    for (const pcr of pcrs) {
      if (offset + size > bytes.length)
        throw new PcrValuesError(`no value for PCR ${bank}:${pcr}`, { bank, pcr });
      bankValues[pcr] = Buffer.from(bytes.subarray(offset, offset + size));
      offset += size;
    }
  }
  if (offset !== bytes.length)
    throw new PcrValuesError('more PCR values than the selection', { bank: 'any' });
  return out;
}
