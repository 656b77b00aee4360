import { describe, expect, it } from 'vitest';
import { NonceStore } from './nonces.js';

const t0 = new Date('2030-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(t0.getTime() + ms);

describe('NonceStore', () => {
  it('issues 32 random bytes bound to a runtime, expiring after the TTL', () => {
    const store = new NonceStore({ ttlMs: 60_000 });
    const { nonce, expiresAt } = store.issue('rt_a', t0);
    expect(nonce.length).toBe(32);
    expect(expiresAt.getTime()).toBe(t0.getTime() + 60_000);
    expect(store.issue('rt_a', t0).nonce.equals(nonce)).toBe(false);
  });

  it('is single-use: the first attempt consumes it, pass or fail', () => {
    const store = new NonceStore();
    const { nonce } = store.issue('rt_a', t0);
    expect(store.consume('rt_a', nonce, at(1000))).toBe('ok');
    expect(store.consume('rt_a', nonce, at(1000))).toBe('reused');
  });

  it('reports expiry and consumes an expired nonce', () => {
    const store = new NonceStore({ ttlMs: 1000 });
    const { nonce } = store.issue('rt_a', t0);
    expect(store.consume('rt_a', nonce, at(1001))).toBe('expired');
    expect(store.consume('rt_a', nonce, at(1002))).toBe('reused');
  });

  it('a foreign nonce is unknown and stays usable by its runtime', () => {
    const store = new NonceStore();
    const { nonce } = store.issue('rt_a', t0);
    expect(store.consume('rt_b', nonce, t0)).toBe('unknown');
    expect(store.consume('rt_a', nonce, t0)).toBe('ok');
  });

  it('never-issued and wrong-length nonces are unknown', () => {
    const store = new NonceStore();
    expect(store.consume('rt_a', Buffer.alloc(32), t0)).toBe('unknown');
    expect(store.consume('rt_a', Buffer.alloc(3), t0)).toBe('unknown');
  });

  it('bounds outstanding nonces per runtime by forgetting the oldest', () => {
    const store = new NonceStore({ maxPerRuntime: 2 });
    const first = store.issue('rt_a', t0).nonce;
    const second = store.issue('rt_a', t0).nonce;
    store.issue('rt_a', t0);
    expect(store.consume('rt_a', first, t0)).toBe('unknown');
    expect(store.consume('rt_a', second, t0)).toBe('ok');
  });

  it('forgets a runtime, and sweeps long-expired entries', () => {
    const store = new NonceStore({ ttlMs: 1000 });
    const a = store.issue('rt_a', t0).nonce;
    store.forget('rt_a');
    expect(store.consume('rt_a', a, t0)).toBe('unknown');
    const b = store.issue('rt_b', t0).nonce;
    store.issue('rt_c', at(5000));
    expect(store.consume('rt_b', b, at(5000))).toBe('unknown');
  });
});
