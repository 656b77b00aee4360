import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RandomPool, pooledRandomBytes } from './random-pool.js';

describe('RandomPool', () => {
  it('answers the length asked for, with a buffer of its own', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 100 }), { maxLength: 50 }), (sizes) => {
        const pool = new RandomPool(64);
        const outs = sizes.map((n) => pool.bytes(n));
        outs.forEach((b, i) => {
          expect(b.length).toBe(sizes[i]);
          // Not a view of the pool: a refill cannot change what a caller holds.
          expect(b.buffer.byteLength === 64 && b.byteOffset > 0).toBe(false);
        });
      }),
    );
  });

  it('never hands out the same bytes twice across refills', () => {
    const pool = new RandomPool(64);
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = pool.bytes(16).toString('hex');
      expect(seen.has(id)).toBe(false);
      seen.add(id);
    }
    // The shared pool, as the grant pipeline uses it.
    const a = pooledRandomBytes(16);
    const b = pooledRandomBytes(16);
    expect(a.equals(b)).toBe(false);
    expect(a.length).toBe(16);
  });

  it('a copy is unchanged by the refill after it', () => {
    const pool = new RandomPool(16);
    const first = pool.bytes(16);
    const kept = Buffer.from(first);
    pool.bytes(16); // refills the pool
    expect(first.equals(kept)).toBe(true);
  });

  it('refuses a negative or fractional length and an empty pool', () => {
    const pool = new RandomPool(16);
    expect(() => pool.bytes(-1)).toThrow(RangeError);
    expect(() => pool.bytes(1.5)).toThrow(RangeError);
    expect(() => new RandomPool(0)).toThrow(RangeError);
    expect(pool.bytes(40).length).toBe(40);
  });
});
