/** Freshness and replay of a request (freshness.ts), through the service with fakes. */
import { describe, expect, it, vi } from 'vitest';
import type { GrantorError } from '../shared/errors.js';
import { Fakes, NOW, RT, allow, body, code, signRequest } from './testing.js';

describe('GrantService.request: freshness and replay', () => {
  it('a replayed requestId: request_replayed, also when both race and after a restart', async () => {
    const f = new Fakes();
    const svc = f.service();
    const req = signRequest(body(), f.key.privateKey);
    await svc.request(req, NOW);
    expect(await code(svc.request(req, NOW))).toBe('request_replayed');
    const twin = signRequest(body(), f.key.privateKey);
    const results = await Promise.allSettled([svc.request(twin, NOW), svc.request(twin, NOW)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected');
    expect((rejected?.reason as GrantorError).code).toBe('request_replayed');
    // A new service over the same store (a restart) still knows it.
    expect(await code(f.service().request(req, NOW))).toBe('request_replayed');
  });

  it('the requestId is written with the grant, after a deny, and after a failure (then unawaited)', async () => {
    const f = new Fakes();
    const key = (r: Record<string, unknown>) => `${RT}\n${String(r.requestId)}`;
    // Allowed: the id and the grant arrive in one write.
    const writes: string[] = [];
    const create = f.store.create.bind(f.store);
    f.store.create = (record, used) => {
      writes.push(`create ${used?.requestId ?? 'without id'}`);
      return create(record, used);
    };
    const allowed = signRequest(body(), f.key.privateKey);
    await f.service().request(allowed, NOW);
    expect(writes).toEqual([`create ${String(allowed.requestId)}`]);
    expect(f.store.requests.has(key(allowed))).toBe(true);
    // Denied: written before the answer.
    f.decision = () => ({ ...allow(), decision: 'deny', reasons: ['no'] });
    const denied = signRequest(body(), f.key.privateKey);
    expect(await code(f.service().request(denied, NOW))).toBe('policy_denied');
    expect(f.store.requests.has(key(denied))).toBe(true);
    // Failed after the replay check (an unknown parent): written all the same.
    const failed = signRequest(body({ parentGrantId: 'gr_nope' }), f.key.privateKey);
    expect(await code(f.service().request(failed, NOW))).toBe('grant_parent_not_found');
    await vi.waitFor(() => {
      expect(f.store.requests.has(key(failed))).toBe(true);
    });
    // And so a restart refuses all three.
    for (const r of [allowed, denied, failed]) {
      expect(await code(f.service().request(r, NOW))).toBe('request_replayed');
    }
  });

  it('an id whose request is still in flight is never evicted: its replay is refused', async () => {
    const f = new Fakes();
    f.auditHang = true;
    const svc = f.service({ replayCacheSize: 2, dependencyDeadlineMs: 2000 });
    const a = signRequest(body(), f.key.privateKey);
    const first = svc.request(a, NOW);
    await new Promise((r) => setTimeout(r, 20));
    // Two more requests fill the bound while the first waits for its audit entry.
    const others = [1, 2].map(() => svc.request(signRequest(body(), f.key.privateKey), NOW));
    await new Promise((r) => setTimeout(r, 20));
    expect(await code(svc.request(a, NOW))).toBe('request_replayed');
    const settled = await Promise.allSettled([first, ...others]);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(f.signed).toHaveLength(3);
  });

  it('at issuedAt + skew exactly, a concurrent twin is refused, also while the store is asked', async () => {
    const f = new Fakes();
    // More live ids than the bound: misses go to the store.
    for (const id of ['x1', 'x2', 'x3']) await f.store.putRequest(RT, id, NOW.getTime() + 60_000);
    const svc = f.service({ replayCacheSize: 2 });
    const edge = new Date(NOW.getTime() - 60_000).toISOString();
    const req = signRequest(body({ issuedAt: edge }), f.key.privateKey);
    const results = await Promise.allSettled([svc.request(req, NOW), svc.request(req, NOW)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r) => r.status === 'rejected');
    expect((rejected?.reason as GrantorError).code).toBe('request_replayed');
    expect(f.signed).toHaveLength(1);
  });

  it('issuedAt outside the skew, either way: request_stale', async () => {
    const f = new Fakes();
    const svc = f.service();
    const old = new Date(NOW.getTime() - 61_000).toISOString();
    const future = new Date(NOW.getTime() + 61_000).toISOString();
    expect(
      await code(svc.request(signRequest(body({ issuedAt: old }), f.key.privateKey), NOW)),
    ).toBe('request_stale');
    expect(
      await code(svc.request(signRequest(body({ issuedAt: future }), f.key.privateKey), NOW)),
    ).toBe('request_stale');
  });
});
