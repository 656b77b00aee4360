/**
 * The claims of a grant (docs/protocol.md §3): one type for the appliance that issues them
 * (src/grants) and the gateways that verify them (src/gateway), and the one RFC 7638
 * thumbprint that binds a grant to its session key (`cnf.jkt`), jose's.
 */
import { calculateJwkThumbprint } from 'jose';

/** The claims of a grant, as §3 defines them. */
export interface GrantClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly iat: number;
  readonly nbf: number;
  readonly exp: number;
  readonly jti: string;
  readonly act: {
    readonly action: string;
    readonly resource: string;
    readonly parametersDigest: string;
  };
  readonly att: {
    readonly akName: string;
    readonly pcrDigest: string;
    readonly resetCount: number;
    readonly restartCount: number;
    readonly attestationId: string | null;
  };
  readonly cnf: { readonly jkt: string };
  readonly lin: { readonly parent: string | null; readonly root: string; readonly depth: number };
  readonly pol: string;
  readonly aud_seq: number;
  readonly aud_hash: string;
}

/** An EC P-256 public JWK (the members RFC 7638 hashes; others are ignored). */
export interface EcPublicJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
}

/** RFC 7638 thumbprint (SHA-256, base64url) of an EC P-256 public JWK. */
export function jwkThumbprint(jwk: EcPublicJwk): Promise<string> {
  const { kty, crv, x, y } = jwk;
  return calculateJwkThumbprint({ kty, crv, x, y }, 'sha256');
}
