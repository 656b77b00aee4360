/**
 * The appliance's grant-signing keys, fetched from its JWKS endpoint (PROTOCOL.md §3,
 * `GET /.well-known/jwks.json`) and cached for the answer's `Cache-Control: max-age`.
 * An unknown `kid` triggers a refresh (a rotation may have happened), at most once per
 * `minRefreshIntervalSeconds`, so forged kids cannot turn the gateway into a load generator.
 */
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { GrantAlgInvalidError, GrantKidUnknownError, JwksUnavailableError } from './errors.js';
import { parseStrictJson, type JsonValue } from './strict-json.js';
import { endpointUrl } from './url.js';
import { ConfigError } from '../shared/errors.js';

/** A key that may verify grants: EC P-256, `alg: ES256`, public only. */
export interface VerificationKey {
  readonly kid: string;
  readonly jwk: Readonly<{ kty: 'EC'; crv: 'P-256'; x: string; y: string }>;
  readonly key: CryptoKey;
}

/** Where the verifier gets keys: a JwksClient, or a fixed set for tests and air gaps. */
export interface KeySource {
  /**
   * The ES256 key with this kid. Throws GrantKidUnknownError (no such key),
   * GrantAlgInvalidError (the key is not an ES256 public key) or JwksUnavailableError.
   */
  getKey(kid: string): Promise<VerificationKey>;
}

export interface JwksClientOptions {
  /** The JWKS URL (https, or http to loopback). */
  readonly url: string;
  readonly fetch?: typeof fetch;
  /** Clock in epoch milliseconds. */
  readonly now?: () => number;
  /** Least time between two fetches triggered by unknown kids or failures. Default 30. */
  readonly minRefreshIntervalSeconds?: number;
  /** Cache lifetime when the answer has no usable max-age. Default 300. */
  readonly defaultMaxAgeSeconds?: number;
  /** Upper bound on any max-age. Default 86400. */
  readonly maxMaxAgeSeconds?: number;
  /** Per-fetch deadline. Default 5000. */
  readonly timeoutMs?: number;
  /** Largest JWKS document accepted. Default 256 KiB. */
  readonly maxBytes?: number;
}

type Entry =
  | { readonly usable: true; readonly key: VerificationKey }
  | { readonly usable: false; readonly why: string };

interface Cache {
  readonly entries: ReadonlyMap<string, Entry>;
  readonly expiresAt: number;
}

function isRecord(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** max-age from a Cache-Control header; 0 for no-store/no-cache; undefined if absent. */
export function maxAgeSeconds(cacheControl: string | null): number | undefined {
  if (cacheControl === null) return undefined;
  let maxAge: number | undefined;
  for (const raw of cacheControl.split(',')) {
    const directive = raw.trim().toLowerCase();
    if (directive === 'no-store' || directive === 'no-cache') return 0;
    const m = /^max-age=(?:"?)([0-9]{1,10})(?:"?)$/.exec(directive);
    if (m?.[1] !== undefined) maxAge = Number(m[1]);
  }
  return maxAge;
}

async function toEntry(kid: string, jwk: { [key: string]: JsonValue }): Promise<Entry> {
  // Private key material in a JWKS is a misconfiguration; never use such an entry.
  if ('d' in jwk) return { usable: false, why: 'the JWKS entry carries private key material' };
  if (jwk.alg !== 'ES256') return { usable: false, why: 'the key is not an ES256 key' };
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') return { usable: false, why: 'not a P-256 key' };
  if (jwk.use !== undefined && jwk.use !== 'sig')
    return { usable: false, why: 'not a signing key' };
  const { x, y } = jwk;
  if (typeof x !== 'string' || typeof y !== 'string') return { usable: false, why: 'no x/y' };
  const publicJwk = { kty: 'EC', crv: 'P-256', x, y } as const;
  try {
    const key = await importJWK(publicJwk as JWK, 'ES256');
    if (key instanceof Uint8Array) return { usable: false, why: 'not an asymmetric key' };
    return { usable: true, key: { kid, jwk: publicJwk, key } };
  } catch {
    return { usable: false, why: 'the key does not import (not a point on P-256?)' };
  }
}

/** Parses a JWKS document; a document that is not a key set, or repeats a kid, is refused. */
export async function parseJwks(text: string): Promise<Map<string, Entry>> {
  let doc: JsonValue;
  try {
    doc = parseStrictJson(text);
  } catch (cause) {
    throw new JwksUnavailableError('the JWKS is not valid JSON', { cause });
  }
  const keys = isRecord(doc) ? doc.keys : undefined;
  if (!Array.isArray(keys)) throw new JwksUnavailableError('the JWKS has no "keys" array');
  const entries = new Map<string, Entry>();
  for (const jwk of keys) {
    if (!isRecord(jwk) || typeof jwk.kid !== 'string') continue;
    if (entries.has(jwk.kid)) {
      throw new JwksUnavailableError(`the JWKS lists kid ${jwk.kid} twice`);
    }
    entries.set(jwk.kid, await toEntry(jwk.kid, jwk));
  }
  return entries;
}

function seconds(key: string, value: number | undefined, fallback: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v < 0 || v > max) throw new ConfigError(key, `must be in [0, ${max}]`);
  return v;
}

export class JwksClient implements KeySource {
  readonly #url: URL;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #minRefreshMs: number;
  readonly #defaultMaxAge: number;
  readonly #maxMaxAge: number;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  #cache: Cache | undefined;
  #lastAttemptAt = Number.NEGATIVE_INFINITY;
  #inFlight: Promise<Cache> | undefined;
  #fetches = 0;

  constructor(options: JwksClientOptions) {
    this.#url = endpointUrl('jwks.url', options.url);
    this.#fetch = options.fetch ?? fetch;
    this.#now = options.now ?? Date.now;
    this.#minRefreshMs =
      seconds('jwks.minRefreshIntervalSeconds', options.minRefreshIntervalSeconds, 30, 3600) * 1000;
    this.#maxMaxAge = seconds('jwks.maxMaxAgeSeconds', options.maxMaxAgeSeconds, 86_400, 604_800);
    this.#defaultMaxAge = seconds(
      'jwks.defaultMaxAgeSeconds',
      options.defaultMaxAgeSeconds,
      300,
      this.#maxMaxAge,
    );
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#maxBytes = options.maxBytes ?? 256 * 1024;
  }

  /** How many fetches were started (for operators and tests). */
  get fetchCount(): number {
    return this.#fetches;
  }

  async getKey(kid: string): Promise<VerificationKey> {
    let cache = this.#cache;
    let fresh = false;
    if (cache === undefined || this.#now() >= cache.expiresAt) {
      cache = await this.#refresh();
      fresh = true;
    }
    let entry = cache.entries.get(kid);
    if (entry === undefined && !fresh && this.#now() - this.#lastAttemptAt >= this.#minRefreshMs) {
      // The appliance may have rotated keys since the last fetch.
      cache = await this.#refresh();
      entry = cache.entries.get(kid);
    }
    if (entry === undefined) throw new GrantKidUnknownError(`no key with kid ${kid} in the JWKS`);
    if (!entry.usable) throw new GrantAlgInvalidError(`key ${kid}: ${entry.why}`);
    return entry.key;
  }

  /** Fetches now (coalesced with a fetch in flight, rate-limited after failures). */
  #refresh(): Promise<Cache> {
    if (this.#inFlight !== undefined) return this.#inFlight;
    const now = this.#now();
    if (now - this.#lastAttemptAt < this.#minRefreshMs && this.#cache === undefined) {
      return Promise.reject(
        new JwksUnavailableError('the JWKS could not be fetched recently; retry later'),
      );
    }
    if (now - this.#lastAttemptAt < this.#minRefreshMs && this.#cache !== undefined) {
      // Rate-limited: an expired cache is only refetched once per interval; until then it
      // is unavailable rather than trusted past its max-age.
      if (now >= this.#cache.expiresAt) {
        return Promise.reject(new JwksUnavailableError('the cached JWKS expired; refetch pending'));
      }
      return Promise.resolve(this.#cache);
    }
    this.#lastAttemptAt = now;
    this.#fetches++;
    const p = this.#fetchOnce().finally(() => {
      this.#inFlight = undefined;
    });
    this.#inFlight = p;
    return p;
  }

  async #fetchOnce(): Promise<Cache> {
    let response: Response;
    try {
      response = await this.#fetch(this.#url, {
        headers: { accept: 'application/json' },
        redirect: 'error',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (cause) {
      throw new JwksUnavailableError('the JWKS endpoint is unreachable', { cause });
    }
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new JwksUnavailableError(`the JWKS endpoint answered ${response.status}`);
    }
    const declared = Number(response.headers.get('content-length') ?? '0');
    if (declared > this.#maxBytes) {
      await response.body?.cancel();
      throw new JwksUnavailableError('the JWKS is too large');
    }
    let text: string;
    try {
      text = await response.text();
    } catch (cause) {
      throw new JwksUnavailableError('the JWKS could not be read', { cause });
    }
    if (Buffer.byteLength(text) > this.#maxBytes) {
      throw new JwksUnavailableError('the JWKS is too large');
    }
    const entries = await parseJwks(text);
    const maxAge = Math.min(
      maxAgeSeconds(response.headers.get('cache-control')) ?? this.#defaultMaxAge,
      this.#maxMaxAge,
    );
    // Never cache for less than the refresh interval: no-store would mean a fetch per grant.
    const ttlMs = Math.max(maxAge * 1000, this.#minRefreshMs);
    const cache: Cache = { entries, expiresAt: this.#now() + ttlMs };
    this.#cache = cache;
    return cache;
  }
}

/** A fixed key set (no network): for tests, air-gapped gateways, or pinned keys. */
export async function staticKeySource(jwks: string): Promise<KeySource> {
  const entries = await parseJwks(jwks);
  return {
    getKey(kid) {
      const entry = entries.get(kid);
      if (entry === undefined) return Promise.reject(new GrantKidUnknownError(`no key ${kid}`));
      if (!entry.usable)
        return Promise.reject(new GrantAlgInvalidError(`key ${kid}: ${entry.why}`));
      return Promise.resolve(entry.key);
    },
  };
}
