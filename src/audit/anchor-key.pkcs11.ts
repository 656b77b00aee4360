/**
 * The anchor write key on a PKCS#11 token (the audit token: GRANTOR_AUDIT_PKCS11_* when
 * set, else the main one): a P-256 key pair labelled ANCHOR_KEY_LABEL, private half
 * CKA_SENSITIVE, never extractable. `grantor provision` creates it (`create: true`); the
 * running appliance only finds it. One signature per anchored batch: a single session on
 * the event loop is enough (a sign takes well under a millisecond on SoftHSM2), and a
 * session lost to a fault (or to the keys adapter re-initialising the shared module) is
 * re-opened once.
 */
import pkcs11js from 'pkcs11js';
import { HsmPinIncorrectError, HsmPinLockedError, HsmUnavailableError } from '../keys/errors.js';
import { tokenSlot } from '../keys/library.pkcs11.js';
import { GrantorError } from '../shared/errors.js';
import { ANCHOR_KEY_LABEL, AnchorKeyError, type AnchorWriteKey } from './anchor-key.port.js';

const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');

export interface AnchorKeyTokenConfig {
  readonly modulePath: string;
  readonly tokenLabel: string;
  /** The user PIN. Never logged. */
  readonly pin: string;
}

type Handle = Buffer;

function code(e: unknown): number | undefined {
  return e instanceof pkcs11js.Pkcs11Error ? e.code : undefined;
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
  #p: pkcs11js.PKCS11 | undefined;
  #session: Handle | undefined;
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
      const p = this.#lib();
      const session = this.#open();
      const { priv } = this.#found();
      p.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, priv);
      return Buffer.from(p.C_Sign(session, input, Buffer.alloc(64)));
    });
  }

  close(): Promise<void> {
    const p = this.#p;
    const s = this.#session;
    this.#session = undefined;
    this.#key = undefined;
    if (p !== undefined && s !== undefined) {
      try {
        p.C_CloseSession(s);
      } catch {
        // Already gone with the module or the token.
      }
    }
    return Promise.resolve();
  }

  /** Runs `fn`; after a PKCS#11 fault, re-opens the session and runs it once more. */
  async #retry<T>(fn: () => T): Promise<T> {
    if (this.#latched !== undefined) throw this.#latched;
    try {
      return await Promise.resolve().then(fn);
    } catch (e) {
      // Ours (a refused PIN, a missing key) or not PKCS#11's: no second try.
      if (e instanceof GrantorError || code(e) === undefined) throw this.#map(e);
      this.#session = undefined;
      this.#key = undefined;
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
    const rv = code(e);
    return new HsmUnavailableError('the anchor write key could not be used', {
      ...(rv === undefined ? {} : { details: { rv: `0x${rv.toString(16)}` } }),
      cause: e,
    });
  }

  #lib(): pkcs11js.PKCS11 {
    if (this.#p !== undefined) return this.#p;
    const p = new pkcs11js.PKCS11();
    p.load(this.#config.modulePath);
    this.#p = p;
    return p;
  }

  #open(): Handle {
    if (this.#session !== undefined) return this.#session;
    const p = this.#lib();
    try {
      p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      // The keys adapter shares the module in this process.
      if (code(e) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
    }
    // The signer's lookup and error, so that start-up names the label the same way.
    const slot = tokenSlot(p, this.#config.tokenLabel, 'anchor write key');
    const session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      p.C_Login(session, pkcs11js.CKU_USER, this.#config.pin);
    } catch (e) {
      const rv = code(e);
      if (rv !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
        p.C_CloseSession(session);
        if (rv === pkcs11js.CKR_PIN_LOCKED) this.#latched = new HsmPinLockedError();
        if (rv === pkcs11js.CKR_PIN_INCORRECT || rv === pkcs11js.CKR_PIN_LEN_RANGE) {
          this.#latched = new HsmPinIncorrectError();
        }
        throw this.#latched ?? e;
      }
    }
    this.#session = session;
    return session;
  }

  #find(session: Handle, cls: number): Handle[] {
    const p = this.#lib();
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
    if (this.#key !== undefined) return this.#key;
    const p = this.#lib();
    const session = this.#open();
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
    this.#lib().C_GenerateKeyPair(
      session,
      { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
      [
        ...common,
        { type: pkcs11js.CKA_EC_PARAMS, value: P256_PARAMS },
        { type: pkcs11js.CKA_VERIFY, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: false },
      ],
      [
        ...common,
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ],
    );
  }
}
