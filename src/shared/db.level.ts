/**
 * The appliance's one LevelDB database. Domains keep their data in named sublevels
 * (`db.sublevel('audit')`, `db.sublevel('keys')`, ...) through their own `*.level.ts`
 * adapters; only adapter files import classic-level (lint rule).
 */
import { ClassicLevel, type BatchOperation } from 'classic-level';

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

type BatchOps = BatchOperation<Database, string, string>[];

interface QueuedWrite {
  readonly ops: BatchOps;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

/** The most writes one group carries; the rest wait for the next. */
const MAX_GROUP_WRITES = 256;

/**
 * The synced writes of one database, committed in groups: a synced write that arrives
 * while another group is being written waits for it, and the writes that waited go out
 * together as one batch (one hop to libuv's pool, one fsync). A write still resolves only
 * once its own ops are durable, and a write that arrives with nothing in flight goes out
 * at once, so a lone write waits for nothing. LevelDB groups the writers that meet in it
 * too, but only those already on a pool thread: one grant record per request, each its own
 * job and wake-up, was 6% of the event loop at 64 requests in flight (bench/grants.ts).
 *
 * A group is applied atomically, its writes in the order they were made. When a group
 * fails, each of its writes is tried again on its own, so that one write's failure is
 * never another's: with the disk gone every one fails anyway (puts and deletes of fixed
 * values are idempotent, so a group that reached the log before its error is harmless).
 */
class SyncedWrites {
  readonly #db: Database;
  readonly #queue: QueuedWrite[] = [];
  #writing = false;

  constructor(db: Database) {
    this.#db = db;
  }

  write(ops: BatchOps): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ ops, resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, MAX_GROUP_WRITES);
        try {
          await this.#db.batch(
            group.flatMap((w) => w.ops),
            { sync: true },
          );
          for (const w of group) w.resolve();
        } catch (e) {
          if (group.length === 1) group[0]?.reject(e);
          else for (const w of group) await this.#alone(w);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /** One write of a failed group, tried on its own. */
  async #alone(w: QueuedWrite): Promise<void> {
    try {
      await this.#db.batch(w.ops, { sync: true });
      w.resolve();
    } catch (e) {
      w.reject(e);
    }
  }
}

const syncedWrites = new WeakMap<Database, SyncedWrites>();

/** The group committer of a database's synced writes (one per database). */
function syncedWritesOf(db: Database): SyncedWrites {
  let writes = syncedWrites.get(db);
  if (writes === undefined) {
    writes = new SyncedWrites(db);
    syncedWrites.set(db, writes);
  }
  return writes;
}

/**
 * The base of a store kept in one named sublevel (a room) of the one database, with text
 * keys and values: `sub` reads it, `write` changes it in one batch on the root database,
 * synced unless said otherwise (synced writes are committed in groups: SyncedWrites).
 */
export abstract class LevelRoom {
  readonly #db: Database;
  readonly #synced: SyncedWrites;
  protected readonly sub;

  protected constructor(db: Database, name: string) {
    this.#db = db;
    this.#synced = syncedWritesOf(db);
    this.sub = db.sublevel(name, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  }

  protected async write(ops: readonly RoomOp[], sync = true): Promise<void> {
    const batch = ops.map((op) => ({ ...op, sublevel: this.sub }));
    if (sync) await this.#synced.write(batch);
    else await this.#db.batch(batch, { sync: false });
  }
}
