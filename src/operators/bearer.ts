/**
 * Bearer credentials of the appliance (operator tokens `gop_`, gateway tokens `ggw_`): the
 * prefix, a 16-hex id and 43 base64url characters of a 32-byte random secret. The store
 * keeps only SHA-256 of the secret, compared in constant time; the token is shown once.
 * One home for the format, so the two kinds cannot drift apart in how they are checked.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const ID_AND_SECRET = /^([0-9a-f]{16})([A-Za-z0-9_-]{43})$/;
// Compared against when the id is unknown, so that an unknown id costs the same as a bad secret.
const DUMMY_HASH = Buffer.alloc(32);

const sha256 = (bytes: Buffer): Buffer => createHash('sha256').update(bytes).digest();

export interface MintedBearer {
  readonly idHex: string;
  /** Shown once. */
  readonly token: string;
  /** SHA-256 of the secret, hex: what the store keeps. */
  readonly secretHash: string;
}

/** A new credential with `prefix`. */
export function mintBearer(prefix: string): MintedBearer {
  const idHex = randomBytes(8).toString('hex');
  const secret = randomBytes(32);
  return {
    idHex,
    token: `${prefix}${idHex}${secret.toString('base64url')}`,
    secretHash: sha256(secret).toString('hex'),
  };
}

/** The id and secret a token of `prefix` names; undefined unless it is one, canonically. */
export function parseBearer(
  prefix: string,
  token: string,
): { readonly idHex: string; readonly secret: Buffer } | undefined {
  if (!token.startsWith(prefix)) return undefined;
  const m = ID_AND_SECRET.exec(token.slice(prefix.length));
  const idHex = m?.[1];
  const secretText = m?.[2];
  if (idHex === undefined || secretText === undefined) return undefined;
  const secret = Buffer.from(secretText, 'base64url');
  // Only the canonical encoding: two texts must not name the same secret.
  if (secret.length !== 32 || secret.toString('base64url') !== secretText) return undefined;
  return { idHex, secret };
}

/**
 * Whether `secret` is the one stored as `secretHash` (undefined: no such record), compared in
 * constant time and at the same cost either way.
 */
export function secretMatches(secret: Buffer, secretHash: string | undefined): boolean {
  const expected = secretHash === undefined ? DUMMY_HASH : Buffer.from(secretHash, 'hex');
  return timingSafeEqual(sha256(secret), expected) && secretHash !== undefined;
}

/** Whether a credential expiring at `expiresAt` (RFC 3339) is expired at `now`. */
export const expired = (expiresAt: string, now: Date): boolean =>
  now.getTime() >= Date.parse(expiresAt);
