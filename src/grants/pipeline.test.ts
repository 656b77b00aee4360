/**
 * The request path with fakes at every port (testing.ts): the allow path and its claims,
 * the schema, the order of the steps, what is audited and signed when the policy, the log
 * or the HSM fails, refusals on the record, the policy context.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { UnavailableError } from '../shared/errors.js';
import { jwkThumbprint } from '../shared/grant-claims.js';
import { requestDigest, unsignedRequestText } from './request.js';
import {
  AT,
  Fakes,
  NOW,
  POLICY_HASH,
  RT,
  allow,
  body,
  code,
  decodeClaims,
  sessionKey,
  signRequest,
  grantRecord,
} from './testing.js';

describe('GrantService.request: the allow path', () => {
  it('issues a grant with exactly the §3 claims, audited before it is signed', async () => {
    const f = new Fakes();
    const svc = f.service();
    const req = signRequest(body(), f.key.privateKey);
    const issued = await svc.request(req, NOW);
    expect(issued.grantId).toMatch(/^gr_/);
    const claims = decodeClaims(issued.grant);
    expect(Object.keys(claims).sort()).toEqual(
      [
        'iss',
        'sub',
        'aud',
        'iat',
        'nbf',
        'exp',
        'jti',
        'act',
        'att',
        'cnf',
        'lin',
        'pol',
        'aud_seq',
        'aud_hash',
      ].sort(),
    );
    const iat = NOW.getTime() / 1000;
    expect(claims).toMatchObject({
      iss: 'grantor-unit',
      sub: RT,
      aud: 'gw_tickets',
      iat,
      nbf: iat,
      exp: iat + 120,
      jti: issued.grantId,
      act: { action: 'tickets.read', resource: 'ticket:42', parametersDigest: 'ab'.repeat(32) },
      att: { pcrDigest: 'bb'.repeat(32), resetCount: 1, restartCount: 0, attestationId: AT },
      cnf: { jkt: await jwkThumbprint(f.key.jwk) },
      lin: { parent: null, root: issued.grantId, depth: 0 },
      pol: POLICY_HASH,
      aud_seq: issued.auditSeq,
    });
    expect(
      JSON.parse(Buffer.from(issued.grant.split('.')[0] ?? '', 'base64url').toString()),
    ).toMatchObject({ typ: 'grant+jwt' });
    expect(f.events).toEqual([
      {
        type: 'grant.decision',
        subject: issued.grantId,
        decision: 'allow',
        // The policy set that decided comes first: the same hash as the grant's `pol`.
        reasons: [`pol:${POLICY_HASH}`, 'p1'],
        digest: requestDigest(req),
        // What was decided, as typed facts (docs/protocol.md §4), and the request itself.
        facts: {
          runtime: RT,
          action: 'tickets.read',
          resource: 'ticket:42',
          audience: 'gw_tickets',
          parent: null,
          requestId: req.requestId,
          parametersDigest: 'ab'.repeat(32),
          proofMode: 'session',
          attestationId: AT,
          policyHash: POLICY_HASH,
          matchedPolicies: ['p1'],
          keyId: null,
          expiresAt: issued.expiresAt,
        },
        body: unsignedRequestText(req),
      },
    ]);
    expect(createHash('sha256').update(unsignedRequestText(req)).digest('hex')).toBe(
      requestDigest(req),
    );
    expect(issued.expiresAt).toBe(new Date((iat + 120) * 1000).toISOString());
    expect(f.policyCalls[0]).toMatchObject({
      runtime: { id: RT, labels: { team: 'payments' } },
      attestation: {
        proofMode: 'session',
        sessionAgeSeconds: 30,
        resetSeen: false,
        pcrPolicy: 'ref',
      },
      lineage: { depth: 0, root: '', parentAction: null, delegated: false },
      ttlSeconds: 120,
    });
  });

  it('caps the lifetime at the policy maxTtlSeconds', async () => {
    const f = new Fakes();
    f.decision = () => allow({ requireQuote: false, maxTtlSeconds: 60 });
    const issued = await f
      .service()
      .request(signRequest(body({ ttlSeconds: 600 }), f.key.privateKey), NOW);
    expect(decodeClaims(issued.grant).exp).toBe(NOW.getTime() / 1000 + 60);
  });

  it('uses the body copied before the first await', async () => {
    const f = new Fakes();
    const req = signRequest(body(), f.key.privateKey);
    const p = f.service().request(req, NOW);
    req.action = 'payments.transfer';
    const claims = decodeClaims((await p).grant);
    expect(claims.act).toMatchObject({ action: 'tickets.read' });
  });
});

describe('GrantService.request: schema', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['ttl 0', { ttlSeconds: 0 }],
    ['ttl above max', { ttlSeconds: 3601 }],
    ['ttl not an integer', { ttlSeconds: 1.5 }],
    ['digest not hex', { parametersDigest: 'zz'.repeat(32) }],
    ['digest short', { parametersDigest: 'ab' }],
    ['issuedAt not a time', { issuedAt: 'yesterday' }],
    ['no proof', { session: undefined }],
    ['two proofs', { quote: { nonce: 'AA==', quote: 'AA==', signature: 'AA==', pcrs: {} } }],
  ];
  for (const [name, over] of cases) {
    it(`${name}: bad_request, nothing decided`, async () => {
      const f = new Fakes();
      const b = body(over);
      const req = b.session === undefined ? b : signRequest(b, f.key.privateKey);
      expect(await code(f.service().request(req, NOW))).toBe('bad_request');
      expect(f.policyCalls).toHaveLength(0);
    });
  }
  it('a signature that is not 64 bytes base64url: bad_request', async () => {
    const f = new Fakes();
    expect(
      await code(
        f.service().request(body({ session: { attestationId: AT, signature: 'x' } }), NOW),
      ),
    ).toBe('bad_request');
  });
});

describe('GrantService.request: start-up hold and reasons', () => {
  it('holds decisions until the start-up work settles, whether it succeeds or fails', async () => {
    const f = new Fakes();
    const svc = f.service();
    let finish: (ok: boolean) => void = () => undefined;
    svc.holdDecisionsUntil(
      new Promise<void>((resolve, reject) => {
        finish = (ok) => {
          if (ok) resolve();
          else reject(new Error('store down'));
        };
      }),
    );
    const held = svc.request(signRequest(body(), f.key.privateKey), NOW);
    await new Promise((r) => setTimeout(r, 20));
    expect(f.policyCalls).toHaveLength(0);
    finish(false);
    expect((await held).grantId).toMatch(/^gr_/);
    expect(f.policyCalls).toHaveLength(1);
  });

  it('a start-up hold past the dependency deadline answers grant_store_unavailable; a done one lets all through', async () => {
    const f = new Fakes();
    const stuck = f.service();
    stuck.holdDecisionsUntil(new Promise<void>(() => undefined));
    expect(await code(stuck.request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'grant_store_unavailable',
    );
    expect(f.policyCalls).toHaveLength(0);
    const done = f.service();
    done.holdDecisionsUntil(Promise.resolve());
    const issued = await Promise.all(
      [1, 2].map(() => done.request(signRequest(body(), f.key.privateKey), NOW)),
    );
    expect(issued.map((g) => g.grantId.startsWith('gr_'))).toEqual([true, true]);
  });

  it('records at most 32 reasons of at most 256 characters; the rest are counted, never refused', async () => {
    const f = new Fakes();
    const many = Array.from({ length: 40 }, (_, i) => `policy ${i}`);
    f.decision = () => ({ ...allow(), decision: 'deny', reasons: ['x'.repeat(300), ...many] });
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'policy_denied',
    );
    const reasons = f.events[0]?.reasons ?? [];
    expect(reasons).toHaveLength(32);
    expect(reasons[0]).toBe(`pol:${POLICY_HASH}`);
    expect(reasons[1]).toBe(`${'x'.repeat(255)}…`);
    expect(reasons[31]).toBe('and 11 more');
  });
});

describe('GrantService.request: policy, audit and HSM failures', () => {
  it('a deny is audited with its reasons and answers policy_denied; nothing signed or stored', async () => {
    const f = new Fakes();
    f.decision = () => ({
      ...allow(),
      decision: 'deny',
      reasons: ['moving money needs a fresh quote'],
    });
    const req = signRequest(body(), f.key.privateKey);
    const err = await f
      .service()
      .request(req, NOW)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'policy_denied',
      details: { reasons: ['moving money needs a fresh quote'] },
    });
    expect(f.events).toEqual([
      expect.objectContaining({
        type: 'grant.decision',
        decision: 'deny',
        reasons: [`pol:${POLICY_HASH}`, 'moving money needs a fresh quote'],
        digest: requestDigest(req),
      }),
    ]);
    expect(f.signed).toHaveLength(0);
    expect(f.store.grants.size).toBe(0);
  });

  it('policy engine failure: policy_unavailable, nothing audited, signed or stored', async () => {
    const f = new Fakes();
    f.policyFails = () => new Error('wasm trap');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'policy_unavailable',
    );
    expect(f.events).toHaveLength(0);
    expect(f.signed).toHaveLength(0);
  });

  it('policy past its deadline: policy_unavailable, nothing audited, signed or stored', async () => {
    const f = new Fakes();
    f.policyStuck = true;
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'policy_unavailable',
    );
    expect(f.events).toHaveLength(0);
    expect(f.signed).toHaveLength(0);
    expect(f.store.grants.size).toBe(0);
  });

  it('HSM past its deadline: hsm_unavailable and a grant.issue_failed entry, nothing stored', async () => {
    const f = new Fakes();
    f.signStuck = true;
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'hsm_unavailable',
    );
    expect(f.events.map((e) => [e.type, e.decision, e.reasons])).toEqual([
      ['grant.decision', 'allow', [`pol:${POLICY_HASH}`, 'p1']],
      ['grant.issue_failed', 'failed', ['hsm_unavailable']],
    ]);
    expect(f.store.grants.size).toBe(0);
  });

  it('audit failure: audit_unavailable, nothing signed', async () => {
    const f = new Fakes();
    f.auditFails = () => new Error('disk gone');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'audit_unavailable',
    );
    expect(f.signed).toHaveLength(0);
    expect(f.store.grants.size).toBe(0);
  });

  it('audit past its deadline: audit_unavailable, and the late "allow" is then marked issue_failed', async () => {
    const f = new Fakes();
    f.auditHang = true;
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'audit_unavailable',
    );
    expect(f.signed).toHaveLength(0);
    await vi.waitFor(
      () => {
        expect(f.events.map((e) => [e.type, e.decision])).toEqual([
          ['grant.decision', 'allow'],
          ['grant.issue_failed', 'failed'],
        ]);
      },
      { timeout: 10_000, interval: 50 },
    );
  });

  it('HSM failure after the commit: hsm_unavailable and a grant.issue_failed entry', async () => {
    const f = new Fakes();
    f.signFails = () => new UnavailableError('hsm_unavailable', 'token removed');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'hsm_unavailable',
    );
    expect(f.events.map((e) => [e.type, e.decision, e.reasons])).toEqual([
      ['grant.decision', 'allow', [`pol:${POLICY_HASH}`, 'p1']],
      ['grant.issue_failed', 'failed', ['hsm_unavailable']],
    ]);
    expect(f.events[0]?.subject).toBe(f.events[1]?.subject);
    expect(f.store.grants.size).toBe(0);
  });

  it('a non-typed signer error is still hsm_unavailable', async () => {
    const f = new Fakes();
    f.signFails = () => new Error('CKR_DEVICE_REMOVED');
    expect(await code(f.service().request(signRequest(body(), f.key.privateKey), NOW))).toBe(
      'hsm_unavailable',
    );
  });
});

describe('GrantService.request: allow only', () => {
  it('a decision other than an explicit allow denies', async () => {
    const f = new Fakes();
    f.decision = () => ({ ...allow(), decision: 'maybe' as unknown as 'allow' });
    const req = signRequest(body(), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('policy_denied');
    expect(f.signed).toHaveLength(0);
    expect(f.events.at(-1)).toMatchObject({ type: 'grant.decision', decision: 'deny' });
  });
});

describe('refusals on the record (issue 16)', () => {
  /** One refusal per code, each from a fresh service: its grant.refused entry. */
  const cases: [string, (f: Fakes) => Record<string, unknown>][] = [
    ['unknown_runtime', (f) => signRequest(body({ runtimeId: 'rt_nobody' }), f.key.privateKey)],
    [
      'runtime_not_active',
      (f) => {
        f.addRuntime('rt_revoked', {}, 'revoked');
        f.addSession('at_r', 'rt_revoked', f.key);
        return signRequest(
          body({ runtimeId: 'rt_revoked', session: { attestationId: 'at_r' } }),
          f.key.privateKey,
        );
      },
    ],
    [
      'session_not_live',
      (f) => signRequest(body({ session: { attestationId: 'at_gone' } }), f.key.privateKey),
    ],
    [
      'session_runtime_mismatch',
      (f) => {
        f.addRuntime('rt_other', {});
        f.addSession('at_other', 'rt_other', f.key);
        return signRequest(body({ session: { attestationId: 'at_other' } }), f.key.privateKey);
      },
    ],
    ['request_signature_invalid', () => signRequest(body(), sessionKey().privateKey)],
    [
      'request_stale',
      (f) =>
        signRequest(
          body({ issuedAt: new Date(NOW.getTime() - 61_000).toISOString() }),
          f.key.privateKey,
        ),
    ],
    [
      'grant_parent_not_found',
      (f) => signRequest(body({ parentGrantId: 'gr_missing' }), f.key.privateKey),
    ],
  ];
  for (const [expected, make] of cases) {
    it(`${expected}: one grant.refused entry with its code, the claimed runtime and the body`, async () => {
      const f = new Fakes();
      const req = make(f);
      expect(await code(f.service().request(req, NOW))).toBe(expected);
      const refused = f.events.filter((e) => e.type === 'grant.refused');
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({
        decision: expected,
        subject: req.runtimeId,
        digest: requestDigest(req),
        body: unsignedRequestText(req),
        facts: { code: expected, runtime: req.runtimeId, requestId: req.requestId },
      });
    });
  }

  it('request_replayed: the replay is on the record, the first request is a decision', async () => {
    const f = new Fakes();
    const svc = f.service();
    const req = signRequest(body(), f.key.privateKey);
    await svc.request(req, NOW);
    expect(await code(svc.request(req, NOW))).toBe('request_replayed');
    expect(f.events.map((e) => [e.type, e.decision])).toEqual([
      ['grant.decision', 'allow'],
      ['grant.refused', 'request_replayed'],
    ]);
  });

  it('a refusal answers within the audit deadline when the log is stuck, and is counted as dropped', async () => {
    const f = new Fakes();
    const svc = f.service();
    f.auditStuck = true;
    const stale = { issuedAt: new Date(NOW.getTime() - 61_000).toISOString() };
    expect(await code(svc.request(signRequest(body(stale), f.key.privateKey), NOW))).toBe(
      'request_stale',
    );
    f.auditStuck = false;
    const other = signRequest(body({ session: { attestationId: 'at_gone' } }), f.key.privateKey);
    expect(await code(svc.request(other, NOW))).toBe('session_not_live');
    expect(f.events).toHaveLength(1);
    expect(f.events[0]).toMatchObject({
      type: 'grant.refused',
      decision: 'session_not_live',
      facts: { dropped: 1 },
    });
  });

  it('a body that does not parse is not a refusal on the record (bad_request, nothing audited)', async () => {
    const f = new Fakes();
    expect(await code(f.service().request(body({ ttlSeconds: 0 }), NOW))).toBe('bad_request');
    expect(f.events).toHaveLength(0);
  });

  it('a request id that is no text is recorded by its digest, never as written', async () => {
    const f = new Fakes();
    const req = signRequest(
      body({ runtimeId: 'rt_nobody', requestId: 'q\nforged line' }),
      f.key.privateKey,
    );
    expect(await code(f.service().request(req, NOW))).toBe('unknown_runtime');
    const facts = f.events[0]?.facts as { runtime: string; requestId: string } | undefined;
    expect(facts?.runtime).toBe('rt_nobody');
    expect(facts?.requestId).toMatch(/^digest:[0-9a-f]{64}$/);
  });

  it('a runtime id that is no id is refused by the schema (bad_request), nothing recorded', async () => {
    const f = new Fakes();
    const req = signRequest(body({ runtimeId: 'rt\nforged line' }), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('bad_request');
    expect(f.events).toEqual([]);
  });

  it('a flood of 10,000 refusals writes a bounded number of entries, and counts the rest', async () => {
    const f = new Fakes();
    const svc = f.service({
      refusals: { windowSeconds: 60, maxEntriesPerWindow: 50, maxPerRuntime: 5 },
    });
    const bad = sessionKey().privateKey;
    // 10,000 bad signatures under 1,000 made-up runtime names plus the real one.
    const forged = new Map<string, Record<string, unknown>>();
    for (let i = 0; i < 10_000; i += 1) {
      const runtimeId = i % 10 === 0 ? RT : `rt_fake_${i % 1000}`;
      const req = forged.get(runtimeId) ?? signRequest(body({ runtimeId }), bad);
      forged.set(runtimeId, req);
      await code(svc.request(req, NOW));
    }
    const refused = f.events.filter((e) => e.type === 'grant.refused');
    expect(refused.length).toBeLessThanOrEqual(50);
    expect(refused.length).toBeGreaterThan(0);
    // The next window: the summary of what was only counted is written.
    const later = new Date(NOW.getTime() + 61_000);
    await code(svc.request(signRequest(body({ issuedAt: later.toISOString() }), bad), later));
    const last = f.events.at(-1)?.facts as { repeats: number; dropped: number } | undefined;
    const counted = (last?.repeats ?? 0) + (last?.dropped ?? 0);
    expect(counted).toBeGreaterThan(0);
    expect(refused.length + counted).toBeLessThanOrEqual(10_000);
  }, 60_000);
});

describe('the policy context (issue 18)', () => {
  it('a root grant: the audience and the gateways holding it; no parent', async () => {
    const f = new Fakes();
    const asked: string[] = [];
    f.gateways = {
      serving: (audience) => {
        asked.push(audience);
        return Promise.resolve([{ id: 'gw_00000000000000aa', name: 'tickets' }]);
      },
    };
    await f.service().request(signRequest(body(), f.key.privateKey), NOW);
    expect(asked).toEqual(['gw_tickets']);
    expect(f.policyCalls[0]?.audience).toEqual({
      name: 'gw_tickets',
      gateways: [{ id: 'gw_00000000000000aa', name: 'tickets' }],
    });
    expect(f.policyCalls[0]?.lineage).toMatchObject({ parentResource: null, parentRuntime: null });
  });

  it("a delegated child: the parent's resource, runtime and assigned (not requested) labels", async () => {
    const f = new Fakes();
    f.addRuntime('rt_parent', { team: 'ops' });
    const view = f.runtimes.get('rt_parent');
    if (view !== undefined) {
      f.runtimes.set('rt_parent', { ...view, requestedLabels: { team: 'payments', env: 'x' } });
    }
    await f.store.create(
      grantRecord('gr_p', {
        runtimeId: 'rt_parent',
        resource: 'acct:77',
        audience: 'gw_payments',
      }),
    );
    await f.service().request(signRequest(body({ parentGrantId: 'gr_p' }), f.key.privateKey), NOW);
    expect(f.policyCalls[0]?.lineage).toEqual({
      depth: 1,
      root: 'gr_p',
      parentAction: 'payments.transfer',
      delegated: true,
      parentResource: 'acct:77',
      parentRuntime: { id: 'rt_parent', labels: { team: 'ops' } },
    });
    // No gateway port: policies see none (a rule that needs one denies).
    expect(f.policyCalls[0]?.audience).toEqual({ name: 'gw_tickets', gateways: [] });
  });

  it('the gateways cannot be read: policy_unavailable, nothing decided, signed or recorded', async () => {
    const f = new Fakes();
    f.gateways = { serving: () => Promise.reject(new Error('LevelDB closed')) };
    const req = signRequest(body(), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('policy_unavailable');
    expect(f.policyCalls).toHaveLength(0);
    expect(f.signed).toHaveLength(0);
    expect(f.events.filter((e) => e.type === 'grant.decision')).toHaveLength(0);
  });
});
