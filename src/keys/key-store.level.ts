/** The key store on the appliance's LevelDB (sublevel `keys`, one JSON record per kid). */
import { Check } from 'typebox/value';
import type { Database } from '../shared/db.level.js';
import { KeyStoreCorruptError } from './errors.js';
import { KeyRecordSchema, type KeyRecord, type KeyStore } from './key-store.port.js';

function parse(kid: string, text: string): KeyRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new KeyStoreCorruptError(`key record ${kid} is not JSON`, { cause: e, details: { kid } });
  }
  if (!Check(KeyRecordSchema, value) || value.kid !== kid) {
    throw new KeyStoreCorruptError(`key record ${kid} is not a valid key record`, {
      details: { kid },
    });
  }
  return value;
}

function keysSublevel(db: Database) {
  return db.sublevel('keys', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

export class LevelKeyStore implements KeyStore {
  readonly #keys: ReturnType<typeof keysSublevel>;

  constructor(db: Database) {
    this.#keys = keysSublevel(db);
  }

  async list(): Promise<KeyRecord[]> {
    const out: KeyRecord[] = [];
    for await (const [kid, text] of this.#keys.iterator()) out.push(parse(kid, text));
    return out;
  }

  async get(kid: string): Promise<KeyRecord | undefined> {
    const text = await this.#keys.get(kid);
    return text === undefined ? undefined : parse(kid, text);
  }

  async putAll(records: readonly KeyRecord[]): Promise<void> {
    await this.#keys.batch(
      records.map((r) => ({ type: 'put' as const, key: r.kid, value: JSON.stringify(r) })),
    );
  }
}
