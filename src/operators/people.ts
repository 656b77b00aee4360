/**
 * The operator registry: the people behind credentials. A person has a stable id, a
 * display name, the roles they may act in and the e-mail addresses their client
 * certificates may name. Ids and e-mail addresses are normalised (NFKC, case folded,
 * trimmed) before they are stored or compared, so `Alice`, `alice ` and a decomposed
 * `José` are one person, not two approvals.
 *
 * Changes through the API are dual-controlled (acts `operator.put`, `operator.remove`);
 * `bootstrap` is the offline path for the very first credential (the CLI with the
 * appliance stopped: whoever can do that already holds the appliance's disk).
 */
import { BadRequestError } from '../shared/errors.js';
import { OperatorIdentifierConflictError, OperatorNotFoundError } from './errors.js';
import { NO_EVENTS, type CredentialEventSink } from './events.js';
import { PERSON_ID_PATTERN, type PersonRecord, type PersonStore } from './person-store.port.js';
import { ROLES, type Role } from './roles.js';

const ID = new RegExp(PERSON_ID_PATTERN, 'u');
const EMAIL = /^[^\s@,]{1,64}@[^\s@,]{1,55}$/u;

/**
 * NFKC, then a full case fold (upper then lower case folds `ß` to `ss` and `ς` to `σ`, as
 * Unicode case folding does), NFKC again (case mapping can denormalise), then trim.
 */
export function normaliseIdentifier(text: string): string {
  return text.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC').trim();
}

/** The normalised person id, or a bad_request naming the rule. */
export function normalisePersonId(text: string): string {
  const id = normaliseIdentifier(text);
  if (!ID.test(id)) {
    throw new BadRequestError('an operator id is 1..128 letters, digits or ._@+- (normalised)');
  }
  return id;
}

function normaliseEmail(text: string): string {
  const email = normaliseIdentifier(text);
  if (!EMAIL.test(email)) throw new BadRequestError(`not an e-mail address: ${email}`);
  return email;
}

/** What an operator-registry change says about a person (the API's body). */
export interface PersonInput {
  readonly displayName: string;
  readonly roles: readonly Role[];
  readonly emails?: readonly string[];
}

function displayName(text: string): string {
  const name = text.normalize('NFKC').trim();
  if (name === '' || name.length > 128 || !/^[\p{L}\p{M}\p{N}\p{P}\p{Zs}]+$/u.test(name)) {
    throw new BadRequestError('a display name is 1..128 printable characters');
  }
  return name;
}

export class People {
  readonly #store: PersonStore;
  readonly #clock: () => Date;
  readonly #onEvent: CredentialEventSink;
  constructor(
    store: PersonStore,
    now: () => number = Date.now,
    onEvent: CredentialEventSink = NO_EVENTS,
  ) {
    this.#store = store;
    this.#clock = () => new Date(now());
    this.#onEvent = onEvent;
  }

  async get(id: string): Promise<PersonRecord> {
    const record = await this.#store.get(normaliseIdentifier(id));
    if (record === undefined) throw new OperatorNotFoundError(id);
    return record;
  }

  async list(): Promise<PersonRecord[]> {
    return (await this.#store.list()).sort((a, b) => a.id.localeCompare(b.id));
  }

  /** The person if registered, not removed, and holding `role`; otherwise undefined. */
  async holding(id: string, role: Role): Promise<PersonRecord | undefined> {
    const record = await this.#store.get(id);
    if (record === undefined || record.removedAt !== undefined) return undefined;
    return record.roles.includes(role) ? record : undefined;
  }

  /**
   * The people a certificate's identifiers name: SAN URIs `urn:grantor:operator:<id>` (ids,
   * already without the prefix) and SAN e-mail addresses. Removed people are not returned.
   */
  async named(ids: readonly string[], emails: readonly string[]): Promise<PersonRecord[]> {
    const wantIds = new Set(ids.map(normaliseIdentifier));
    const wantEmails = new Set(emails.map(normaliseIdentifier));
    if (wantIds.size === 0 && wantEmails.size === 0) return [];
    return (await this.#store.list()).filter(
      (p) =>
        p.removedAt === undefined && (wantIds.has(p.id) || p.emails.some((e) => wantEmails.has(e))),
    );
  }

  /** Check a registry change without making it (the route validates before approvals). */
  async prepare(idText: string, input: PersonInput): Promise<PersonRecord> {
    const id = normalisePersonId(idText);
    const roles = [...new Set(input.roles)];
    if (roles.length === 0 || !roles.every((r) => (ROLES as readonly string[]).includes(r))) {
      throw new BadRequestError('an operator holds at least one known role');
    }
    const emails = [...new Set((input.emails ?? []).map(normaliseEmail))];
    const others = (await this.#store.list()).filter((p) => p.id !== id);
    const taken = emails.find((e) => others.some((p) => p.emails.includes(e)));
    if (taken !== undefined) {
      throw new OperatorIdentifierConflictError(`${taken} already names another operator`, {
        details: { email: taken },
      });
    }
    const now = this.#clock().toISOString();
    const existing = await this.#store.get(id);
    return {
      id,
      displayName: displayName(input.displayName),
      roles: roles.sort(),
      emails: emails.sort(),
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
  }

  /**
   * Register or replace a person (a removed person is registered again); `by` names who
   * (audited first).
   */
  async put(idText: string, input: PersonInput, by = 'cli'): Promise<PersonRecord> {
    const record = await this.prepare(idText, input);
    await this.#onEvent({
      type: 'operator.registered',
      subject: record.id,
      person: record.id,
      by,
      roles: record.roles,
      time: record.updatedAt,
    });
    await this.#store.put(record);
    return record;
  }

  async remove(idText: string, by = 'cli'): Promise<PersonRecord> {
    const record = await this.get(idText);
    if (record.removedAt !== undefined) return record;
    const removed: PersonRecord = { ...record, removedAt: this.#clock().toISOString() };
    await this.#onEvent({
      type: 'operator.removed',
      subject: record.id,
      person: record.id,
      by,
      time: removed.removedAt ?? '',
    });
    await this.#store.put(removed);
    return removed;
  }

  /**
   * Offline bootstrap (CLI, appliance stopped): make sure `id` is registered and holds
   * `role`, registering them with `displayName` (default: the id) if needed.
   */
  async bootstrap(idText: string, role: Role, name?: string): Promise<PersonRecord> {
    const id = normalisePersonId(idText);
    const existing = await this.#store.get(id);
    if (existing !== undefined && existing.removedAt === undefined) {
      if (existing.roles.includes(role)) return existing;
      return this.put(id, { ...existing, roles: [...existing.roles, role] });
    }
    return this.put(id, { displayName: name ?? idText, roles: [role] });
  }
}
