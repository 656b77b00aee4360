/**
 * Rate limits per client address and per runtime id, token buckets kept in a bounded LRU
 * (memory never grows past `maxEntries` keys, whatever the number of clients; an evicted
 * key starts again with a full bucket). Routes opt in with
 * `config.rateLimit: {bucket, perAddress?, perRuntime?}` (both default true); the limits
 * of each bucket come from the plugin options (configuration: GRANTOR_RATE_LIMIT_*, see
 * src/shared/config.ts). The per-runtime key is the runtime id the request claims *and* the
 * client address (IPv6: per /64, src/shared/address.ts): the runtime routes are not authenticated before their proof is checked,
 * so a budget keyed on the claimed id alone could be spent by anyone (and a runtime
 * starved of challenges or grants); this way only the address that uses a runtime's
 * budget can spend it, and runtimes behind one address keep separate budgets. The address
 * check runs in `onRequest`,
 * before the body is read; the runtime check in `preValidation`, where the runtime id is
 * known (path `:runtimeId`, else a string `runtimeId` member of the body). A bucket with a
 * `perAppliance` limit also has one bucket for the whole appliance (for a shared resource,
 * e.g. its TPM), kept apart from the LRU (no flood of other keys can evict and so refill
 * it) and taken in `preHandler`, after validation, so that requests refused anyway do not
 * spend it. A route may limit only some requests
 * (`when`, decided in `onRequest` from the URL and query). A refusal is 429 `rate_limited`
 * with `Retry-After` in whole seconds and `details.scope`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRouteHookHandler } from 'fastify';
import {
  DEFAULT_RATE_LIMIT_BUCKETS,
  RATE_LIMIT_BUCKETS,
  type BucketLimit,
  type RateLimitBucket,
  type RateLimitSettings,
} from '../../shared/config.js';
import { addressKey } from '../../shared/address.js';
import { GrantorError } from '../../shared/errors.js';
import type { GrantorMetrics } from '../../shared/metrics.js';
import { namedGlobalPlugin } from './plugin.js';

export { RATE_LIMIT_BUCKETS, type BucketLimit, type RateLimitBucket };

export interface RouteRateLimit {
  readonly bucket: RateLimitBucket;
  /** Limit per client address (default true). */
  readonly perAddress?: boolean;
  /** Limit per runtime id (default true). */
  readonly perRuntime?: boolean;
  /** Only requests for which this holds count (default: all); sees the URL and query only. */
  readonly when?: (request: FastifyRequest) => boolean;
}

export type RateLimitScope = 'address' | 'runtime' | 'appliance';

declare module 'fastify' {
  interface FastifyContextConfig {
    rateLimit?: RouteRateLimit;
  }
}

/** Limits per bucket; a bucket left out keeps its default (src/shared/config.ts). */
export type RateLimits = Partial<RateLimitSettings['buckets']>;

export const DEFAULT_RATE_LIMITS: RateLimitSettings['buckets'] = DEFAULT_RATE_LIMIT_BUCKETS;

export type TakeResult =
  { readonly ok: true } | { readonly ok: false; readonly retryAfterSeconds: number };

interface BucketState {
  tokens: number;
  at: number;
}

/** Token buckets by key in an LRU of at most `maxEntries` keys. */
export class RateLimiter {
  readonly #buckets = new Map<string, BucketState>();

  readonly #now: () => number;
  constructor(
    readonly maxEntries = 10_000,
    now: () => number = () => Date.now(),
  ) {
    this.#now = now;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new TypeError('maxEntries >= 1');
  }

  get size(): number {
    return this.#buckets.size;
  }

  take(key: string, limit: BucketLimit): TakeResult {
    const t = this.#now();
    const previous = this.#buckets.get(key);
    const state = previous ?? { tokens: limit.burst, at: t };
    // Refill for the time since the last take (never more than the burst).
    state.tokens = Math.min(limit.burst, state.tokens + ((t - state.at) / 1000) * limit.perSecond);
    state.at = t;
    // Most recently used last: Map keeps insertion order.
    this.#buckets.delete(key);
    this.#buckets.set(key, state);
    if (previous === undefined) this.#evict();
    if (state.tokens >= 1) {
      state.tokens -= 1;
      return { ok: true };
    }
    const wait = limit.perSecond > 0 ? (1 - state.tokens) / limit.perSecond : 3600;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(wait)) };
  }

  #evict(): void {
    while (this.#buckets.size > this.maxEntries) {
      const oldest = this.#buckets.keys().next();
      if (oldest.done === true) return;
      this.#buckets.delete(oldest.value);
    }
  }
}

export class RateLimitedError extends GrantorError {
  constructor(retryAfterSeconds: number, scope: RateLimitScope) {
    super('rate_limited', `too many requests; retry after ${retryAfterSeconds} s`, {
      details: { retryAfterSeconds, scope },
    });
  }
}

export interface RateLimitOptions {
  readonly limits?: RateLimits;
  /** Shared by every bucket and scope; pass one to inspect it (tests) or size it. */
  readonly limiter?: RateLimiter;
  readonly metrics?: Pick<GrantorMetrics, 'rateLimited'>;
  /** Clock of the appliance-wide buckets (tests); the shared limiter has its own. */
  readonly clock?: () => number;
}

export const RATE_LIMIT_PLUGIN = 'grantor-rate-limit';
const MAX_RUNTIME_ID = 128;

function runtimeIdOf(request: FastifyRequest): string | undefined {
  const params = request.params as Record<string, unknown> | undefined;
  const body = request.body as Record<string, unknown> | null | undefined;
  const id =
    params?.runtimeId ?? (typeof body === 'object' && body !== null ? body.runtimeId : undefined);
  // Anything else fails validation right after; it is not a key worth keeping.
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_RUNTIME_ID ? id : undefined;
}

const checkRouteDeclaration: onRouteHookHandler = (route) => {
  const rl = route.config?.rateLimit;
  if (rl !== undefined && !(RATE_LIMIT_BUCKETS as readonly string[]).includes(rl.bucket)) {
    throw new TypeError(`route ${route.url}: unknown rate limit bucket`);
  }
};

async function rateLimitPlugin(app: FastifyInstance, opts: RateLimitOptions): Promise<void> {
  const limits: RateLimitSettings['buckets'] = { ...DEFAULT_RATE_LIMITS, ...opts.limits };
  const limiter = opts.limiter ?? new RateLimiter();
  // One key per bucket at most: never evicted, whatever floods the shared LRU.
  const applianceLimiter = new RateLimiter(RATE_LIMIT_BUCKETS.length, opts.clock);

  const refuse = (
    reply: FastifyReply,
    bucket: RateLimitBucket,
    scope: RateLimitScope,
    retryAfterSeconds: number,
  ): never => {
    opts.metrics?.rateLimited.inc({ bucket, scope });
    void reply.header('retry-after', String(retryAfterSeconds));
    throw new RateLimitedError(retryAfterSeconds, scope);
  };

  app.addHook('onRoute', checkRouteDeclaration);
  app.addHook('onRequest', async (request, reply) => {
    const rl = request.routeOptions.config.rateLimit;
    if (rl === undefined || rl.when?.(request) === false) return;
    if (rl.perAddress !== false) {
      const r = limiter.take(
        `${rl.bucket}|a|${addressKey(request.ip)}`,
        limits[rl.bucket].perAddress,
      );
      if (!r.ok) refuse(reply, rl.bucket, 'address', r.retryAfterSeconds);
    }
    await Promise.resolve();
  });
  app.addHook('preHandler', async (request, reply) => {
    const rl = request.routeOptions.config.rateLimit;
    const whole = rl === undefined ? undefined : limits[rl.bucket].perAppliance;
    if (rl === undefined || whole === undefined || rl.when?.(request) === false) return;
    const r = applianceLimiter.take(rl.bucket, whole);
    if (!r.ok) refuse(reply, rl.bucket, 'appliance', r.retryAfterSeconds);
    await Promise.resolve();
  });
  app.addHook('preValidation', async (request, reply) => {
    const rl = request.routeOptions.config.rateLimit;
    if (rl === undefined || rl.perRuntime === false || rl.when?.(request) === false) return;
    const id = runtimeIdOf(request);
    if (id === undefined) return;
    // Never the claimed id alone: see the module comment.
    const r = limiter.take(
      `${rl.bucket}|r|${addressKey(request.ip)}|${id}`,
      limits[rl.bucket].perRuntime,
    );
    if (!r.ok) refuse(reply, rl.bucket, 'runtime', r.retryAfterSeconds);
    await Promise.resolve();
  });
  await Promise.resolve();
}

/** `await app.register(rateLimit, {limits, metrics})`, before the route plugins. */
export const rateLimit = namedGlobalPlugin(RATE_LIMIT_PLUGIN, rateLimitPlugin);
