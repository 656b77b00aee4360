/**
 * The offline verifier of an evidence bundle (`grantor audit verify BUNDLE`, bundle.ts):
 * reads it line by line (memory bounded by one record and the Merkle frontier), checks
 * every record against what came before it and against what the AUDITOR trusts, never
 * against anything the bundle says about itself, and stops at the first bad line:
 *
 *   - the checkpoint's note signature, with the note verifier key the auditor pinned;
 *   - the checkpoint's NV_Certify, against the pinned AK, NV names and (when given) the
 *     auditor's own nonce; the counter against the pinned genesis plus the batches;
 *   - every entry's shape, seq, link and hash, and its leaf in the Merkle tree (from the
 *     frontier at `from`); every batch root inside the range recomputed from the entries;
 *     the extend chain over every batch root equal to the certified `nv-extend`;
 *   - the range's root consistent with the checkpoint's (RFC 9162 proof), and the tree at
 *     `since` (a batch boundary, anchored) consistent with it too;
 *   - every request body hashing to the digest of the entry before it, every policy set
 *     re-hashing to a hash an entry named; the end record's counts.
 */
import { createHash } from 'node:crypto';
import { jcsSha256Hex } from '../shared/jcs.js';
import { GENESIS_EXTEND, extendDigest } from './anchor.port.js';
import { BUNDLE_FORMAT, keepsBody, policyHashesOf } from './bundle.js';
import {
  parseCheckpoint,
  verifyNote,
  type CheckpointBody,
  type VerifierKey,
} from './checkpoint.js';
import { CompactRange } from './compact-range.js';
import { verifyConsistency } from './consistency.js';
import {
  GENESIS_PREV_HASH,
  LINK_PROBLEM,
  checkLink,
  isEntryShape,
  type AuditEntry,
} from './entry.js';
import { rootFromPath } from '../gateway/batch.js';
import { leafHash } from './merkle.js';
import { endFromLink, linkProblem, periodOrigin, type PeriodEnd } from './periods.js';
import { verifyCertifications } from './verify-export.js';
import { BundleInvalidError, ExportInvalidError } from './errors.js';

export type BundleProblem =
  | 'format'
  | 'order'
  | 'checkpoint'
  | 'nonce_mismatch'
  | 'tpm_evidence_unpinned'
  | 'nv_certify_invalid'
  | 'frontier'
  | 'entry_shape'
  | 'entry_seq'
  | 'entry_prev_hash'
  | 'entry_hash'
  | 'body'
  | 'policy'
  | 'policy_missing'
  | 'batch'
  | 'anchor_mismatch'
  | 'root_mismatch'
  | 'consistency'
  | 'since_mismatch'
  | 'link'
  | 'chain_missing'
  | 'chain_checkpoint'
  | 'chain_link'
  | 'chain_link_mismatch'
  | 'chain_link_proof'
  | 'chain_anchor'
  | 'truncated';

/**
 * Why two bundles, each verified on its own, are not consecutive periods of one log
 * (`grantor audit verify A B`, verify-bundle-pair.ts): another log, the files in the
 * wrong order, a gap (or the same period twice), B's link naming another end than A's
 * final checkpoint, A exported while its period was current and not at its final end, A's
 * successor chain carrying another link of B's period than B's own.
 */
export type BundlePairProblem =
  | 'pair_other_log'
  | 'pair_order'
  | 'pair_not_consecutive'
  | 'pair_link_mismatch'
  | 'pair_not_final'
  | 'pair_chain_mismatch';

/** What the auditor trusts: nothing here may come from the bundle. */
export interface BundleTrust {
  /** The C2SP note verifier key of the log (pinned, or from GET /v1/audit/verifier once). */
  readonly verifierKey: VerifierKey;
  /** The anchor pin (provisioning's file): NV names, genesis counter, AK public. */
  readonly pin?: {
    readonly names: { readonly counter: string; readonly extend: string };
    readonly genesisCounter: bigint;
    readonly akPublic: Buffer;
  };
  /** The nonce the auditor sent (hex): the certification must be over it. */
  readonly nonce?: string;
  /** A checkpoint note the auditor kept from before: the bundle must extend it. */
  readonly sinceNote?: string;
  /** Check everything but the TPM evidence (said in the warnings). */
  readonly skipTpmEvidence?: boolean;
  /** Report policy sets named but not carried as warnings instead of failing. */
  readonly allowMissingPolicies?: boolean;
}

export interface BundleReport {
  readonly origin: string;
  readonly from: number;
  readonly to: number;
  readonly treeSize: number;
  readonly rootHash: string;
  readonly nvCounter: string;
  readonly entries: number;
  readonly bodies: number;
  /** Entries whose kind keeps a body but whose body the bundle does not carry. */
  readonly bodiesAbsent: number;
  readonly policies: number;
  readonly batches: number;
  readonly nvCertified: boolean;
  readonly nonceChecked: boolean;
  readonly since: number | null;
  /** A frozen period's bundle: the later periods whose links certify its end (else 0). */
  readonly successors: number;
  /** The checkpoint's period and end (the period's final one when `successors` > 0). */
  readonly end: PeriodEnd;
  /** A later period's entry 0 (its link to the period before), proved in its signed tree. */
  readonly link: AuditEntry | undefined;
  /** A frozen period's bundle: the next period's link, from the first successor record. */
  readonly nextLink: AuditEntry | undefined;
  readonly warnings: readonly string[];
}

const HEX32 = /^[0-9a-f]{64}$/;
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isSize = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const hexList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.length <= 64 && v.every((h) => typeof h === 'string' && HEX32.test(h));
const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/** The period an origin names (`<base>/period-<n>`; the first period's has no suffix). */
function periodOf(origin: string): number {
  const m = /\/period-(\d{1,8})$/.exec(origin);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}
/** The log an origin belongs to: the first period's origin, shared by all its periods. */
export const baseOrigin = (origin: string): string => origin.replace(/\/period-\d{1,8}$/, '');

/** A signed checkpoint as the end of its period (the form a later period's link names). */
function endOf(body: CheckpointBody): PeriodEnd {
  return {
    period: periodOf(body.origin),
    origin: body.origin,
    size: body.size,
    root: body.root.toString('hex'),
    counter: body.counter.toString(),
    extend: body.extendValue.toString('hex'),
  };
}

type Phase = 'header' | 'checkpoint' | 'chain' | 'frontier' | 'body' | 'proofs' | 'done';

export class BundleVerifier {
  #n = 0;
  #phase: Phase = 'header';
  #from = 0;
  #to = 0;
  #size = 0;
  #since: number | null = null;
  #nonce: string | null = null;
  #origin = '';
  #signedRoot: Buffer = Buffer.alloc(0);
  #counter = 0n;
  #extendValue: Buffer = Buffer.alloc(0);
  #nvCertified = false;
  #signedEnd: PeriodEnd = { period: 0, origin: '', size: 0, root: '', counter: '0', extend: '' };
  #range = new CompactRange();
  #prevHash: string | undefined;
  #lastEntry: AuditEntry | undefined;
  #bodyAllowed = false;
  #extend: Buffer = Buffer.from(GENESIS_EXTEND);
  #batchCount = 0;
  #lastBatchSize = 0;
  #sinceRoot: Buffer | undefined;
  #rangeChecked = false;
  #sinceChecked = false;
  readonly #named = new Map<string, number>();
  readonly #delivered = new Set<string>();
  #counts = { entries: 0, bodies: 0, policies: 0, bodiesAbsent: 0 };
  readonly #warnings: string[] = [];
  /** A later log period's anchor base, from its link entry (periods.ts); else the pin's. */
  #linkedCounter: bigint | undefined;
  #linkEntry: AuditEntry | undefined;
  #nextLink: AuditEntry | undefined;
  /** A frozen period's bundle: the later periods announced, and the chain so far. */
  #successorsExpected = 0;
  #successorsSeen = 0;
  #chainEnd: PeriodEnd | undefined;
  #chainAt:
    | {
        readonly end: PeriodEnd;
        readonly link: AuditEntry;
        extend: Buffer;
        batches: number;
        lastSize: number;
        lastRoot: Buffer | undefined;
      }
    | undefined;

  readonly #trust: BundleTrust;

  constructor(trust: BundleTrust) {
    this.#trust = trust;
  }

  #fail(problem: BundleProblem, message: string, cause?: unknown): never {
    throw new BundleInvalidError(
      problem,
      this.#n,
      message,
      cause === undefined ? undefined : { cause },
    );
  }

  /** One line of the bundle (without its newline). */
  line(text: string): void {
    this.#n += 1;
    if (this.#phase === 'done') this.#fail('format', 'a record after the end record');
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch {
      this.#fail('format', 'not a JSON record');
    }
    if (!isRecord(record) || typeof record.type !== 'string') this.#fail('format', 'not a record');
    const handle = this.#handlers[record.type];
    if (handle === undefined) this.#fail('format', `unknown record type ${record.type}`);
    handle(record);
  }

  readonly #handlers: Readonly<Record<string, ((r: Record<string, unknown>) => void) | undefined>> =
    {
      header: (r) => {
        this.#header(r);
      },
      checkpoint: (r) => {
        this.#checkpoint(r);
      },
      successor: (r) => {
        this.#successor(r);
      },
      successor_batch: (r) => {
        this.#successorBatch(r);
      },
      frontier: (r) => {
        this.#frontier(r);
      },
      link: (r) => {
        this.#link(r);
      },
      batch: (r) => {
        this.#batch(r);
      },
      entry: (r) => {
        this.#entry(r);
      },
      body: (r) => {
        this.#body(r);
      },
      policy: (r) => {
        this.#policy(r);
      },
      consistency: (r) => {
        this.#consistency(r);
      },
      end: (r) => {
        this.#end(r);
      },
    };

  #expect(phase: Phase, what: string): void {
    if (this.#phase !== phase) this.#fail('order', `${what} out of place`);
  }

  #header(r: Record<string, unknown>): void {
    this.#expect('header', 'header');
    if (r.format !== BUNDLE_FORMAT) this.#fail('format', `not a ${BUNDLE_FORMAT} bundle`);
    const { from, to, treeSize, since, nonce, origin, successors } = r;
    if (successors !== undefined && (!isSize(successors) || successors < 1)) {
      this.#fail('format', 'header successors is not a count of later periods');
    }
    this.#successorsExpected = successors ?? 0;
    if (typeof origin !== 'string' || !isSize(from) || !isSize(to) || !isSize(treeSize)) {
      this.#fail('format', 'header lacks origin, from, to or treeSize');
    }
    if (from > to || to > treeSize)
      this.#fail('format', 'header range is not from <= to <= treeSize');
    if (since !== null && (!isSize(since) || since < 1 || since > treeSize)) {
      this.#fail('format', 'header since is not a tree size');
    }
    if (nonce !== null && (typeof nonce !== 'string' || !/^([0-9a-f]{2}){1,32}$/.test(nonce))) {
      this.#fail('format', 'header nonce is not hex');
    }
    // The auditor's nonce, not the bundle's: a replayed old bundle carries an old nonce.
    if (this.#trust.nonce !== undefined && nonce !== this.#trust.nonce.toLowerCase()) {
      this.#fail('nonce_mismatch', 'the bundle is not certified over the nonce given');
    }
    this.#from = from;
    this.#to = to;
    this.#size = treeSize;
    this.#since = since;
    this.#nonce = nonce;
    this.#origin = origin;
    this.#phase = 'checkpoint';
  }

  #checkpoint(r: Record<string, unknown>): void {
    this.#expect('checkpoint', 'checkpoint');
    if (typeof r.note !== 'string') this.#fail('checkpoint', 'checkpoint has no note');
    let body;
    try {
      body = parseCheckpoint(verifyNote(r.note, this.#trust.verifierKey));
    } catch (e) {
      this.#fail('checkpoint', `checkpoint note: ${e instanceof Error ? e.message : 'invalid'}`, e);
    }
    if (body.origin !== this.#origin || body.size !== this.#size) {
      this.#fail('checkpoint', 'the signed checkpoint is not the one the header names');
    }
    this.#signedRoot = body.root;
    this.#counter = body.counter;
    this.#extendValue = body.extendValue;
    this.#signedEnd = endOf(body);
    if (this.#successorsExpected > 0) {
      // A frozen period: the TPM holds a later state; its end is certified by the chain of
      // later periods' links down to the current checkpoint, whose NV_Certify is checked.
      this.#chainEnd = this.#signedEnd;
      if (this.#trust.skipTpmEvidence !== true && this.#trust.pin === undefined) {
        this.#fail(
          'tpm_evidence_unpinned',
          'no anchor pin: the AK and NV names inside a bundle vouch for nothing',
        );
      }
      this.#phase = 'chain';
      return;
    }
    this.#certify(r, body.counter, body.extendValue);
    this.#phase = 'frontier';
  }

  /**
   * The next later period of a frozen period's bundle: its checkpoint signed with the
   * pinned key, its link entry naming exactly the end before it (the frozen checkpoint, or
   * the previous successor's), proved as leaf 0 of that checkpoint's tree. Its batches
   * follow (successorBatch); the last one's checkpoint must be NV-certified.
   */
  #successor(r: Record<string, unknown>): void {
    this.#expect('chain', 'successor');
    this.#closeSuccessor();
    const previous = this.#chainEnd;
    if (previous === undefined || this.#successorsSeen >= this.#successorsExpected) {
      this.#fail('order', 'a successor the header does not announce');
    }
    const period = previous.period + 1;
    if (r.period !== period) {
      this.#fail(
        'chain_missing',
        `the link of period ${period} is missing (period ${String(r.period)} follows)`,
      );
    }
    const cp = r.checkpoint;
    if (!isRecord(cp) || typeof cp.note !== 'string') {
      this.#fail('chain_checkpoint', `period ${period}: no checkpoint note`);
    }
    let body;
    try {
      body = parseCheckpoint(verifyNote(cp.note, this.#trust.verifierKey));
    } catch (e) {
      this.#fail(
        'chain_checkpoint',
        `period ${period}: checkpoint note: ${e instanceof Error ? e.message : 'invalid'}`,
        e,
      );
    }
    if (body.origin !== periodOrigin(baseOrigin(this.#origin), period)) {
      this.#fail(
        'chain_checkpoint',
        `period ${period}: the checkpoint is of origin ${body.origin}`,
      );
    }
    const link = r.link;
    if (!isEntryShape(link) || checkLink(link, 0, GENESIS_PREV_HASH) !== undefined) {
      this.#fail('chain_link', `period ${period}: the link is not a well-formed first entry`);
    }
    // The link must name exactly the end before it: another size, root or anchor state is
    // another history of that period.
    const problem = linkProblem(link, previous, period);
    if (problem !== undefined) {
      this.#fail(
        'chain_link_mismatch',
        `period ${period}: its link does not name the end of period ${previous.period} (${problem})`,
      );
    }
    if (!hexList(r.path)) this.#fail('chain_link_proof', `period ${period}: no link proof`);
    const root = rootFromPath(
      0,
      body.size,
      leafHash(Buffer.from(link.hash, 'hex')),
      r.path.map((h) => Buffer.from(h, 'hex')),
    );
    if (root === undefined || !root.equals(body.root)) {
      this.#fail(
        'chain_link_proof',
        `period ${period}: the link is not leaf 0 of its signed tree (size ${body.size})`,
      );
    }
    if (this.#successorsSeen === 0) this.#nextLink = link;
    this.#successorsSeen += 1;
    if (this.#successorsSeen === this.#successorsExpected) {
      // The current period: the TPM's own word, over the auditor's nonce.
      this.#certify(cp, body.counter, body.extendValue);
    }
    const end = endOf(body);
    this.#chainEnd = end;
    this.#chainAt = {
      end,
      link,
      extend: Buffer.from(previous.extend, 'hex'),
      batches: 0,
      lastSize: 0,
      lastRoot: undefined,
    };
  }

  /** One batch of the successor before it: its root folded into that period's extend chain. */
  #successorBatch(r: Record<string, unknown>): void {
    this.#expect('chain', 'successor batch');
    const at = this.#chainAt;
    if (at === undefined) this.#fail('order', 'a successor batch before any successor');
    const { index, size, root } = r;
    if (
      index !== at.batches ||
      !isSize(size) ||
      size <= at.lastSize ||
      size > at.end.size ||
      typeof root !== 'string' ||
      !HEX32.test(root)
    ) {
      this.#fail('chain_anchor', `period ${at.end.period}: batch ${at.batches} is malformed`);
    }
    const rootBuf = Buffer.from(root, 'hex');
    // Batch 0 of a later period is its link alone (periodic.ts): this binds the link to
    // the TPM's extend chain, not only to the signature.
    if (
      index === 0 &&
      (size !== 1 || !rootBuf.equals(leafHash(Buffer.from(at.link.hash, 'hex'))))
    ) {
      this.#fail('chain_anchor', `period ${at.end.period}: batch 0 is not its link alone`);
    }
    at.extend = extendDigest(at.extend, rootBuf);
    at.batches += 1;
    at.lastSize = size;
    at.lastRoot = rootBuf;
  }

  /** The successor's batches end at its checkpoint and reach its nv-extend and nv-counter. */
  #closeSuccessor(): void {
    const at = this.#chainAt;
    if (at === undefined) return;
    const { end, link } = at;
    const base = endFromLink(link);
    if (
      base === undefined ||
      at.lastSize !== end.size ||
      at.lastRoot?.toString('hex') !== end.root ||
      at.extend.toString('hex') !== end.extend ||
      BigInt(end.counter) !== BigInt(base.counter) + BigInt(at.batches)
    ) {
      this.#fail(
        'chain_anchor',
        `period ${end.period}: its batches do not lead from its link's anchor state to its checkpoint's`,
      );
    }
    this.#chainAt = undefined;
  }

  #certify(cp: Record<string, unknown>, counter: bigint, extendValue: Buffer): void {
    if (this.#trust.skipTpmEvidence === true) {
      this.#warnings.push('TPM evidence NOT checked: the NV counter and NV_Certify are unverified');
      return;
    }
    const pin = this.#trust.pin;
    if (pin === undefined) {
      this.#fail(
        'tpm_evidence_unpinned',
        'no anchor pin: the AK and NV names inside a bundle vouch for nothing',
      );
    }
    if (this.#nonce === null || cp.nonce !== this.#nonce || !Array.isArray(cp.nvCertify)) {
      this.#fail('nv_certify_invalid', 'the checkpoint has no NV_Certify over the header nonce');
    }
    try {
      verifyCertifications(
        cp.nvCertify as unknown[],
        Buffer.from(this.#nonce, 'hex'),
        pin.akPublic,
        pin.names,
        counter,
        extendValue,
      );
    } catch (e) {
      if (e instanceof ExportInvalidError) this.#fail('nv_certify_invalid', e.message, e);
      throw e;
    }
    this.#nvCertified = true;
  }

  #frontier(r: Record<string, unknown>): void {
    if (this.#phase === 'chain') {
      this.#closeSuccessor();
      if (this.#successorsSeen !== this.#successorsExpected) {
        this.#fail(
          'chain_missing',
          `${this.#successorsSeen} of the ${this.#successorsExpected} later periods' links; the chain to the certified checkpoint is broken`,
        );
      }
      this.#phase = 'frontier';
    }
    this.#expect('frontier', 'frontier');
    if (r.size !== this.#from || !hexList(r.hashes)) this.#fail('frontier', 'malformed frontier');
    try {
      this.#range = CompactRange.fromFrontier(
        this.#from,
        r.hashes.map((h) => Buffer.from(h, 'hex')),
      );
    } catch (e) {
      this.#fail('frontier', e instanceof Error ? e.message : 'bad frontier', e);
    }
    this.#phase = 'body';
  }

  /**
   * A later log period's first entry (protocol §4.5), proved as leaf 0 of the signed tree:
   * the frozen period's end it names is where this period's anchor chain starts.
   */
  #link(r: Record<string, unknown>): void {
    if (this.#phase !== 'body' || this.#batchCount > 0 || this.#range.end !== this.#from) {
      this.#fail('order', 'link out of place');
    }
    if (this.#linkedCounter !== undefined) this.#fail('order', 'a second link');
    const entry = r.entry;
    if (!isEntryShape(entry) || checkLink(entry, 0, GENESIS_PREV_HASH) !== undefined) {
      this.#fail('link', 'the link is not a well-formed first entry');
    }
    const end = endFromLink(entry);
    const period = (entry.facts as { period?: unknown } | undefined)?.period;
    if (end === undefined || typeof period !== 'number' || end.period !== period - 1) {
      this.#fail('link', 'the first entry is not a log period link');
    }
    // The origin this period must have, from the origin of the period it follows.
    const base = end.period === 0 ? end.origin : end.origin.replace(/\/period-\d+$/, '');
    if (this.#origin !== periodOrigin(base, period)) {
      this.#fail('link', `the link names period ${period} of another origin than ${this.#origin}`);
    }
    if (!hexList(r.path)) this.#fail('link', 'the link has no inclusion path');
    const path = r.path.map((h) => Buffer.from(h, 'hex'));
    // RFC 9162 §2.1.3.2, the one implementation (the gateway SDK's, as src/keys uses it).
    const root = rootFromPath(0, this.#size, leafHash(Buffer.from(entry.hash, 'hex')), path);
    if (root === undefined || !root.equals(this.#signedRoot)) {
      this.#fail('link', 'the link is not leaf 0 of the signed tree');
    }
    this.#extend = Buffer.from(end.extend, 'hex');
    this.#linkedCounter = BigInt(end.counter);
    this.#linkEntry = entry;
  }

  #batch(r: Record<string, unknown>): void {
    if (this.#phase !== 'body') this.#fail('order', 'batch out of place');
    const { index, size, root } = r;
    if (
      index !== this.#batchCount ||
      !isSize(size) ||
      typeof root !== 'string' ||
      !HEX32.test(root)
    ) {
      this.#fail('batch', `batch ${this.#batchCount} is malformed or out of order`);
    }
    if (size <= this.#lastBatchSize || size > this.#size) {
      this.#fail(
        'batch',
        `batch ${index} size ${size} is not after ${this.#lastBatchSize} and within the checkpoint`,
      );
    }
    const at = this.#range.end;
    if (size >= this.#from && size <= this.#to) {
      // Inside the range: it must come right after its last entry, and be its root.
      if (size !== at)
        this.#fail('order', `batch ${index} (size ${size}) is not after entry ${size - 1}`);
      if (!this.#range.root().equals(Buffer.from(root, 'hex'))) {
        this.#fail('batch', `batch ${index} root is not the root of the entries up to ${size}`);
      }
    } else if (size > this.#to && at !== this.#to) {
      this.#fail('order', `batch ${index} (size ${size}) comes before the range's entries end`);
    }
    if (size === this.#since) this.#sinceRoot = Buffer.from(root, 'hex');
    this.#extend = extendDigest(this.#extend, Buffer.from(root, 'hex'));
    this.#batchCount += 1;
    this.#lastBatchSize = size;
    this.#bodyAllowed = false;
  }

  #entry(r: Record<string, unknown>): void {
    if (this.#phase !== 'body') this.#fail('order', 'entry out of place');
    const seq = this.#range.end;
    if (seq >= this.#to) this.#fail('order', `an entry beyond the range (to ${this.#to})`);
    const raw = r.entry;
    // The first entry of a range starting after 0 links to an entry not in the bundle: its
    // leaf (through the frontier and the signed root) proves it instead.
    const prev =
      this.#prevHash ?? (isRecord(raw) && typeof raw.prevHash === 'string' ? raw.prevHash : '');
    const problem = isEntryShape(raw)
      ? checkLink(raw, seq, seq === 0 ? GENESIS_PREV_HASH : prev)
      : 'shape';
    if (problem !== undefined) {
      this.#fail(
        LINK_PROBLEM[problem],
        `entry ${seq}: ${problem.replace('_', ' ')} does not verify`,
      );
    }
    const entry = raw as AuditEntry;
    this.#range.appendLeaf(leafHash(Buffer.from(entry.hash, 'hex')));
    this.#prevHash = entry.hash;
    this.#lastEntry = entry;
    this.#bodyAllowed = keepsBody(entry);
    if (this.#bodyAllowed) this.#counts.bodiesAbsent += 1;
    for (const hash of policyHashesOf(entry))
      if (!this.#named.has(hash)) this.#named.set(hash, seq);
    this.#counts.entries += 1;
  }

  #body(r: Record<string, unknown>): void {
    if (this.#phase !== 'body') this.#fail('order', 'body out of place');
    const entry = this.#lastEntry;
    if (!this.#bodyAllowed || entry === undefined)
      this.#fail('order', 'a body no entry before it names');
    if (r.digest !== entry.digest || typeof r.body !== 'string') {
      this.#fail('body', `the body after entry ${entry.seq} is not under its digest`);
    }
    if (sha256Hex(r.body) !== entry.digest) {
      this.#fail('body', `the body of entry ${entry.seq} does not hash to its digest`);
    }
    this.#bodyAllowed = false;
    this.#counts.bodiesAbsent -= 1;
    this.#counts.bodies += 1;
  }

  #policy(r: Record<string, unknown>): void {
    if (this.#phase !== 'body') this.#fail('order', 'policy set out of place');
    const { hash, schema, policies } = r;
    if (typeof hash !== 'string' || !this.#named.has(hash) || this.#delivered.has(hash)) {
      this.#fail('policy', 'a policy set no entry before it names (or twice)');
    }
    if (
      typeof schema !== 'string' ||
      !isRecord(policies) ||
      !Object.values(policies).every((t) => typeof t === 'string')
    ) {
      this.#fail('policy', `policy set ${hash} is malformed`);
    }
    // docs/policy.md: SHA-256 of JCS({policies, schema}), recomputed here from the texts.
    if (jcsSha256Hex({ policies, schema }) !== hash) {
      this.#fail('policy', `policy set ${hash}: its texts do not hash to it`);
    }
    this.#delivered.add(hash);
    this.#counts.policies += 1;
  }

  #rangeEnded(what: string): void {
    if (this.#phase !== 'body' && this.#phase !== 'proofs')
      this.#fail('order', `${what} out of place`);
    if (this.#range.end !== this.#to)
      this.#fail('truncated', `${what} before entry ${this.#range.end}`);
    if (this.#lastBatchSize !== this.#size) {
      this.#fail('truncated', `${what} before the batch ending at ${this.#size}`);
    }
    if (!this.#rangeChecked && this.#to === this.#size) {
      if (!this.#range.root().equals(this.#signedRoot)) {
        this.#fail(
          'root_mismatch',
          `entries ${this.#from}..${this.#to - 1} do not make the checkpoint root`,
        );
      }
      this.#rangeChecked = true;
    }
    this.#phase = 'proofs';
  }

  #consistency(r: Record<string, unknown>): void {
    this.#rangeEnded('consistency proof');
    const { of, from, to, path } = r;
    if (to !== this.#size || !hexList(path))
      this.#fail('consistency', 'malformed consistency proof');
    const proof = path.map((h) => Buffer.from(h, 'hex'));
    if (of === 'range' && from === this.#to && !this.#rangeChecked) {
      if (!verifyConsistency(this.#to, this.#size, this.#range.root(), this.#signedRoot, proof)) {
        this.#fail(
          'consistency',
          `the tree at ${this.#to} (from the entries) is not consistent with the checkpoint`,
        );
      }
      this.#rangeChecked = true;
      return;
    }
    const since = this.#since;
    if (of === 'since' && since !== null && from === since && !this.#sinceChecked) {
      const root = this.#sinceRoot;
      if (root === undefined) this.#fail('consistency', `since ${since} is not a batch boundary`);
      if (!verifyConsistency(since, this.#size, root, this.#signedRoot, proof)) {
        this.#fail(
          'consistency',
          `the anchored tree at ${since} is not consistent with the checkpoint`,
        );
      }
      this.#sinceChecked = true;
      return;
    }
    this.#fail('consistency', 'a consistency proof the header does not ask for (or twice)');
  }

  #end(r: Record<string, unknown>): void {
    this.#rangeEnded('end record');
    if (!this.#rangeChecked) this.#fail('truncated', `no consistency proof from ${this.#to}`);
    if (this.#since !== null && !this.#sinceChecked) {
      this.#fail('truncated', `no consistency proof from since ${this.#since}`);
    }
    if (
      r.entries !== this.#counts.entries ||
      r.bodies !== this.#counts.bodies ||
      r.policies !== this.#counts.policies ||
      r.batches !== this.#batchCount
    ) {
      this.#fail('truncated', 'the end record counts other records than the bundle holds');
    }
    // A later period's bundle must carry its link: its anchor chain starts there.
    if (/\/period-\d+$/.test(this.#origin) && this.#linkedCounter === undefined) {
      this.#fail('link', `a bundle of log period ${this.#origin} without its link entry`);
    }
    // The TPM's own statement: the extend chain of every batch root, the counter.
    if (!this.#extend.equals(this.#extendValue)) {
      this.#fail('anchor_mismatch', "the batches' extend chain is not the checkpoint's nv-extend");
    }
    const pin = this.#trust.pin;
    if (this.#trust.skipTpmEvidence !== true && pin !== undefined) {
      const base = this.#linkedCounter ?? pin.genesisCounter;
      if (this.#counter !== base + BigInt(this.#batchCount)) {
        this.#fail(
          'anchor_mismatch',
          `nv-counter ${this.#counter} is not the ${this.#linkedCounter === undefined ? 'pinned genesis' : "link's counter"} + ${this.#batchCount} batches`,
        );
      }
    }
    if (this.#trust.sinceNote !== undefined) {
      let held;
      try {
        held = parseCheckpoint(verifyNote(this.#trust.sinceNote, this.#trust.verifierKey));
      } catch (e) {
        this.#fail(
          'since_mismatch',
          `the checkpoint held: ${e instanceof Error ? e.message : 'invalid'}`,
          e,
        );
      }
      if (
        held.size !== this.#since ||
        this.#sinceRoot === undefined ||
        !held.root.equals(this.#sinceRoot)
      ) {
        this.#fail(
          'since_mismatch',
          `the checkpoint held (size ${held.size}) is not the bundle's tree at since`,
        );
      }
    }
    for (const [hash, seq] of this.#named) {
      if (this.#delivered.has(hash)) continue;
      const message = `entry ${seq} names policy set ${hash}, which the bundle does not carry`;
      if (this.#trust.allowMissingPolicies !== true) this.#fail('policy_missing', message);
      this.#warnings.push(message);
    }
    if (this.#counts.bodiesAbsent > 0) {
      this.#warnings.push(
        `${this.#counts.bodiesAbsent} entries name a request body the bundle does not carry (not kept: larger than the limit, or written before bodies were kept)`,
      );
    }
    this.#phase = 'done';
  }

  /** After the last line: the report, or `truncated` when the end record never came. */
  finish(): BundleReport {
    if (this.#phase !== 'done') {
      this.#n += 1;
      this.#fail('truncated', 'the bundle ends before its end record');
    }
    return {
      origin: this.#origin,
      from: this.#from,
      to: this.#to,
      treeSize: this.#size,
      rootHash: this.#signedRoot.toString('base64'),
      nvCounter: this.#counter.toString(),
      entries: this.#counts.entries,
      bodies: this.#counts.bodies,
      bodiesAbsent: this.#counts.bodiesAbsent,
      policies: this.#counts.policies,
      batches: this.#batchCount,
      nvCertified: this.#nvCertified,
      nonceChecked: this.#trust.nonce !== undefined,
      since: this.#since,
      successors: this.#successorsExpected,
      end: this.#signedEnd,
      link: this.#linkEntry,
      nextLink: this.#nextLink,
      warnings: this.#warnings,
    };
  }
}

/** Verifies a whole bundle from its lines (a file read line by line, or a test's array). */
export async function verifyBundle(
  lines: AsyncIterable<string> | Iterable<string>,
  trust: BundleTrust,
): Promise<BundleReport> {
  const v = new BundleVerifier(trust);
  for await (const l of lines) {
    if (l === '') continue;
    v.line(l);
  }
  return v.finish();
}
