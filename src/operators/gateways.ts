/**
 * Enrolled gateways: the enforcement points that redeem grants and report what they
 * executed. A gateway is created by an operator, bound to the audiences (`aud`) it may
 * redeem for, and proves itself with a bearer token `ggw_` + a 16-hex id + 43 base64url
 * characters of a 32-byte secret (the store keeps only SHA-256 of the secret, compared in
 * constant time; the token is shown once). Without this, anyone who saw a grant id could
 * burn the grant before the real gateway ran it, and the log could not name who ran what.
 *
 * One operator enrolls or revokes a gateway (audited first): a gateway can only spend
 * grants already issued for its audiences, never obtain one, so enrolling it widens no
 * runtime's power; revoking only removes power.
 *
 * Every grant decision asks which gateways serve its audience (the Cedar context): that is
 * answered from an index by audience held in memory, loaded once from the store and changed
 * here, right after the store, by every enrollment and revocation (the only writers: the
 * database is one process's). A store that fails answers `gateway_store_unavailable` (503).
 */
import { BadRequestError } from '../shared/errors.js';
import { holdsLoneSurrogate } from '../shared/jcs.js';
import { GrantorError } from '../shared/errors.js';
import {
  GatewayNotFoundError,
  GatewayStoreUnavailableError,
  GatewayUnauthenticatedError,
} from './errors.js';
import { byActor, NO_EVENTS, type CredentialEventSink } from './events.js';
import {
  MAX_GATEWAY_AUDIENCES,
  type GatewayRecord,
  type GatewayStore,
} from './gateway-store.port.js';
import { expired, mintBearer, parseBearer, secretMatches } from './bearer.js';
import { checkTtl } from './tokens.js';

export const GATEWAY_TOKEN_PREFIX = 'ggw_';
const NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** What may be shown about a gateway: everything but the hash. */
export type GatewayInfo = Omit<GatewayRecord, 'secretHash'>;

/** An authenticated gateway, as the grant routes see it. */
export interface GatewayIdentity {
  readonly kind: 'gateway';
  /** `gw_<16 hex>`: named in every redeem and outcome entry. */
  readonly id: string;
  readonly name: string;
  readonly audiences: readonly string[];
}

export interface EnrolledGateway {
  /** Shown once. */
  readonly token: string;
  readonly gateway: GatewayInfo;
}

/** True if `value` has the shape of a gateway token (valid or not). */
export function looksLikeGatewayToken(value: string): boolean {
  return value.startsWith(GATEWAY_TOKEN_PREFIX);
}

function info(record: GatewayRecord): GatewayInfo {
  const { secretHash: _hash, ...rest } = record;
  return rest;
}

function checkInput(input: EnrollGatewayInput): { audiences: string[]; ttl: number } {
  if (!NAME.test(input.name)) {
    throw new BadRequestError('a gateway name is 1..64 letters, digits or ._-');
  }
  const audiences = [...new Set(input.audiences)].sort();
  if (audiences.length === 0 || audiences.length > MAX_GATEWAY_AUDIENCES) {
    throw new BadRequestError(`a gateway has 1..${MAX_GATEWAY_AUDIENCES} audiences`);
  }
  for (const a of audiences) {
    if (a.length === 0 || a.length > 128 || holdsLoneSurrogate(a)) {
      throw new BadRequestError('an audience is 1..128 characters of Unicode text');
    }
  }
  return { audiences, ttl: checkTtl(input.ttlSeconds) };
}

export interface EnrollGatewayInput {
  readonly name: string;
  readonly audiences: readonly string[];
  readonly ttlSeconds?: number;
}

/** Who enrolls or revokes: an authenticated operator, or `cli` offline. */
export type GatewayAdmin = { readonly id: string; readonly person: string } | 'cli';

const by = (admin: GatewayAdmin): string => (admin === 'cli' ? 'cli' : byActor(admin));

/** What the audience index keeps of a gateway: enough to answer `serving`. */
type Serving = Pick<GatewayRecord, 'id' | 'name' | 'expiresAt'>;

/** Unrevoked gateways by audience, then by id. */
class AudienceIndex {
  readonly #byAudience = new Map<string, Map<string, Serving>>();

  constructor(records: readonly GatewayRecord[]) {
    for (const r of records) this.set(r);
  }

  /** The record as now stored: indexed under its audiences while unrevoked. */
  set(r: GatewayRecord): void {
    for (const audience of r.audiences) {
      let ids = this.#byAudience.get(audience);
      if (r.revokedAt !== undefined) {
        ids?.delete(r.id);
        if (ids?.size === 0) this.#byAudience.delete(audience);
        continue;
      }
      if (ids === undefined) {
        ids = new Map();
        this.#byAudience.set(audience, ids);
      }
      ids.set(r.id, { id: r.id, name: r.name, expiresAt: r.expiresAt });
    }
  }

  serving(audience: string, now: Date): { id: string; name: string }[] {
    const out: { id: string; name: string }[] = [];
    for (const g of this.#byAudience.get(audience)?.values() ?? []) {
      if (!expired(g.expiresAt, now)) out.push({ id: g.id, name: g.name });
    }
    return out;
  }
}

/** A store failure as the 503 it is; the registry's own refusals pass as they are. */
async function stored<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof GrantorError) throw e;
    throw new GatewayStoreUnavailableError({ cause: e });
  }
}

export class GatewayRegistry {
  /** Loaded once (again after a failed load); then changed by enroll and revoke. */
  #index: Promise<AudienceIndex> | undefined;

  readonly #store: GatewayStore;
  readonly #clock: () => Date;
  readonly #onEvent: CredentialEventSink;
  constructor(
    store: GatewayStore,
    now: () => number = Date.now,
    onEvent: CredentialEventSink = NO_EVENTS,
  ) {
    this.#store = store;
    this.#clock = () => new Date(now());
    this.#onEvent = onEvent;
  }

  /** Reads every gateway into the audience index (at start; else at the first decision). */
  async load(): Promise<void> {
    await this.#loaded();
  }

  #loaded(): Promise<AudienceIndex> {
    if (this.#index === undefined) {
      const loading = stored(() => this.#store.list()).then(
        (records) => new AudienceIndex(records),
      );
      this.#index = loading;
      loading.catch(() => {
        if (this.#index === loading) this.#index = undefined;
      });
    }
    return this.#index;
  }

  /** Stores `record`, then shows it to the index (after a load under way, if one is). */
  async #put(record: GatewayRecord): Promise<void> {
    await stored(() => this.#store.put(record));
    const index = this.#index;
    if (index === undefined) return;
    // A load under way may have read the record before this write: apply it after.
    await index.then(
      (i) => {
        i.set(record);
      },
      () => undefined,
    );
  }

  /** Enrolls a gateway for `audiences`; audited (`gateway.enrolled`) before it exists. */
  async enroll(input: EnrollGatewayInput, admin: GatewayAdmin): Promise<EnrolledGateway> {
    const { audiences, ttl } = checkInput(input);
    const { idHex, token, secretHash } = mintBearer(GATEWAY_TOKEN_PREFIX);
    const now = this.#clock();
    const record: GatewayRecord = {
      id: `gw_${idHex}`,
      name: input.name,
      audiences,
      secretHash,
      createdAt: now.toISOString(),
      createdBy: by(admin),
      expiresAt: new Date(now.getTime() + ttl * 1000).toISOString(),
    };
    await this.#onEvent({
      type: 'gateway.enrolled',
      subject: record.id,
      by: record.createdBy,
      audiences,
      time: record.createdAt,
    });
    await this.#put(record);
    return { token, gateway: info(record) };
  }

  async get(id: string): Promise<GatewayInfo> {
    const record = await stored(() => this.#store.get(id));
    if (record === undefined) throw new GatewayNotFoundError(id);
    return info(record);
  }

  async list(): Promise<GatewayInfo[]> {
    const records = await stored(() => this.#store.list());
    return records.map(info).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /**
   * The enrolled gateways that hold `audience` now (unrevoked, unexpired): the only ones
   * that can redeem a grant for it. The grant pipeline shows them to policies; answered
   * from the audience index, never the store.
   */
  async serving(audience: string): Promise<{ id: string; name: string }[]> {
    return (await this.#loaded()).serving(audience, this.#clock());
  }

  /** Revokes gateway `id` (audited first); its token fails from the next request on. */
  async revoke(id: string, admin: GatewayAdmin): Promise<GatewayInfo> {
    const record = await stored(() => this.#store.get(id));
    if (record === undefined) throw new GatewayNotFoundError(id);
    if (record.revokedAt !== undefined) return info(record);
    const revoked: GatewayRecord = {
      ...record,
      revokedAt: this.#clock().toISOString(),
      revokedBy: by(admin),
    };
    await this.#onEvent({
      type: 'gateway.revoked',
      subject: id,
      by: revoked.revokedBy ?? 'cli',
      audiences: record.audiences,
      time: revoked.revokedAt ?? '',
    });
    await this.#put(revoked);
    return info(revoked);
  }

  /**
   * The gateway a bearer token stands for. Every failure is `gateway_unauthenticated` with
   * the same message, so a caller learns nothing about which ids exist.
   */
  async authenticate(token: string): Promise<GatewayIdentity> {
    const parsed = parseBearer(GATEWAY_TOKEN_PREFIX, token);
    if (parsed === undefined) throw new GatewayUnauthenticatedError();
    const record = await stored(() => this.#store.get(`gw_${parsed.idHex}`));
    // Compared whether or not the id exists (bearer.ts).
    const matches = secretMatches(parsed.secret, record?.secretHash);
    if (record === undefined || !matches) throw new GatewayUnauthenticatedError();
    if (record.revokedAt !== undefined) throw new GatewayUnauthenticatedError();
    if (expired(record.expiresAt, this.#clock())) throw new GatewayUnauthenticatedError();
    return { kind: 'gateway', id: record.id, name: record.name, audiences: record.audiences };
  }
}
