import { describe, expect, it } from 'vitest';
import { SerialQueue } from './queue.js';

class Closed extends Error {}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SerialQueue', () => {
  it('runs one task at a time, in call order', async () => {
    const q = new SerialQueue(() => new Closed());
    let active = 0;
    let maxActive = 0;
    const order: number[] = [];
    const tasks = Array.from({ length: 10 }, (_, i) =>
      q.run(async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await tick();
        order.push(i);
        active--;
        return i * 2;
      }),
    );
    expect(await Promise.all(tasks)).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(order).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(maxActive).toBe(1);
  });

  it('keeps going after a task fails', async () => {
    const q = new SerialQueue(() => new Closed());
    const failed = q.run(() => Promise.reject(new Error('boom')));
    const next = q.run(() => Promise.resolve('ok'));
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe('ok');
  });

  it('close() rejects waiting tasks, lets the running one finish, then closes once', async () => {
    const q = new SerialQueue(() => new Closed());
    let closes = 0;
    let release: () => void = () => undefined;
    const running = q.run(
      () =>
        new Promise<string>((r) => {
          release = () => {
            r('done');
          };
        }),
    );
    const waiting = q.run(() => Promise.resolve('never')).catch((e: unknown) => e);
    await tick();
    const c1 = q.close(() => {
      closes++;
    });
    const c2 = q.close(() => {
      closes++;
    });
    expect(c2).toBe(c1);
    expect(q.closed).toBe(true);
    expect(await waiting).toBeInstanceOf(Closed);
    expect(closes).toBe(0); // still waiting for the running task
    release();
    expect(await running).toBe('done');
    await c1;
    expect(closes).toBe(1);
    await expect(q.run(() => Promise.resolve(1))).rejects.toBeInstanceOf(Closed);
  });
});
