/**
 * The audit log core: group commit, TPM anchoring and the start-up check. The write order
 * and the crash argument are in docs/audit.md; in short, per batch:
 *
 *   1. entries + batch record in ONE synced store write
 *   2. TPM2_NV_Extend(extend index, new root)
 *   3. TPM2_NV_Increment(counter)
 *   4. acknowledge every waiter
 *
 * and `reconcile()` (run at start and after any failure) reads the store's tail and the TPM
 * and accepts exactly: equal; counter one short (crash between 2 and 3: increment); one
 * whole batch ahead (crash between 1 and 2: anchor it). Anything else is a rollback.
 */
import { systemClock, type Clock } from '../shared/clock.js';
import { silentLogger, type DomainLogger } from '../shared/log.js';
import type { AnchorState, AuditAnchor } from './anchor.port.js';
import { GENESIS_EXTEND, extendDigest } from './anchor.port.js';
import { isBatchRecord } from './audit-store.port.js';
import type { AuditStore, BatchRecord, StoreMeta, StoredBatch } from './audit-store.port.js';
import type { AuditEntry, AuditEvent } from './entry.js';
import {
  GENESIS_PREV_HASH,
  buildEntry,
  checkEvent,
  checkLink,
  entryHash,
  isEntryShape,
} from './entry.js';
import {
  AuditNotFoundError,
  AuditNotProvisionedError,
  AuditRangeError,
  AuditRollbackError,
  AuditUnavailableError,
  AnchorError,
} from './errors.js';
import { EMPTY_ROOT, leafHash } from './merkle.js';
import { ReplayProblem, replayLog } from './replay.js';
import { TileMismatchError, TiledTree, type Frontier } from './tiled-tree.js';
import { TILE_WIDTH, levelCount } from './tiles.js';

export interface AuditLogOptions {
  /** The log's origin (checkpoint first line), also recorded in the store. */
  readonly origin: string;
  /** Most entries in one batch (one store write, one anchor). */
  readonly maxBatchSize: number;
  /** Least time between two anchors (NV writes); appends wait, never skip. */
  readonly minAnchorIntervalMs: number;
  /** How long retryable TPM responses (TPM_RC_NV_RATE, TPM_RC_RETRY) are retried. */
  readonly anchorRetryDeadlineMs: number;
  /**
   * Where a later log period's anchor chain starts (periods.ts): the TPM counter and extend
   * value after the previous period's last batch, as its link entry records them. Absent:
   * the first period, which starts at the pinned genesis and the provisioned extend value.
   */
  readonly base?: AnchorState;
}

/** A frozen period's final state, as the next period's (anchored) link entry records it. */
export interface FrozenHead {
  readonly size: number;
  readonly root: Buffer;
  readonly counter: bigint;
  readonly extendValue: Buffer;
}

/** The last anchored state: what a checkpoint states and what proofs are bounded by. */
export interface AnchoredHead {
  readonly size: number;
  readonly root: Buffer;
  readonly batches: number;
  readonly counter: bigint;
  readonly extendValue: Buffer;
}

export interface Appended {
  readonly seq: number;
  readonly hash: string;
  /** The log period the entry is in (periodic.ts); absent from a single period's log. */
  readonly period?: number;
}

export interface AuditStats {
  /** Batches committed (stored, anchored and acknowledged). */
  readonly batches: number;
  /** Appends acknowledged. */
  readonly appends: number;
  /** TPM NV writes that succeeded (extend and increment each count one). */
  readonly nvWrites: number;
  /** TPM NV writes retried after a retryable response (TPM_RC_NV_RATE, ...). */
  readonly nvRetries: number;
}

interface Waiter {
  readonly event: AuditEvent;
  readonly resolve: (value: Appended) => void;
  readonly reject: (err: Error) => void;
}

type Phase = 'starting' | 'ready' | 'refused' | 'closed';

const hexToBuf = (hex: string): Buffer => Buffer.from(hex, 'hex');

function isStoredBatch(v: unknown): v is StoredBatch {
  if (!isBatchRecord(v)) return false;
  const extend = (v as unknown as Record<string, unknown>).extend;
  return typeof extend === 'string' && /^[0-9a-f]{64}$/.test(extend);
}

function isStoreMeta(v: unknown): v is StoreMeta {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    (m.version === 1 || m.version === 2) &&
    typeof m.origin === 'string' &&
    typeof m.genesisCounter === 'string' &&
    /^\d{1,20}$/.test(m.genesisCounter)
  );
}

export class AuditLog {
  #phase: Phase = 'starting';
  #refusal: AuditRollbackError | AuditNotProvisionedError | undefined;
  /** The tree: tiles in the store, its right edge here; more leaves while a batch is in flight. */
  #tree: TiledTree;
  /** The anchored state: the tree's right edge and root, and what the TPM holds. */
  #anchoredFrontier: Frontier = { size: 0, edges: [] };
  #anchoredRoot: Buffer = Buffer.from(EMPTY_ROOT);
  /** False until start-up has checked the store's tail against the TPM once. */
  #loaded = false;
  #size = 0;
  #headHash = GENESIS_PREV_HASH;
  #batches = 0;
  #extendValue: Buffer = Buffer.from(GENESIS_EXTEND);
  #genesisCounter = 0n;
  /** True when the store or TPM may be ahead of the anchored state: reconcile first. */
  #dirty = true;
  #queue: Waiter[] = [];
  #committing: Promise<void> | undefined;
  /** The commit running now, if any. */
  #inFlight: Promise<void> | undefined;
  /** Set while a caller needs the TPM to stay at the anchored head (whileIdle). */
  #gate: Promise<void> | undefined;
  #lastAnchorAt = Number.NEGATIVE_INFINITY;
  #opened: Promise<void> | undefined;
  /** A frozen period (openFrozen): read-only, its head fixed by the next period's link. */
  #frozen = false;
  #counters = { batches: 0, appends: 0, nvWrites: 0, nvRetries: 0 };

  readonly #store: AuditStore;
  readonly #anchor: AuditAnchor;
  readonly #options: AuditLogOptions;
  readonly #clock: Clock;
  readonly #logger: DomainLogger;

  constructor(
    store: AuditStore,
    anchor: AuditAnchor,
    options: AuditLogOptions,
    clock: Clock = systemClock,
    logger: DomainLogger = silentLogger,
  ) {
    this.#store = store;
    this.#anchor = anchor;
    this.#options = options;
    this.#clock = clock;
    this.#logger = logger;
    if (!Number.isSafeInteger(options.maxBatchSize) || options.maxBatchSize < 1) {
      throw new RangeError('maxBatchSize must be a positive integer');
    }
    this.#tree = new TiledTree(store);
  }

  /**
   * The start-up check; resolves when the log serves, rejects with AuditRollbackError
   * (refuses until an operator acts) or AuditUnavailableError (TPM or store not usable:
   * call again). Idempotent while it runs or once it succeeded.
   */
  open(): Promise<void> {
    if (this.#phase === 'ready') return Promise.resolve();
    if (this.#refusal !== undefined) return Promise.reject(this.#refusal);
    this.#opened ??= this.#startUp().finally(() => {
      this.#opened = undefined;
    });
    return this.#opened;
  }

  get state(): Phase {
    return this.#phase;
  }

  stats(): AuditStats {
    return { ...this.#counters };
  }

  /** Entries anchored so far (queries answer nothing beyond it). */
  anchoredSize(): number {
    this.#assertServing();
    return this.#size;
  }

  head(): AnchoredHead {
    this.#assertServing();
    return {
      size: this.#size,
      root: Buffer.from(this.#anchoredRoot),
      batches: this.#batches,
      counter: this.#genesisCounter + BigInt(this.#batches),
      extendValue: Buffer.from(this.#extendValue),
    };
  }

  append(event: AuditEvent): Promise<Appended> {
    let checked: AuditEvent;
    try {
      checked = checkEvent(event);
      this.#assertServing();
      if (this.#frozen) throw new AuditUnavailableError('this log period is frozen');
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error('invalid audit event'));
    }
    return new Promise<Appended>((resolve, reject) => {
      this.#queue.push({ event: checked, resolve, reject });
      // The first append starts a commit; those arriving while it runs form the next batch.
      if (this.#committing === undefined) this.#committing = this.#drain();
    });
  }

  /**
   * Run `use` while no batch is being committed and the last one is settled, so the TPM
   * holds exactly the anchored head (e.g. NV_Certify next to a checkpoint). Appends wait
   * meanwhile. Rejects like a commit's reconciliation when the TPM or store cannot say.
   */
  async whileIdle<T>(use: (head: AnchoredHead) => Promise<T>): Promise<T> {
    while (this.#gate !== undefined) await this.#gate;
    let open = (): void => undefined;
    this.#gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    try {
      while (this.#inFlight !== undefined) await this.#inFlight;
      // A batch that failed half-way may have left the TPM a step ahead of the head: settle
      // it first (as the next commit would), so the TPM holds exactly the head `use` sees.
      this.#assertServing();
      if (this.#dirty) await this.#reconcile();
      return await use(this.head());
    } finally {
      this.#gate = undefined;
      open();
    }
  }

  /** Stop accepting appends; waits for the batch in flight. */
  async close(): Promise<void> {
    if (this.#phase !== 'refused') this.#phase = 'closed';
    await this.#committing;
  }

  /** Roots and proofs are computed from the stored tiles: they resolve asynchronously. */
  async root(size: number): Promise<Buffer> {
    this.#assertServing();
    this.#checkSize(size);
    if (size === this.#size) return Buffer.from(this.#anchoredRoot);
    return this.#fromTiles(() => this.#tree.rootAt(size));
  }

  async inclusionProof(seq: number, size: number): Promise<{ leafHash: Buffer; path: Buffer[] }> {
    this.#assertServing();
    this.#checkSize(size);
    return this.#fromTiles(async () => {
      const path = await this.#tree.inclusionProof(seq, size);
      return { leafHash: await this.#tree.leaf(seq), path };
    });
  }

  async consistencyProof(from: number, to: number): Promise<Buffer[]> {
    this.#assertServing();
    this.#checkSize(to);
    return this.#fromTiles(() => this.#tree.consistencyProof(from, to));
  }

  /** The first `width` hashes of a tile of the anchored tree (tlog-tiles), verified. */
  async tile(level: number, index: number, width: number): Promise<Buffer> {
    this.#assertServing();
    if (index * TILE_WIDTH + width > levelCount(this.#size, level)) {
      throw new AuditRangeError(`tile ${level}/${index} is beyond the anchored tree`);
    }
    return this.#fromTiles(() => this.#tree.tileHashes(level, index, width));
  }

  /**
   * A stored tile that does not agree with the tree (edited on disk since start) is never
   * served: the request fails (503) and the operator is told; `grantor audit verify
   * --full` then says what else changed.
   */
  async #fromTiles<T>(compute: () => Promise<T>): Promise<T> {
    try {
      return await compute();
    } catch (err) {
      if (err instanceof TileMismatchError) {
        this.#logger.error(
          { event: 'audit_tile_mismatch', tile: err.tile, problem: err.problem },
          `audit: ${err.message}: the store was edited; run \`grantor audit verify --full\``,
        );
        throw new AuditUnavailableError('audit store cannot be read', { cause: err });
      }
      throw err;
    }
  }

  /** Anchored entries from `from`, at most `limit`, each checked against its leaf. */
  async entries(from: number, limit: number): Promise<AuditEntry[]> {
    this.#assertServing();
    if (!Number.isSafeInteger(from) || from < 0) throw new AuditRangeError('bad from');
    if (!Number.isSafeInteger(limit) || limit < 1) throw new AuditRangeError('bad limit');
    if (from >= this.#size) {
      throw new AuditNotFoundError(`no entry ${from} (log size ${this.#size})`);
    }
    const count = Math.min(limit, this.#size - from);
    const out: AuditEntry[] = [];
    try {
      for await (const value of this.#store.readEntries(from, count)) {
        const seq = from + out.length;
        // The running log trusts its memory, not the disk: an entry edited since start
        // no longer matches its leaf.
        if (!isEntryShape(value) || value.seq !== seq) throw new Error(`entry ${seq} unreadable`);
        // Its content must still be what its hash says (the leaf holds the hash only).
        if (entryHash(value) !== value.hash) throw new Error(`entry ${seq} changed in the store`);
        if (
          !leafHash(hexToBuf(value.hash)).equals(await this.#fromTiles(() => this.#tree.leaf(seq)))
        ) {
          throw new Error(`entry ${seq} changed in the store`);
        }
        out.push(value);
        if (out.length === count) break;
      }
    } catch (err) {
      throw new AuditUnavailableError('audit store cannot be read', { cause: err });
    }
    if (out.length !== count) throw new AuditUnavailableError('audit store is missing entries');
    return out;
  }

  /**
   * Anchored batch records from `from`, at most `limit`: each batch's tree size and root,
   * checked against the running log's memory (the boundaries that tie the TPM's counter and
   * extend value to the entries).
   */
  async batchRecords(from: number, limit: number): Promise<BatchRecord[]> {
    this.#assertServing();
    if (!Number.isSafeInteger(from) || from < 0) throw new AuditRangeError('bad from');
    if (!Number.isSafeInteger(limit) || limit < 1) throw new AuditRangeError('bad limit');
    if (from >= this.#batches) {
      throw new AuditNotFoundError(`no batch ${from} (${this.#batches} anchored)`);
    }
    const count = Math.min(limit, this.#batches - from);
    const out: BatchRecord[] = [];
    try {
      for await (const value of this.#store.readBatches(from)) {
        const index = from + out.length;
        const last = out.at(-1)?.size ?? 0;
        if (
          !isBatchRecord(value) ||
          value.index !== index ||
          value.size <= last ||
          value.size > this.#size ||
          value.root !==
            (await this.#fromTiles(() => this.#tree.rootAt(value.size))).toString('hex')
        ) {
          throw new Error(`batch ${index} changed in the store`);
        }
        out.push({ index: value.index, size: value.size, root: value.root });
        if (out.length === count) break;
      }
    } catch (err) {
      throw new AuditUnavailableError('audit store cannot be read', { cause: err });
    }
    if (out.length !== count) throw new AuditUnavailableError('audit store is missing batches');
    return out;
  }

  #checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.#size) {
      throw new AuditRangeError(
        `tree size ${size} is beyond the latest checkpoint (${this.#size})`,
      );
    }
  }

  #assertServing(): void {
    if (this.#refusal !== undefined) throw this.#refusal;
    if (this.#phase === 'closed') throw new AuditUnavailableError('audit log is closed');
    if (this.#phase !== 'ready') throw new AuditUnavailableError('audit log is not ready');
  }

  #refuse(message: string, details: Record<string, unknown>): AuditRollbackError {
    const err = new AuditRollbackError(message, { details });
    this.#refusal = err;
    this.#phase = 'refused';
    this.#logger.error(
      { event: 'audit_rollback_detected', ...details },
      `audit: refusing to serve: ${message}; an operator must investigate the store and the TPM anchor`,
    );
    return err;
  }

  // --- start-up -------------------------------------------------------------------------

  /**
   * The pinned genesis, or a refusal: without a pin there is nothing to compare the store
   * with, and that is a fresh appliance, not a rollback.
   */
  #pinnedGenesis(): bigint {
    const genesis = this.#anchor.genesis;
    if (genesis === undefined) {
      const err = new AuditNotProvisionedError();
      this.#refusal = err;
      this.#phase = 'refused';
      this.#logger.error({ event: 'audit_not_provisioned' }, `audit: ${err.message}`);
      throw err;
    }
    return genesis;
  }

  async #checkNames(): Promise<void> {
    try {
      await this.#anchor.checkPinned();
    } catch (err) {
      if (err instanceof AuditRollbackError) {
        // The anchor names its own reason (e.g. anchor_key_mismatch); by default a name.
        throw this.#refuse(err.message, { reason: 'pinned_nv_name_mismatch', ...err.details });
      }
      throw new AuditUnavailableError('TPM anchor cannot be read', { cause: err });
    }
  }

  /** The store's metadata: `undefined` for an empty store; refuses anything not this log's. */
  async #readStoreMeta(genesis: bigint): Promise<StoreMeta | undefined> {
    let meta: unknown;
    let hasData = false;
    try {
      meta = await this.#store.readMeta();
      if (meta === undefined) {
        for await (const _ of this.#store.readEntries(0, 1)) hasData = true;
        for await (const _ of this.#store.readBatches(0)) hasData = true;
      }
    } catch (err) {
      throw new AuditUnavailableError('audit store cannot be read', { cause: err });
    }
    if (meta === undefined) {
      if (hasData) {
        throw this.#refuse('the audit store has entries but no metadata', {
          reason: 'store_meta_missing',
        });
      }
      return undefined;
    }
    if (!isStoreMeta(meta)) {
      throw this.#refuse('the audit store metadata is malformed', {
        reason: 'store_meta_malformed',
      });
    }
    if (meta.origin !== this.#options.origin) {
      throw this.#refuse(
        `the audit store was created for origin "${meta.origin}", not "${this.#options.origin}" (a store from another appliance)`,
        { reason: 'store_origin_mismatch', storeOrigin: meta.origin },
      );
    }
    // The store's own genesis is only compared, never used: whoever holds the disk writes it.
    if (BigInt(meta.genesisCounter) !== genesis) {
      throw this.#refuse(
        `the audit store was created at NV counter ${meta.genesisCounter}, not at the pinned genesis ${genesis} (a foreign or edited store)`,
        {
          reason: 'store_genesis_mismatch',
          storeGenesis: meta.genesisCounter,
          pinnedGenesis: genesis.toString(),
        },
      );
    }
    return meta;
  }

  /**
   * A store written before tiles (version 1): replay it once from its first entry (every
   * link, batch root and the extend chain from the provisioned value), writing its tiles and
   * batch records with `extend` in synced chunks, then version 2 last. A crash on the way
   * leaves version 1 and the next start replays again (it writes the same values). The
   * bounded check that follows compares the result with the TPM anchor.
   */
  async #upgrade(meta: StoreMeta): Promise<void> {
    this.#logger.warn(
      { event: 'audit_upgrade_started' },
      'audit: the store has no tiles (written by an older version): building them once from every entry',
    );
    let logged = 0;
    try {
      const done = await replayLog(this.#store, {
        derived: (tiles, batches) => this.#store.writeDerived(tiles, batches),
        progress: (entries) => {
          if (entries - logged < 100_000) return;
          logged = entries;
          this.#logger.info({ event: 'audit_upgrade_progress', entries }, 'audit: building tiles');
        },
      });
      await this.#store.writeDerived([], [], { ...meta, version: 2 });
      this.#logger.warn(
        { event: 'audit_upgrade_done', entries: done.size, batches: done.batches },
        'audit: tiles built; the store is now version 2',
      );
    } catch (err) {
      if (err instanceof ReplayProblem) throw this.#refuse(err.message, { ...err.details });
      throw new AuditUnavailableError('audit store cannot be upgraded', { cause: err });
    }
  }

  /**
   * A store written before the time index (or with entries before the term index): index
   * every entry once (audit-store.port.ts `buildIndexes`); nothing on an indexed store.
   */
  async #buildIndexes(): Promise<void> {
    try {
      const built = await this.#store.buildIndexes((entries) => {
        if (entries % 100_000 === 0) {
          this.#logger.info({ event: 'audit_index_progress', entries }, 'audit: indexing');
        }
      });
      if (built !== undefined && built > 0) {
        this.#logger.warn(
          { event: 'audit_index_built', entries: built },
          'audit: the store was written before the time index: every entry indexed once',
        );
      }
    } catch (err) {
      throw new AuditUnavailableError('audit store cannot be indexed', { cause: err });
    }
  }

  async #startUp(): Promise<void> {
    const genesis = this.#pinnedGenesis();
    await this.#checkNames();
    const meta = await this.#readStoreMeta(genesis);
    if (meta === undefined) {
      // Start-up never creates a log: that is `grantor provision`'s explicit act.
      const tpm = await this.#readAnchor();
      throw this.#refuse(
        `the audit store is missing but the anchor is pinned (genesis ${genesis}, TPM counter ${tpm.counter}): restore the store; on a freshly provisioned appliance run \`grantor provision\``,
        {
          reason: 'store_missing',
          tpmCounter: tpm.counter.toString(),
          pinnedGenesis: genesis.toString(),
        },
      );
    }
    // A later period's chain continues the previous period's (periods.ts).
    this.#genesisCounter = this.#options.base?.counter ?? genesis;
    this.#extendValue = this.#baseExtend();
    if (meta.version === 1) await this.#upgrade(meta);
    await this.#buildIndexes();
    await this.#reconcile();
    if (this.#refusal !== undefined) throw this.#refusal;
    this.#phase = 'ready';
    this.#logger.info(
      { event: 'audit_ready', size: this.#size, batches: this.#batches },
      'audit: log matches its TPM anchor',
    );
  }

  /**
   * Open a frozen log period read-only: its final state is `head` (the next period's link
   * entry, itself anchored, records it), not the TPM's, which has moved on. Checks, bounded
   * like start-up: the store is this period's, its last batch record ends exactly at the
   * head (size, root, extend value, counter), and the right-edge tiles give that root.
   * Anything else refuses (`audit_rollback_detected`, `period_link_mismatch` or the store's
   * own reason); appends are refused.
   */
  async openFrozen(head: FrozenHead): Promise<void> {
    if (this.#phase === 'ready') return;
    if (this.#refusal !== undefined) throw this.#refusal;
    const genesis = this.#pinnedGenesis();
    const meta = await this.#readStoreMeta(genesis);
    if (meta === undefined) {
      throw this.#refuse(`the store of frozen log period ${this.#options.origin} is missing`, {
        reason: 'store_missing',
        origin: this.#options.origin,
      });
    }
    this.#genesisCounter = this.#options.base?.counter ?? genesis;
    let records: StoredBatch[];
    try {
      records = await this.#lastRecords();
      const last = records.at(-1);
      const batches = last === undefined ? 0 : last.index + 1;
      if (
        (last?.size ?? 0) !== head.size ||
        (last?.root ?? EMPTY_ROOT.toString('hex')) !== head.root.toString('hex') ||
        (last === undefined ? this.#baseExtend() : hexToBuf(last.extend)).compare(
          head.extendValue,
        ) !== 0 ||
        this.#genesisCounter + BigInt(batches) !== head.counter
      ) {
        throw new ReplayProblem(
          `frozen log period ${this.#options.origin} does not end where the next period's link entry says`,
          { reason: 'period_link_mismatch', origin: this.#options.origin },
        );
      }
      this.#tree = await TiledTree.load(this.#store, head.size);
      if (!this.#tree.root().equals(head.root)) {
        throw new TileMismatchError(
          { level: 0, index: Math.floor(head.size / 256) },
          'root_mismatch',
        );
      }
      this.#batches = batches;
    } catch (err) {
      throw this.#checkFailure(err);
    }
    this.#tree.settle();
    this.#anchoredFrontier = this.#tree.frontier();
    this.#anchoredRoot = Buffer.from(head.root);
    this.#size = head.size;
    this.#extendValue = Buffer.from(head.extendValue);
    this.#loaded = true;
    this.#dirty = false;
    this.#frozen = true;
    this.#phase = 'ready';
  }

  /**
   * Provisioning's last step (`grantor provision`): create the store of a new log. Only on
   * an empty store, and only while the TPM holds exactly the pinned genesis (counter equal
   * to it, extend index at its provisioned value): a counter past the genesis has anchored
   * batches of a log whose store is gone, and a new log there would hide that. Idempotent:
   * resolves `false` when this log's store already exists (start-up then checks it).
   */
  async provision(): Promise<boolean> {
    if (this.#phase !== 'starting') return false;
    const genesis = this.#pinnedGenesis();
    await this.#checkNames();
    if ((await this.#readStoreMeta(genesis)) !== undefined) return false;
    const tpm = await this.#readAnchor();
    if (tpm.counter !== genesis || !tpm.extendValue.equals(GENESIS_EXTEND)) {
      throw this.#refuse(
        `a new audit log starts only on an anchor at its pinned genesis ${genesis}; the TPM counter is ${tpm.counter}: this anchor has recorded batches whose store is missing`,
        {
          reason: 'store_missing',
          tpmCounter: tpm.counter.toString(),
          pinnedGenesis: genesis.toString(),
        },
      );
    }
    const meta: StoreMeta = {
      version: 2,
      origin: this.#options.origin,
      genesisCounter: genesis.toString(),
    };
    try {
      await this.#store.writeMeta(meta);
    } catch (err) {
      throw new AuditUnavailableError('audit store cannot be written', { cause: err });
    }
    this.#logger.info(
      { event: 'audit_created', genesisCounter: meta.genesisCounter },
      'audit: new log created on a freshly provisioned anchor',
    );
    return true;
  }

  async #readAnchor(): Promise<AnchorState> {
    try {
      return await this.#anchor.read();
    } catch (err) {
      // A read the TPM's own certification contradicts (anchor_read_unverified).
      if (err instanceof AuditRollbackError) throw this.#refuse(err.message, { ...err.details });
      throw new AuditUnavailableError('TPM anchor cannot be read', { cause: err });
    }
  }

  // --- reconciliation (start-up and after any failure) --------------------------------

  /**
   * Read the store's tail, check it, compare with the TPM, and finish at most one
   * interrupted batch. Bounded whatever the log's size: it reads the last batch records,
   * the tiles of the tree's right edge before the last batch and that batch's entries
   * (docs/audit.md, "What start-up checks"). On success the anchored state covers the
   * whole store; throws AuditUnavailableError (try again later) or AuditRollbackError.
   */
  async #reconcile(): Promise<void> {
    try {
      await this.#reconcileTail();
    } catch (err) {
      this.#tree.reset(this.#anchoredFrontier);
      throw this.#checkFailure(err);
    }
  }

  /** What a failed check of the store means: a refusal (what it found), or an outage. */
  #checkFailure(err: unknown): Error {
    if (err instanceof ReplayProblem) return this.#refuse(err.message, { ...err.details });
    if (err instanceof TileMismatchError) {
      return this.#refuse(`${err.message}: the tiles do not match the entries`, {
        reason: 'store_tiles_mismatch',
        tile: `${err.tile.level}/${err.tile.index}`,
        problem: err.problem,
      });
    }
    if (err instanceof AuditRollbackError || err instanceof AuditUnavailableError) return err;
    return new AuditUnavailableError('audit store cannot be read', { cause: err });
  }

  /** The last (up to) three batch records, each well formed and chained to the one before. */
  async #lastRecords(): Promise<StoredBatch[]> {
    const values = await this.#store.lastBatches(3);
    const records: StoredBatch[] = [];
    for (const value of values) {
      const before = records.at(-1);
      const index = before === undefined ? (value as { index?: unknown }).index : before.index + 1;
      if (
        !isStoredBatch(value) ||
        value.index !== index ||
        value.size <= (before?.size ?? 0) ||
        // The first record's extend is the provisioned value's; each next one chains.
        (before === undefined && value.index === 0 && !this.#chains(this.#baseExtend(), value)) ||
        (before !== undefined && !this.#chains(hexToBuf(before.extend), value))
      ) {
        throw new ReplayProblem(`audit store batch record ${String(index)} is malformed`, {
          reason: 'store_batch_malformed',
          batch: index,
        });
      }
      records.push(value);
    }
    return records;
  }

  /** The extend value before this log's first batch (the provisioned one, or the base's). */
  #baseExtend(): Buffer {
    return Buffer.from(this.#options.base?.extendValue ?? GENESIS_EXTEND);
  }

  #chains(previous: Buffer, record: StoredBatch): boolean {
    return extendDigest(previous, hexToBuf(record.root)).toString('hex') === record.extend;
  }

  async #reconcileTail(): Promise<void> {
    const records = await this.#lastRecords();
    const last = records.at(-1);
    const n = last === undefined ? 0 : last.index + 1;
    // 1. The state before the store's last batch: kept in memory once running, at start
    //    read from the right-edge tiles and checked against that batch's record.
    let hasTail = true;
    let baseSize: number;
    let baseExtend: Buffer;
    if (this.#loaded && n === this.#batches) {
      hasTail = false;
      baseSize = this.#size;
      baseExtend = this.#extendValue;
      if (last !== undefined && last.root !== this.#anchoredRoot.toString('hex')) {
        throw new ReplayProblem(`audit store batch record ${n - 1} changed`, {
          reason: 'store_batch_malformed',
          batch: n - 1,
        });
      }
    } else if (this.#loaded && n === this.#batches + 1) {
      this.#tree.reset(this.#anchoredFrontier);
      baseSize = this.#size;
      baseExtend = this.#extendValue;
    } else if (this.#loaded) {
      throw new ReplayProblem(
        `the audit store holds ${n} batch records, the running log ${this.#batches}: the store was edited`,
        { reason: n < this.#batches ? 'store_truncated' : 'store_ahead_of_anchor', batch: n },
      );
    } else if (last === undefined) {
      hasTail = false;
      baseSize = 0;
      baseExtend = this.#baseExtend();
    } else {
      const before = records.at(-2);
      if (before === undefined && last.index > 0) {
        throw new ReplayProblem(`audit store batch record ${last.index - 1} is missing`, {
          reason: 'store_batch_malformed',
          batch: last.index - 1,
        });
      }
      baseSize = before?.size ?? 0;
      baseExtend = before === undefined ? this.#baseExtend() : hexToBuf(before.extend);
      this.#tree = await TiledTree.load(this.#store, baseSize);
      const baseRoot = before === undefined ? EMPTY_ROOT : hexToBuf(before.root);
      if (!this.#tree.root().equals(baseRoot)) {
        throw new TileMismatchError(
          { level: 0, index: Math.floor(baseSize / 256) },
          'root_mismatch',
        );
      }
    }
    // 2. The last batch's entries re-hashed onto that state (and the entry before them for
    //    the link), its root and its tiles compared with the store's.
    let prev = this.#loaded ? this.#headHash : GENESIS_PREV_HASH;
    const times: string[] = [];
    let linkFirst = !this.#loaded && baseSize > 0;
    for await (const value of this.#store.readEntries(linkFirst ? baseSize - 1 : baseSize)) {
      if (linkFirst) {
        // The entry before the tail: only its hash matters, bound by its leaf.
        linkFirst = false;
        const seq = baseSize - 1;
        const leaf = await this.#tree.leaf(seq);
        if (
          !isEntryShape(value) ||
          value.seq !== seq ||
          !leafHash(hexToBuf(value.hash)).equals(leaf)
        ) {
          throw new ReplayProblem(
            `audit store entry ${seq} is broken (leaf): the store was rewritten`,
            {
              reason: 'store_entry_broken',
              seq,
              problem: 'leaf',
            },
          );
        }
        prev = value.hash;
        continue;
      }
      const seq = this.#tree.size;
      if (!hasTail || seq >= (last?.size ?? 0)) {
        throw new ReplayProblem(
          `audit store holds entries after its last batch record (size ${last?.size ?? 0}): the store was edited`,
          { reason: 'store_unbatched_entries', size: last?.size ?? 0, entries: seq + 1 },
        );
      }
      const problem = isEntryShape(value) ? checkLink(value, seq, prev) : 'shape';
      if (problem !== undefined) {
        throw new ReplayProblem(
          `audit store entry ${seq} is broken (${problem}): the store was rewritten`,
          {
            reason: 'store_entry_broken',
            seq,
            problem,
          },
        );
      }
      this.#tree.appendLeaf(leafHash(hexToBuf((value as AuditEntry).hash)));
      prev = (value as AuditEntry).hash;
      times.push((value as AuditEntry).time);
    }
    let eN = baseExtend;
    if (hasTail && last !== undefined) {
      if (this.#tree.size !== last.size) {
        throw new ReplayProblem(
          `audit store batch ${n - 1} ends at size ${last.size} but the store holds only ${this.#tree.size} entries: the tail was truncated`,
          {
            reason: 'store_truncated',
            batch: n - 1,
            batchSize: last.size,
            entries: this.#tree.size,
          },
        );
      }
      if (this.#tree.root().toString('hex') !== last.root) {
        throw new ReplayProblem(`audit store batch ${n - 1} does not match its entries`, {
          reason: 'store_batch_root_mismatch',
          batch: n - 1,
        });
      }
      eN = extendDigest(baseExtend, hexToBuf(last.root));
      if (eN.toString('hex') !== last.extend) {
        throw new ReplayProblem(`audit store batch record ${n - 1} is malformed`, {
          reason: 'store_batch_malformed',
          batch: n - 1,
        });
      }
      for (const t of this.#tree.writes()) {
        const stored = await this.#store.readTile(t.level, t.index);
        if (stored === undefined || !stored.equals(t.hashes)) {
          throw new TileMismatchError(t, stored === undefined ? 'missing' : 'root_mismatch');
        }
      }
    }
    const expected = this.#genesisCounter + BigInt(n);

    // 3. Compare with the TPM.
    const tpm = await this.#readAnchor();
    if (tpm.extendValue.equals(eN) && tpm.counter === expected) {
      // consistent
    } else if (hasTail && tpm.extendValue.equals(eN) && tpm.counter === expected - 1n) {
      // Crash between extend and increment of the last batch: finish it.
      await this.#anchorStep(() => this.#anchor.increment());
      this.#logger.warn(
        { event: 'audit_anchor_completed', batch: n - 1, recovered: 'extended_not_counted' },
        'audit: finished anchoring the last batch (counter)',
      );
    } else if (
      hasTail &&
      last !== undefined &&
      tpm.extendValue.equals(baseExtend) &&
      tpm.counter === expected - 1n
    ) {
      // Durable in the store, never anchored, so nothing from it was released: anchor it,
      // if it is one the log could have written (whoever holds the disk may write it).
      this.#checkUnanchoredBatch(n - 1, times);
      await this.#anchorStep(() => this.#anchor.extend(hexToBuf(last.root)));
      await this.#anchorStep(() => this.#anchor.increment());
      this.#logger.warn(
        { event: 'audit_anchor_completed', batch: n - 1, recovered: 'stored_not_anchored' },
        "audit: anchored the store's last, un-anchored batch",
      );
    } else if (tpm.counter > expected) {
      throw this.#refuse(
        `the TPM anchor is ${tpm.counter - expected} batch(es) ahead of the audit store (counter ${tpm.counter}, store has ${n} batches): the store is behind (restored from an older copy or truncated)`,
        { reason: 'store_behind_anchor', tpmCounter: tpm.counter.toString(), storeBatches: n },
      );
    } else if (tpm.counter < expected - 1n) {
      throw this.#refuse(
        `the audit store is ${expected - tpm.counter} batches ahead of the TPM anchor: more than one un-anchored batch cannot happen`,
        { reason: 'store_ahead_of_anchor', tpmCounter: tpm.counter.toString(), storeBatches: n },
      );
    } else {
      throw this.#refuse(
        "the audit store does not match the TPM anchor's extend value (entries rewritten, or a store from another appliance)",
        { reason: 'store_anchor_mismatch', tpmCounter: tpm.counter.toString(), storeBatches: n },
      );
    }
    this.#tree.settle();
    this.#anchoredFrontier = this.#tree.frontier();
    this.#anchoredRoot = this.#tree.root();
    this.#size = this.#tree.size;
    this.#batches = n;
    this.#extendValue = Buffer.from(eN);
    this.#headHash = prev;
    this.#loaded = true;
    this.#dirty = false;
  }

  /**
   * The one batch start-up anchors on the store's word: no larger than a commit makes it,
   * one time for the whole batch (a commit stamps all entries alike), not in the future
   * beyond a minute of clock skew. Bounds what a forger with the disk can slip in.
   */
  #checkUnanchoredBatch(batch: number, times: readonly string[]): void {
    const first = times[0];
    const at = first === undefined ? Number.NaN : Date.parse(first);
    let problem: string | undefined;
    if (times.length > this.#options.maxBatchSize) problem = 'size';
    else if (first === undefined || times.some((t) => t !== first)) problem = 'times_differ';
    else if (!Number.isFinite(at) || at > this.#clock.now() + 60_000) problem = 'time_in_future';
    if (problem !== undefined) {
      throw this.#refuse(
        `the store's un-anchored batch ${batch} is not one this log writes (${problem}): refusing to anchor it`,
        {
          reason: 'store_unanchored_batch_implausible',
          batch,
          entries: times.length,
          problem,
        },
      );
    }
  }

  // --- group commit ---------------------------------------------------------------------

  async #drain(): Promise<void> {
    for (;;) {
      // Wait out a whileIdle() caller and the rate bound on NV writes (appends arriving
      // meanwhile join this batch); the last check and the start of the commit below run
      // without yielding, so neither can slip in between.
      for (;;) {
        if (this.#gate !== undefined) {
          await this.#gate;
          continue;
        }
        // Never longer than the interval: a wall clock stepped back must not stall appends.
        const wait = Math.min(
          this.#options.minAnchorIntervalMs,
          this.#lastAnchorAt + this.#options.minAnchorIntervalMs - this.#clock.now(),
        );
        if (wait <= 0) break;
        await this.#clock.sleep(wait);
      }
      const batch = this.#queue.splice(0, this.#options.maxBatchSize);
      this.#inFlight = this.#commit(batch).catch((err: unknown) => {
        // commit() settles every waiter itself; this only keeps a bug from wedging the queue.
        const failure = new AuditUnavailableError('audit log failed', { cause: err });
        for (const w of batch) w.reject(failure);
      });
      await this.#inFlight;
      this.#inFlight = undefined;
      // Checked and cleared in one synchronous step, so no append can be left in the queue
      // with nobody draining it.
      if (this.#queue.length === 0) {
        this.#committing = undefined;
        return;
      }
    }
  }

  async #commit(batch: readonly Waiter[]): Promise<void> {
    try {
      this.#assertServing();
      if (this.#dirty) await this.#reconcile();
      const time = new Date(this.#clock.now()).toISOString();
      const entries: AuditEntry[] = [];
      let prev = this.#headHash;
      for (const w of batch) {
        const entry = buildEntry(w.event, this.#tree.size, time, prev);
        entries.push(entry);
        this.#tree.appendLeaf(leafHash(hexToBuf(entry.hash)));
        prev = entry.hash;
      }
      const root = this.#tree.root();
      const extendValue = extendDigest(this.#extendValue, root);
      const record: StoredBatch = {
        index: this.#batches,
        size: this.#tree.size,
        root: root.toString('hex'),
        extend: extendValue.toString('hex'),
      };
      // From here a failure may leave the store or the TPM one step ahead: reconcile first.
      this.#dirty = true;
      // The request bodies the entries name, content-addressed, in the same synced write.
      const bodies = batch.flatMap((w) =>
        w.event.body === undefined ? [] : [{ digest: w.event.digest, text: w.event.body }],
      );
      // The tiles the batch changed go in the same synced write as its entries.
      const stored = this.#store.appendBatch({
        entries,
        batch: record,
        bodies,
        tiles: this.#tree.writes(),
      });
      // The anchor prepares its two writes while the store writes; it sends the extend only
      // once the batch is durable. Whatever it did not land is done step by step below.
      let landed = 0;
      const anchoring = this.#anchor.writeBatch?.(root, stored, () => {
        landed += 1;
        this.#counters.nvWrites += 1;
      });
      const anchored = anchoring?.then(
        () => undefined,
        (error: unknown) => ({ error }),
      );
      await stored;
      this.#lastAnchorAt = this.#clock.now();
      const failed = anchored === undefined ? undefined : await anchored;
      if (anchored === undefined || failed !== undefined) {
        // The fast path's failure counts as the first attempt of the step it stopped at.
        const done = landed;
        if (done < 1) await this.#anchorStep(() => this.#anchor.extend(root), failed);
        if (done < 2) {
          await this.#anchorStep(() => this.#anchor.increment(), done === 1 ? failed : undefined);
        }
      }
      await this.#checkNoForeignWrite(
        this.#genesisCounter + BigInt(this.#batches + 1),
        extendValue,
      );
      this.#tree.settle();
      this.#anchoredFrontier = this.#tree.frontier();
      this.#anchoredRoot = root;
      this.#size = this.#tree.size;
      this.#batches += 1;
      this.#extendValue = extendValue;
      this.#headHash = prev;
      this.#dirty = false;
      this.#counters.batches += 1;
      this.#counters.appends += entries.length;
      entries.forEach((e, i) => batch[i]?.resolve({ seq: e.seq, hash: e.hash }));
    } catch (err) {
      // Back to the anchored state (which a reconciliation in this commit may have moved).
      this.#tree.reset(this.#anchoredFrontier);
      const failure =
        err instanceof AuditRollbackError
          ? err
          : err instanceof AuditUnavailableError
            ? err
            : new AuditUnavailableError('audit log cannot record right now', { cause: err });
      if (!(err instanceof AuditRollbackError)) {
        this.#logger.warn(
          { event: 'audit_batch_failed', entries: batch.length },
          `audit: batch not recorded: ${describe(err)}`,
        );
      }
      for (const w of batch) w.reject(failure);
    }
  }

  /**
   * After our two writes the TPM must hold exactly what they make: anything else is a third
   * party's write to the anchor (owner auth) since the last batch. Refuse now, not at the
   * next start. A read that fails is an outage: the reconciliation decides.
   */
  async #checkNoForeignWrite(counter: bigint, extendValue: Buffer): Promise<void> {
    let seen: AnchorState;
    try {
      seen = await this.#anchor.readAfterWrite();
    } catch (err) {
      throw new AuditUnavailableError('TPM anchor cannot be read', { cause: err });
    }
    if (seen.counter !== counter || !seen.extendValue.equals(extendValue)) {
      throw this.#refuse(
        `the TPM anchor changed beside this log's writes (counter ${seen.counter}, expected ${counter}): someone else wrote the anchor NV indices`,
        {
          reason: 'anchor_foreign_write',
          tpmCounter: seen.counter.toString(),
          expectedCounter: counter.toString(),
        },
      );
    }
  }

  /**
   * One TPM write, retried while the TPM says it did not execute it, up to the deadline.
   * `first`: the failure of an attempt already made (by the anchor's writeBatch).
   */
  async #anchorStep(step: () => Promise<void>, first?: { error: unknown }): Promise<void> {
    const deadline = this.#clock.now() + this.#options.anchorRetryDeadlineMs;
    for (let attempt = 0; ; attempt++) {
      try {
        if (attempt === 0 && first !== undefined) throw first.error;
        await step();
        this.#counters.nvWrites += 1;
        return;
      } catch (err) {
        const retry = err instanceof AnchorError && err.retryable;
        const pause = Math.min(5 * 2 ** attempt, 200);
        if (!retry || this.#clock.now() + pause > deadline) {
          throw new AuditUnavailableError('TPM anchor cannot be written', { cause: err });
        }
        this.#counters.nvRetries += 1;
        await this.#clock.sleep(pause);
      }
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.message}${cause}`;
  }
  return 'unknown error';
}
