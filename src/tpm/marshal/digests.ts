/** TPML_DIGEST (what PCR_Read answers) and TPML_DIGEST_VALUES (what PCR_Extend takes). */
import { TpmMarshalError, marshal, parseAll, type TpmReader } from './buffer.js';
import { TPM_MAX, hashInfoByName, type HashAlgName } from './constants.js';
import { TpmParseOversizedError } from '../errors.js';

export function readTpmlDigest(r: TpmReader): Buffer[] {
  return r.struct((s) => {
    const countAt = s.offset;
    const count = s.u32('count');
    if (count > TPM_MAX.DIGESTS)
      throw new TpmParseOversizedError(s.at('count', countAt), count, TPM_MAX.DIGESTS);
    const out: Buffer[] = [];
    for (let i = 0; i < count; i++) out.push(s.tpm2b(`digests[${i}]`, TPM_MAX.DIGEST));
    return out;
  });
}

/** TPML_DIGEST: the digests, in order. */
export function unmarshalTpmlDigest(bytes: Uint8Array): Buffer[] {
  return parseAll(bytes, 'TPML_DIGEST', readTpmlDigest);
}

/** One TPMT_HA: a digest and the bank it is for. */
export interface BankDigest {
  readonly hash: HashAlgName;
  readonly digest: Uint8Array;
}

/** TPML_DIGEST_VALUES; each digest must have its bank's size. */
export function marshalTpmlDigestValues(digests: readonly BankDigest[]): Buffer {
  return marshal((w) => {
    w.u32(digests.length, 'count');
    for (const d of digests) {
      const info = hashInfoByName(d.hash);
      if (info === undefined) throw new TpmMarshalError('digests.hashAlg', 'unknown bank');
      if (d.digest.length !== info.size)
        throw new TpmMarshalError('digests.digest', `a ${d.hash} digest is ${info.size} bytes`);
      w.u16(info.id, 'hashAlg').bytes(d.digest);
    }
  });
}
