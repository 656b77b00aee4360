/**
 * The grant token's claims (docs/protocol.md §3): the key binding (`cnf.jkt`, an RFC 7638
 * thumbprint) and the canonical low-S form of the signature.
 */
import { createHash } from 'node:crypto';
import type { EcSessionJwk } from '../attestation/index.js';
import { HsmUnavailableError } from '../keys/index.js';
import { toLowS } from '../shared/es256.js';

/** RFC 7638 thumbprint of an EC P-256 public JWK, base64url. */
export function jwkThumbprint(jwk: EcSessionJwk): string {
  const members = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`;
  return createHash('sha256').update(members, 'utf8').digest('base64url');
}

/**
 * The JWS with its ES256 signature in low-S form (s <= n/2). The keys service already
 * signs low-S; this keeps the pipeline's output canonical whatever KeyService it is given.
 */
export function lowS(jws: string): string {
  const parts = jws.split('.');
  const sig = Buffer.from(parts[2] ?? '', 'base64url');
  if (parts.length !== 3 || sig.length !== 64) {
    throw new HsmUnavailableError('the HSM returned a malformed ES256 signature');
  }
  const fixed = Buffer.from(toLowS(sig)).toString('base64url');
  return `${parts[0] ?? ''}.${parts[1] ?? ''}.${fixed}`;
}
