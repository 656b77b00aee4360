import { describe, expect, it } from 'vitest';
import { KeyedQueue } from './keyed-queue.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A call named `name` that records its start and its end (one tick apart) in `events`. */
const recorded = (events: string[], name: string) => async (): Promise<string> => {
  events.push(`${name} start`);
  await tick();
  events.push(`${name} end`);
  return name;
};

describe('KeyedQueue', () => {
  it('runs calls for one key in call order, one at a time, and forgets idle keys', async () => {
    const q = new KeyedQueue();
    const events: string[] = [];
    const results = await Promise.all([
      q.run('k', recorded(events, 'a')),
      q.run('k', recorded(events, 'b')),
    ]);
    expect(results).toEqual(['a', 'b']);
    expect(events).toEqual(['a start', 'a end', 'b start', 'b end']);
    expect(q.size).toBe(0);
  });

  it('runs different keys concurrently', async () => {
    const q = new KeyedQueue();
    const events: string[] = [];
    await Promise.all([q.run('x', recorded(events, 'x')), q.run('y', recorded(events, 'y'))]);
    expect(events.slice(0, 2)).toEqual(['x start', 'y start']);
  });

  it('a failed call rejects its caller only; the next call for the key still runs', async () => {
    const q = new KeyedQueue();
    const failing = q.run('k', () => Promise.reject(new Error('boom')));
    const next = q.run('k', () => Promise.resolve('after'));
    await expect(failing).rejects.toThrow('boom');
    await expect(next).resolves.toBe('after');
    expect(q.size).toBe(0);
  });
});
