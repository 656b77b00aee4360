/**
 * Issue 18, item 3, on the real parts (test/grants/rig.ts: swtpm, SoftHSM2, Cedar over
 * policies/default, LevelDB, the enrolled gateways): policies see the request whole (the
 * audience and the gateways holding it, the parent's resource, runtime and labels), and the
 * shipped rules refuse what they must. Before, the forty notify children for acct:0..39
 * under a transfer for acct:1234 were all issued.
 */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GrantService } from '../../src/grants/index.js';
import { repoRoot } from '../rig/sim.js';
import {
  attest,
  codeOf,
  notifyChild,
  paymentsRuntime,
  requestTransfer,
  startRig,
  transferBody,
  type AttestedRuntime,
  type Rig,
} from './rig.js';

let rig: Rig;
let payments: AttestedRuntime;
let dir: string;

beforeAll(async () => {
  rig = await startRig();
  payments = await paymentsRuntime(rig, 'payments-context');
  dir = await mkdtemp(join(tmpdir(), 'grantor-context-'));
}, 180_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rig.close();
});

interface ErrorReply {
  error: { code: string; details?: { reasons?: string[] } };
}

const post = (payload: Record<string, unknown>) =>
  rig.app.inject({ method: 'POST', url: '/v1/grants', payload });

const transfer = (over: Record<string, unknown> = {}) =>
  requestTransfer(rig, payments.runtime, over);

const notify = (parentGrantId: string, resource: string, over: Record<string, unknown> = {}) =>
  notifyChild(payments, parentGrantId, resource, over);

describe('the shipped rules see the request whole', () => {
  it("notify children for acct:0..39 under a transfer for acct:1234 are denied; the transfer's own account is allowed", async () => {
    const t = await transfer();
    expect(t.statusCode, t.body).toBe(201);
    const root = t.json<{ grantId: string }>().grantId;
    for (let i = 0; i < 40; i += 1) {
      const res = await post(notify(root, `acct:${i}`));
      expect(res.statusCode, res.body).toBe(403);
      const err = res.json<ErrorReply>().error;
      expect(err.code).toBe('policy_denied');
      expect(err.details?.reasons).toEqual([
        "a payments.notify child must name its transfer's account",
      ]);
    }
    const own = await post(notify(root, 'acct:1234'));
    expect(own.statusCode, own.body).toBe(201);
    const lin = await rig.app.inject({ method: 'GET', url: `/v1/grants/${root}/lineage` });
    expect(lin.json<{ descendants: { resource: string }[] }>().descendants).toEqual([
      expect.objectContaining({ resource: 'acct:1234' }),
    ]);
  }, 180_000);

  it('payments only for the payments audience: a transfer aimed at the tickets gateway is denied', async () => {
    const res = await transfer({ audience: 'gw_tickets' });
    expect(res.statusCode, res.body).toBe(403);
    expect(res.json<ErrorReply>().error.details?.reasons).toEqual([
      "payments grants are only for the payments gateways' audiences",
    ]);
  }, 60_000);

  it('payments only where an enrolled gateway holds the audience (gw_demo has none here)', async () => {
    const res = await transfer({ audience: 'gw_demo' });
    expect(res.statusCode, res.body).toBe(403);
    expect(codeOf(res.body)).toBe('policy_denied');
    expect(res.json<ErrorReply>().error.details?.reasons).toEqual([
      'no enrolled gateway holds this audience',
    ]);
  }, 60_000);
});

describe('rules an operator writes over the new context', () => {
  /** policies/default plus `extra`, decided by its own engine over the rig's parts. */
  async function withRule(name: string, extra: string): Promise<GrantService> {
    const policyDir = join(dir, name);
    await cp(join(repoRoot, 'policies/default'), policyDir, { recursive: true });
    await writeFile(join(policyDir, 'site.cedar'), extra);
    return rig.grantsWithPolicy(policyDir);
  }

  async function code(svc: GrantService, body: Record<string, unknown>): Promise<string> {
    try {
      await svc.request(body, new Date());
      return 'issued';
    } catch (e) {
      return (e as { code?: string }).code ?? 'thrown';
    }
  }

  it('only these gateways for payments: another gateway enrolled for the audience is refused until it is revoked', async () => {
    const svc = await withRule(
      'gateways',
      `@id("payments-only-these-gateways")
@reason("a gateway not listed for payments holds this audience")
forbid (principal, action in [Action::"payments.transfer", Action::"payments.notify"], resource)
unless { ["${rig.gateway.id}"].containsAll(context.audience.gateways) };
`,
    );
    const body = () => transferBody(rig, payments.runtime);
    expect(await code(svc, await body())).toBe('issued');
    const rogue = await rig.gateways.enroll(
      { name: 'rogue', audiences: ['gw_payments', 'gw_tickets'] },
      'cli',
    );
    expect(await code(svc, await body())).toBe('policy_denied');
    await rig.gateways.revoke(rogue.gateway.id, 'cli');
    expect(await code(svc, await body())).toBe('issued');
  }, 120_000);

  it("a rule over the parent's runtime labels sees the operator-assigned ones", async () => {
    const svc = await withRule(
      'parent-labels',
      `@id("notify-only-under-prod-runtimes")
@reason("the parent runtime is not labelled env=prod")
forbid (principal, action == Action::"payments.notify", resource)
unless { context.lineage.parentLabels has env && context.lineage.parentLabels.env == "prod" };
`,
    );
    const t = await transfer();
    expect(t.statusCode, t.body).toBe(201);
    const root = t.json<{ grantId: string }>().grantId;
    expect(await code(svc, notify(root, 'acct:1234'))).toBe('policy_denied');
    // An operator labels the runtime env=prod (its session ends: it attests again).
    await rig.attestation.assignLabels(
      payments.runtime.runtimeId,
      { team: 'payments', env: 'prod' },
      { id: 'op_rig', role: 'operator' },
    );
    payments.session = await attest(rig, payments.runtime);
    expect(await code(svc, notify(root, 'acct:1234'))).toBe('issued');
  }, 120_000);
});
