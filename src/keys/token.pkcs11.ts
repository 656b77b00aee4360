/**
 * A token and its user login, shared by every PKCS#11 adapter (the grant and audit key
 * signer, the audit anchor's write key): find the one token with the configured label, and
 * present the user PIN only when the token does not say it is locked or on its final try
 * (a wrong one would lock it). A refused PIN is a typed error the caller latches: it is
 * never presented again by that caller.
 */
import pkcs11js from 'pkcs11js';
import { HsmPinIncorrectError, HsmPinLockedError, HsmUnavailableError } from './errors.js';
import type { Handle } from './key-inspection.pkcs11.js';
import { pkcs11Code, pkcs11ReturnValue } from './library.pkcs11.js';

// CK_TOKEN_INFO flags: never present a PIN the token says is locked or on its final try.
export const CKF_USER_PIN_FINAL_TRY = 0x20000;
export const CKF_USER_PIN_LOCKED = 0x40000;

/**
 * The slot of the one token labelled `tokenLabel` (the wording startup-cause.ts names);
 * `details.tokensWithLabel` counts the tokens that carry it, `use` names the key it is for.
 */
export function findTokenSlot(p: pkcs11js.PKCS11, tokenLabel: string, use?: string): Handle {
  const matches = p
    .C_GetSlotList(true)
    .filter((s) => p.C_GetTokenInfo(s).label.trim() === tokenLabel);
  const slot = matches[0];
  if (slot !== undefined && matches.length === 1) return slot;
  const found = matches.length > 1 ? 'more than one HSM token has' : 'no HSM token has';
  throw new HsmUnavailableError(
    `${found} the configured label${use === undefined ? '' : ` (${use})`}`,
    { details: { tokenLabel, tokensWithLabel: matches.length } },
  );
}

/** Refuses, before any login, a PIN the token says is locked or on its final try. */
export function refuseUnsafeLogin(p: pkcs11js.PKCS11, slot: Handle): void {
  const flags = p.C_GetTokenInfo(slot).flags;
  if ((flags & CKF_USER_PIN_LOCKED) !== 0) throw new HsmPinLockedError();
  if ((flags & CKF_USER_PIN_FINAL_TRY) !== 0) {
    throw new HsmPinIncorrectError({ details: { reason: 'final_try' } });
  }
}

/**
 * C_Login as the user. A refused PIN rejects as HsmPinLockedError or HsmPinIncorrectError
 * (the pkcs11js error names only the return value; it is still not kept as cause); an
 * already logged-in token is fine; any other error is thrown as it came.
 */
export function loginUser(p: pkcs11js.PKCS11, session: Handle, pin: string): void {
  try {
    p.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (e) {
    const rv = pkcs11Code(e);
    if (rv === pkcs11js.CKR_USER_ALREADY_LOGGED_IN) return;
    if (rv === pkcs11js.CKR_PIN_LOCKED) throw new HsmPinLockedError();
    if (
      rv === pkcs11js.CKR_PIN_INCORRECT ||
      rv === pkcs11js.CKR_PIN_INVALID ||
      rv === pkcs11js.CKR_PIN_LEN_RANGE ||
      rv === pkcs11js.CKR_PIN_EXPIRED
    ) {
      throw new HsmPinIncorrectError({ details: { rv: pkcs11ReturnValue(e) } });
    }
    throw e;
  }
}

/** A refused PIN (refuseUnsafeLogin, loginUser): latched by the caller, never retried. */
export function isPinRefusal(e: unknown): e is HsmPinIncorrectError | HsmPinLockedError {
  return e instanceof HsmPinIncorrectError || e instanceof HsmPinLockedError;
}
