/**
 * The appliance's one LevelDB database. Domains keep their data in named sublevels
 * (`db.sublevel('audit')`, `db.sublevel('keys')`, ...) through their own `*.level.ts`
 * adapters; only adapter files import classic-level (lint rule).
 */
import { ClassicLevel } from 'classic-level';

export type Database = ClassicLevel;

export async function openDatabase(path: string): Promise<Database> {
  const db = new ClassicLevel<string, string>(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await db.open();
  return db;
}

function codeOf(e: unknown): unknown {
  return typeof e === 'object' && e !== null && 'code' in e ? e.code : undefined;
}

/**
 * Whether another process (the running server) holds the database's lock. Opens it
 * without creating it and closes it at once; a missing database is not held.
 */
export async function databaseHeld(path: string): Promise<boolean> {
  const db = new ClassicLevel<string, string>(path, { createIfMissing: false });
  try {
    await db.open();
  } catch (e) {
    const cause = e instanceof Error ? e.cause : undefined;
    return codeOf(e) === 'LEVEL_LOCKED' || codeOf(cause) === 'LEVEL_LOCKED';
  }
  await db.close();
  return false;
}

/** A put (with its value) or a delete of one key of a room. */
export type RoomOp =
  | { readonly type: 'put'; readonly key: string; readonly value: string }
  | { readonly type: 'del'; readonly key: string };

/**
 * The base of a store kept in one named sublevel (a room) of the one database, with text
 * keys and values: `sub` reads it, `write` changes it in one batch on the root database,
 * synced unless said otherwise.
 */
export abstract class LevelRoom {
  readonly #db: Database;
  protected readonly sub;

  protected constructor(db: Database, name: string) {
    this.#db = db;
    this.sub = db.sublevel(name, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  }

  protected async write(ops: readonly RoomOp[], sync = true): Promise<void> {
    await this.#db.batch(
      ops.map((op) => ({ ...op, sublevel: this.sub })),
      { sync },
    );
  }
}
