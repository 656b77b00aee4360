/**
 * The port to the HSM. Keys are named by their PKCS#11 CKA_ID (hex); the adapter finds
 * (and after a fault re-finds) the objects by that id and never exposes a handle.
 */

export type KeyAlgorithm = 'ES256' | 'EdDSA';

/** The public half of a key, as a JWK without kid/alg/use. */
export type PublicJwk =
  | { readonly kty: 'EC'; readonly crv: 'P-256'; readonly x: string; readonly y: string }
  | { readonly kty: 'OKP'; readonly crv: 'Ed25519'; readonly x: string };

export interface HsmKey {
  /** CKA_ID, lowercase hex. */
  readonly hsmId: string;
  /** CKA_LABEL. */
  readonly label: string;
  readonly alg: KeyAlgorithm;
  readonly publicJwk: PublicJwk;
}

export interface HsmSigner {
  /** Initialise the module, find the token by label, open the session pool and log in. */
  open(): Promise<void>;
  /** Generate a non-extractable, sensitive token key pair and check its attributes. */
  generate(alg: KeyAlgorithm, label: string): Promise<HsmKey>;
  /**
   * Find a key by CKA_ID, check that it cannot leave the HSM (HsmKeyUnsafeError otherwise)
   * and return its public half. The adapter pins this public key: a later re-find (after
   * a fault) that yields a different key is refused.
   */
  load(hsmId: string, alg: KeyAlgorithm): Promise<HsmKey>;
  /**
   * Sign with a loaded key. ES256: `data` is the message (the adapter hashes it with
   * SHA-256) and the result is the JOSE r‖s form (64 bytes). EdDSA: pure Ed25519 over
   * `data` (64 bytes). Fails with HsmUnavailableError (or a subclass) on any fault.
   */
  sign(hsmId: string, data: Uint8Array): Promise<Uint8Array>;
  /** Destroy both objects of a key on the token. */
  destroy(hsmId: string): Promise<void>;
  /** An open, logged-in session on the token (recovers first when a fault was seen). */
  ready(): Promise<{ ok: boolean; reason?: string }>;
  /** Idempotent. */
  close(): Promise<void>;
}
