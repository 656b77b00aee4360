/** Operator tokens on the appliance's LevelDB (sublevel `operator-tokens`, JSON per id). */
import { Check } from 'typebox/value';
import type { Database } from '../shared/db.level.js';
import { OperatorStoreCorruptError } from './errors.js';
import { TokenRecordSchema, type TokenRecord, type TokenStore } from './token-store.port.js';

function parse(id: string, text: string): TokenRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new OperatorStoreCorruptError(`operator token ${id} is not JSON`, { cause: e });
  }
  if (!Check(TokenRecordSchema, value) || value.id !== id) {
    throw new OperatorStoreCorruptError(`operator token ${id} is not a valid record`);
  }
  return value;
}

function tokensSublevel(db: Database) {
  return db.sublevel('operator-tokens', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

export class LevelTokenStore implements TokenStore {
  readonly #sub: ReturnType<typeof tokensSublevel>;

  readonly #db: Database;
  constructor(db: Database) {
    this.#db = db;
    this.#sub = tokensSublevel(db);
  }

  async get(id: string): Promise<TokenRecord | undefined> {
    const text = await this.#sub.get(id);
    return text === undefined ? undefined : parse(id, text);
  }

  async put(record: TokenRecord): Promise<void> {
    await this.#db.batch(
      [{ type: 'put', key: record.id, value: JSON.stringify(record), sublevel: this.#sub }],
      { sync: true },
    );
  }

  async list(): Promise<TokenRecord[]> {
    const out: TokenRecord[] = [];
    for await (const [id, text] of this.#sub.iterator()) out.push(parse(id, text));
    return out;
  }
}
