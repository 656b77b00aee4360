/**
 * The anchor write key on a PKCS#11 token (the audit token: GRANTOR_AUDIT_PKCS11_* when
 * set, else the main one): a P-256 key pair labelled ANCHOR_KEY_LABEL, private half
 * CKA_SENSITIVE, never extractable. `grantor provision` creates it (`create: true`); the
 * running appliance only finds it. Two signatures per anchored batch, asked for as one list
 * (signDigests), one use of the session at a time. The module is the keys adapter's
 * (library.pkcs11.ts: one load, one C_Initialize per process), and the token is found and
 * logged into the same way (token.pkcs11.ts); a session of an older module generation is
 * re-opened, and one lost to a fault is re-opened once.
 *
 * In the running appliance (`signThread`) the signs run on a signing thread of the keys
 * adapter's kind (signer.thread.pkcs11.ts: C_SignInit and C_Sign off the event loop), so that an HSM's sign latency (a network HSM
 * answers in milliseconds) never stops the appliance's event loop, and the loop does not
 * spend the sign's CPU (3.6% of its busy time at 64 grants in flight, bench/grants.ts).
 * Until the thread listens (it boots in the background on first use) and while a lost one
 * restarts, a sign runs on the event loop as before: the anchor never waits for a boot.
 * A one-shot command (provisioning, the benches' rigs) signs a few times and goes: it starts
 * no thread.
 */
import pkcs11js from 'pkcs11js';
import { HsmDeadlineExceededError, HsmUnavailableError } from '../keys/errors.js';
import { P256_PARAMS, generateSigningKeyPair, type Handle } from '../keys/key-inspection.pkcs11.js';
import { rebuildPkcs11Error } from '../keys/sign-batch.pkcs11.js';
import { SIGNATURE_SLOT, SKIPPED, SignThread } from '../keys/signer.thread.pkcs11.js';
import {
  acquireLibrary,
  pkcs11Code,
  releaseLibrary,
  type Library,
} from '../keys/library.pkcs11.js';
import { findTokenSlot, isPinRefusal, loginUser, refuseUnsafeLogin } from '../keys/token.pkcs11.js';
import { GrantorError } from '../shared/errors.js';
import { ANCHOR_KEY_LABEL, type AnchorWriteKey } from './anchor-key.port.js';
import { AnchorKeyError } from './errors.js';

export interface AnchorKeyTokenConfig {
  readonly modulePath: string;
  readonly tokenLabel: string;
  /** The user PIN. Never logged. */
  readonly pin: string;
}

function isTrue(v: Buffer | undefined): boolean {
  return v !== undefined && v.some((b) => b !== 0);
}

/** CKA_EC_POINT: a DER OCTET STRING around the 65-byte point (or the bare point). */
function point(buf: Buffer): Buffer {
  const raw =
    buf.length === 67 && buf[0] === 0x04 && buf[1] === 65
      ? buf.subarray(2)
      : buf.length === 65
        ? buf
        : undefined;
  if (raw?.[0] !== 0x04) {
    throw new AnchorKeyError('anchor_key_unsafe', 'the anchor write key is not a P-256 point');
  }
  return Buffer.from(raw);
}

/**
 * By default, a sign handed to the thread and not begun within this many ms is skipped
 * there, and fails here.
 */
const THREAD_SIGN_DEADLINE_MS = 10_000;

export class Pkcs11AnchorKey implements AnchorWriteKey {
  readonly #config: AnchorKeyTokenConfig;
  readonly #create: boolean;
  readonly #signThread: boolean;
  readonly #deadlineMs: number;
  #lib: Library | undefined;
  /** The session, and the module generation it was opened in (library.pkcs11.ts). */
  #session: { handle: Handle; generation: number } | undefined;
  #key: { priv: Handle; point: Buffer } | undefined;
  /** A refused PIN: never tried again (each try counts towards the token's lock). */
  #latched: Error | undefined;
  #thread: SignThread | undefined;
  /**
   * The last use of the session queued (a sign, a search): one at a time, since a sign on
   * the thread holds the session while the event loop goes on.
   */
  #signing: Promise<unknown> = Promise.resolve();

  constructor(
    config: AnchorKeyTokenConfig,
    options: { create?: boolean; signThread?: boolean; threadDeadlineMs?: number } = {},
  ) {
    this.#config = config;
    this.#create = options.create === true;
    this.#signThread = options.signThread === true;
    this.#deadlineMs = options.threadDeadlineMs ?? THREAD_SIGN_DEADLINE_MS;
  }

  publicPoint(): Promise<Buffer> {
    return this.#serial(() => Buffer.from(this.#found().point));
  }

  signDigests(digests: readonly Buffer[]): Promise<Buffer[]> {
    const inputs = digests.map((d) => Buffer.from(d));
    if (inputs.length === 0) return Promise.resolve([]);
    return this.#serial(() => this.#sign(inputs));
  }

  async close(): Promise<void> {
    await this.#signing;
    await this.#thread?.close();
    this.#thread = undefined;
    this.#dropSession();
    if (this.#lib !== undefined) releaseLibrary(this.#lib);
    this.#lib = undefined;
  }

  /**
   * Signs each input, in order: on the signing thread once it listens (one batch, one
   * hand-off), else on the event loop.
   */
  async #sign(inputs: readonly Buffer[]): Promise<Buffer[]> {
    const lib = this.#library();
    const session = this.#open();
    const { priv } = this.#found();
    const thread = this.#readyThread();
    if (thread === undefined) {
      return inputs.map((input) => {
        lib.p.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, priv);
        return Buffer.from(lib.p.C_Sign(session, input, Buffer.alloc(64)));
      });
    }
    // In flight for the module: a recovery of the keys adapter waits for it to finish.
    lib.enter();
    try {
      const deadline = Date.now() + this.#deadlineMs;
      const items = inputs.map((data) => ({
        key: priv,
        mechanism: pkcs11js.CKM_ECDSA,
        sha256: false,
        data,
        deadline,
      }));
      const reply = await thread.run(session, items);
      return inputs.map((_input, i) => {
        const length = reply.lengths[i];
        if (length === SKIPPED) throw new HsmDeadlineExceededError(this.#deadlineMs);
        // The module's own error, rebuilt as a sign on the event loop would have thrown it
        // (a PKCS#11 fault, so #retry re-opens the session once), as the keys adapter does.
        if (length !== 64) {
          throw rebuildPkcs11Error(
            reply.error ?? { rv: undefined, name: `the thread returned ${String(length)} bytes` },
          );
        }
        return Buffer.from(reply.sigs.subarray(i * SIGNATURE_SLOT, i * SIGNATURE_SLOT + 64));
      });
    } finally {
      lib.leave();
    }
  }

  /** The signing thread when it listens; started (in the background) when none runs. */
  #readyThread(): SignThread | undefined {
    if (!this.#signThread) return undefined;
    this.#thread ??= new SignThread(this.#config.modulePath);
    const thread = this.#thread;
    if (!thread.running) thread.start().catch(() => undefined);
    return thread.ready ? thread : undefined;
  }

  /** Runs `fn` after every use of the session queued before it (with #retry). */
  #serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.#signing.then(() => this.#retry(fn));
    this.#signing = run.catch(() => undefined);
    return run;
  }

  /** Runs `fn`; after a PKCS#11 fault, re-opens the session and runs it once more. */
  async #retry<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.#latched !== undefined) throw this.#latched;
    try {
      return await fn();
    } catch (e) {
      // Ours (a refused PIN, a missing key) or not PKCS#11's: no second try.
      if (e instanceof GrantorError || pkcs11Code(e) === undefined) throw this.#map(e);
      this.#dropSession();
      try {
        return await fn();
      } catch (again) {
        throw this.#map(again);
      }
    }
  }

  #map(e: unknown): Error {
    if (e instanceof GrantorError) return e;
    // PKCS#11 return values only: never the PIN, never the module's own text.
    const rv = pkcs11Code(e);
    return new HsmUnavailableError('the anchor write key could not be used', {
      ...(rv === undefined ? {} : { details: { rv: `0x${rv.toString(16)}` } }),
      cause: e,
    });
  }

  /** The module, shared with the keys adapter in this process (one C_Initialize). */
  #library(): Library {
    if (this.#lib === undefined) this.#lib = acquireLibrary(this.#config.modulePath);
    this.#lib.initialize();
    return this.#lib;
  }

  /** Forget the session and the key handles found in it, closing it if it is still alive. */
  #dropSession(): void {
    const s = this.#session;
    this.#session = undefined;
    this.#key = undefined;
    if (s === undefined || s.generation !== this.#lib?.generation) return;
    try {
      this.#lib.p.C_CloseSession(s.handle);
    } catch {
      // Already gone with the token.
    }
  }

  /** The logged-in session; a fresh one when the module was re-initialised since. */
  #open(): Handle {
    const lib = this.#library();
    if (this.#session?.generation === lib.generation) return this.#session.handle;
    this.#dropSession();
    const p = lib.p;
    const slot = findTokenSlot(p, this.#config.tokenLabel, 'anchor write key');
    try {
      refuseUnsafeLogin(p, slot);
      const handle = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      try {
        loginUser(p, handle, this.#config.pin);
      } catch (e) {
        p.C_CloseSession(handle);
        throw e;
      }
      this.#session = { handle, generation: lib.generation };
      return handle;
    } catch (e) {
      if (isPinRefusal(e)) this.#latched = e;
      throw e;
    }
  }

  #find(session: Handle, cls: number): Handle[] {
    const p = this.#library().p;
    p.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_LABEL, value: ANCHOR_KEY_LABEL },
      { type: pkcs11js.CKA_CLASS, value: cls },
    ]);
    try {
      return p.C_FindObjects(session, 4);
    } finally {
      p.C_FindObjectsFinal(session);
    }
  }

  /** The key pair by label; created first when asked to and absent. */
  #found(): { priv: Handle; point: Buffer } {
    const session = this.#open();
    if (this.#key !== undefined) return this.#key;
    const p = this.#library().p;
    let privs = this.#find(session, pkcs11js.CKO_PRIVATE_KEY);
    let pubs = this.#find(session, pkcs11js.CKO_PUBLIC_KEY);
    if (privs.length === 0 && pubs.length === 0 && this.#create) {
      this.#generate(session);
      privs = this.#find(session, pkcs11js.CKO_PRIVATE_KEY);
      pubs = this.#find(session, pkcs11js.CKO_PUBLIC_KEY);
    }
    const [priv] = privs;
    const [pub] = pubs;
    if (priv === undefined || pub === undefined) {
      throw new AnchorKeyError(
        'anchor_key_missing',
        `the key store has no anchor write key (label ${ANCHOR_KEY_LABEL}): run \`grantor provision\``,
      );
    }
    if (privs.length > 1 || pubs.length > 1) {
      throw new AnchorKeyError(
        'anchor_key_ambiguous',
        `the key store has more than one key labelled ${ANCHOR_KEY_LABEL}`,
      );
    }
    const attrs = p.C_GetAttributeValue(session, priv, [
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_TOKEN },
    ]);
    const attr = (t: number): Buffer | undefined => {
      const v = attrs.find((a) => a.type === t)?.value;
      return Buffer.isBuffer(v) ? v : undefined;
    };
    // A key that could leave the token would let its holder write the anchor anywhere.
    if (
      !isTrue(attr(pkcs11js.CKA_SENSITIVE)) ||
      isTrue(attr(pkcs11js.CKA_EXTRACTABLE)) ||
      !isTrue(attr(pkcs11js.CKA_TOKEN))
    ) {
      throw new AnchorKeyError(
        'anchor_key_unsafe',
        'the anchor write key is extractable, not sensitive or not a token object',
      );
    }
    const [ec] = p.C_GetAttributeValue(session, pub, [{ type: pkcs11js.CKA_EC_POINT }]);
    if (ec === undefined || !Buffer.isBuffer(ec.value)) {
      throw new AnchorKeyError('anchor_key_missing', 'the anchor write key has no public point');
    }
    this.#key = { priv, point: point(ec.value) };
    return this.#key;
  }

  #generate(session: Handle): void {
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: ANCHOR_KEY_LABEL },
    ];
    const p = this.#library().p;
    generateSigningKeyPair(p, session, pkcs11js.CKM_EC_KEY_PAIR_GEN, P256_PARAMS, common);
  }
}
