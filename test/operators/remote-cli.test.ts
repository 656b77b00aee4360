/**
 * The operator CLI as a remote client of a running appliance's listener: token create
 * (for the caller's own person), list and revoke over /v1/operator-tokens, on a real
 * Fastify listener on 127.0.0.1:0; a revoked token is refused at once.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../src/http/app.js';
import { createMemoryOperators, type Operators } from '../../src/operators/index.js';
import { RemoteTokens } from '../../src/cli/remote-tokens.js';
import { runCli } from '../../src/operators/testing/cli-output.js';

let app: App;
let url: string;
let operators: Operators;
let alice: string;
const events: string[] = [];

beforeAll(async () => {
  operators = createMemoryOperators({
    onCredentialEvent: (e) => {
      events.push(`${e.type} ${e.subject} ${e.person ?? ''} ${e.by}`);
      return Promise.resolve();
    },
  });
  // The first credential: the offline path.
  alice = (await operators.tokens.create({ role: 'operator', actor: 'alice' })).token;
  app = await buildApp({ probes: [], operators });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await app.close();
});

describe('grantor operators token, remote', () => {
  it('creates a token for the caller, lists it and revokes it while the appliance runs', async () => {
    const remote = new RemoteTokens({ url: new URL(url), token: alice });
    const c = await runCli(remote, ['token', 'create', '--role', 'operator', '--ttl', '1h']);
    expect(c.exit).toBe(0);
    const token = c.lines.at(-1) ?? '';
    expect(token).toMatch(/^gop_/);
    expect(c.lines).toContain('person:  alice');
    const fresh = await operators.tokens.authenticate(token);
    expect(fresh.person).toBe('alice');

    const l = await runCli(remote, ['token', 'list']);
    expect(l.exit).toBe(0);
    expect(l.lines.some((line) => line.startsWith(fresh.id) && line.includes('active'))).toBe(true);
    expect(l.lines.join('\n')).not.toContain(token.slice(20));

    const r = await runCli(remote, ['token', 'revoke', fresh.id]);
    expect(r.exit).toBe(0);
    const refused = await fetch(`${url}/v1/operator-tokens`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(refused.status).toBe(401);
    expect(
      events.some((e) => e.startsWith(`operator.token_created ${fresh.id} alice alice:`)),
    ).toBe(true);
    expect(
      events.some((e) => e.startsWith(`operator.token_revoked ${fresh.id} alice alice:`)),
    ).toBe(true);
  });

  it('refuses --actor over the API, and a bad credential with its code', async () => {
    const remote = new RemoteTokens({ url: new URL(url), token: alice });
    const actor = await runCli(remote, ['token', 'create', '--role', 'operator', '--actor', 'bob']);
    expect(actor.exit).toBe(2);
    expect((await runCli(remote, ['person', 'list'])).exit).toBe(2);
    const wrong = new RemoteTokens({
      url: new URL(url),
      token: `gop_${'0'.repeat(16)}${'A'.repeat(43)}`,
    });
    const w = await runCli(wrong, ['token', 'list']);
    expect(w.exit).toBe(1);
    expect(w.errors.join('\n')).toContain('unauthenticated');
    // A role the person does not hold.
    const k = await runCli(remote, ['token', 'create', '--role', 'key_custodian']);
    expect(k.exit).toBe(1);
    expect(k.errors.join('\n')).toContain('forbidden');
  });

  it("lets only an operator revoke another person's token", async () => {
    const bob = await operators.tokens.create({ role: 'auditor', actor: 'bob' });
    const carol = await operators.tokens.create({ role: 'auditor', actor: 'carol' });
    const asBob = new RemoteTokens({ url: new URL(url), token: bob.token });
    await expect(asBob.revoke(carol.info.id)).rejects.toMatchObject({ code: 'forbidden' });
    await expect(asBob.revoke('tok_0000000000000000')).rejects.toMatchObject({
      code: 'operator_token_not_found',
    });
    expect((await asBob.revoke(bob.info.id)).revokedAt).toBeDefined();
    const asAlice = new RemoteTokens({ url: new URL(url), token: alice });
    expect((await asAlice.revoke(carol.info.id)).revokedAt).toBeDefined();
  });
});
