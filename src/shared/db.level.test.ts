/** The rooms' synced writes, committed in groups (db.level.ts, SyncedWrites). */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LevelRoom, openDatabase, type Database, type RoomOp } from './db.level.js';
import { tempDirs } from './testing/temp-dirs.js';

class Room extends LevelRoom {
  constructor(db: Database, name = 'room') {
    super(db, name);
  }
  put(key: string, value: string, sync = true): Promise<void> {
    return this.write([{ type: 'put', key, value }], sync);
  }
  change(ops: readonly RoomOp[]): Promise<void> {
    return this.write(ops);
  }
  read(key: string): Promise<string | undefined> {
    return this.sub.get(key);
  }
}

const tmp = tempDirs('grantor-db-level-');
const opened: Database[] = [];

async function fresh(): Promise<Database> {
  const db = await openDatabase(await tmp.make());
  opened.push(db);
  return db;
}

afterEach(async () => {
  vi.restoreAllMocks();
  for (const db of opened.splice(0)) if (db.status === 'open') await db.close();
  await tmp.removeAll();
});

/** Every db.batch call: how many ops and whether it was synced. */
function spyBatches(db: Database): { ops: number; sync: boolean }[] {
  const calls: { ops: number; sync: boolean }[] = [];
  const batch = db.batch.bind(db) as (ops: unknown[], options: { sync?: boolean }) => Promise<void>;
  vi.spyOn(db, 'batch').mockImplementation(((ops: unknown[], options: { sync?: boolean }) => {
    calls.push({ ops: ops.length, sync: options.sync === true });
    return batch(ops, options);
  }) as unknown as Database['batch']);
  return calls;
}

describe('synced writes of a database', () => {
  it('commits concurrent writes, of every room, in fewer synced batches than writes', async () => {
    const db = await fresh();
    const calls = spyBatches(db);
    const a = new Room(db, 'a');
    const b = new Room(db, 'b');
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).put(`k${i}`, `v${i}`)),
    );
    // The first goes out alone (nothing was in flight); the 39 that waited go out as one.
    expect(calls).toEqual([
      { ops: 1, sync: true },
      { ops: 39, sync: true },
    ]);
    expect(await a.read('k0')).toBe('v0');
    expect(await b.read('k39')).toBe('v39');
    expect(await a.read('k39')).toBeUndefined();
  });

  it('sends a lone write at once, in the same turn', async () => {
    const db = await fresh();
    const calls = spyBatches(db);
    const write = new Room(db).put('k', 'v');
    expect(calls).toEqual([{ ops: 1, sync: true }]);
    await write;
  });

  it('applies a group in the order of its writes', async () => {
    const db = await fresh();
    const room = new Room(db);
    await room.put('seed', 'x');
    const first = room.put('first', 'x');
    const writes = [
      room.put('k', 'one'),
      room.change([{ type: 'del', key: 'k' }]),
      room.put('k', 'two'),
      room.change([
        { type: 'put', key: 'j', value: 'a' },
        { type: 'del', key: 'seed' },
      ]),
    ];
    await Promise.all([first, ...writes]);
    expect(await room.read('k')).toBe('two');
    expect(await room.read('j')).toBe('a');
    expect(await room.read('seed')).toBeUndefined();
  });

  it('fails only the write that fails, not the others of its group', async () => {
    const db = await fresh();
    const calls = spyBatches(db);
    const room = new Room(db);
    const first = room.put('first', '1');
    const good = room.put('good', '2');
    // A key the database refuses: the group's batch fails, then each is tried alone.
    const bad = room.put(null as unknown as string, '3');
    const late = room.put('late', '4');
    const results = await Promise.allSettled([first, good, bad, late]);
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    const reason = (results[2] as PromiseRejectedResult).reason as { code?: string };
    expect(reason.code).toBe('LEVEL_INVALID_KEY');
    expect(await room.read('good')).toBe('2');
    expect(await room.read('late')).toBe('4');
    // first alone, the group of three, then each of the three alone.
    expect(calls.map((c) => c.ops)).toEqual([1, 3, 1, 1, 1]);
  });

  it('caps a group, and leaves the rest for the next one', async () => {
    const db = await fresh();
    const calls = spyBatches(db);
    const room = new Room(db);
    await Promise.all(Array.from({ length: 600 }, (_, i) => room.put(`k${i}`, 'v')));
    expect(calls.map((c) => c.ops)).toEqual([1, 256, 256, 87]);
  });

  it('rejects every waiting write when the database is closed under them', async () => {
    const db = await fresh();
    const room = new Room(db);
    const writes = Array.from({ length: 5 }, (_, i) => room.put(`k${i}`, 'v'));
    const closing = db.close();
    const results = await Promise.allSettled(writes);
    await closing;
    // The first was under way and may land; the ones that waited find the database closed.
    expect(results.slice(1).every((r) => r.status === 'rejected')).toBe(true);
  });

  it('leaves unsynced writes out of the groups', async () => {
    const db = await fresh();
    const calls = spyBatches(db);
    const room = new Room(db);
    await Promise.all([room.put('a', '1'), room.put('b', '2', false), room.put('c', '3', false)]);
    expect(calls).toEqual([
      { ops: 1, sync: true },
      { ops: 1, sync: false },
      { ops: 1, sync: false },
    ]);
  });
});
