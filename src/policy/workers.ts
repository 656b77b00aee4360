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
 * set it failed to load never decides under another set's name. The worker code is a plain JavaScript string run with `eval: true` (as the signing
 * threads are), so it runs under tsx, vitest and the compiled build alike.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
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

type ToWorker =
  | { readonly kind: 'load'; readonly slot: PolicySlot }
  | {
      readonly kind: 'decide';
      readonly id: number;
      readonly call: StatefulAuthorizationCall;
      /** The set the call's slot must hold. */
      readonly hash: string;
    };

type FromWorker =
  | { readonly kind: 'loaded'; readonly slotId: string; readonly error?: string }
  | { readonly kind: 'decided'; readonly id: number; readonly answer: AuthorizationAnswer }
  | { readonly kind: 'failed'; readonly id: number; readonly error: string };

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const cedar = require(workerData.cedarPath);
// Slot id -> hash of the set it holds. A failed load forgets the slot: cedar keeps the
// previous content under that id, which must never decide in the new set's name.
const loaded = new Map();
const failures = (answer) =>
  answer.type === 'failure' ? answer.errors.map((e) => e.message).join('; ') : undefined;
parentPort.on('message', (m) => {
  if (m.kind === 'load') {
    let error;
    try {
      error = failures(cedar.preparseSchema(m.slot.schemaName, m.slot.schema)) ??
        failures(cedar.preparsePolicySet(m.slot.slotId, m.slot.policies));
    } catch (e) {
      error = String((e && e.message) || e);
    }
    if (error === undefined) loaded.set(m.slot.slotId, m.slot.hash);
    else loaded.delete(m.slot.slotId);
    parentPort.postMessage({ kind: 'loaded', slotId: m.slot.slotId, error });
    return;
  }
  if (loaded.get(m.call.preparsedPolicySetId) !== m.hash) {
    parentPort.postMessage({ kind: 'failed', id: m.id, error: 'this worker does not hold that policy set' });
    return;
  }
  let answer;
  try {
    answer = cedar.statefulIsAuthorized(m.call);
  } catch (e) {
    parentPort.postMessage({ kind: 'failed', id: m.id, error: String((e && e.message) || e) });
    return;
  }
  parentPort.postMessage({ kind: 'decided', id: m.id, answer });
});
`;

/** A worker that dies sooner than this after its start is replaced this much later. */
const RESPAWN_PAUSE_MS = 1000;

interface Pending {
  readonly resolve: (answer: AuthorizationAnswer) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface Thread {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
}

export class PolicyWorkers {
  readonly #engine: PolicyEngine;
  readonly #deadlineMs: number;
  readonly #onLoadError: (message: string) => void;
  readonly #onExit: (exit: { code: number; error: unknown }) => void;
  readonly #cedarPath: string;
  readonly #threads: Thread[] = [];
  /** The last set handed out: what a replacement worker loads. */
  #current: PolicySlot | undefined;
  #nextId = 0;
  #closed = false;
  #replaced = 0;

  private constructor(engine: PolicyEngine, options: PolicyWorkersOptions) {
    if (!Number.isSafeInteger(options.threads) || options.threads < 1) {
      throw new RangeError('policy workers: threads must be an integer >= 1');
    }
    this.#engine = engine;
    this.#deadlineMs = options.deadlineMs ?? 2000;
    this.#onLoadError = options.onLoadError ?? (() => undefined);
    this.#onExit = options.onExit ?? (() => undefined);
    this.#cedarPath = createRequire(import.meta.url).resolve('@cedar-policy/cedar-wasm/nodejs');
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

  /** Workers replaced after dying (for tests and metrics). */
  get replaced(): number {
    return this.#replaced;
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
    const threads = this.#threads.splice(0);
    for (const t of threads) this.#failAll(t, 'the policy workers are closing');
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  #load(slot: PolicySlot): void {
    if (this.#closed) return;
    this.#current = slot;
    for (const t of this.#threads) this.#post(t, { kind: 'load', slot });
  }

  #evaluate(call: StatefulAuthorizationCall, hash: string): Promise<AuthorizationAnswer> {
    let thread: Thread | undefined;
    for (const t of this.#threads) {
      if (thread === undefined || t.pending.size < thread.pending.size) thread = t;
    }
    if (thread === undefined || this.#closed) {
      return Promise.reject(new PolicyUnavailableError('the policy workers are closed'));
    }
    const target = thread;
    const id = ++this.#nextId;
    return new Promise<AuthorizationAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        target.pending.delete(id);
        reject(new PolicyUnavailableError('the policy engine did not decide within its deadline'));
        // A worker past a deadline may be stuck: replace it (its exit fails the rest).
        void target.worker.terminate();
      }, this.#deadlineMs);
      target.pending.set(id, { resolve, reject, timer });
      this.#post(target, { kind: 'decide', id, call, hash });
    });
  }

  #post(thread: Thread, message: ToWorker): void {
    thread.worker.postMessage(message);
  }

  #spawn(): Thread {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { cedarPath: this.#cedarPath },
      // A wedged worker must not keep the process alive.
      stdout: false,
      stderr: false,
    });
    worker.unref();
    const thread: Thread = { worker, pending: new Map() };
    worker.on('message', (m: FromWorker) => {
      if (m.kind === 'loaded') {
        if (m.error !== undefined) this.#onLoadError(`${m.slotId}: ${m.error}`);
        return;
      }
      const p = thread.pending.get(m.id);
      if (p === undefined) return; // past its deadline: nobody waits for it
      thread.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.kind === 'decided') p.resolve(m.answer);
      else
        p.reject(
          new PolicyUnavailableError('the policy engine failed', { details: { error: m.error } }),
        );
    });
    let failure: unknown;
    worker.on('error', (e: unknown) => {
      failure = e; // 'exit' follows and does the work
    });
    const spawnedAt = Date.now();
    worker.on('exit', (code) => {
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

  #failAll(thread: Thread, message: string): void {
    for (const p of thread.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new PolicyUnavailableError(message));
    }
    thread.pending.clear();
  }
}
