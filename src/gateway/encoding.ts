/** Strict decoders for what arrives inside a JWS: base64url (RFC 7515 §2), UTF-8, ES256. */

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes unpadded base64url, or undefined. Refuses padding, other alphabets and
 * non-canonical trailing bits (Buffer's decoder would silently skip or accept them), so a
 * token has exactly one encoding.
 */
export function decodeBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

export { es256SignatureProblem, toLowS } from '../shared/es256.js';
