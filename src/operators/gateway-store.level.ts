/** Enrolled gateways on the appliance's LevelDB (sublevel `gateways`, JSON per id). */
import { Check } from 'typebox/value';
import type { Database } from '../shared/db.level.js';
import { OperatorStoreCorruptError } from './errors.js';
import {
  GatewayRecordSchema,
  type GatewayRecord,
  type GatewayStore,
} from './gateway-store.port.js';

function parse(id: string, text: string): GatewayRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new OperatorStoreCorruptError(`gateway ${id} is not JSON`, { cause: e });
  }
  if (!Check(GatewayRecordSchema, value) || value.id !== id) {
    throw new OperatorStoreCorruptError(`gateway ${id} is not a valid record`);
  }
  return value;
}

function gatewaysSublevel(db: Database) {
  return db.sublevel('gateways', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

export class LevelGatewayStore implements GatewayStore {
  readonly #sub: ReturnType<typeof gatewaysSublevel>;

  readonly #db: Database;
  constructor(db: Database) {
    this.#db = db;
    this.#sub = gatewaysSublevel(db);
  }

  async get(id: string): Promise<GatewayRecord | undefined> {
    const text = await this.#sub.get(id);
    return text === undefined ? undefined : parse(id, text);
  }

  async put(record: GatewayRecord): Promise<void> {
    await this.#db.batch(
      [{ type: 'put', key: record.id, value: JSON.stringify(record), sublevel: this.#sub }],
      { sync: true },
    );
  }

  async list(): Promise<GatewayRecord[]> {
    const out: GatewayRecord[] = [];
    for await (const [id, text] of this.#sub.iterator()) out.push(parse(id, text));
    return out;
  }
}
