/**
 * Issue 18, item 2, on the real parts (test/grants/rig.ts with operator-managed trust:
 * swtpm, SoftHSM2, Cedar over policies/default, LevelDB, the anchored audit log): disabling
 * or replacing the reference policy a runtime's attestation rested on, and replacing the EK
 * CA bundle so that its EK no longer chains, end its session and revoke its live grants and
 * their descendants, audited with counts in one entry; a revoked grant then refuses redeem,
 * and a runtime whose EK CA was dropped cannot attest again until it is trusted again.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPcrs } from '../attestation/harness.js';
import { makeEkCa } from '../appliance/dual-control.rig.js';
import {
  PCRS,
  attest,
  expectRedeemRevoked,
  lineageStates,
  transferTree,
  useTrustRig,
} from './rig.js';

const t = useTrustRig('payments-cascade');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-cascade-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Entry {
  readonly type: string;
  readonly subject: string;
  readonly reasons?: readonly string[];
}

/** A transfer for acct:1234 and two notify children: three live grants. */
async function tree(): Promise<string[]> {
  const { root, kids } = await transferTree(t.rig, t.payments, 2);
  return [root, ...kids];
}

const states = (root: string): Promise<string[]> => lineageStates(t.rig, root);

async function cascadeEntries(subject: string): Promise<Entry[]> {
  const log: readonly Entry[] = await t.rig.audit.entries(0, 100_000);
  return log.filter((e) => e.type === 'grant.revoke' && e.subject === subject);
}

/** Every grant of `ids` refuses redeem (410 grant_revoked) and the session is gone. */
async function expectCascaded(ids: string[]): Promise<void> {
  expect(t.rig.attestation.sessionFor(t.payments.session.attestationId)).toBeUndefined();
  await expectRedeemRevoked(t.rig, ids);
  expect(await states(ids[0] ?? '')).toEqual(['revoked', 'revoked', 'revoked']);
}

describe('trust withdrawn cascades to sessions and grants', () => {
  it('disabling the reference policy ends the session and revokes the grants, one entry with counts', async () => {
    const ids = await tree();
    await t.trust.setReferencePolicyEnabled(t.policy, false, t.operator);
    await expectCascaded(ids);
    const [entry] = await cascadeEntries(`refpolicy:${t.policy}`);
    expect(entry?.reasons).toEqual(
      expect.arrayContaining([
        'by:operator:op_rig',
        'cause:refpolicy.disable',
        'runtimes:1',
        'count:3',
        ...ids,
      ]),
    );
    expect(entry?.reasons?.length).toBeLessThanOrEqual(32);
    // Enabling withdraws nothing; the runtime attests again.
    await t.trust.setReferencePolicyEnabled(t.policy, true, t.operator);
    t.payments.session = await attest(t.rig, t.payments.runtime);
    expect(await cascadeEntries(`refpolicy:${t.policy}`)).toHaveLength(1);
  }, 180_000);

  it('replacing the reference policy (refpolicy.put of an existing one) cascades the same way', async () => {
    const ids = await tree();
    const values = await readPcrs(t.rig.tools, PCRS);
    const res = await t.trust.putReferencePolicy(
      t.policy,
      {
        name: t.policy,
        catchAll: true,
        pcrs: { sha256: Object.fromEntries(PCRS.map((p, i) => [String(p), [values[i]]])) },
        allowReset: true,
      },
      t.operator,
    );
    expect(res.replaced).toBe(true);
    await expectCascaded(ids);
    const entries = await cascadeEntries(`refpolicy:${t.policy}`);
    expect(entries.at(-1)?.reasons).toEqual(
      expect.arrayContaining(['cause:refpolicy.put', 'runtimes:1', 'count:3']),
    );
    t.payments.session = await attest(t.rig, t.payments.runtime);
  }, 180_000);

  it("an EK CA bundle that keeps the runtime's CA changes nothing; one without it cascades", async () => {
    const ids = await tree();
    const other = await makeEkCa(dir, 'other-vendor');
    const kept = await t.trust.replaceEkCa(`${t.rig.runtimeTpm.ekCaPem}\n${other.pem}`, t.operator);
    expect(kept.certificates.length).toBeGreaterThanOrEqual(2);
    expect(t.rig.attestation.sessionFor(t.payments.session.attestationId)).toBeDefined();
    expect(await states(ids[0] ?? '')).toEqual(['live', 'live', 'live']);

    const dropped = await t.trust.replaceEkCa(other.pem, t.operator);
    await expectCascaded(ids);
    const entries = await cascadeEntries(`ekca:sha256:${dropped.sha256}`);
    expect(entries).toHaveLength(1);
    expect(entries[0]?.reasons).toEqual(
      expect.arrayContaining(['cause:ekca.replace', 'runtimes:1', 'count:3']),
    );
    // The bundle that kept the CA wrote no cascade.
    expect(await cascadeEntries(`ekca:sha256:${kept.sha256}`)).toEqual([]);
    // And the runtime cannot simply attest again: its EK is vouched for by no trusted CA.
    await expect(attest(t.rig, t.payments.runtime)).rejects.toThrow(
      /422 .*ek_certificate_untrusted/,
    );
    // Until an operator trusts its CA again.
    await t.trust.replaceEkCa(t.rig.runtimeTpm.ekCaPem, t.operator);
    t.payments.session = await attest(t.rig, t.payments.runtime);
    expect(t.rig.attestation.sessionFor(t.payments.session.attestationId)).toBeDefined();
  }, 180_000);
});
