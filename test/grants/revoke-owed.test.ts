/**
 * Issue 18: revocation never depends on the log, on the real parts (test/grants/rig.ts with
 * operator-managed trust: swtpm, SoftHSM2, Cedar, LevelDB, the anchored audit log). The log
 * refuses the `grant.revoke` entry (a log failing between two entries) during a trust
 * cascade, a runtime revoke and a grant revoke: the grants are revoked anyway (redeem
 * refuses them, the feed lists them), the answer says the entry is owed, and the entry
 * appears exactly once when the log takes it again, by the retry or at the next start after
 * the process died between the revocation and its entry. Before, the entry came first: the
 * log's refusal left every grant live.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditEntry } from '../../src/audit/index.js';
import type { GrantService } from '../../src/grants/index.js';
import { repoRoot } from '../rig/sim.js';
import { attest, expectRedeemRevoked, revokeRuntime, transferTree, useTrustRig } from './rig.js';

const t = useTrustRig('payments-owed');

afterEach(() => {
  t.rig.faults.auditRefuses = undefined;
});

const refuseRevokeEntries = (): void => {
  t.rig.faults.auditRefuses = (e) => e.type === 'grant.revoke';
};

async function revokeEntries(subject: string): Promise<AuditEntry[]> {
  return (await t.rig.audit.entries(0, 100_000)).filter(
    (e) => e.type === 'grant.revoke' && e.subject === subject,
  );
}

/** Every grant refuses redeem with grant_revoked, and the feed lists each as revoked. */
async function expectRevoked(ids: readonly string[]): Promise<void> {
  await expectRedeemRevoked(t.rig, ids);
  const feed = await t.rig.app.inject({
    method: 'GET',
    url: '/v1/revocations?since=0',
    headers: t.rig.gateway.headers,
  });
  expect(feed.statusCode, feed.body).toBe(200);
  const listed = feed
    .json<{ events: { kind: string; grantId?: string }[] }>()
    .events.flatMap((e) => (e.kind === 'grant' && e.grantId !== undefined ? [e.grantId] : []));
  expect(listed).toEqual(expect.arrayContaining([...ids]));
}

/** Waits (polling, no time bound asserted) until `subject` has exactly one entry. */
async function expectOneEntryEventually(subject: string): Promise<AuditEntry> {
  await vi.waitFor(
    async () => {
      expect(await revokeEntries(subject)).toHaveLength(1);
    },
    { timeout: 60_000, interval: 250 },
  );
  const [entry] = await revokeEntries(subject);
  if (entry === undefined) throw new Error('no entry');
  return entry;
}

describe('revocation that never depends on the log', () => {
  it('a trust cascade whose entry the log refuses still revokes the grants; the entry follows once', async () => {
    const { root, kids } = await transferTree(t.rig, t.payments, 2);
    refuseRevokeEntries();
    // The change itself is recorded; only the cascade's entry is refused.
    await t.trust.setReferencePolicyEnabled(t.policy, false, t.operator);
    await expectRevoked([root, ...kids]);
    expect(await revokeEntries(`refpolicy:${t.policy}`)).toEqual([]);
    expect(t.rig.grants.auditOwed).toBe(1);
    t.rig.faults.auditRefuses = undefined;
    const entry = await expectOneEntryEventually(`refpolicy:${t.policy}`);
    expect(entry.reasons).toEqual(expect.arrayContaining(['cause:refpolicy.disable', 'count:3']));
    await vi.waitFor(() => {
      expect(t.rig.grants.auditOwed).toBe(0);
    });
    await t.trust.setReferencePolicyEnabled(t.policy, true, t.operator);
    t.payments.session = await attest(t.rig, t.payments.runtime);
  }, 180_000);

  it('killed between the revocation and its entry: the next start writes the entry, once', async () => {
    const { root, kids } = await transferTree(t.rig, t.payments, 2);
    refuseRevokeEntries();
    const res = await t.rig.app.inject({ method: 'POST', url: `/v1/grants/${root}/revoke` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      grantId: root,
      revoked: expect.arrayContaining([root, ...kids]) as unknown,
      auditSeq: null,
      auditPending: true,
    });
    // The process dies here: no retry of this run will ever append the entry.
    t.rig.grants.stopAuditRetries();
    t.rig.faults.auditRefuses = undefined;
    await expectRevoked([root, ...kids]);
    expect(await revokeEntries(root)).toEqual([]);
    // The next start, on the same store and log: it appends what the dead run owed.
    const next: GrantService = await t.rig.grantsWithPolicy(join(repoRoot, 'policies/default'));
    await expectOneEntryEventually(root);
    expect(next.auditOwed).toBe(0);
    const lineage = await next.lineage(root, new Date());
    expect([lineage.grant.state, ...lineage.descendants.map((d) => d.state)]).toEqual([
      'revoked',
      'revoked',
      'revoked',
    ]);
    next.stopAuditRetries();
    // The rig's own service serves on (the next test): its retries run again.
    expect(await t.rig.grants.resumeOwedAudits()).toBe(0);
  }, 180_000);
  it('POST /v1/runtimes/{id}/revoke: grants revoked and the runtime in the feed, the entry owed then written once', async () => {
    // Last: the rig's one EK is enrolled once; this revokes its runtime.
    const other = t.payments;
    const { root, kids } = await transferTree(t.rig, other, 1);
    refuseRevokeEntries();
    const res = await revokeRuntime(t.rig, other.runtime.runtimeId);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      runtimeId: other.runtime.runtimeId,
      state: 'revoked',
      grantsRevoked: 2,
      grantsAuditPending: true,
    });
    await expectRevoked([root, ...kids]);
    const feed = await t.rig.app.inject({
      method: 'GET',
      url: '/v1/revocations?since=0',
      headers: t.rig.gateway.headers,
    });
    const events = feed.json<{ events: { seq: number; kind: string; runtimeId: string }[] }>()
      .events;
    const runtimeEvent = events.find(
      (e) => e.kind === 'runtime' && e.runtimeId === other.runtime.runtimeId,
    );
    expect(runtimeEvent).toBeDefined();
    t.rig.faults.auditRefuses = undefined;
    await expectOneEntryEventually(other.runtime.runtimeId);
  }, 180_000);
});
