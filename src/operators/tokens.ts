/**
 * Operator bearer tokens. A token is `gop_` + a 16-hex id + 43 base64url characters of a
 * 32-byte random secret; the store keeps only SHA-256(secret), compared in constant time.
 * The token itself is shown once, at creation, and never logged.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BadRequestError } from '../shared/errors.js';
import { OperatorTokenNotFoundError, UnauthenticatedError } from './errors.js';
import type { OperatorActor, Role } from './roles.js';
import type { TokenRecord, TokenStore } from './token-store.port.js';

export const TOKEN_PREFIX = 'gop_';
const TOKEN_PATTERN = /^gop_([0-9a-f]{16})([A-Za-z0-9_-]{43})$/;
export const MAX_TOKEN_TTL_SECONDS = 366 * 24 * 3600;
export const DEFAULT_TOKEN_TTL_SECONDS = 90 * 24 * 3600;
// Compared against when the id is unknown, so that an unknown id costs the same as a bad secret.
const DUMMY_HASH = Buffer.alloc(32);

/** What may be shown about a token: everything but the hash. */
export type TokenInfo = Omit<TokenRecord, 'secretHash'>;

export interface CreatedToken {
  /** Shown once. */
  readonly token: string;
  readonly info: TokenInfo;
}

function sha256(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** True if `value` has the shape of an operator token (valid or not). */
export function looksLikeOperatorToken(value: string): boolean {
  return value.startsWith(TOKEN_PREFIX);
}

function info(record: TokenRecord): TokenInfo {
  const { secretHash: _hash, ...rest } = record;
  return rest;
}

export class OperatorTokens {
  constructor(
    private readonly store: TokenStore,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async create(input: {
    readonly role: Role;
    readonly actor: string;
    readonly ttlSeconds?: number;
  }): Promise<CreatedToken> {
    const ttl = input.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_TOKEN_TTL_SECONDS) {
      throw new BadRequestError(`token ttl must be 60..${MAX_TOKEN_TTL_SECONDS} seconds`);
    }
    const actor = input.actor.trim();
    if (actor === '' || actor.length > 128 || !/^[\p{L}\p{N}\p{P}\p{Zs}]+$/u.test(actor)) {
      throw new BadRequestError('actor name must be 1..128 printable characters');
    }
    const idHex = randomBytes(8).toString('hex');
    const secret = randomBytes(32);
    const now = this.clock();
    const record: TokenRecord = {
      id: `tok_${idHex}`,
      role: input.role,
      actor,
      secretHash: sha256(secret).toString('hex'),
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + ttl * 1000).toISOString(),
    };
    await this.store.put(record);
    return { token: `${TOKEN_PREFIX}${idHex}${secret.toString('base64url')}`, info: info(record) };
  }

  async list(): Promise<TokenInfo[]> {
    const records = await this.store.list();
    return records.map(info).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async revoke(id: string): Promise<TokenInfo> {
    const record = await this.store.get(id);
    if (record === undefined) throw new OperatorTokenNotFoundError(id);
    if (record.revokedAt !== undefined) return info(record);
    const revoked: TokenRecord = { ...record, revokedAt: this.clock().toISOString() };
    await this.store.put(revoked);
    return info(revoked);
  }

  /**
   * The operator a bearer token stands for. Every failure is `unauthenticated` with the same
   * message, so a caller learns nothing about which ids exist.
   */
  async authenticate(token: string): Promise<OperatorActor> {
    const m = TOKEN_PATTERN.exec(token);
    const idHex = m?.[1];
    const secretText = m?.[2];
    if (idHex === undefined || secretText === undefined) throw new UnauthenticatedError();
    const secret = Buffer.from(secretText, 'base64url');
    // Only the canonical encoding: two texts must not name the same secret.
    if (secret.length !== 32 || secret.toString('base64url') !== secretText) {
      throw new UnauthenticatedError();
    }
    const record = await this.store.get(`tok_${idHex}`);
    const expected = record === undefined ? DUMMY_HASH : Buffer.from(record.secretHash, 'hex');
    const matches = timingSafeEqual(sha256(secret), expected);
    if (record === undefined || !matches) throw new UnauthenticatedError();
    if (record.revokedAt !== undefined) throw new UnauthenticatedError();
    if (this.clock().getTime() >= Date.parse(record.expiresAt)) throw new UnauthenticatedError();
    return {
      kind: 'operator',
      id: record.id,
      role: record.role,
      name: record.actor,
      credential: 'token',
    };
  }
}
