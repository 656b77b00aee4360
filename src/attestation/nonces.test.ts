import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NonceStore } from './nonces.js';

const t0 = new Date('2030-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(t0.getTime() + ms);

/** check then, when ok, consume: what the service does for a quote its AK signed. */
function attempt(store: NonceStore, runtimeId: string, nonce: Uint8Array, now: Date): string {
  const status = store.check(runtimeId, nonce, now);
  if (status === 'ok') store.consume(runtimeId, nonce);
  return status;
}

describe('NonceStore', () => {
  it('issues 32 bytes bound to a runtime, expiring after the TTL', () => {
    const store = new NonceStore({ ttlMs: 60_000 });
    const { nonce, expiresAt } = store.issue('rt_a', t0);
    expect(nonce.length).toBe(32);
    expect(expiresAt.getTime()).toBe(t0.getTime() + 60_000);
    expect(store.issue('rt_a', t0).nonce.equals(nonce)).toBe(false);
  });

  it('is single-use once consumed; a check alone spends nothing', () => {
    const store = new NonceStore();
    const { nonce } = store.issue('rt_a', t0);
    expect(store.check('rt_a', nonce, at(1000))).toBe('ok');
    expect(attempt(store, 'rt_a', nonce, at(1000))).toBe('ok');
    expect(attempt(store, 'rt_a', nonce, at(1000))).toBe('reused');
  });

  it('reports expiry', () => {
    const store = new NonceStore({ ttlMs: 1000 });
    const { nonce } = store.issue('rt_a', t0);
    expect(attempt(store, 'rt_a', nonce, at(1000))).toBe('ok');
    const late = store.issue('rt_a', t0).nonce;
    expect(attempt(store, 'rt_a', late, at(1001))).toBe('expired');
  });

  it('a foreign nonce is unknown and stays usable by its runtime', () => {
    const store = new NonceStore();
    const { nonce } = store.issue('rt_a', t0);
    expect(attempt(store, 'rt_b', nonce, t0)).toBe('unknown');
    expect(attempt(store, 'rt_a', nonce, t0)).toBe('ok');
  });

  it('never-issued, wrong-length, tampered nonces and another process’s are unknown', () => {
    const store = new NonceStore();
    expect(store.check('rt_a', Buffer.alloc(32), t0)).toBe('unknown');
    expect(store.check('rt_a', Buffer.alloc(3), t0)).toBe('unknown');
    const { nonce } = store.issue('rt_a', t0);
    // A later expiry written into the nonce breaks its MAC.
    const extended = Buffer.from(nonce);
    extended[17] = (extended[17] ?? 0) ^ 0x01;
    expect(store.check('rt_a', extended, t0)).toBe('unknown');
    expect(new NonceStore().check('rt_a', nonce, t0)).toBe('unknown');
  });

  it('a flood of challenges for a runtime leaves its earlier challenge usable, and keeps no memory', () => {
    const store = new NonceStore();
    const own = store.issue('rt_a', t0).nonce;
    for (let i = 0; i < 10_000; i++) store.issue('rt_a', t0);
    expect(store.size).toBe(0);
    expect(attempt(store, 'rt_a', own, at(1000))).toBe('ok');
    expect(store.size).toBe(1);
  });

  it('holds at most maxPerRuntime unexpired consumed nonces per runtime, then frees them on expiry', () => {
    const store = new NonceStore({ ttlMs: 1000, maxPerRuntime: 3 });
    for (let i = 0; i < 3; i++)
      expect(attempt(store, 'rt_a', store.issue('rt_a', t0).nonce, t0)).toBe('ok');
    // Only rt_a's own quotes filled it: rt_a waits, rt_b is untouched.
    expect(store.check('rt_a', store.issue('rt_a', t0).nonce, t0)).toBe('unknown');
    expect(store.check('rt_b', store.issue('rt_b', t0).nonce, t0)).toBe('ok');
    expect(attempt(store, 'rt_a', store.issue('rt_a', at(1001)).nonce, at(1001))).toBe('ok');
    expect(store.size).toBe(1);
  });

  it('forgets a runtime, and sweeps expired entries', () => {
    const store = new NonceStore({ ttlMs: 1000 });
    attempt(store, 'rt_a', store.issue('rt_a', t0).nonce, t0);
    attempt(store, 'rt_b', store.issue('rt_b', t0).nonce, t0);
    store.forget('rt_a');
    expect(store.size).toBe(1);
    store.sweep(at(1001));
    expect(store.size).toBe(0);
  });

  it('arbitrary bytes are unknown for a runtime, never a crash', () => {
    const store = new NonceStore();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 48 }), fc.string(), (bytes, runtimeId) => {
        return store.check(runtimeId, bytes, t0) === 'unknown';
      }),
    );
  });
});
