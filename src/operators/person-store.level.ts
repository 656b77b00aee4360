/** The operator registry on the appliance's LevelDB (sublevel `operator-people`, JSON per id). */
import { Check } from 'typebox/value';
import type { Database } from '../shared/db.level.js';
import { OperatorStoreCorruptError } from './errors.js';
import { PersonRecordSchema, type PersonRecord, type PersonStore } from './person-store.port.js';

function parse(id: string, text: string): PersonRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new OperatorStoreCorruptError(`operator ${id} is not JSON`, { cause: e });
  }
  if (!Check(PersonRecordSchema, value) || value.id !== id) {
    throw new OperatorStoreCorruptError(`operator ${id} is not a valid record`);
  }
  return value;
}

function peopleSublevel(db: Database) {
  return db.sublevel('operator-people', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

export class LevelPersonStore implements PersonStore {
  readonly #sub: ReturnType<typeof peopleSublevel>;

  readonly #db: Database;
  constructor(db: Database) {
    this.#db = db;
    this.#sub = peopleSublevel(db);
  }

  async get(id: string): Promise<PersonRecord | undefined> {
    const text = await this.#sub.get(id);
    return text === undefined ? undefined : parse(id, text);
  }

  async put(record: PersonRecord): Promise<void> {
    await this.#db.batch(
      [{ type: 'put', key: record.id, value: JSON.stringify(record), sublevel: this.#sub }],
      { sync: true },
    );
  }

  async list(): Promise<PersonRecord[]> {
    const out: PersonRecord[] = [];
    for await (const [id, text] of this.#sub.iterator()) out.push(parse(id, text));
    return out;
  }
}
