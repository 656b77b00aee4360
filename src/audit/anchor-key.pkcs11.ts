/**
 * The anchor write key on a PKCS#11 token (the audit token: GRANTOR_AUDIT_PKCS11_* when
 * set, else the main one): a P-256 key pair labelled ANCHOR_KEY_LABEL, private half
 * CKA_SENSITIVE, never extractable. `grantor provision` creates it (`create: true`); the
 * running appliance only finds it. One signature per anchored batch: a single session on
 * the event loop is enough (a sign takes well under a millisecond on SoftHSM2). The module
 * is the keys adapter's (library.pkcs11.ts: one load, one C_Initialize per process), and
 * the token is found and logged into the same way (token.pkcs11.ts); a session of an older
 * module generation is re-opened, and one lost to a fault is re-opened once.
 */
import pkcs11js from 'pkcs11js';
import { HsmUnavailableError } from '../keys/errors.js';
import { P256_PARAMS, generateSigningKeyPair, type Handle } from '../keys/key-inspection.pkcs11.js';
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

export class Pkcs11AnchorKey implements AnchorWriteKey {
  readonly #config: AnchorKeyTokenConfig;
  readonly #create: boolean;
  #lib: Library | undefined;
  /** The session, and the module generation it was opened in (library.pkcs11.ts). */
  #session: { handle: Handle; generation: number } | undefined;
  #key: { priv: Handle; point: Buffer } | undefined;
  /** A refused PIN: never tried again (each try counts towards the token's lock). */
  #latched: Error | undefined;

  constructor(config: AnchorKeyTokenConfig, options: { create?: boolean } = {}) {
    this.#config = config;
    this.#create = options.create === true;
  }

  publicPoint(): Promise<Buffer> {
    return this.#retry(() => Buffer.from(this.#found().point));
  }

  signDigest(digest: Buffer): Promise<Buffer> {
    const input = Buffer.from(digest);
    return this.#retry(() => {
      const p = this.#library().p;
      const session = this.#open();
      const { priv } = this.#found();
      p.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, priv);
      return Buffer.from(p.C_Sign(session, input, Buffer.alloc(64)));
    });
  }

  close(): Promise<void> {
    this.#dropSession();
    if (this.#lib !== undefined) releaseLibrary(this.#lib);
    this.#lib = undefined;
    return Promise.resolve();
  }

  /** Runs `fn`; after a PKCS#11 fault, re-opens the session and runs it once more. */
  async #retry<T>(fn: () => T): Promise<T> {
    if (this.#latched !== undefined) throw this.#latched;
    try {
      return await Promise.resolve().then(fn);
    } catch (e) {
      // Ours (a refused PIN, a missing key) or not PKCS#11's: no second try.
      if (e instanceof GrantorError || pkcs11Code(e) === undefined) throw this.#map(e);
      this.#dropSession();
      try {
        return fn();
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
