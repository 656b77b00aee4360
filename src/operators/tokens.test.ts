import { describe, expect, it } from 'vitest';
import { MemoryTokenStore, createFakeOperatorTokens } from './token-store.memory.js';
import { refusalCode as code } from '../shared/testing/refusal.js';

function setup(start = Date.parse('2026-01-01T00:00:00Z')) {
  let now = start;
  const store = new MemoryTokenStore();
  const tokens = createFakeOperatorTokens(store, () => now);
  return {
    store,
    tokens,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('operator tokens', () => {
  it('authenticates a fresh token as its actor and role, and stores only a hash', async () => {
    const { tokens, store } = setup();
    const { token, info } = await tokens.create({ role: 'auditor', actor: 'alice' });
    expect(token).toMatch(/^gop_[0-9a-f]{16}[A-Za-z0-9_-]{43}$/);
    const actor = await tokens.authenticate(token);
    expect(actor).toEqual({
      kind: 'operator',
      id: info.id,
      person: 'alice',
      role: 'auditor',
      name: 'alice',
      credential: 'token',
      expiresAt: info.expiresAt,
    });
    const stored = JSON.stringify(await store.list());
    expect(stored).not.toContain(token.slice(20));
    expect(JSON.stringify(await tokens.list())).not.toContain('secretHash');
  });

  it('refuses a token with a wrong secret, an unknown id or a malformed shape', async () => {
    const { tokens } = setup();
    const { token } = await tokens.create({ role: 'operator', actor: 'bob' });
    const flipped = token.slice(0, -2) + (token.endsWith('AA') ? 'BA' : 'AA');
    expect(await code(tokens.authenticate(flipped))).toBe('unauthenticated');
    const unknown = 'gop_' + '0'.repeat(16) + token.slice(20);
    expect(await code(tokens.authenticate(unknown))).toBe('unauthenticated');
    expect(await code(tokens.authenticate('not a token'))).toBe('unauthenticated');
    expect(await code(tokens.authenticate(token + 'x'))).toBe('unauthenticated');
  });

  it('refuses a non-canonical encoding of the right secret', async () => {
    const { tokens } = setup();
    const { token } = await tokens.create({ role: 'operator', actor: 'bob' });
    // The last base64url character carries 2 padding bits; flipping them keeps the bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(token.slice(-1));
    const twin = token.slice(0, -1) + (alphabet[last ^ 1] ?? 'A');
    expect(await code(tokens.authenticate(twin))).toBe('unauthenticated');
  });

  it('refuses an expired token', async () => {
    const { tokens, advance } = setup();
    const { token } = await tokens.create({ role: 'auditor', actor: 'a', ttlSeconds: 60 });
    advance(59_000);
    await tokens.authenticate(token);
    advance(1_000);
    expect(await code(tokens.authenticate(token))).toBe('unauthenticated');
  });

  it('refuses a revoked token, and revoking twice keeps the first time', async () => {
    const { tokens, advance } = setup();
    const { token, info } = await tokens.create({ role: 'key_custodian', actor: 'k' });
    const first = await tokens.revoke(info.id);
    advance(1000);
    expect((await tokens.revoke(info.id)).revokedAt).toBe(first.revokedAt);
    expect(await code(tokens.authenticate(token))).toBe('unauthenticated');
  });

  it('refuses to revoke an unknown token', async () => {
    const { tokens } = setup();
    expect(await code(tokens.revoke('tok_0000000000000000'))).toBe('operator_token_not_found');
  });

  it('refuses a bad ttl or actor name', async () => {
    const { tokens } = setup();
    expect(await code(tokens.create({ role: 'auditor', actor: 'a', ttlSeconds: 1 }))).toBe(
      'bad_request',
    );
    expect(await code(tokens.create({ role: 'auditor', actor: 'a', ttlSeconds: 1e9 }))).toBe(
      'bad_request',
    );
    expect(await code(tokens.create({ role: 'auditor', actor: '  ' }))).toBe('bad_request');
    expect(await code(tokens.create({ role: 'auditor', actor: 'a\nb' }))).toBe('bad_request');
  });

  it('refuses a token once its person is removed or no longer holds its role', async () => {
    const { tokens } = setup();
    const { token } = await tokens.create({ role: 'operator', actor: 'Olga' });
    expect((await tokens.authenticate(token)).person).toBe('olga');
    await tokens.people.put('olga', { displayName: 'Olga', roles: ['auditor'] });
    expect(await code(tokens.authenticate(token))).toBe('unauthenticated');
    await tokens.people.put('olga', { displayName: 'Olga', roles: ['operator'] });
    expect((await tokens.authenticate(token)).name).toBe('Olga');
    await tokens.people.remove('olga');
    expect(await code(tokens.authenticate(token))).toBe('unauthenticated');
  });

  it('issues tokens over the API only to the authenticated person, in a role they hold', async () => {
    const { tokens } = setup();
    const { token } = await tokens.create({ role: 'operator', actor: 'olga' });
    const olga = await tokens.authenticate(token);
    const own = await tokens.createForSelf(olga, 'operator', 3600);
    expect(own.info.person).toBe('olga');
    expect(await code(tokens.createForSelf(olga, 'key_custodian'))).toBe('forbidden');
  });

  it('binds one person to one id whatever the spelling (NFKC, case fold, trim)', async () => {
    const { tokens } = setup();
    const composed = await tokens.create({ role: 'operator', actor: 'Jos\u00e9 ' });
    const decomposed = await tokens.create({ role: 'operator', actor: 'JOSE\u0301' });
    expect(composed.info.person).toBe('jos\u00e9');
    expect(decomposed.info.person).toBe('jos\u00e9');
    expect((await tokens.people.list()).map((p) => p.id)).toEqual(['jos\u00e9']);
    const sharp = await tokens.create({ role: 'auditor', actor: 'Stra\u00dfe' });
    expect(sharp.info.person).toBe('strasse');
  });
});
