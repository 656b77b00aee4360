/**
 * `grantor doctor`'s look at a PKCS#11 token, without the signer: the module loads, one
 * token has the label, its PIN is usable (one login, never when the token says the PIN is
 * locked or on its final try, the same rule as the signer), and it has the mechanisms the
 * keys need (CKM_ECDSA for ES256 grants, CKM_EDDSA for the Ed25519 audit key). Each
 * finding is a line for people; the PIN never appears in one.
 */
import pkcs11js from 'pkcs11js';
import { GrantorError } from '../shared/errors.js';
import { CKM_EDDSA } from './key-inspection.pkcs11.js';
import {
  acquireLibrary,
  pkcs11ReturnValue,
  releaseLibrary,
  type Library,
} from './library.pkcs11.js';
import { CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED, findTokenSlot } from './token.pkcs11.js';

export interface TokenCheck {
  readonly ok: boolean;
  /** What was found, or what is wrong. */
  readonly detail: string;
}

export interface HsmCheckConfig {
  readonly modulePath: string;
  readonly tokenLabel: string;
  readonly pin: string;
  /** Which mechanisms to require. */
  readonly needs: readonly ('ES256' | 'EdDSA')[];
}

const MECHANISMS: Readonly<Record<'ES256' | 'EdDSA', { id: number; name: string }>> = {
  ES256: { id: pkcs11js.CKM_ECDSA, name: 'CKM_ECDSA' },
  EdDSA: { id: CKM_EDDSA, name: 'CKM_EDDSA' },
};

function reason(e: unknown): string {
  return pkcs11ReturnValue(e) ?? (e instanceof Error ? e.message : String(e));
}

/** Module, token, PIN and mechanisms, in that order; stops at the first that fails. */
export function checkHsmToken(config: HsmCheckConfig): TokenCheck[] {
  const out: TokenCheck[] = [];
  let lib: Library | undefined;
  try {
    // The signer's loaded module (one dlopen, one C_Initialize per process), not a copy.
    lib = acquireLibrary(config.modulePath);
    lib.initialize();
  } catch (e) {
    if (lib !== undefined) releaseLibrary(lib);
    out.push({ ok: false, detail: `module ${config.modulePath} does not load: ${reason(e)}` });
    return out;
  }
  const p = lib.p;
  try {
    out.push({ ok: true, detail: `module ${config.modulePath} loads` });
    let slot: Buffer;
    try {
      slot = findTokenSlot(p, config.tokenLabel);
    } catch (e) {
      const count = e instanceof GrantorError ? e.details?.tokensWithLabel : undefined;
      if (typeof count !== 'number') throw e;
      const labels = p.C_GetSlotList(true).map((s) => `"${p.C_GetTokenInfo(s).label.trim()}"`);
      out.push({
        ok: false,
        detail:
          count > 1
            ? `more than one token labelled "${config.tokenLabel}"`
            : `no token labelled "${config.tokenLabel}" (tokens: ${labels.length === 0 ? 'none' : labels.join(', ')})`,
      });
      return out;
    }
    const info = p.C_GetTokenInfo(slot);
    out.push({
      ok: true,
      detail: `token "${config.tokenLabel}" (${info.manufacturerID.trim()} ${info.model.trim()})`,
    });
    if ((info.flags & CKF_USER_PIN_LOCKED) !== 0) {
      out.push({ ok: false, detail: 'the user PIN is locked: a security officer must unlock it' });
      return out;
    }
    if ((info.flags & CKF_USER_PIN_FINAL_TRY) !== 0) {
      out.push({
        ok: false,
        detail: 'the user PIN is on its final try: not tried (a wrong one locks the token)',
      });
      return out;
    }
    const session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    try {
      p.C_Login(session, pkcs11js.CKU_USER, config.pin);
      p.C_Logout(session);
      out.push({ ok: true, detail: 'the user PIN logs in' });
    } catch (e) {
      const rv = pkcs11ReturnValue(e);
      if (rv !== 'CKR_USER_ALREADY_LOGGED_IN') {
        out.push({
          ok: false,
          detail: `the token refused the configured user PIN (${rv ?? 'error'})`,
        });
        return out;
      }
    } finally {
      p.C_CloseSession(session);
    }
    const have = new Set(p.C_GetMechanismList(slot));
    const missing = config.needs.filter((n) => !have.has(MECHANISMS[n].id));
    out.push(
      missing.length === 0
        ? {
            ok: true,
            detail: `mechanisms ${config.needs.map((n) => MECHANISMS[n].name).join(', ')}`,
          }
        : {
            ok: false,
            detail: `missing mechanisms ${missing.map((n) => MECHANISMS[n].name).join(', ')}`,
          },
    );
    return out;
  } catch (e) {
    out.push({ ok: false, detail: `the token could not be read: ${reason(e)}` });
    return out;
  } finally {
    releaseLibrary(lib);
  }
}
