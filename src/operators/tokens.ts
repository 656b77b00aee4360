/**
 * Operator bearer tokens. A token is `gop_` + a 16-hex id + 43 base64url characters of a
 * 32-byte random secret; the store keeps only SHA-256(secret), compared in constant time.
 * The token itself is shown once, at creation, and never logged.
 */
import { expired, mintBearer, parseBearer, secretMatches } from './bearer.js';
import { BadRequestError } from '../shared/errors.js';
import { ForbiddenError, OperatorTokenNotFoundError, UnauthenticatedError } from './errors.js';
import { byActor, NO_EVENTS, type CredentialEventSink } from './events.js';
import { normaliseIdentifier, type People } from './people.js';
import type { OperatorActor, Role } from './roles.js';
import type { TokenRecord, TokenStore } from './token-store.port.js';

export const TOKEN_PREFIX = 'gop_';
export const MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600;
export const DEFAULT_TOKEN_TTL_SECONDS = 90 * 24 * 3600;

/** What may be shown about a token: everything but the hash. */
export type TokenInfo = Omit<TokenRecord, 'secretHash'> & { readonly person: string };

export interface CreatedToken {
  /** Shown once. */
  readonly token: string;
  readonly info: TokenInfo;
}

/** A credential's ttl in seconds (default 90 days), 60 s .. 366 days. */
export function checkTtl(ttlSeconds: number | undefined): number {
  const ttl = ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw new BadRequestError(`token ttl must be 60..${MAX_TOKEN_TTL_SECONDS} seconds`);
  }
  return ttl;
}

/** True if `value` has the shape of an operator token (valid or not). */
export function looksLikeOperatorToken(value: string): boolean {
  return value.startsWith(TOKEN_PREFIX);
}

/** The person a token was issued to (records from before the registry: its actor name). */
function personOf(record: TokenRecord): string {
  return record.person ?? normaliseIdentifier(record.actor);
}

function info(record: TokenRecord): TokenInfo {
  const { secretHash: _hash, ...rest } = record;
  return { ...rest, person: personOf(record) };
}

export class OperatorTokens {
  /** The operator registry: a token stands for a person, who must still hold its role. */
  readonly people: People;

  readonly #store: TokenStore;
  readonly #clock: () => Date;
  readonly #onEvent: CredentialEventSink;
  constructor(
    store: TokenStore,
    now: () => number,
    people: People,
    onEvent: CredentialEventSink = NO_EVENTS,
  ) {
    this.#store = store;
    this.#clock = () => new Date(now());
    this.#onEvent = onEvent;
    this.people = people;
  }

  /**
   * Offline bootstrap (the CLI with the appliance stopped, and tests): registers `actor` as
   * a person holding `role` if needed, then issues the token. The API never calls this: it
   * issues tokens only to the authenticated person (`createForSelf`).
   */
  async create(input: {
    readonly role: Role;
    readonly actor: string;
    readonly ttlSeconds?: number;
  }): Promise<CreatedToken> {
    const ttl = checkTtl(input.ttlSeconds);
    const person = await this.people.bootstrap(input.actor, input.role);
    return this.#issue(person.id, input.role, ttl, 'cli');
  }

  /**
   * A new token for the authenticated person, in one of the roles the registry gives them:
   * nobody can mint a credential for someone else (and so approve as them).
   */
  async createForSelf(
    actor: OperatorActor,
    role: Role,
    ttlSeconds?: number,
  ): Promise<CreatedToken> {
    const ttl = checkTtl(ttlSeconds);
    if ((await this.people.holding(actor.person, role)) === undefined) {
      throw new ForbiddenError(`${actor.person} does not hold role ${role}`, {
        details: { role },
      });
    }
    return this.#issue(actor.person, role, ttl, byActor(actor));
  }

  async #issue(person: string, role: Role, ttl: number, by: string): Promise<CreatedToken> {
    const { idHex, token, secretHash } = mintBearer(TOKEN_PREFIX);
    const now = this.#clock();
    const record: TokenRecord = {
      id: `tok_${idHex}`,
      role,
      actor: person,
      person,
      secretHash,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + ttl * 1000).toISOString(),
    };
    await this.#onEvent({
      type: 'operator.token_created',
      subject: record.id,
      person,
      by,
      roles: [role],
      time: record.createdAt,
    });
    await this.#store.put(record);
    return { token, info: info(record) };
  }

  async get(id: string): Promise<TokenInfo> {
    const record = await this.#store.get(id);
    if (record === undefined) throw new OperatorTokenNotFoundError(id);
    return info(record);
  }

  /**
   * Is token `id` still a valid credential for `person` in `role` at `now` (not revoked,
   * not expired, the person still registered with the role)? Dual control asks this of
   * every approval when it is used.
   */
  async stillValid(id: string, person: string, role: Role): Promise<boolean> {
    const record = await this.#store.get(id);
    if (record === undefined || record.revokedAt !== undefined) return false;
    if (personOf(record) !== person || record.role !== role) return false;
    if (expired(record.expiresAt, this.#clock())) return false;
    return (await this.people.holding(person, role)) !== undefined;
  }

  async list(): Promise<TokenInfo[]> {
    const records = await this.#store.list();
    return records.map(info).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Revoke token `id`; `by` names who (audited first). Takes effect on the next request. */
  async revoke(id: string, by = 'cli'): Promise<TokenInfo> {
    const record = await this.#store.get(id);
    if (record === undefined) throw new OperatorTokenNotFoundError(id);
    if (record.revokedAt !== undefined) return info(record);
    const revoked: TokenRecord = { ...record, revokedAt: this.#clock().toISOString() };
    await this.#onEvent({
      type: 'operator.token_revoked',
      subject: id,
      person: personOf(record),
      by,
      roles: [record.role],
      time: revoked.revokedAt ?? '',
    });
    await this.#store.put(revoked);
    return info(revoked);
  }

  /**
   * The operator a bearer token stands for. Every failure is `unauthenticated` with the same
   * message, so a caller learns nothing about which ids exist.
   */
  async authenticate(token: string): Promise<OperatorActor> {
    const parsed = parseBearer(TOKEN_PREFIX, token);
    if (parsed === undefined) throw new UnauthenticatedError();
    const record = await this.#store.get(`tok_${parsed.idHex}`);
    // Compared whether or not the id exists: an unknown id costs the same as a bad secret.
    const matches = secretMatches(parsed.secret, record?.secretHash);
    if (record === undefined || !matches) throw new UnauthenticatedError();
    if (record.revokedAt !== undefined) throw new UnauthenticatedError();
    if (expired(record.expiresAt, this.#clock())) throw new UnauthenticatedError();
    // The registry decides, on every request: a person removed, or no longer holding the
    // role, is refused at once, whatever tokens they still hold.
    const person = await this.people.holding(personOf(record), record.role);
    if (person === undefined) throw new UnauthenticatedError();
    return {
      kind: 'operator',
      id: record.id,
      person: person.id,
      role: record.role,
      name: person.displayName,
      credential: 'token',
      expiresAt: record.expiresAt,
    };
  }
}
