/**
 * Approval requests on the appliance's LevelDB, sublevel `approvals`: `r!<id>` holds the
 * record (JSON), `t!<target>!<createdAt>!<id>` indexes it by target, `c!<createdAt>!<id>`
 * by creation time, `o!<person>!<id>` by requester while not consumed. A record and its
 * index keys are written in one synced batch.
 */
import { Check } from 'typebox/value';
import type { Database } from '../shared/db.level.js';
import { OperatorStoreCorruptError } from './errors.js';
import {
  requesterOf,
  ApprovalRecordSchema,
  type ApprovalRecord,
  type ApprovalStore,
} from './approval-store.port.js';

function parse(id: string, text: string): ApprovalRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new OperatorStoreCorruptError(`approval ${id} is not JSON`, { cause: e });
  }
  if (!Check(ApprovalRecordSchema, value) || value.id !== id) {
    throw new OperatorStoreCorruptError(`approval ${id} is not a valid record`);
  }
  return value;
}

function approvalsSublevel(db: Database) {
  return db.sublevel('approvals', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

export class LevelApprovalStore implements ApprovalStore {
  readonly #sub: ReturnType<typeof approvalsSublevel>;

  readonly #db: Database;
  constructor(db: Database) {
    this.#db = db;
    this.#sub = approvalsSublevel(db);
  }

  async get(id: string): Promise<ApprovalRecord | undefined> {
    const text = await this.#sub.get(`r!${id}`);
    return text === undefined ? undefined : parse(id, text);
  }

  async put(record: ApprovalRecord): Promise<void> {
    const ops = [
      { key: `r!${record.id}`, value: JSON.stringify(record) },
      { key: `t!${record.target}!${record.createdAt}!${record.id}`, value: record.id },
      { key: `c!${record.createdAt}!${record.id}`, value: record.id },
    ];
    const openKey = `o!${encodeURIComponent(requesterOf(record))}!${record.id}`;
    await this.#db.batch(
      [
        ...ops.map((op) => ({ type: 'put' as const, ...op, sublevel: this.#sub })),
        record.consumedAt === undefined
          ? { type: 'put' as const, key: openKey, value: record.id, sublevel: this.#sub }
          : { type: 'del' as const, key: openKey, sublevel: this.#sub },
      ],
      { sync: true },
    );
  }

  async openBy(person: string): Promise<ApprovalRecord[]> {
    const prefix = `o!${encodeURIComponent(person)}!`;
    const ids: string[] = [];
    for await (const id of this.#sub.values({ gt: prefix, lt: `${prefix}~` })) ids.push(id);
    return this.#resolve(ids);
  }

  async #resolve(ids: readonly string[]): Promise<ApprovalRecord[]> {
    const out: ApprovalRecord[] = [];
    for (const id of ids) {
      const record = await this.get(id);
      if (record === undefined) throw new OperatorStoreCorruptError(`approval index names ${id}`);
      out.push(record);
    }
    return out;
  }

  async byTarget(target: string): Promise<ApprovalRecord[]> {
    const ids: string[] = [];
    for await (const id of this.#sub.values({ gt: `t!${target}!`, lt: `t!${target}!~` })) {
      ids.push(id);
    }
    return this.#resolve(ids);
  }

  async list(limit: number): Promise<ApprovalRecord[]> {
    const ids: string[] = [];
    for await (const id of this.#sub.values({ gt: 'c!', lt: 'c!~', reverse: true, limit })) {
      ids.push(id);
    }
    return this.#resolve(ids);
  }
}
