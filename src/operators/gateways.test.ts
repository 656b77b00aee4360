import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { openDatabase } from '../shared/db.level.js';
import type { GrantorError } from '../shared/errors.js';
import { tempDirs } from '../shared/testing/temp-dirs.js';
import type { CredentialEvent } from './events.js';
import { LevelGatewayStore } from './gateway-store.level.js';
import { MemoryGatewayStore } from './gateway-store.memory.js';
import type { GatewayStore } from './gateway-store.port.js';
import { GatewayRegistry } from './gateways.js';

const tmp = tempDirs('grantor-gateways-');
afterAll(() => tmp.removeAll());

/** The real LevelDB store, with its reads of every record counted. */
async function levelStore(): Promise<{
  store: GatewayStore;
  lists: { n: number };
  close: () => Promise<void>;
}> {
  const db = await openDatabase(join(await tmp.make(), 'db'));
  const inner = new LevelGatewayStore(db);
  const lists = { n: 0 };
  const store: GatewayStore = {
    get: (id) => inner.get(id),
    put: (r) => inner.put(r),
    list: () => {
      lists.n += 1;
      return inner.list();
    },
  };
  return { store, lists, close: () => db.close() };
}

const T0 = new Date('2026-01-01T00:00:00.000Z');

function registry(clock = { now: T0 }) {
  const events: CredentialEvent[] = [];
  const store = new MemoryGatewayStore();
  const reg = new GatewayRegistry(
    store,
    () => clock.now.getTime(),
    (e) => {
      events.push(e);
      return Promise.resolve();
    },
  );
  return { reg, events, store, clock };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as GrantorError).code;
  }
  return 'resolved';
}

const ADMIN = { id: 'tok_0123456789abcdef', person: 'alice' };

describe('GatewayRegistry', () => {
  it('serving(audience): the unrevoked, unexpired gateways holding it (the policy context)', async () => {
    const { reg, clock } = registry({ now: T0 });
    const a = await reg.enroll({ name: 'a', audiences: ['gw_payments'], ttlSeconds: 60 }, ADMIN);
    const b = await reg.enroll({ name: 'b', audiences: ['gw_payments', 'gw_x'] }, ADMIN);
    const c = await reg.enroll({ name: 'c', audiences: ['gw_x'] }, ADMIN);
    const ids = async (aud: string) => (await reg.serving(aud)).map((g) => g.id).sort();
    expect(await ids('gw_payments')).toEqual([a.gateway.id, b.gateway.id].sort());
    expect(await reg.serving('gw_x')).toEqual(
      expect.arrayContaining([{ id: c.gateway.id, name: 'c' }]),
    );
    expect(await ids('gw_none')).toEqual([]);
    await reg.revoke(b.gateway.id, ADMIN);
    expect(await ids('gw_payments')).toEqual([a.gateway.id]);
    clock.now = new Date(T0.getTime() + 61_000);
    expect(await ids('gw_payments')).toEqual([]);
  });

  it('serving(audience) reads the store once; an enrollment or revocation is seen at once', async () => {
    const { store, lists, close } = await levelStore();
    const before = new GatewayRegistry(store, () => T0.getTime());
    const old = await before.enroll({ name: 'old', audiences: ['gw_payments'] }, 'cli');
    // A registry started over a store that already holds gateways (the appliance's start).
    const reg = new GatewayRegistry(store, () => T0.getTime());
    await reg.load();
    const ids = async (aud: string) => (await reg.serving(aud)).map((g) => g.id).sort();
    expect(await ids('gw_payments')).toEqual([old.gateway.id]);
    const fresh = await reg.enroll({ name: 'new', audiences: ['gw_payments', 'gw_x'] }, 'cli');
    expect(await ids('gw_payments')).toEqual([old.gateway.id, fresh.gateway.id].sort());
    expect(await ids('gw_x')).toEqual([fresh.gateway.id]);
    await reg.revoke(old.gateway.id, 'cli');
    expect(await ids('gw_payments')).toEqual([fresh.gateway.id]);
    await reg.revoke(fresh.gateway.id, 'cli');
    expect(await ids('gw_payments')).toEqual([]);
    expect(await ids('gw_x')).toEqual([]);
    for (let i = 0; i < 50; i += 1) await reg.serving('gw_payments');
    // One read at load; none per decision (the first registry never loaded).
    expect(lists.n).toBe(1);
    await close();
  });

  it('an enrollment made while the index loads is in it once the load ends', async () => {
    const inner = new MemoryGatewayStore();
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const store: GatewayStore = {
      get: (id) => inner.get(id),
      put: (r) => inner.put(r),
      // The load reads the store as it was before the enrollment below.
      list: async () => {
        const records = await inner.list();
        await gate;
        return records;
      },
    };
    const reg = new GatewayRegistry(store, () => T0.getTime());
    const loading = reg.serving('a');
    const enrolled = reg.enroll({ name: 'x', audiences: ['a'] }, 'cli');
    await new Promise((r) => setImmediate(r));
    release();
    expect(await loading).toEqual([]);
    const { gateway } = await enrolled;
    expect(await reg.serving('a')).toEqual([{ id: gateway.id, name: 'x' }]);
  });

  it('a failing store answers gateway_store_unavailable (503), never an internal error', async () => {
    const { store, close } = await levelStore();
    const reg = new GatewayRegistry(store, () => T0.getTime());
    const { token, gateway } = await reg.enroll({ name: 'x', audiences: ['a'] }, 'cli');
    await close();
    const fresh = new GatewayRegistry(store, () => T0.getTime());
    for (const p of [
      reg.authenticate(token),
      reg.get(gateway.id),
      reg.list(),
      reg.revoke(gateway.id, 'cli'),
      reg.enroll({ name: 'y', audiences: ['a'] }, 'cli'),
      fresh.serving('a'),
      fresh.load(),
    ]) {
      expect(await code(p)).toBe('gateway_store_unavailable');
    }
  });

  it('enrolls, authenticates, lists without the hash, revokes; audited before each change', async () => {
    const { reg, events, store } = registry();
    const { token, gateway } = await reg.enroll(
      { name: 'pay-gw', audiences: ['gw_payments', 'gw_b', 'gw_payments'] },
      ADMIN,
    );
    expect(token).toMatch(/^ggw_[0-9a-f]{16}[A-Za-z0-9_-]{43}$/);
    expect(gateway.audiences).toEqual(['gw_b', 'gw_payments']);
    expect(gateway.createdBy).toBe('alice:tok_0123456789abcdef');
    expect(await reg.authenticate(token)).toEqual({
      kind: 'gateway',
      id: gateway.id,
      name: 'pay-gw',
      audiences: ['gw_b', 'gw_payments'],
    });
    expect(JSON.stringify(await reg.list())).not.toContain('secretHash');
    expect((await store.get(gateway.id))?.secretHash).toMatch(/^[0-9a-f]{64}$/);
    await reg.revoke(gateway.id, ADMIN);
    expect(await code(reg.authenticate(token))).toBe('gateway_unauthenticated');
    expect(events.map((e) => [e.type, e.subject, e.audiences])).toEqual([
      ['gateway.enrolled', gateway.id, ['gw_b', 'gw_payments']],
      ['gateway.revoked', gateway.id, ['gw_b', 'gw_payments']],
    ]);
    expect(JSON.stringify(events)).not.toContain(token.slice(20));
  });

  it('a failed audit write fails the enrollment: nothing stored', async () => {
    const store = new MemoryGatewayStore();
    const reg = new GatewayRegistry(
      store,
      () => T0.getTime(),
      () => Promise.reject(new Error('audit down')),
    );
    await expect(reg.enroll({ name: 'x', audiences: ['a'] }, 'cli')).rejects.toThrow('audit down');
    expect(await store.list()).toEqual([]);
  });

  it('refuses expired tokens, wrong secrets, non-canonical encodings and junk', async () => {
    const { reg, clock } = registry({ now: T0 });
    const { token } = await reg.enroll({ name: 'x', audiences: ['a'], ttlSeconds: 60 }, 'cli');
    const last = token.at(-1) === 'A' ? 'B' : 'A';
    for (const bad of [token.slice(0, -1) + last, `${token}x`, 'ggw_', 'gop_x', '']) {
      expect(await code(reg.authenticate(bad))).toBe('gateway_unauthenticated');
    }
    clock.now = new Date(T0.getTime() + 60_000);
    expect(await code(reg.authenticate(token))).toBe('gateway_unauthenticated');
  });

  it('bad enrollments: bad_request; unknown ids: gateway_not_found', async () => {
    const { reg } = registry();
    for (const input of [
      { name: 'no spaces', audiences: ['a'] },
      { name: 'x', audiences: [] },
      { name: 'x', audiences: Array.from({ length: 17 }, (_, i) => `a${i}`) },
      { name: 'x', audiences: ['\uD800'] },
      { name: 'x', audiences: ['a'], ttlSeconds: 59 },
    ]) {
      expect(await code(reg.enroll(input, 'cli'))).toBe('bad_request');
    }
    expect(await code(reg.revoke('gw_0000000000000000', 'cli'))).toBe('gateway_not_found');
    expect(await code(reg.get('gw_0000000000000000'))).toBe('gateway_not_found');
  });

  it('any string is a gateway or gateway_unauthenticated, never another failure', async () => {
    const { reg } = registry();
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 80 }), async (s) => {
        expect(await code(reg.authenticate(`ggw_${s}`))).toBe('gateway_unauthenticated');
      }),
      { numRuns: 200 },
    );
  });
});
