import { describe, expect, it } from 'vitest';
import { GrantorError } from '../shared/errors.js';
import { MemoryApprovalStore } from './approval-store.memory.js';
import {
  approvalTarget,
  Approvals,
  DEFAULT_APPROVAL_POLICY,
  type ApprovalEvent,
} from './approvals.js';
import type { OperatorActor, Role } from './roles.js';
import { refusalCode as code } from '../shared/testing/refusal.js';

const actor = (id: string, role: Role, name = id, person = name.toLowerCase()): OperatorActor => ({
  kind: 'operator',
  id,
  person,
  role,
  name,
  credential: 'token',
  expiresAt: '2027-01-01T00:00:00Z',
});
const kev = actor('tok_kev', 'key_custodian', 'kev');
const kim = actor('tok_kim', 'key_custodian', 'kim');
const kai = actor('tok_kai', 'key_custodian', 'kai');
const kit = actor('tok_kit', 'key_custodian', 'kit');
const olga = actor('tok_olga', 'operator', 'olga');

function setup() {
  let now = Date.parse('2026-03-01T00:00:00Z');
  const events: ApprovalEvent[] = [];
  const approvals = new Approvals({
    store: new MemoryApprovalStore(),
    now: () => now,
    onEvent: (e) => {
      events.push(e);
      return Promise.resolve();
    },
  });
  const destroyed: string[] = [];
  // The keys service is not ours: a fake "destroy" that records what it destroyed.
  const destroyKey = (kid: string) =>
    approvals.perform('key.destroy', { kid }, () => {
      destroyed.push(kid);
      return Promise.resolve(kid);
    });
  return {
    approvals,
    events,
    destroyed,
    destroyKey,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('dual control', () => {
  it('refuses a key destroy with one approval and performs it once with two', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    expect(await code(s.destroyKey('k1'))).toBe('approval_required');
    await s.approvals.approve(kim, req.id);
    expect(await code(s.destroyKey('k1'))).toBe('approval_required');
    expect(s.destroyed).toEqual([]);
    await s.approvals.approve(kai, req.id);
    expect(await s.destroyKey('k1')).toBe('k1');
    expect(s.destroyed).toEqual(['k1']);
    // Single use: the same approvals never destroy twice.
    expect(await code(s.destroyKey('k1'))).toBe('approval_reused');
    expect(s.destroyed).toEqual(['k1']);
    expect(s.events.map((e) => e.type)).toEqual([
      'approval.requested',
      'approval.given',
      'approval.given',
      'approval.consumed',
    ]);
    expect(s.events.at(-1)?.actors.map((a) => a.id)).toEqual(['tok_kim', 'tok_kai']);
  });

  it('refuses a destroy without any request', async () => {
    const s = setup();
    expect(await code(s.destroyKey('k1'))).toBe('approval_required');
  });

  it('binds approvals to the exact act and target', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await s.approvals.approve(kim, req.id);
    await s.approvals.approve(kai, req.id);
    expect(await code(s.destroyKey('k2'))).toBe('approval_required');
    expect(await code(s.approvals.consume('key.destroy', { kid: 'k1', force: true }))).toBe(
      'approval_required',
    );
    expect(approvalTarget('key.destroy', { kid: 'k1' })).not.toBe(
      approvalTarget('ekca.replace', { kid: 'k1' }),
    );
    expect(await s.destroyKey('k1')).toBe('k1');
  });

  it('refuses a second approval by the same person, under any credential or name', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await s.approvals.approve(kim, req.id);
    expect(await code(s.approvals.approve(kim, req.id))).toBe('approval_duplicate_actor');
    // Another credential of the same person, with another display name.
    const kimByCert = actor('cert:0123456789abcdef:01', 'key_custodian', 'Kim Smith', 'kim');
    expect(await code(s.approvals.approve(kimByCert, req.id))).toBe('approval_duplicate_actor');
    expect(await code(s.destroyKey('k1'))).toBe('approval_required');
  });

  it('refuses the requester approving its own request, under any credential', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    expect(await code(s.approvals.approve(kev, req.id))).toBe('approval_own_request');
    const kevByCert = actor('cert:0123456789abcdef:02', 'key_custodian', 'Kev', 'kev');
    expect(await code(s.approvals.approve(kevByCert, req.id))).toBe('approval_own_request');
  });

  it('counts no approval whose credential is no longer valid when used', async () => {
    const revoked = new Set<string>();
    const approvals = new Approvals({
      store: new MemoryApprovalStore(),
      credentialValid: (ref) => Promise.resolve(!revoked.has(ref.id)),
    });
    const req = await approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await approvals.approve(kim, req.id);
    await approvals.approve(kai, req.id);
    revoked.add('tok_kai');
    expect(await code(approvals.consume('key.destroy', { kid: 'k1' }))).toBe('approval_required');
    await approvals.approve(kit, req.id);
    expect((await approvals.consume('key.destroy', { kid: 'k1' })).consumedAt).toBeDefined();
  });

  it('refuses a second open request for the same act and parameters', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    expect(await code(s.approvals.request(kim, 'key.destroy', { kid: 'k1' }))).toBe(
      'approval_request_open',
    );
    await s.approvals.approve(kim, req.id);
    await s.approvals.approve(kai, req.id);
    await s.destroyKey('k1');
    // Once used (or expired), a new one may be opened.
    await s.approvals.request(kim, 'key.destroy', { kid: 'k1' });
  });

  it('caps the open requests of one person', async () => {
    const approvals = new Approvals({ store: new MemoryApprovalStore(), maxOpenPerPerson: 3 });
    for (const kid of ['k1', 'k2', 'k3']) await approvals.request(kev, 'key.destroy', { kid });
    expect(await code(approvals.request(kev, 'key.destroy', { kid: 'k4' }))).toBe(
      'approval_request_limit',
    );
    await approvals.request(kim, 'key.destroy', { kid: 'k4' });
  });

  it('checks the target before using the approvals', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await s.approvals.approve(kim, req.id);
    await s.approvals.approve(kai, req.id);
    const refused = s.approvals.perform(
      'key.destroy',
      { kid: 'k1' },
      () => Promise.resolve('done'),
      () => Promise.reject(new GrantorError('key_not_found', 'no such key')),
    );
    expect(await code(refused)).toBe('key_not_found');
    expect(await s.destroyKey('k1')).toBe('k1');
  });

  it('refuses approvers and requesters without an allowed role', async () => {
    const s = setup();
    expect(await code(s.approvals.request(olga, 'key.destroy', { kid: 'k1' }))).toBe('forbidden');
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    expect(await code(s.approvals.approve(olga, req.id))).toBe('forbidden');
  });

  it('refuses an expired request, for approving and for consuming', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await s.approvals.approve(kim, req.id);
    s.advance(DEFAULT_APPROVAL_POLICY['key.destroy'].requestTtlSeconds * 1000);
    expect(await code(s.approvals.approve(kai, req.id))).toBe('approval_expired');
    expect(await code(s.destroyKey('k1'))).toBe('approval_expired');
  });

  it('refuses when enough approvals were given but one has expired', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await s.approvals.approve(kim, req.id);
    s.advance(DEFAULT_APPROVAL_POLICY['key.destroy'].approvalTtlSeconds * 1000);
    await s.approvals.approve(kai, req.id);
    expect(await code(s.destroyKey('k1'))).toBe('approval_expired');
    // A fresh approval from a third custodian makes two valid ones again.
    await s.approvals.approve(kit, req.id);
    expect(await s.destroyKey('k1')).toBe('k1');
  });

  it('refuses approving a used request', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await s.approvals.approve(kim, req.id);
    await s.approvals.approve(kai, req.id);
    await s.destroyKey('k1');
    expect(await code(s.approvals.approve(kit, req.id))).toBe('approval_reused');
  });

  it('lets only one of two concurrent consumes succeed', async () => {
    const s = setup();
    const req = await s.approvals.request(kev, 'key.destroy', { kid: 'k1' });
    await s.approvals.approve(kim, req.id);
    await s.approvals.approve(kai, req.id);
    const results = await Promise.allSettled([s.destroyKey('k1'), s.destroyKey('k1')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(s.destroyed).toEqual(['k1']);
  });

  it('refuses unknown acts and unknown requests', async () => {
    const s = setup();
    expect(await code(s.approvals.request(kim, 'key.export', { kid: 'k1' }))).toBe('bad_request');
    expect(await code(s.approvals.consume('key.export', {}))).toBe('bad_request');
    expect(await code(s.approvals.approve(kim, 'apr_0000000000000000'))).toBe('approval_not_found');
    expect(await code(s.approvals.get('apr_0000000000000000'))).toBe('approval_not_found');
  });

  it('does not record a step the audit refused', async () => {
    const approvals = new Approvals({
      store: new MemoryApprovalStore(),
      onEvent: () => Promise.reject(new GrantorError('audit_unavailable', 'audit down')),
    });
    expect(await code(approvals.request(kev, 'key.destroy', { kid: 'k1' }))).toBe(
      'audit_unavailable',
    );
    expect(await approvals.list()).toEqual([]);
  });

  it('honours a configured M', async () => {
    const approvals = new Approvals({
      store: new MemoryApprovalStore(),
      policy: {
        ...DEFAULT_APPROVAL_POLICY,
        'ekca.replace': { ...DEFAULT_APPROVAL_POLICY['ekca.replace'], required: 3 },
      },
    });
    const ops = ['o1', 'o2', 'o3'].map((n) => actor(`tok_${n}`, 'operator', n));
    const req = await approvals.request(olga, 'ekca.replace', { bundle: 'ab12' });
    for (const [i, op] of ops.entries()) {
      if (i === 2) break;
      await approvals.approve(op, req.id);
    }
    expect(await code(approvals.consume('ekca.replace', { bundle: 'ab12' }))).toBe(
      'approval_required',
    );
    const third = ops[2];
    if (third === undefined) throw new Error('unreachable');
    await approvals.approve(third, req.id);
    expect((await approvals.consume('ekca.replace', { bundle: 'ab12' })).consumedAt).toBeDefined();
    expect(
      () =>
        new Approvals({
          store: new MemoryApprovalStore(),
          policy: {
            ...DEFAULT_APPROVAL_POLICY,
            'key.destroy': { ...DEFAULT_APPROVAL_POLICY['key.destroy'], required: 0 },
          },
        }),
    ).toThrow(TypeError);
  });
});
