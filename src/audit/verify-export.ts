/**
 * The offline verifier (`grantor audit verify FILE --key <verifier key>`): checks an export
 * without the appliance, in this order, stopping at the first failure with its index:
 * the checkpoint's note signature (against the given key, never one from the file), every
 * entry's shape, seq and link, the Merkle root over the checkpoint's size, and, when
 * present, each NV_Certify (TPM-generated, NV attestation, qualified with the export's
 * nonce, contents equal to the checkpoint's anchor lines, signed by the AK).
 */
import { GrantorError } from '../shared/errors.js';
import { unmarshalTpmsAttest } from '../tpm/marshal/attest.js';
import { TPM_GENERATED_VALUE, TPM_ST } from '../tpm/marshal/constants.js';
import { unmarshalTpm2bPublic } from '../tpm/marshal/public.js';
import { unmarshalTpmtSignature } from '../tpm/marshal/signature.js';
import { verifyTpmtSignature } from '../tpm/marshal/verify.js';
import { parseCheckpoint, parseVerifierKey, verifyNote } from './checkpoint.js';
import type { AuditEntry } from './entry.js';
import { GENESIS_PREV_HASH, checkLink, isEntryShape } from './entry.js';
import { MerkleTree, leafHash } from './merkle.js';
import { EXPORT_FORMAT } from './service.js';

export type ExportProblem =
  | 'format'
  | 'entry_shape'
  | 'entry_seq'
  | 'entry_prev_hash'
  | 'entry_hash'
  | 'entries_missing'
  | 'root_mismatch'
  | 'nv_certify_invalid';

/** The export does not verify; `index` is the first bad entry where one can be named. */
export class ExportInvalidError extends GrantorError {
  readonly problem: ExportProblem;
  readonly index: number | undefined;
  constructor(
    problem: ExportProblem,
    message: string,
    index?: number,
    options?: { cause?: unknown },
  ) {
    super('audit_export_invalid', message, {
      ...(options?.cause === undefined ? {} : { cause: options.cause }),
      details: index === undefined ? { problem } : { problem, index },
    });
    this.problem = problem;
    this.index = index;
  }
}

export interface ExportVerification {
  readonly origin: string;
  readonly treeSize: number;
  readonly rootHash: string;
  readonly nvCounter: string;
  readonly nvCertified: boolean;
  /** Entries after the checkpoint's size, present but not covered by it. */
  readonly uncovered: number;
  readonly warnings: readonly string[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const LINK_PROBLEM = {
  shape: 'entry_shape',
  seq: 'entry_seq',
  prev_hash: 'entry_prev_hash',
  hash: 'entry_hash',
} as const;

export function verifyExport(
  file: unknown,
  verifierKey: string,
  options: { akPublic?: Buffer } = {},
): ExportVerification {
  const key = parseVerifierKey(verifierKey);
  if (!isRecord(file) || file.format !== EXPORT_FORMAT) {
    throw new ExportInvalidError('format', `not a ${EXPORT_FORMAT} file`);
  }
  const { checkpoint, entries } = file;
  if (!isRecord(checkpoint) || typeof checkpoint.note !== 'string' || !Array.isArray(entries)) {
    throw new ExportInvalidError('format', 'export lacks checkpoint.note or entries');
  }
  // 1. The checkpoint, signed by the key the auditor trusts.
  const body = parseCheckpoint(verifyNote(checkpoint.note, key));
  // 2. Every entry links to the one before it.
  let prev = GENESIS_PREV_HASH;
  const tree = new MerkleTree();
  for (const [i, raw] of (entries as unknown[]).entries()) {
    const problem = isEntryShape(raw) ? checkLink(raw, i, prev) : 'shape';
    if (problem !== undefined) {
      throw new ExportInvalidError(
        LINK_PROBLEM[problem],
        `entry ${i}: ${problem.replace('_', ' ')} does not verify`,
        i,
      );
    }
    const entry = raw as AuditEntry;
    tree.appendLeaf(leafHash(Buffer.from(entry.hash, 'hex')));
    prev = entry.hash;
  }
  // 3. The leaves make the signed root.
  if (tree.size < body.size) {
    throw new ExportInvalidError(
      'entries_missing',
      `the checkpoint covers ${body.size} entries, the export has ${tree.size}`,
      tree.size,
    );
  }
  if (!tree.root(body.size).equals(body.root)) {
    throw new ExportInvalidError(
      'root_mismatch',
      `entries 0..${body.size - 1} do not make the checkpoint root`,
    );
  }
  // 4. The TPM's own statement of the anchor, when the export carries one.
  const warnings: string[] = [];
  const certs = checkpoint.nvCertify;
  let nvCertified = false;
  if (certs !== undefined) {
    let akText: Buffer | undefined = options.akPublic;
    if (akText === undefined && typeof file.akPublic === 'string') {
      akText = Buffer.from(file.akPublic, 'base64');
      warnings.push(
        'NV_Certify checked against the AK public key inside the export (pass --ak to pin it)',
      );
    }
    if (akText === undefined)
      throw new ExportInvalidError('nv_certify_invalid', 'NV_Certify present but no AK public key');
    if (!Array.isArray(certs) || typeof checkpoint.nonce !== 'string') {
      throw new ExportInvalidError('nv_certify_invalid', 'malformed nvCertify');
    }
    verifyCertifications(
      certs,
      Buffer.from(checkpoint.nonce, 'hex'),
      akText,
      body.counter,
      body.extendValue,
    );
    nvCertified = true;
  }
  return {
    origin: body.origin,
    treeSize: body.size,
    rootHash: body.root.toString('base64'),
    nvCounter: body.counter.toString(),
    nvCertified,
    uncovered: tree.size - body.size,
    warnings,
  };
}

function verifyCertifications(
  certs: unknown[],
  nonce: Buffer,
  akPublic: Buffer,
  counter: bigint,
  extendValue: Buffer,
): void {
  const fail = (msg: string, cause?: unknown): never => {
    throw new ExportInvalidError('nv_certify_invalid', `NV_Certify: ${msg}`, undefined, { cause });
  };
  let ak;
  try {
    ak = unmarshalTpm2bPublic(akPublic);
  } catch (err) {
    return fail('AK public key does not parse', err);
  }
  const seen = new Set<string>();
  for (const c of certs) {
    if (!isRecord(c) || typeof c.attest !== 'string' || typeof c.signature !== 'string') {
      return fail('malformed certification');
    }
    const which = c.index;
    if (which !== 'counter' && which !== 'extend') return fail('unknown index kind');
    const attestBytes = Buffer.from(c.attest, 'base64');
    let attest;
    try {
      attest = unmarshalTpmsAttest(attestBytes);
      verifyTpmtSignature(
        ak,
        unmarshalTpmtSignature(Buffer.from(c.signature, 'base64')),
        attestBytes,
      );
    } catch (err) {
      return fail(`${which}: signature does not verify with the AK`, err);
    }
    // Only a TPM writes TPM_GENERATED into what a restricted key signs.
    if (attest.magic !== TPM_GENERATED_VALUE) return fail(`${which}: not TPM-generated`);
    if (attest.attested.type !== TPM_ST.ATTEST_NV) return fail(`${which}: not an NV attestation`);
    if (!Buffer.from(attest.extraData).equals(nonce))
      return fail(`${which}: not qualified with the nonce`);
    if (attest.attested.offset !== 0) return fail(`${which}: partial read`);
    const contents = Buffer.from(attest.attested.nvContents);
    const expected = which === 'counter' ? Buffer.alloc(8) : extendValue;
    if (which === 'counter') expected.writeBigUInt64BE(counter);
    if (!contents.equals(expected))
      return fail(`${which}: TPM value differs from the checkpoint's`);
    seen.add(which);
  }
  if (seen.size !== 2) fail('both anchor indices must be certified');
}
