/**
 * The audit service that the rest of the appliance and the HTTP routes call: appends,
 * signed checkpoints (optionally with NV_Certify), proofs bounded by the latest
 * checkpoint, entries and the export for the offline verifier.
 */
import { createHash } from 'node:crypto';
import type { AuditAnchor, NvCertification } from './anchor.port.js';
import type { CheckpointSigner } from './checkpoint.js';
import { formatCheckpoint, noteVerifierKey, signNote } from './checkpoint.js';
import { GrantorError } from '../shared/errors.js';
import type { AuditStore } from './audit-store.port.js';
import type { AuditEntry, AuditEvent } from './entry.js';
import { AuditNotFoundError, AuditRangeError, AuditUnavailableError } from './errors.js';
import type { AnchoredHead, Appended, AuditLog, AuditStats } from './log.js';
import type { PeriodEnd } from './periods.js';
import { runQuery, type AuditFilter, type QueryPage } from './query.js';
import type { TileRequest } from './tiles.js';
import type { BundlePolicySet } from './bundle.js';
import type { RetirementRecord } from './retention.js';
import { readTlogResource } from './tlog.js';

export interface NvCertifyOut {
  readonly index: 'counter' | 'extend';
  /** NV index handle, hex (`0x01500020`). */
  readonly nvIndex: string;
  /** TPMS_ATTEST, base64. */
  readonly attest: string;
  /** TPMT_SIGNATURE, base64. */
  readonly signature: string;
}

export interface SignedCheckpoint {
  /** The C2SP signed note (checkpoint body, blank line, signature line). */
  readonly note: string;
  readonly origin: string;
  readonly treeSize: number;
  /** base64 */
  readonly rootHash: string;
  /** decimal */
  readonly nvCounter: string;
  /** base64 */
  readonly nvExtend: string;
  /** With a nonce: TPM2_NV_Certify of both anchor indices, qualified with it. */
  readonly nvCertify?: readonly NvCertifyOut[];
  /** The nonce the certifications are qualified with, hex. */
  readonly nonce?: string;
}

export interface VerifierInfo {
  readonly origin: string;
  readonly noteVerifierKey: string;
  readonly jwk: { readonly kty: 'OKP'; readonly crv: 'Ed25519'; readonly x: string };
  /** TPM2B_PUBLIC of the AK that signs NV_Certify, base64. */
  readonly akPublic?: string;
  /**
   * The anchor as pinned at provisioning (NV names, genesis counter): for auditors to compare
   * with the pin they hold, never to trust in its place.
   */
  readonly anchorPin?: {
    readonly names: { readonly counter: string; readonly extend: string };
    readonly genesisCounter: string;
  };
}

export interface InclusionProof {
  readonly seq: number;
  readonly treeSize: number;
  readonly leafHash: string;
  readonly path: readonly string[];
}

export interface ConsistencyProof {
  readonly from: number;
  readonly to: number;
  readonly path: readonly string[];
}

export const EXPORT_FORMAT = 'grantor-audit-export/1';

/** One anchored batch: the tree size after it and that tree's root (hex). */
export interface BatchBoundary {
  readonly index: number;
  readonly size: number;
  readonly root: string;
}

/** What `grantor audit export` writes and `grantor audit verify` reads. */
export interface AuditExport {
  readonly format: typeof EXPORT_FORMAT;
  readonly origin: string;
  readonly noteVerifierKey: string;
  readonly checkpoint: SignedCheckpoint;
  readonly akPublic?: string;
  readonly entries: readonly AuditEntry[];
  /**
   * Every batch up to the checkpoint: the offline verifier recomputes the extend chain and
   * the counter from them and the entries.
   */
  readonly batches: readonly BatchBoundary[];
}

/** One log period's service (service.ts); the appliance's AuditService spans the periods. */
export interface LogService {
  /** Resolves once the start-up check passed; rejects with its error (see AuditLog.open). */
  ready(): Promise<void>;
  /**
   * `grantor provision`'s last step: create the store of a new log on an anchor at its
   * pinned genesis (see AuditLog.provision); `false` when this log's store exists already.
   */
  provision(): Promise<boolean>;
  /** Durably recorded and anchored when it resolves; fails closed with audit_unavailable. */
  append(event: AuditEvent): Promise<Appended>;
  checkpoint(options?: { nonce?: Buffer }): Promise<SignedCheckpoint>;
  verifier(): Promise<VerifierInfo>;
  entries(from: number, limit: number): Promise<AuditEntry[]>;
  /**
   * Anchored entries matching `filter` from seq `cursor`, at most `limit` (bounded by the
   * page size), examining a bounded number of candidates per page (query.ts).
   */
  query(filter: AuditFilter, cursor: number, limit: number): Promise<QueryPage>;
  /** The request body kept under `digest` (checked against it), for auditors. */
  body(digest: string): Promise<string>;
  /** Anchored batch boundaries from batch `from` (GET /v1/audit/batches). */
  batches(from: number, limit: number): Promise<BatchBoundary[]>;
  /** Computed from the stored tiles (so asynchronous). */
  inclusionProof(seq: number, treeSize: number): Promise<InclusionProof>;
  consistencyProof(from: number, to: number): Promise<ConsistencyProof>;
  /**
   * C2SP tlog-tiles (tlog.ts): a hash tile or an entry bundle of the tree of the latest
   * checkpoint, verified against the tree before it leaves.
   */
  tlogResource(request: TileRequest): Promise<Buffer>;
  /** Entries up to a fresh checkpoint (with NV_Certify when the anchor has an AK). */
  exportLog(): Promise<AuditExport>;
  stats(): AuditStats;
  /** Entries in the log (its tree size); undefined while the log is not serving. */
  treeSize(): number | undefined;
  close(): Promise<void>;
}

const MAX_NONCE = 32;

function certOut(c: NvCertification): NvCertifyOut {
  return {
    index: c.index,
    nvIndex: `0x${c.nvIndex.toString(16).padStart(8, '0')}`,
    attest: c.attest.toString('base64'),
    signature: c.signature.toString('base64'),
  };
}

export class DefaultAuditService implements LogService {
  #cached: { size: number; counter: bigint; checkpoint: SignedCheckpoint } | undefined;

  readonly #log: AuditLog;
  readonly #anchor: AuditAnchor;
  readonly #signer: CheckpointSigner;
  readonly #origin: string;
  readonly #maxPage: number;
  readonly #random: (n: number) => Buffer;
  readonly #store: AuditStore | undefined;
  readonly #maxScan: number;

  constructor(
    log: AuditLog,
    anchor: AuditAnchor,
    signer: CheckpointSigner,
    origin: string,
    maxPage: number,
    random: (n: number) => Buffer,
    store?: AuditStore,
    maxScan = 10_000,
  ) {
    this.#log = log;
    this.#anchor = anchor;
    this.#signer = signer;
    this.#origin = origin;
    this.#maxPage = maxPage;
    this.#random = random;
    this.#store = store;
    this.#maxScan = maxScan;
  }

  ready(): Promise<void> {
    return this.#log.open();
  }

  provision(): Promise<boolean> {
    return this.#log.provision();
  }

  async append(event: AuditEvent): Promise<Appended> {
    // A TPM or store that was down at boot: try the start-up check again.
    if (this.#log.state === 'starting') await this.#log.open();
    return this.#log.append(event);
  }

  async #signed(head: AnchoredHead): Promise<SignedCheckpoint> {
    const c = this.#cached;
    if (c !== undefined && c.size === head.size && c.counter === head.counter) return c.checkpoint;
    const body = {
      origin: this.#origin,
      size: head.size,
      root: head.root,
      counter: head.counter,
      extendValue: head.extendValue,
    };
    const note = await signNote(formatCheckpoint(body), this.#signer);
    const checkpoint: SignedCheckpoint = {
      note,
      origin: this.#origin,
      treeSize: head.size,
      rootHash: head.root.toString('base64'),
      nvCounter: head.counter.toString(),
      nvExtend: head.extendValue.toString('base64'),
    };
    this.#cached = { size: head.size, counter: head.counter, checkpoint };
    return checkpoint;
  }

  async checkpoint(options: { nonce?: Buffer } = {}): Promise<SignedCheckpoint> {
    if (options.nonce === undefined) return this.#signed(this.#log.head());
    const nonce = Buffer.from(options.nonce);
    if (nonce.length < 1 || nonce.length > MAX_NONCE) {
      throw new AuditRangeError(`nonce must be 1 to ${MAX_NONCE} bytes`);
    }
    // Certify while no batch commits, so the TPM values are the checkpoint's.
    return this.#log.whileIdle(async (head) => {
      const certs = await this.#anchor.certify(nonce);
      const checkpoint = await this.#signed(head);
      return { ...checkpoint, nvCertify: certs.map(certOut), nonce: nonce.toString('hex') };
    });
  }

  async verifier(): Promise<VerifierInfo> {
    const ak = await this.#anchor.akPublic().catch(() => undefined);
    return {
      origin: this.#origin,
      noteVerifierKey: noteVerifierKey(this.#signer.keyName, this.#signer.publicKey),
      jwk: {
        kty: 'OKP',
        crv: 'Ed25519',
        x: Buffer.from(this.#signer.publicKey).toString('base64url'),
      },
      ...(ak === undefined ? {} : { akPublic: ak.toString('base64') }),
      ...(this.#anchor.pinnedNames === undefined || this.#anchor.genesis === undefined
        ? {}
        : {
            anchorPin: {
              names: { ...this.#anchor.pinnedNames },
              genesisCounter: this.#anchor.genesis.toString(),
            },
          }),
    };
  }

  entries(from: number, limit: number): Promise<AuditEntry[]> {
    return this.#log.entries(from, Math.min(limit, this.#maxPage));
  }

  async query(filter: AuditFilter, cursor: number, limit: number): Promise<QueryPage> {
    const store = this.#store;
    if (store === undefined) throw new AuditUnavailableError('this audit service has no index');
    if (!Number.isSafeInteger(cursor) || cursor < 0) throw new AuditRangeError('bad cursor');
    if (!Number.isSafeInteger(limit) || limit < 1) throw new AuditRangeError('bad limit');
    const log = this.#log;
    try {
      return await runQuery(
        {
          size: () => log.anchoredSize(),
          entries: (from, n) => log.entries(from, n),
          scanIndex: (term, from, n) => store.scanIndex(term, from, n),
          indexedFrom: () => store.indexedFrom(),
          firstTimeRise: (time) => store.firstTimeRise(time),
          timeStepBacks: (since, until, n) => store.timeStepBacks(since, until, n),
        },
        filter,
        cursor,
        Math.min(limit, this.#maxPage),
        this.#maxScan,
      );
    } catch (e) {
      if (e instanceof GrantorError) throw e;
      throw new AuditUnavailableError('audit store cannot be read', { cause: e });
    }
  }

  async body(digest: string): Promise<string> {
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new AuditRangeError('bad digest');
    let text: string | undefined;
    try {
      text = await this.#store?.readBody(digest);
    } catch (e) {
      throw new AuditUnavailableError('audit store cannot be read', { cause: e });
    }
    // The store is untrusted: a body is answered only if it is what its digest names.
    if (text === undefined || digestOf(text) !== digest) {
      throw new AuditNotFoundError(`no request body ${digest}`);
    }
    return text;
  }

  batches(from: number, limit: number): Promise<BatchBoundary[]> {
    return this.#log.batchRecords(from, Math.min(limit, this.#maxPage));
  }

  async inclusionProof(seq: number, treeSize: number): Promise<InclusionProof> {
    const p = await this.#log.inclusionProof(seq, treeSize);
    return {
      seq,
      treeSize,
      leafHash: p.leafHash.toString('hex'),
      path: p.path.map((h) => h.toString('hex')),
    };
  }

  async consistencyProof(from: number, to: number): Promise<ConsistencyProof> {
    const path = await this.#log.consistencyProof(from, to);
    return { from, to, path: path.map((h) => h.toString('hex')) };
  }

  tlogResource(request: TileRequest): Promise<Buffer> {
    return readTlogResource(this.#log, this.#log.head().size, request);
  }

  async exportLog(): Promise<AuditExport> {
    const ak = await this.#anchor.akPublic().catch(() => undefined);
    const checkpoint =
      ak === undefined
        ? await this.checkpoint()
        : await this.checkpoint({ nonce: this.#random(32) });
    const entries: AuditEntry[] = [];
    while (entries.length < checkpoint.treeSize) {
      const page = await this.#log.entries(
        entries.length,
        Math.min(this.#maxPage, checkpoint.treeSize - entries.length),
      );
      entries.push(...page);
    }
    // The batches the checkpoint covers: its size is always a batch boundary.
    const batches: BatchBoundary[] = [];
    while ((batches.at(-1)?.size ?? 0) < checkpoint.treeSize) {
      const page = await this.#log.batchRecords(batches.length, this.#maxPage);
      batches.push(...page.filter((b) => b.size <= checkpoint.treeSize));
      if (page.some((b) => b.size >= checkpoint.treeSize)) break;
    }
    return {
      format: EXPORT_FORMAT,
      origin: this.#origin,
      noteVerifierKey: noteVerifierKey(this.#signer.keyName, this.#signer.publicKey),
      checkpoint,
      ...(ak === undefined ? {} : { akPublic: ak.toString('base64') }),
      entries,
      batches,
    };
  }

  stats(): AuditStats {
    return this.#log.stats();
  }

  treeSize(): number | undefined {
    try {
      return this.#log.head().size;
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    await this.#log.close();
  }
}

/** A log period as `GET /v1/audit/periods` lists it (periods.ts). */
export interface PeriodInfo {
  readonly period: number;
  readonly origin: string;
  readonly state: 'current' | 'frozen';
  /** When the period started (its link entry's time); null for the first period. */
  readonly startedAt: string | null;
  /** The previous period's end, as the link entry records it; absent for the first. */
  readonly previous?: PeriodEnd;
}

/**
 * The appliance's audit service: the current log period's service (appends, reads), and
 * the periods (periodic.ts): every frozen one readable, a new one on demand.
 */
export interface AuditService extends LogService {
  /** The current period's number (undefined while the log is not serving). */
  currentPeriod(): number | undefined;
  /** Every period, the first first. */
  periods(): Promise<PeriodInfo[]>;
  /** Period `period`'s service (current or frozen, read-only); `not_found` beyond the current. */
  inPeriod(period: number): Promise<LogService>;
  /**
   * Freeze the current period and start the next, its first entry recording the frozen
   * one's final checkpoint and anchor state; `actor` is the operator, or `schedule`.
   */
  startPeriod(actor: string): Promise<PeriodInfo>;
  /**
   * Retire frozen period `period`'s entries (retention.ts): export, verify, record, delete;
   * the tiles and proofs stay. `policySet` reads the policy archive for the bundle.
   */
  retirePeriod(
    period: number,
    actor: string,
    policySet: (hash: string) => Promise<BundlePolicySet | undefined>,
  ): Promise<RetirementRecord>;
}

/** Hex SHA-256, for callers building event digests. */
export function digestOf(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}
