import { describe, expect, it } from 'vitest';
import { overlay } from './overlay.js';

class Counter {
  #count = 0;
  readonly label = 'counter';
  bump(by: number): number {
    this.#count += by;
    return this.#count;
  }
  get count(): number {
    return this.#count;
  }
  twice(by: number): number {
    this.bump(by);
    return this.bump(by);
  }
}

/** A member read as a value, as a caller that keeps a method reference does. */
const member = (view: Counter, key: 'bump' | 'twice'): unknown => Reflect.get(view, key);

describe('overlay', () => {
  it('gives the same forwarder for a method read twice', () => {
    const view = overlay(new Counter(), {});
    expect(member(view, 'bump')).toBe(member(view, 'bump'));
    expect(member(view, 'twice')).toBe(member(view, 'twice'));
    expect(member(view, 'bump')).not.toBe(member(view, 'twice'));
  });

  it('runs methods and getters against the target, so # fields work through it', () => {
    const target = new Counter();
    const view = overlay(target, {});
    expect(view.bump(2)).toBe(2);
    const bump = member(view, 'bump') as (by: number) => number;
    expect(bump(3)).toBe(5);
    expect(view.count).toBe(5);
    expect(target.count).toBe(5);
    expect(view.label).toBe('counter');
  });

  it('answers overridden members from the overrides, the rest from the target', () => {
    const target = new Counter();
    const calls: number[] = [];
    const view = overlay(target, {
      bump: (by: number): number => {
        calls.push(by);
        return target.bump(by * 10);
      },
    });
    expect(view.bump(1)).toBe(10);
    expect(view.twice(1)).toBe(12);
    expect(calls).toEqual([1]);
  });

  it('forwards to a method the target replaces after the first read', () => {
    const target = new Counter();
    const view = overlay(target, {});
    expect(view.bump(1)).toBe(1);
    target.bump = (): number => -1;
    expect(view.bump(1)).toBe(-1);
  });
});
