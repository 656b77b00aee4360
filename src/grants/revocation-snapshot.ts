/**
 * The signed revocation snapshot (docs/protocol.md §3.1), in the spirit of the IETF OAuth
 * Token Status List (draft-ietf-oauth-status-list: a signed, typed token from the issuer
 * listing status, with `iat`, `exp` and a time to live): what is revoked now within the
 * grant lifetime window, current to the feed's sequence number, as a JWS signed by the
 * active grant key, so a gateway verifies it offline with the JWKS it already trusts for
 * grants. Its own `typ` (`revocations+jwt`) keeps it from ever passing for a grant
 * (`grant+jwt`), and a grant from ever passing for it.
 *
 * Signing costs an HSM operation: a snapshot is re-signed only when the feed moved on or
 * half its lifetime has passed, and concurrent callers share one signature.
 */
import type { SignableClaims } from '../keys/index.js';
import { ConfigError } from '../shared/errors.js';
import { SNAPSHOT_TYP } from '../shared/jws-types.js';
import type { RevocationFeed } from './revocation-feed.js';

export { SNAPSHOT_TYP };

export interface SnapshotSigner {
  /** A compact ES256 JWS with the active grant key (KeyService.signJws). */
  signJws(
    protectedHeader: Readonly<Record<string, unknown>>,
    claims: SignableClaims,
  ): Promise<string>;
}

export interface SignedSnapshot {
  /** The compact JWS. */
  readonly snapshot: string;
  readonly seq: number;
  /** NumericDate. */
  readonly iat: number;
  readonly exp: number;
}

export interface SnapshotSettings {
  /** The appliance id (`iss`). */
  readonly issuer: string;
  /** Lifetime of a snapshot, seconds. Default 300; at most the longest grant lifetime. */
  readonly ttlSeconds?: number;
}

export class RevocationSnapshots {
  readonly #feed: RevocationFeed;
  readonly #signer: SnapshotSigner | undefined;
  readonly #issuer: string;
  readonly #ttl: number;
  #current: SignedSnapshot | undefined;
  #pending: Promise<SignedSnapshot> | undefined;

  constructor(
    feed: RevocationFeed,
    signer: SnapshotSigner | undefined,
    settings: SnapshotSettings,
  ) {
    const ttl = settings.ttlSeconds ?? 300;
    if (!Number.isSafeInteger(ttl) || ttl < 10) {
      throw new ConfigError('grants.revocationSnapshotTtlSeconds', 'must be an integer >= 10');
    }
    this.#feed = feed;
    this.#signer = signer;
    this.#issuer = settings.issuer;
    this.#ttl = ttl;
  }

  /** The current snapshot: reused while the feed has not moved and it is young enough. */
  async current(now: Date): Promise<SignedSnapshot> {
    const nowSec = Math.floor(now.getTime() / 1000);
    const cached = this.#current;
    if (cached !== undefined && nowSec < cached.iat + Math.floor(this.#ttl / 2)) {
      if ((await this.#feed.head()) === cached.seq) return cached;
    }
    this.#pending ??= this.#sign(nowSec).finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #sign(nowSec: number): Promise<SignedSnapshot> {
    if (this.#signer === undefined) {
      throw new ConfigError('grants.keys', 'no signer for revocation snapshots');
    }
    const revoked = await this.#feed.revokedNow(nowSec);
    const exp = nowSec + this.#ttl;
    const claims = {
      iss: this.#issuer,
      iat: nowSec,
      exp,
      ttl: this.#ttl,
      seq: revoked.seq,
      grants: revoked.grants,
      runtimes: revoked.runtimes,
    };
    const snapshot = await this.#signer.signJws({ typ: SNAPSHOT_TYP }, claims);
    const signed = { snapshot, seq: revoked.seq, iat: nowSec, exp };
    this.#current = signed;
    return signed;
  }
}
