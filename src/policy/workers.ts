/**
 * Cedar decisions on worker threads, so that the event loop that serves HTTP, verifies
 * requests and commits the audit log does not also evaluate every policy (Cedar was about
 * a quarter of its busy time at load, see docs/grants.md).
 *
 * The engine (engine.ts) stays the one owner of the policy set: it reads, validates, hashes
 * and activates sets, builds each request and interprets each answer; a worker only holds
 * preparsed copies of the sets and answers `statefulIsAuthorized`. A reload reaches every
 * worker before it can be used: the engine hands each activated set to `onActivate`
 * listeners before the swap, and a worker handles its messages in order, so any decision
 * posted after the swap is evaluated after the new set is loaded, and any decision posted
 * before it against the set it was begun with (the two slots of the engine alternate, and
 * a slot is only overwritten by the activation after next).
 *
 * Fails closed: a worker that dies fails the decisions it held (policy_unavailable) and is
 * replaced with the active set (after a pause if it died young); a decision not answered
 * within `deadlineMs` fails the same way and has its worker replaced (it may be stuck); a
 * worker answers a decision only from the very set the engine names (slot and hash), so a
 * set it failed to load never decides under another set's name. The worker's body is
 * policy.worker.ts, a real source file (src/shared/worker.ts starts it from the sources
 * and from the build alike).
 *
 * Decisions travel in batches: those begun in one turn of the event loop go out together
 * in one message (posted from `setImmediate`, or before a reload's `load` message so that
 * the order of loads and decisions is the order they were begun in), and the worker answers
 * a batch with one message. Each message costs a structured clone and a thread wake-up;
 * one per decision was the largest item of the event loop's profile (docs/grants.md).
 */
import type { Worker } from 'node:worker_threads';
import { startWorker, workerEntry } from '../shared/worker.js';
import type { AuthorizationAnswer, StatefulAuthorizationCall } from './cedar.port.js';
import type { PolicyEngine, PolicySlot } from './engine.js';
import { PolicyUnavailableError } from './errors.js';
import type { PolicyDecision, PolicyRequest } from './types.js';

export interface PolicyWorkersOptions {
  /** Worker threads (at least 1). */
  readonly threads: number;
  /** Most time a decision may take on a worker before it fails closed. Default 2000 ms. */
  readonly deadlineMs?: number;
  /** A worker could not load a set it was handed (it then answers nothing with it). */
  readonly onLoadError?: (message: string) => void;
  /** A worker stopped (crash, deadline, recycle) and is being replaced. */
  readonly onExit?: (exit: { code: number; error: unknown }) => void;
}

/** One decision for a worker: the Cedar call and the set its slot must hold. */
export interface DecisionCall {
  readonly id: number;
  readonly call: StatefulAuthorizationCall;
  /** The set the call's slot must hold. */
  readonly hash: string;
}

/** A worker's outcome of one decision: Cedar's answer, or why it gave none. */
export type DecisionOutcome =
  | { readonly id: number; readonly answer: AuthorizationAnswer }
  | { readonly id: number; readonly error: string };

/** Messages to a worker (policy.worker.ts). */
export type ToWorker =
  | { readonly kind: 'load'; readonly slot: PolicySlot }
  | { readonly kind: 'decide'; readonly calls: readonly DecisionCall[] };

/** Messages from a worker: `decided` answers one `decide` message, in its order. */
export type FromWorker =
  | { readonly kind: 'ready' }
  | { readonly kind: 'loaded'; readonly slotId: string; readonly error?: string }
  | { readonly kind: 'decided'; readonly outcomes: readonly DecisionOutcome[] };

const WORKER_ENTRY = workerEntry('policy.worker', import.meta.url);

/** A worker that dies sooner than this after its start is replaced this much later. */
const RESPAWN_PAUSE_MS = 1000;

/** The most time a worker may take to start (load its code and Cedar) before it is replaced. */
const BOOT_DEADLINE_MS = 30_000;

interface Pending {
  readonly resolve: (answer: AuthorizationAnswer) => void;
  readonly reject: (error: Error) => void;
  /** The message it went out in, which holds its deadline. */
  readonly sent: Sent;
}

/** One `decide` message: its decisions share the deadline of the moment it was posted. */
interface Sent {
  readonly ids: readonly number[];
  /** Its decisions not yet settled. */
  open: number;
  /** The deadline, armed once the worker is ready (its start is not the decisions'). */
  timer: NodeJS.Timeout | undefined;
}

/** A decision begun and not yet posted. */
interface Queued extends DecisionCall {
  readonly resolve: (answer: AuthorizationAnswer) => void;
  readonly reject: (error: Error) => void;
}

interface Thread {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
  /** The messages with decisions still pending, for their deadlines. */
  readonly sent: Set<Sent>;
  /** The worker said it listens: deadlines run from here on. */
  ready: boolean;
  /** False once it exited: it takes no decision while its replacement is on the way. */
  alive: boolean;
}

export class PolicyWorkers {
  readonly #engine: PolicyEngine;
  readonly #deadlineMs: number;
  readonly #onLoadError: (message: string) => void;
  readonly #onExit: (exit: { code: number; error: unknown }) => void;
  readonly #threads: Thread[] = [];
  /** The last set handed out: what a replacement worker loads. */
  #current: PolicySlot | undefined;
  #nextId = 0;
  /** Decisions begun in this turn of the event loop, posted together by #flush. */
  #queue: Queued[] = [];
  #flushScheduled = false;
  #closed = false;
  #replaced = 0;
  #messages = 0;

  private constructor(engine: PolicyEngine, options: PolicyWorkersOptions) {
    if (!Number.isSafeInteger(options.threads) || options.threads < 1) {
      throw new RangeError('policy workers: threads must be an integer >= 1');
    }
    this.#engine = engine;
    this.#deadlineMs = options.deadlineMs ?? 2000;
    this.#onLoadError = options.onLoadError ?? (() => undefined);
    this.#onExit = options.onExit ?? (() => undefined);
    for (let i = 0; i < options.threads; i++) this.#threads.push(this.#spawn());
  }

  /** Starts the workers and has them follow the engine's sets (the active one first). */
  static start(engine: PolicyEngine, options: PolicyWorkersOptions): PolicyWorkers {
    const workers = new PolicyWorkers(engine, options);
    engine.onActivate((slot) => {
      workers.#load(slot);
    });
    return workers;
  }

  /** `PolicyEngine.decide`, evaluated on the least busy worker. */
  decide(req: PolicyRequest): Promise<PolicyDecision> {
    return this.#engine.decideWith(req, (call, hash) => this.#evaluate(call, hash));
  }

  /**
   * Resolves when every worker has started or the boot deadline has passed (a worker that
   * has not started by then is being replaced; decisions fail closed meanwhile).
   */
  started(): Promise<void> {
    return new Promise((resolve) => {
      const deadline = Date.now() + BOOT_DEADLINE_MS;
      const check = (): void => {
        if (this.#closed || this.#threads.every((t) => t.ready) || Date.now() >= deadline) {
          resolve();
          return;
        }
        setTimeout(check, 20);
      };
      check();
    });
  }

  /** Workers replaced after dying (for tests and metrics). */
  get replaced(): number {
    return this.#replaced;
  }

  /** `decide` messages posted to workers (for tests and metrics). */
  get messages(): number {
    return this.#messages;
  }

  /**
   * Replaces every worker (each is replaced as it exits, with the active set): decisions
   * they held fail closed. For an engine suspected of a fault, and for the tests.
   */
  async recycle(): Promise<void> {
    await Promise.all(this.#threads.map((t) => t.worker.terminate()));
  }

  /** Terminates the workers; decisions still held fail closed. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#failQueued('the policy workers are closing');
    const threads = this.#threads.splice(0);
    for (const t of threads) this.#failAll(t, 'the policy workers are closing');
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  #load(slot: PolicySlot): void {
    if (this.#closed) return;
    // Decisions begun before this set go out before it: a worker handles its messages in
    // order, so they are evaluated while their slot still holds the set they were begun with.
    this.#flush();
    this.#current = slot;
    for (const t of this.#threads) this.#post(t, { kind: 'load', slot });
  }

  #evaluate(call: StatefulAuthorizationCall, hash: string): Promise<AuthorizationAnswer> {
    if (this.#closed) {
      return Promise.reject(new PolicyUnavailableError('the policy workers are closed'));
    }
    // None alive: fail closed at once (a dead worker never takes a decision).
    if (!this.#threads.some((t) => t.alive)) {
      return Promise.reject(new PolicyUnavailableError('no policy worker is running'));
    }
    const id = ++this.#nextId;
    return new Promise<AuthorizationAnswer>((resolve, reject) => {
      this.#queue.push({ id, call, hash, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => {
          this.#flush();
        });
      }
    });
  }

  /** Posts the queued decisions, one message per worker, to the least busy workers. */
  #flush(): void {
    this.#flushScheduled = false;
    if (this.#queue.length === 0) return;
    const queued = this.#queue;
    this.#queue = [];
    // The least busy of the ready workers; one still starting only when none is ready; a
    // dead one never (none alive: fail closed).
    const load = (t: Thread, extra: number): number => (t.ready ? 0 : 1e9) + t.pending.size + extra;
    const alive = this.#threads.filter((t) => t.alive);
    if (alive.length === 0) {
      for (const q of queued) q.reject(new PolicyUnavailableError('no policy worker is running'));
      return;
    }
    const shares = new Map<Thread, Queued[]>();
    for (const q of queued) {
      let target: Thread | undefined;
      for (const t of alive) {
        if (
          target === undefined ||
          load(t, shares.get(t)?.length ?? 0) < load(target, shares.get(target)?.length ?? 0)
        ) {
          target = t;
        }
      }
      if (target === undefined) continue; // alive is not empty
      const share = shares.get(target);
      if (share === undefined) shares.set(target, [q]);
      else share.push(q);
    }
    for (const [target, share] of shares) this.#send(target, share);
  }

  #send(target: Thread, share: readonly Queued[]): void {
    const sent: Sent = { ids: share.map((q) => q.id), open: share.length, timer: undefined };
    for (const q of share) {
      target.pending.set(q.id, { resolve: q.resolve, reject: q.reject, sent });
    }
    target.sent.add(sent);
    // On a worker still starting, the decisions wait at most its start and their deadline.
    this.#arm(target, sent, target.ready ? 0 : BOOT_DEADLINE_MS);
    this.#messages += 1;
    this.#post(target, {
      kind: 'decide',
      calls: share.map(({ id, call, hash }) => ({ id, call, hash })),
    });
  }

  #arm(target: Thread, sent: Sent, extraMs = 0): void {
    clearTimeout(sent.timer);
    sent.timer = setTimeout(() => {
      target.sent.delete(sent);
      for (const id of sent.ids) {
        const p = target.pending.get(id);
        if (p === undefined) continue;
        target.pending.delete(id);
        p.reject(
          new PolicyUnavailableError('the policy engine did not decide within its deadline'),
        );
      }
      // A worker past a deadline may be stuck: replace it (its exit fails the rest).
      void target.worker.terminate();
    }, this.#deadlineMs + extraMs);
  }

  #post(thread: Thread, message: ToWorker): void {
    thread.worker.postMessage(message);
  }

  #spawn(): Thread {
    const worker = startWorker(WORKER_ENTRY, {
      // A wedged worker must not keep the process alive.
      stdout: false,
      stderr: false,
    });
    worker.unref();
    const thread: Thread = {
      worker,
      pending: new Map(),
      sent: new Set(),
      ready: false,
      alive: true,
    };
    const boot = setTimeout(() => {
      if (!thread.ready) void worker.terminate();
    }, BOOT_DEADLINE_MS).unref();
    worker.on('message', (m: FromWorker) => {
      if (m.kind === 'ready') {
        clearTimeout(boot);
        thread.ready = true;
        for (const sent of thread.sent) this.#arm(thread, sent);
        return;
      }
      if (m.kind === 'loaded') {
        if (m.error !== undefined) this.#onLoadError(`${m.slotId}: ${m.error}`);
        return;
      }
      for (const o of m.outcomes) {
        const p = thread.pending.get(o.id);
        if (p === undefined) continue; // past its deadline: nobody waits for it
        thread.pending.delete(o.id);
        this.#settled(thread, p.sent);
        if ('answer' in o) p.resolve(o.answer);
        else
          p.reject(
            new PolicyUnavailableError('the policy engine failed', { details: { error: o.error } }),
          );
      }
    });
    let failure: unknown;
    worker.on('error', (e: unknown) => {
      failure = e; // 'exit' follows and does the work
    });
    const spawnedAt = Date.now();
    worker.on('exit', (code) => {
      thread.alive = false;
      clearTimeout(boot);
      this.#failAll(thread, 'a policy worker stopped');
      if (this.#closed || !this.#threads.includes(thread)) return;
      this.#onExit({ code, error: failure });
      // One that dies young is replaced after a pause, not in a tight loop.
      const replace = (): void => {
        const at = this.#threads.indexOf(thread);
        if (at < 0 || this.#closed) return;
        this.#threads[at] = this.#spawn();
        this.#replaced += 1;
      };
      if (Date.now() - spawnedAt < RESPAWN_PAUSE_MS) setTimeout(replace, RESPAWN_PAUSE_MS).unref();
      else replace();
    });
    // A replacement starts with the active set (the first workers get it from onActivate).
    if (this.#current !== undefined) this.#post(thread, { kind: 'load', slot: this.#current });
    return thread;
  }

  /** Disarms a message's deadline once none of its decisions is pending. */
  #settled(thread: Thread, sent: Sent): void {
    sent.open -= 1;
    if (sent.open > 0) return;
    clearTimeout(sent.timer);
    thread.sent.delete(sent);
  }

  #failAll(thread: Thread, message: string): void {
    for (const sent of thread.sent) clearTimeout(sent.timer);
    thread.sent.clear();
    for (const p of thread.pending.values()) p.reject(new PolicyUnavailableError(message));
    thread.pending.clear();
  }

  #failQueued(message: string): void {
    const queued = this.#queue;
    this.#queue = [];
    for (const q of queued) q.reject(new PolicyUnavailableError(message));
  }
}
