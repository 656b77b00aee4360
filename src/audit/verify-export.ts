/**
 * The offline verifier (`grantor audit verify FILE --key <verifier key> --ak <AK> --pin
 * <anchor pin>`): checks an export without the appliance, in this order, stopping at the
 * first failure with its index: the checkpoint's note signature (against the given key,
 * never one from the file), every entry's shape, seq and link, the Merkle root over the
 * checkpoint's size, the batch boundaries (each root recomputed from the entries) and the
 * extend chain they make against the checkpoint's `nv-extend` line, then the TPM's own
 * evidence against what the auditor pinned: the counter equals the pinned genesis plus the
 * batches, and each NV_Certify is TPM-generated, of the pinned NV name, qualified with the
 * export's nonce, equal to the checkpoint's anchor lines and signed by the pinned AK.
 * Without a pinned AK and pin it refuses, unless told to skip the TPM evidence.
 */
import { parseCheckpoint, parseVerifierKey, verifyNote } from './checkpoint.js';
import type { AuditEntry } from './entry.js';
import { GENESIS_PREV_HASH, LINK_PROBLEM, checkLink, isEntryShape } from './entry.js';
import { GENESIS_EXTEND, extendDigest } from './anchor.port.js';
import { MerkleTree, leafHash } from './merkle.js';
import { NvCertifyCheckError, checkNvCertification } from './nv-certify.js';
import { EXPORT_FORMAT } from './service.js';
import { ExportInvalidError } from './errors.js';

export type ExportProblem =
  | 'format'
  | 'entry_shape'
  | 'entry_seq'
  | 'entry_prev_hash'
  | 'entry_hash'
  | 'entries_missing'
  | 'root_mismatch'
  | 'batches_invalid'
  | 'anchor_mismatch'
  | 'tpm_evidence_unpinned'
  | 'nv_certify_invalid';

export interface ExportVerification {
  readonly origin: string;
  readonly treeSize: number;
  readonly rootHash: string;
  readonly nvCounter: string;
  readonly nvCertified: boolean;
  /** Batches the checkpoint covers (their roots and extend chain recomputed). */
  readonly batches: number;
  /** Entries after the checkpoint's size, present but not covered by it. */
  readonly uncovered: number;
  readonly warnings: readonly string[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What the auditor pinned about the appliance's anchor (e.g. its anchor pin file). */
export interface PinnedEvidence {
  /** TPM2B_PUBLIC of the appliance AK that signs NV_Certify. */
  readonly akPublic?: Buffer;
  /** The anchor's NV names (hex) and genesis counter. */
  readonly pin?: {
    readonly names: { readonly counter: string; readonly extend: string };
    readonly genesisCounter: bigint;
  };
  /** Check entries, root, batches and extend chain only; say so in the warnings. */
  readonly skipTpmEvidence?: boolean;
}

const HEX32 = /^[0-9a-f]{64}$/;

export function verifyExport(
  file: unknown,
  verifierKey: string,
  options: PinnedEvidence = {},
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
  // 4. Batch boundaries: each a root of the entries, the last one the checkpoint's size.
  const batches = file.batches;
  if (!Array.isArray(batches)) {
    throw new ExportInvalidError('batches_invalid', 'the export has no batch boundaries');
  }
  let extend: Buffer = Buffer.from(GENESIS_EXTEND);
  let lastSize = 0;
  for (const [i, b] of (batches as unknown[]).entries()) {
    if (
      !isRecord(b) ||
      b.index !== i ||
      typeof b.size !== 'number' ||
      !Number.isSafeInteger(b.size) ||
      b.size <= lastSize ||
      b.size > body.size ||
      typeof b.root !== 'string' ||
      !HEX32.test(b.root)
    ) {
      throw new ExportInvalidError('batches_invalid', `batch ${i} is malformed or out of order`);
    }
    if (!tree.root(b.size).equals(Buffer.from(b.root, 'hex'))) {
      throw new ExportInvalidError(
        'batches_invalid',
        `batch ${i} root is not the root of entries 0..${b.size - 1}`,
      );
    }
    extend = extendDigest(extend, Buffer.from(b.root, 'hex'));
    lastSize = b.size;
  }
  if (lastSize !== body.size) {
    throw new ExportInvalidError(
      'batches_invalid',
      `the batches end at size ${lastSize}, the checkpoint at ${body.size}`,
    );
  }
  // 5. The extend chain those batches make is what the checkpoint says the TPM holds.
  if (!extend.equals(body.extendValue)) {
    throw new ExportInvalidError(
      'anchor_mismatch',
      "the batches' extend chain is not the checkpoint's nv-extend",
    );
  }
  // 6. The TPM's own statement, checked against what the auditor pinned, never the file.
  const warnings: string[] = [];
  let nvCertified = false;
  if (options.skipTpmEvidence === true) {
    warnings.push(
      'TPM evidence NOT checked (--skip-tpm-evidence): the counter and NV_Certify are unverified',
    );
  } else {
    const { akPublic, pin } = options;
    if (akPublic === undefined || pin === undefined) {
      throw new ExportInvalidError(
        'tpm_evidence_unpinned',
        'no pinned AK (--ak) and anchor pin (--pin): refusing to trust the AK or names inside the export (--skip-tpm-evidence checks the log alone)',
      );
    }
    const expectedCounter = pin.genesisCounter + BigInt(batches.length);
    if (body.counter !== expectedCounter) {
      throw new ExportInvalidError(
        'anchor_mismatch',
        `nv-counter ${body.counter} is not the pinned genesis ${pin.genesisCounter} + ${batches.length} batches`,
      );
    }
    const certs = checkpoint.nvCertify;
    if (!Array.isArray(certs) || typeof checkpoint.nonce !== 'string') {
      throw new ExportInvalidError('nv_certify_invalid', 'the export has no NV_Certify');
    }
    verifyCertifications(
      certs,
      Buffer.from(checkpoint.nonce, 'hex'),
      akPublic,
      pin.names,
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
    batches: batches.length,
    uncovered: tree.size - body.size,
    warnings,
  };
}

export function verifyCertifications(
  certs: unknown[],
  nonce: Buffer,
  akPublic: Buffer,
  names: { readonly counter: string; readonly extend: string },
  counter: bigint,
  extendValue: Buffer,
): void {
  const fail = (msg: string, cause?: unknown): never => {
    throw new ExportInvalidError('nv_certify_invalid', `NV_Certify: ${msg}`, undefined, { cause });
  };
  const seen = new Set<string>();
  for (const c of certs) {
    if (!isRecord(c) || typeof c.attest !== 'string' || typeof c.signature !== 'string') {
      return fail('malformed certification');
    }
    const which = c.index;
    if (which !== 'counter' && which !== 'extend') return fail('unknown index kind');
    if (seen.has(which)) return fail(`${which}: certified twice`);
    let contents: Buffer;
    try {
      contents = checkNvCertification(
        Buffer.from(c.attest, 'base64'),
        Buffer.from(c.signature, 'base64'),
        { akPublic, nonce, name: names[which], size: which === 'counter' ? 8 : 32 },
      );
    } catch (err) {
      if (err instanceof NvCertifyCheckError) return fail(`${which}: ${err.message}`, err.cause);
      throw err;
    }
    const expected = which === 'counter' ? Buffer.alloc(8) : extendValue;
    if (which === 'counter') expected.writeBigUInt64BE(counter);
    if (!contents.equals(expected))
      return fail(`${which}: TPM value differs from the checkpoint's`);
    seen.add(which);
  }
  if (seen.size !== 2) fail('both anchor indices must be certified');
}
