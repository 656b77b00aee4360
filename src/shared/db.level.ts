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
