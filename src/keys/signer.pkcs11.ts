/**
 * The PKCS#11 adapter: the connection (token, login, session pool, recovery after a fault)
 * and the dispatch of queued signs to the signing threads. Its rooms: library.pkcs11.ts
 * (the module's lifetime), key-inspection.pkcs11.ts (finding and checking keys),
 * sign-batch.pkcs11.ts (a sign's life, batch replies), signer.thread.pkcs11.ts and
 * sign.worker.pkcs11.ts (the signing threads).
 *
 * Signing runs on worker threads (signer.thread.pkcs11.ts; one per core, at most one per
 * pooled session, at a niceness 5 above the event loop's), each signing batches of queued
 * requests synchronously (C_SignInit, C_Sign) on a session of the pool, with two batches
 * handed to a thread at a time so it never waits for the event loop between them. The
 * event loop only copies the input, queues, packs batches and answers; one shared timer
 * keeps every sign's deadline (signer.deadlines.ts) instead of a setTimeout and a
 * Promise.race per sign.
 *
 * Why threads, and what they measured: docs/keys.md.
 *
 * Faults: any PKCS#11 error during an operation fails that operation with
 * HsmUnavailableError and marks the connection broken. The next call recovers: it waits
 * until no native call is in flight, finalises and re-initialises the module, finds the
 * token by label again, opens fresh sessions, logs in once, and re-finds keys by CKA_ID
 * (re-checking their attributes and that they are still the pinned public key), so no
 * stale handle is ever reused. A wrong or locked PIN latches: login is never tried again
 * by this instance, every call answers the same typed error. A batch on a thread counts as
 * a native call in flight, so the module is never finalised under a thread; a PKCS#11
 * error in a batch fails the rest of that batch and the queued signs, and a lost thread is
 * a fault like any other (its session may be left mid-operation).
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import pkcs11js from 'pkcs11js';
import { GrantorError } from '../shared/errors.js';
import { silentLogger, type DomainLogger } from '../shared/log.js';
import {
  HsmDeadlineExceededError,
  HsmKeyMissingError,
  HsmKeyUnsafeError,
  HsmPinIncorrectError,
  HsmPinLockedError,
  HsmUnavailableError,
} from './errors.js';
import {
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  ED25519_PARAMS,
  P256_PARAMS,
  findObjects,
  generateSigningKeyPair,
  inspectKey,
  mechanism,
  type Handle,
} from './key-inspection.pkcs11.js';
import {
  acquireLibrary,
  pkcs11ReturnValue,
  releaseLibrary,
  type Library,
} from './library.pkcs11.js';
import {
  MAX_BATCH,
  PIPELINE_DEPTH,
  PendingSign,
  answerBatch,
  type Pinned,
} from './sign-batch.pkcs11.js';
import { DeadlineQueue } from './signer.deadlines.js';
import type { HsmKey, HsmSigner, KeyAlgorithm } from './signer.port.js';
import { SignThread, type ThreadItem } from './signer.thread.pkcs11.js';
import { findTokenSlot, isPinRefusal, loginUser, refuseUnsafeLogin } from './token.pkcs11.js';

const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

export interface Pkcs11SignerConfig {
  readonly modulePath: string;
  readonly tokenLabel: string;
  /** The user PIN (already read from its file or variable). Never logged. */
  readonly pin: string;
  readonly sessionPoolSize: number;
  /** Deadline of one signing call, including the wait for a free session. */
  readonly signDeadlineMs: number;
  /** Minimum time between two recovery attempts after a fault. */
  readonly recoveryBackoffMs: number;
  /**
   * Signing threads (default: the number of cores, at most sessionPoolSize). Each signs a
   * batch at a time on one session of the pool.
   */
  readonly signThreads?: number;
}

interface PooledSession {
  readonly handle: Handle;
  readonly connection: number;
}

interface Waiter {
  resolve(s: PooledSession): void;
  reject(e: Error): void;
}

type State = 'closed' | 'open' | 'broken' | 'latched';

export class Pkcs11Signer implements HsmSigner {
  #lib: Library | undefined;
  #state: State = 'closed';
  #latched: Error | undefined;
  #slot: Handle | undefined;
  #sessions: Handle[] = [];
  #free: PooledSession[] = [];
  #waiters: Waiter[] = [];
  /** Bumped on every (re)connection; sessions and handles of an older one are never reused. */
  #connection = 0;
  #libGeneration = -1;
  readonly #handles = new Map<string, Handle>();
  readonly #pinned = new Map<string, Pinned>();
  #recovering: Promise<void> | undefined;
  #lastRecovery = 0;
  /** Signs waiting for a thread and a session, oldest first. */
  #queue: PendingSign[] = [];
  readonly #threads: SignThread[];
  #flushQueued = false;
  readonly #deadlines = new DeadlineQueue();

  readonly #config: Pkcs11SignerConfig;
  readonly #logger: DomainLogger;
  constructor(config: Pkcs11SignerConfig, logger: DomainLogger = silentLogger) {
    this.#config = config;
    this.#logger = logger;
    if (!Number.isInteger(config.sessionPoolSize) || config.sessionPoolSize < 1) {
      throw new RangeError('sessionPoolSize must be a positive integer');
    }
    const threads = config.signThreads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError('signThreads must be a positive integer');
    }
    // Started by open(); one lost later is restarted by the next flush.
    this.#threads = Array.from(
      { length: Math.min(threads, config.sessionPoolSize) },
      () => new SignThread(config.modulePath),
    );
  }

  /** Signing threads in use (for the bench's report). */
  get signThreadCount(): number {
    return this.#threads.length;
  }

  /**
   * Connect (token, sessions, login) and start the signing threads. Resolves once every
   * thread listens: a sign's deadline is never spent waiting for a thread to boot.
   */
  async open(): Promise<void> {
    if (this.#state !== 'closed') return;
    try {
      this.#lib = acquireLibrary(this.#config.modulePath);
      this.#lib.initialize();
    } catch (e) {
      this.#releaseLib();
      throw this.#mapError(e, 'the PKCS#11 module could not be initialised');
    }
    try {
      this.#connect(this.#lib);
    } catch (e) {
      const mapped = this.#mapError(e, 'the HSM token could not be opened');
      this.#closeSessions();
      if (this.#latched === undefined) {
        this.#releaseLib();
        this.#state = 'closed';
      }
      throw mapped;
    }
    try {
      await Promise.all(this.#threads.map((t) => t.start()));
    } catch (e) {
      await this.close();
      throw new HsmUnavailableError('the signing threads could not be started', { cause: e });
    }
  }

  async generate(alg: KeyAlgorithm, label: string): Promise<HsmKey> {
    await this.#ensureConnected();
    const session = await this.#acquire();
    try {
      const p = this.#library().p;
      const hsmId = randomBytes(16);
      const common = [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
        { type: pkcs11js.CKA_ID, value: hsmId },
      ];
      const params = alg === 'ES256' ? P256_PARAMS : ED25519_PARAMS;
      const gen = alg === 'ES256' ? pkcs11js.CKM_EC_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN;
      generateSigningKeyPair(p, session.handle, gen, params, common);
      const id = hsmId.toString('hex');
      const key = this.#inspect(session.handle, id, alg);
      this.#logger.info({ hsmId: id, label, alg }, 'generated a key pair in the HSM');
      return key;
    } catch (e) {
      throw this.#fault(e, session, 'key generation failed in the HSM');
    } finally {
      this.#release(session);
    }
  }

  async load(hsmId: string, alg: KeyAlgorithm): Promise<HsmKey> {
    await this.#ensureConnected();
    const session = await this.#acquire();
    try {
      return this.#inspect(session.handle, hsmId, alg);
    } catch (e) {
      throw this.#fault(e, session, 'the key could not be loaded from the HSM');
    } finally {
      this.#release(session);
    }
  }

  sign(hsmId: string, data: Uint8Array): Promise<Uint8Array> {
    const pinned = this.#pinned.get(hsmId);
    if (pinned === undefined) {
      return Promise.reject(
        new HsmKeyMissingError('the key is not loaded in the signer', { details: { hsmId } }),
      );
    }
    const ms = this.#config.signDeadlineMs;
    // Copy the input before anything else: the caller may reuse its buffer.
    const req = new PendingSign(hsmId, pinned, new Uint8Array(data), performance.now() + ms, ms);
    this.#deadlines.add(req);
    if (this.#state === 'open' && this.#libGeneration === this.#lib?.generation) {
      this.#enqueue(req);
    } else {
      this.#ensureConnected().then(
        () => {
          this.#enqueue(req);
        },
        (e: unknown) => {
          req.reject(e instanceof Error ? e : new HsmUnavailableError('the HSM is unavailable'));
        },
      );
    }
    return req.promise;
  }

  #enqueue(req: PendingSign): void {
    if (req.settled) return;
    // Closed (or broken again) while this sign waited for the recovery: nothing would run it.
    if (this.#state !== 'open') {
      req.reject(
        this.#state === 'latched' && this.#latched !== undefined
          ? this.#latched
          : new HsmUnavailableError('the HSM connection was lost'),
      );
      return;
    }
    this.#queue.push(req);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    // After the current job: signs called together (and callers that sign again as soon as
    // a batch is answered) leave in one batch.
    queueMicrotask(this.#flush);
  }

  /** Hand queued signs to idle threads, each with a free session, in batches. */
  readonly #flush = (): void => {
    this.#flushQueued = false;
    while (this.#queue.length > 0 && this.#state === 'open') {
      const thread = this.#leastBusyThread();
      if (thread === undefined) return;
      const session = this.#free.pop();
      if (session === undefined) return;
      // Share what is queued among the open pipeline slots, so no thread idles while
      // another has a backlog, and batches stay as large as the load allows.
      let slots = 0;
      for (const t of this.#threads) if (t.ready) slots += PIPELINE_DEPTH - t.inFlight;
      const take = Math.min(MAX_BATCH, Math.ceil(this.#queue.length / slots));
      this.#runBatch(thread, session, this.#queue.splice(0, take));
    }
  };

  /** The least busy thread that listens; threads lost since are restarted meanwhile. */
  #leastBusyThread(): SignThread | undefined {
    let best: SignThread | undefined;
    for (const t of this.#threads) {
      if (!t.running) this.#restart(t);
      if (!t.ready) continue;
      if (t.inFlight < PIPELINE_DEPTH && (best === undefined || t.inFlight < best.inFlight))
        best = t;
    }
    return best;
  }

  #restart(thread: SignThread): void {
    const connection = this.#connection;
    thread.start().then(
      () => {
        this.#scheduleFlush();
      },
      (e: unknown) => {
        // A thread that cannot start is a fault like a lost one: the queue fails typed.
        this.#markBroken(connection, e);
      },
    );
  }

  #runBatch(thread: SignThread, session: PooledSession, batch: PendingSign[]): void {
    const lib = this.#library();
    const live: PendingSign[] = [];
    const items: ThreadItem[] = [];
    const epoch = performance.timeOrigin;
    for (const req of batch) {
      // Answered already (deadline): do not spend a signature on nobody.
      if (req.settled) continue;
      let key: Handle;
      try {
        key = this.#privateHandle(session.handle, req.hsmId, req.pinned);
      } catch (e) {
        req.reject(this.#fault(e, session, 'signing failed in the HSM'));
        continue;
      }
      live.push(req);
      items.push({
        key,
        mechanism: mechanism(req.pinned.alg).mechanism,
        sha256: req.pinned.alg === 'ES256',
        data: req.data,
        deadline: epoch + req.deadline,
      });
    }
    // A fault while finding a key has failed the queue; fail this batch's rest alike.
    if (session.connection !== this.#connection || this.#state !== 'open') {
      for (const req of live) req.reject(new HsmUnavailableError('the HSM connection was lost'));
      live.length = 0;
    }
    if (live.length === 0) {
      this.#release(session);
      return;
    }
    lib.enter();
    thread.run(session.handle, items).then(
      (reply) => {
        lib.leave();
        answerBatch(live, reply, (e) => this.#fault(e, session, 'signing failed in the HSM'));
        this.#release(session);
        this.#scheduleFlush();
      },
      (e: unknown) => {
        lib.leave();
        // The thread died with the session possibly mid-operation: recover the connection.
        const error = this.#fault(e, session, 'the signing thread was lost');
        for (const req of live) req.reject(error);
        this.#release(session);
      },
    );
  }

  async destroy(hsmId: string): Promise<void> {
    await this.#ensureConnected();
    const session = await this.#acquire();
    try {
      const p = this.#library().p;
      const objects = findObjects(p, session.handle, hsmId, undefined);
      for (const h of objects) p.C_DestroyObject(session.handle, h);
      this.#handles.delete(hsmId);
      this.#pinned.delete(hsmId);
      this.#logger.info({ hsmId, objects: objects.length }, 'destroyed a key in the HSM');
    } catch (e) {
      throw this.#fault(e, session, 'the key could not be destroyed in the HSM');
    } finally {
      this.#release(session);
    }
  }

  async ready(): Promise<{ ok: boolean; reason?: string }> {
    try {
      await this.#ensureConnected();
    } catch (e) {
      return { ok: false, reason: e instanceof GrantorError ? e.code : 'hsm_unavailable' };
    }
    const lib = this.#library();
    const first = this.#sessions[0];
    try {
      if (this.#slot === undefined || first === undefined)
        throw new HsmUnavailableError('no session');
      lib.p.C_GetTokenInfo(this.#slot);
      const info = lib.p.C_GetSessionInfo(first);
      if (info.state !== CKS_RW_USER_FUNCTIONS && info.state !== CKS_RO_USER_FUNCTIONS) {
        throw new HsmUnavailableError('the session is not logged in');
      }
      return { ok: true };
    } catch (e) {
      this.#markBroken(this.#connection, e);
      return { ok: false, reason: 'hsm_unavailable' };
    }
  }

  async close(): Promise<void> {
    if (this.#state === 'closed' || this.#lib === undefined) {
      this.#state = 'closed';
      return;
    }
    this.#state = 'closed';
    this.#failWaiters(new HsmUnavailableError('the HSM signer is closed'));
    await this.#lib.waitIdle();
    // No batch is in flight now: the threads can go before the module does.
    await Promise.all(this.#threads.map((t) => t.close()));
    this.#deadlines.clear();
    this.#closeSessions();
    this.#handles.clear();
    this.#pinned.clear();
    this.#releaseLib();
  }

  // --- connection ---------------------------------------------------------------------

  #library(): Library {
    if (this.#lib === undefined) throw new HsmUnavailableError('the HSM signer is not open');
    return this.#lib;
  }

  #releaseLib(): void {
    if (this.#lib !== undefined) {
      releaseLibrary(this.#lib);
      this.#lib = undefined;
    }
  }

  /** Find the token by label, open the pool and log in (once). Synchronous PKCS#11 calls. */
  #connect(lib: Library): void {
    const p = lib.p;
    const slot = findTokenSlot(p, this.#config.tokenLabel);
    try {
      refuseUnsafeLogin(p, slot);
    } catch (e) {
      throw isPinRefusal(e) ? this.#latch(e) : e;
    }
    this.#closeSessions();
    this.#slot = slot;
    for (let i = 0; i < this.#config.sessionPoolSize; i++) {
      this.#sessions.push(
        p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION),
      );
    }
    const first = this.#sessions[0];
    if (first === undefined) throw new HsmUnavailableError('no session could be opened');
    try {
      loginUser(p, first, this.#config.pin);
    } catch (e) {
      throw isPinRefusal(e) ? this.#latch(e) : e;
    }
    this.#connection += 1;
    this.#libGeneration = lib.generation;
    this.#handles.clear();
    this.#state = 'open';
    this.#free = [];
    // Callers that queued during a recovery get the fresh sessions first.
    for (const handle of this.#sessions) this.#dispatch({ handle, connection: this.#connection });
    this.#scheduleFlush();
  }

  #latch(error: GrantorError): GrantorError {
    this.#state = 'latched';
    this.#latched = error;
    this.#closeSessions();
    this.#failWaiters(error);
    this.#logger.error({ code: error.code }, 'HSM login refused; not retrying');
    return error;
  }

  #closeSessions(): void {
    const p = this.#lib?.p;
    for (const s of this.#sessions) {
      try {
        p?.C_CloseSession(s);
      } catch {
        // A session of a dead generation: nothing to close.
      }
    }
    this.#sessions = [];
    this.#free = [];
  }

  async #ensureConnected(): Promise<void> {
    if (this.#state === 'latched' && this.#latched !== undefined) throw this.#latched;
    if (this.#state === 'closed' || this.#lib === undefined)
      throw new HsmUnavailableError('the HSM signer is closed');
    if (this.#state === 'open' && this.#libGeneration === this.#lib.generation) return;
    if (this.#recovering === undefined) {
      const since = Date.now() - this.#lastRecovery;
      if (since < this.#config.recoveryBackoffMs) {
        throw new HsmUnavailableError('the HSM is unavailable; recovery is pending', {
          details: { retryInMs: this.#config.recoveryBackoffMs - since },
        });
      }
      this.#recovering = this.#recover(this.#lib).finally(() => {
        this.#recovering = undefined;
      });
    }
    await this.#recovering;
  }

  async #recover(lib: Library): Promise<void> {
    this.#lastRecovery = Date.now();
    const seenGeneration = this.#libGeneration;
    // Finalising under a native call in flight is undefined behaviour: drain first.
    await lib.waitIdle();
    if (this.#state === 'closed') throw new HsmUnavailableError('the HSM signer is closed');
    try {
      this.#closeSessions();
      // Another instance may already have re-initialised the module since our fault.
      if (lib.generation === seenGeneration || !lib.initialized) lib.reinitialize();
      this.#connect(lib);
      this.#logger.warn({ connection: this.#connection }, 'HSM connection recovered');
    } catch (e) {
      if (this.#state === 'latched' && this.#latched !== undefined) throw this.#latched;
      this.#state = 'broken';
      const rv = pkcs11ReturnValue(e);
      this.#logger.warn({ rv }, 'HSM recovery failed');
      throw e instanceof HsmUnavailableError
        ? e
        : new HsmUnavailableError('the HSM is unavailable', { cause: e, details: { rv } });
    }
  }

  #markBroken(connection: number, e: unknown): void {
    if (this.#state === 'open' && connection === this.#connection) {
      this.#state = 'broken';
      this.#logger.warn(
        { rv: pkcs11ReturnValue(e) },
        'HSM fault; the connection will be recovered',
      );
      // Callers queued for a session of the lost connection fail now rather than wait.
      this.#failWaiters(new HsmUnavailableError('the HSM connection was lost'));
    }
  }

  /** Map a failure of an operation, and mark the connection broken when it is a fault. */
  #fault(e: unknown, session: PooledSession, message: string): Error {
    if (
      e instanceof HsmKeyUnsafeError ||
      e instanceof HsmKeyMissingError ||
      e instanceof HsmDeadlineExceededError
    ) {
      return e;
    }
    this.#markBroken(session.connection, e);
    return this.#mapError(e, message);
  }

  #mapError(e: unknown, message: string): Error {
    if (
      e instanceof HsmUnavailableError ||
      e instanceof HsmPinIncorrectError ||
      e instanceof HsmPinLockedError ||
      e instanceof HsmKeyUnsafeError ||
      e instanceof HsmKeyMissingError
    ) {
      return e;
    }
    return new HsmUnavailableError(message, { cause: e, details: { rv: pkcs11ReturnValue(e) } });
  }

  // --- session pool -------------------------------------------------------------------

  /** A session for a key operation on the main thread (generate, load, destroy). */
  #acquire(): Promise<PooledSession> {
    const s = this.#free.pop();
    if (s !== undefined) return Promise.resolve(s);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  /** Hand a session to the first waiter, or put it back in the pool for the threads. */
  #dispatch(s: PooledSession): void {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      w.resolve(s);
      return;
    }
    this.#free.push(s);
    if (this.#queue.length > 0) this.#scheduleFlush();
  }

  #release(s: PooledSession): void {
    // A session of an older connection is dead: never hand it out again.
    if (s.connection !== this.#connection || this.#state === 'closed') return;
    this.#dispatch(s);
  }

  /** Fail the key operations waiting for a session and the signs waiting for a thread. */
  #failWaiters(error: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
    const queue = this.#queue;
    this.#queue = [];
    for (const req of queue) req.reject(error);
  }

  // --- objects ------------------------------------------------------------------------

  /** Inspect a key on this connection and pin it (its public key, its private handle). */
  #inspect(session: Handle, hsmId: string, alg: KeyAlgorithm): HsmKey {
    const known = this.#pinned.get(hsmId)?.publicJwk;
    const p = this.#library().p;
    const { key, priv } = inspectKey(p, session, hsmId, alg, known, this.#logger);
    this.#pinned.set(hsmId, { alg, label: key.label, publicJwk: key.publicJwk });
    this.#handles.set(hsmId, priv);
    return key;
  }

  /** The private key handle of this connection; re-found (and re-checked) after a fault. */
  #privateHandle(session: Handle, hsmId: string, pinned: Pinned): Handle {
    const h = this.#handles.get(hsmId);
    if (h !== undefined) return h;
    this.#inspect(session, hsmId, pinned.alg);
    const found = this.#handles.get(hsmId);
    if (found === undefined)
      throw new HsmKeyMissingError('the key vanished from the HSM', { details: { hsmId } });
    return found;
  }
}
