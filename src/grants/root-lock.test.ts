/** The per-root lock: shared holders together, an exclusive one alone, no starvation. */
import { describe, expect, it } from 'vitest';
import { RootLocks } from './root-lock.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

describe('RootLocks', () => {
  it('runs shared holders together, an exclusive one alone, and forgets idle roots', async () => {
    const locks = new RootLocks();
    const log: string[] = [];
    let inside = 0;
    let maxShared = 0;
    const shared = (name: string) =>
      locks.shared('gr_root', async () => {
        inside += 1;
        maxShared = Math.max(maxShared, inside);
        await tick();
        log.push(name);
        inside -= 1;
      });
    const a = shared('a');
    const b = shared('b');
    const x = locks.exclusive('gr_root', async () => {
      expect(inside).toBe(0);
      log.push('x');
      await tick();
    });
    // Arrives while the exclusive one waits: runs after it (no starvation of a revoke).
    const c = shared('c');
    await Promise.all([a, b, x, c]);
    expect(maxShared).toBe(2);
    expect(log).toEqual(['a', 'b', 'x', 'c']);
    expect(locks.size).toBe(0);
  });

  it('other roots are not held up, and a failure releases the lock', async () => {
    const locks = new RootLocks();
    let release: () => void = () => undefined;
    const held = locks.exclusive('gr_one', () => new Promise<void>((r) => (release = r)));
    await locks.shared('gr_two', () => Promise.resolve());
    await expect(
      locks.exclusive('gr_three', () => Promise.reject(new Error('boom'))),
    ).rejects.toThrow('boom');
    await locks.exclusive('gr_three', () => Promise.resolve());
    release();
    await held;
    expect(locks.size).toBe(0);
  });
});
