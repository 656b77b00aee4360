/**
 * What a gateway that verifies offline knows of revocations (docs/protocol.md §3.1): the
 * signed snapshot, verified with the JWKS alone, then the appliance's feed followed by
 * long-poll. A grant is refused when it, its parent, its root or its runtime is revoked, and
 * every grant is refused when the view was last confirmed current longer ago than the
 * configured bound (fail closed: a view that cannot be confirmed may be missing a revoke).
 */
import { compactVerify, errors as joseErrors } from 'jose';
import { ConfigError, GrantorError } from '../shared/errors.js';
import { SNAPSHOT_TYP } from '../shared/jws-types.js';
import { decodeBase64url, decodeUtf8, es256SignatureProblem } from './encoding.js';
import {
  GrantRevokedError,
  GrantRuntimeRevokedError,
  RevocationFeedUnavailableError,
  RevocationSnapshotInvalidError,
  RevocationViewStaleError,
} from './errors.js';
import type { KeySource } from './jwks.js';
import { parseStrictJson, type JsonValue } from './strict-json.js';
import { endpointUrl } from './url.js';

export { SNAPSHOT_TYP };

/** The claims of a verified snapshot. */
export interface SnapshotClaims {
  readonly iss: string;
  readonly iat: number;
  readonly exp: number;
  readonly seq: number;
  readonly grants: readonly { readonly id: string; readonly exp: number }[];
  readonly runtimes: readonly { readonly id: string; readonly exp: number }[];
}

/** What the revocation check reads of a grant's claims. */
export interface RevocableClaims {
  readonly jti: string;
  readonly sub: string;
  readonly lin: { readonly parent: string | null; readonly root: string };
}

/** The verifier's hook (createGrantVerifier `revocations`). */
export interface RevocationCheck {
  /** Throws GrantRevokedError, GrantRuntimeRevokedError or RevocationViewStaleError. */
  check(claims: RevocableClaims): void;
}

type JsonObject = { [key: string]: JsonValue };
const isObject = (v: JsonValue | undefined): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const count = (v: JsonValue | undefined): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const ID = /^[A-Za-z0-9_-]{1,128}$/;
const KID = /^[A-Za-z0-9._~-]{1,128}$/;

function idList(v: JsonValue | undefined, what: string): { id: string; exp: number }[] {
  if (!Array.isArray(v)) throw new RevocationSnapshotInvalidError(`${what} is not a list`);
  return v.map((item) => {
    if (!isObject(item) || typeof item.id !== 'string' || !ID.test(item.id) || !count(item.exp)) {
      throw new RevocationSnapshotInvalidError(`an entry of ${what} is malformed`);
    }
    return { id: item.id, exp: item.exp };
  });
}

function segment(text: string, what: string): JsonObject {
  const bytes = decodeBase64url(text);
  const json = bytes === undefined ? undefined : decodeUtf8(bytes);
  if (json === undefined)
    throw new RevocationSnapshotInvalidError(`the ${what} is not base64url UTF-8`);
  let value: JsonValue;
  try {
    value = parseStrictJson(json);
  } catch (cause) {
    throw new RevocationSnapshotInvalidError(`the ${what} is not strict JSON`, { cause });
  }
  if (!isObject(value)) throw new RevocationSnapshotInvalidError(`the ${what} is not an object`);
  return value;
}

/**
 * Verifies a snapshot offline with the appliance's keys: guard clauses in a fixed order,
 * each a RevocationSnapshotInvalidError (a key source's own unavailability passes through).
 */
export async function verifyRevocationSnapshot(
  jws: unknown,
  options: { readonly issuer: string; readonly keys: KeySource; readonly now?: () => number },
): Promise<SnapshotClaims> {
  if (typeof jws !== 'string' || jws.length > 4 * 1024 * 1024) {
    throw new RevocationSnapshotInvalidError('the snapshot is not a string of bounded size');
  }
  const token = jws;
  const parts = token.split('.');
  if (parts.length !== 3) throw new RevocationSnapshotInvalidError('not a compact JWS');
  const [h = '', p = '', s = ''] = parts;
  const header = segment(h, 'header');
  if (header.alg !== 'ES256') throw new RevocationSnapshotInvalidError('alg is not ES256');
  // Only alg, typ and kid: nothing that could point at another key or change processing.
  if (Object.keys(header).some((k) => k !== 'alg' && k !== 'typ' && k !== 'kid')) {
    throw new RevocationSnapshotInvalidError('the header has a member other than alg, typ, kid');
  }
  // Its own typ: a grant (grant+jwt) signed by the same key never passes for a snapshot.
  if (header.typ !== SNAPSHOT_TYP)
    throw new RevocationSnapshotInvalidError(`typ is not ${SNAPSHOT_TYP}`);
  if (typeof header.kid !== 'string' || !KID.test(header.kid)) {
    throw new RevocationSnapshotInvalidError('the kid is missing or not a plain key id');
  }
  const signature = decodeBase64url(s);
  const problem = signature === undefined ? 'not base64url' : es256SignatureProblem(signature);
  if (problem !== undefined) throw new RevocationSnapshotInvalidError(`signature: ${problem}`);
  let key;
  try {
    key = await options.keys.getKey(header.kid);
  } catch (cause) {
    // An unknown kid is a foreign key; an unreachable JWKS is the caller's to retry.
    if (cause instanceof GrantorError && cause.code === 'jwks_unavailable') throw cause;
    throw new RevocationSnapshotInvalidError('the snapshot is not signed by a key of the JWKS', {
      cause,
    });
  }
  try {
    await compactVerify(token, key.key, { algorithms: ['ES256'] });
  } catch (cause) {
    const why =
      cause instanceof joseErrors.JWSSignatureVerificationFailed
        ? 'the signature does not verify'
        : 'the snapshot could not be verified';
    throw new RevocationSnapshotInvalidError(why, { cause });
  }
  const claims = segment(p, 'payload');
  if (claims.iss !== options.issuer) {
    throw new RevocationSnapshotInvalidError('the snapshot is from another appliance');
  }
  if (!count(claims.iat) || !count(claims.exp) || !count(claims.seq)) {
    throw new RevocationSnapshotInvalidError('iat, exp or seq is missing or malformed');
  }
  const nowSec = (options.now ?? Date.now)() / 1000;
  if (nowSec >= claims.exp) throw new RevocationSnapshotInvalidError('the snapshot has expired');
  return {
    iss: claims.iss,
    iat: claims.iat,
    exp: claims.exp,
    seq: claims.seq,
    grants: idList(claims.grants, 'grants'),
    runtimes: idList(claims.runtimes, 'runtimes'),
  };
}

export interface RevocationViewOptions {
  /** Base URL of the appliance (https, or http to loopback). */
  readonly applianceUrl: string;
  /** The gateway's token (`ggw_...`): the feed and snapshot are for enrolled gateways. */
  readonly gatewayToken: string;
  /** The appliance id (`iss` of the snapshot). */
  readonly issuer: string;
  /** The JWKS the gateway verifies grants with: the snapshot is signed by one of its keys. */
  readonly keys: KeySource;
  /** Longest time since the view was last confirmed current; past it every grant is refused. Default 60. */
  readonly maxStalenessSeconds?: number;
  /** Long-poll wait asked of the appliance, seconds (0..60). Default 25. */
  readonly waitSeconds?: number;
  /** Pause after a failed fetch before the next, ms. Default 1000. */
  readonly retryMs?: number;
  readonly fetch?: typeof fetch;
  /** Clock in epoch milliseconds. */
  readonly now?: () => number;
}

const GRACE_SECONDS = 300;

/** The revoked set a gateway keeps, from the snapshot and the feed. */
export class RevocationView implements RevocationCheck {
  readonly #base: URL;
  readonly #options: RevocationViewOptions;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #maxStaleMs: number;
  readonly #grants = new Map<string, number>();
  readonly #runtimes = new Map<string, number>();
  #seq: number | undefined;
  #confirmedAt: number | undefined;
  #running: AbortController | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: RevocationViewOptions) {
    this.#base = endpointUrl('revocations.applianceUrl', options.applianceUrl);
    if (options.gatewayToken === '')
      throw new ConfigError('revocations.gatewayToken', 'is required');
    const stale = options.maxStalenessSeconds ?? 60;
    if (!Number.isFinite(stale) || stale <= 0) {
      throw new ConfigError('revocations.maxStalenessSeconds', 'must be > 0');
    }
    const wait = options.waitSeconds ?? 25;
    if (!Number.isSafeInteger(wait) || wait < 0 || wait > 60) {
      throw new ConfigError('revocations.waitSeconds', 'must be an integer in [0, 60]');
    }
    // A view is confirmed once per answer: the long-poll alone ages it up to `wait`, so a
    // bound not above it would refuse every grant between two answers.
    if (stale <= wait) {
      throw new ConfigError(
        'revocations.maxStalenessSeconds',
        `must be more than waitSeconds (${wait})`,
      );
    }
    this.#options = options;
    this.#fetch = options.fetch ?? fetch;
    this.#now = options.now ?? Date.now;
    this.#maxStaleMs = stale * 1000;
  }

  /** The feed sequence number the view is current to (undefined before the snapshot). */
  get seq(): number | undefined {
    return this.#seq;
  }

  /** The feed lag: seconds since the view was last confirmed current (Infinity: never). */
  lagSeconds(): number {
    return this.#confirmedAt === undefined
      ? Number.POSITIVE_INFINITY
      : Math.max(0, (this.#now() - this.#confirmedAt) / 1000);
  }

  /** Sizes of the revoked sets (a metric). */
  get size(): { grants: number; runtimes: number } {
    return { grants: this.#grants.size, runtimes: this.#runtimes.size };
  }

  check(claims: RevocableClaims): void {
    if (this.lagSeconds() * 1000 > this.#maxStaleMs) {
      throw new RevocationViewStaleError(
        'the revocation view is older than its bound: no grant is accepted',
        { details: { lagSeconds: Math.round(this.lagSeconds()) } },
      );
    }
    if (this.#grants.has(claims.jti)) throw new GrantRevokedError('the grant was revoked');
    // The cascade revokes descendants one by one; the lineage is checked as well.
    const { parent, root } = claims.lin;
    if ((parent !== null && this.#grants.has(parent)) || this.#grants.has(root)) {
      throw new GrantRevokedError('a grant above this one was revoked');
    }
    if (this.#runtimes.has(claims.sub)) {
      throw new GrantRuntimeRevokedError('the runtime of the grant was revoked');
    }
  }

  /** Replaces the view with the appliance's signed snapshot. */
  async loadSnapshot(): Promise<void> {
    const sentAt = this.#now();
    const body = await this.#get('v1/revocations/snapshot');
    if (!isObject(body))
      throw new RevocationFeedUnavailableError('the snapshot answer is not an object');
    const claims = await verifyRevocationSnapshot(body.snapshot, {
      issuer: this.#options.issuer,
      keys: this.#options.keys,
      now: this.#now,
    });
    this.#grants.clear();
    this.#runtimes.clear();
    for (const g of claims.grants) this.#grants.set(g.id, g.exp);
    for (const r of claims.runtimes) this.#runtimes.set(r.id, r.exp);
    this.#seq = claims.seq;
    // Current as of its signing, and never later than when it was asked for.
    this.#confirmedAt = Math.min(sentAt, claims.iat * 1000);
  }

  /**
   * One long-poll of the feed from the view's seq (the snapshot first if there is none, or
   * when the appliance answers `revocation_snapshot_required`); reads every page up to the
   * head before the view counts as confirmed.
   */
  async poll(waitSeconds = this.#options.waitSeconds ?? 25): Promise<void> {
    if (this.#seq === undefined) {
      await this.loadSnapshot();
      return;
    }
    let wait = waitSeconds;
    for (;;) {
      const sentAt = this.#now();
      const since = this.#seq;
      let body: JsonValue;
      try {
        body = await this.#get(`v1/revocations?since=${since}&wait=${wait}`, wait * 1000);
      } catch (e) {
        if (e instanceof GrantorError && e.code === 'revocation_snapshot_required') {
          await this.loadSnapshot();
          return;
        }
        throw e;
      }
      const { events, head } = parsePage(body);
      for (const e of events) {
        if (e.seq <= since) continue;
        (e.kind === 'grant' ? this.#grants : this.#runtimes).set(e.id, e.exp);
        this.#seq = e.seq;
      }
      if (this.#seq >= head) {
        this.#confirmedAt = sentAt;
        this.#forgetExpired();
        return;
      }
      wait = 0;
    }
  }

  /** Follows the feed until stop(): the snapshot, then long-polls, pausing after failures. */
  start(onError?: (e: unknown) => void): void {
    if (this.#running !== undefined) return;
    const running = new AbortController();
    this.#running = running;
    this.#loop = (async () => {
      while (!running.signal.aborted) {
        try {
          await this.poll();
        } catch (e) {
          onError?.(e);
          await new Promise((r) => setTimeout(r, this.#options.retryMs ?? 1000));
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running?.abort();
    await this.#loop;
    this.#running = undefined;
    this.#loop = undefined;
  }

  #forgetExpired(): void {
    const nowSec = this.#now() / 1000;
    for (const m of [this.#grants, this.#runtimes]) {
      for (const [id, exp] of m) if (exp + GRACE_SECONDS <= nowSec) m.delete(id);
    }
  }

  async #get(path: string, waitMs = 0): Promise<JsonValue> {
    const url = new URL(path, this.#base);
    let response: Response;
    let text: string;
    try {
      const signals = [AbortSignal.timeout(waitMs + 10_000)];
      if (this.#running !== undefined) signals.push(this.#running.signal);
      response = await this.#fetch(url, {
        headers: { authorization: `Bearer ${this.#options.gatewayToken}` },
        redirect: 'error',
        signal: AbortSignal.any(signals),
      });
      text = await response.text();
    } catch (cause) {
      throw new RevocationFeedUnavailableError('the revocation feed is unreachable', { cause });
    }
    let body: JsonValue;
    try {
      body = parseStrictJson(text);
    } catch (cause) {
      throw new RevocationFeedUnavailableError('the answer is not strict JSON', { cause });
    }
    if (response.status === 200) return body;
    const error = isObject(body) && isObject(body.error) ? body.error : undefined;
    const code = typeof error?.code === 'string' ? error.code : 'no code';
    if (response.status === 410 && code === 'revocation_snapshot_required') {
      throw new GrantorError(code, 'the feed asks for the snapshot');
    }
    throw new RevocationFeedUnavailableError(`the appliance answered ${response.status} ${code}`, {
      details: { status: response.status, code },
    });
  }
}

interface FeedEvent {
  readonly seq: number;
  readonly kind: 'grant' | 'runtime';
  readonly id: string;
  readonly exp: number;
}

function parsePage(body: JsonValue): { events: FeedEvent[]; head: number } {
  const bad = (why: string): never => {
    throw new RevocationFeedUnavailableError(`the feed answer is malformed: ${why}`);
  };
  if (!isObject(body) || !Array.isArray(body.events) || !count(body.head)) return bad('shape');
  let last = 0;
  const events = body.events.map((e): FeedEvent => {
    if (!isObject(e) || !count(e.seq) || !count(e.exp) || e.seq <= last) return bad('event');
    last = e.seq;
    const id = e.kind === 'grant' ? e.grantId : e.kind === 'runtime' ? e.runtimeId : undefined;
    if (typeof id !== 'string' || !ID.test(id)) return bad('event id');
    return { seq: e.seq, kind: e.kind === 'grant' ? 'grant' : 'runtime', id, exp: e.exp };
  });
  return { events, head: body.head };
}
