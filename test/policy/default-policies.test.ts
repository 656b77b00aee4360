/**
 * Every rule of the shipped example policy set (policies/default), through the real engine
 * and the real schema.
 */
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createPolicyEngine,
  type PolicyEngine,
  type PolicyRequest,
} from '../../src/policy/index.js';

const policyDir = fileURLToPath(new URL('../../policies/default', import.meta.url));
const schemaFile = fileURLToPath(new URL('../../policies/grantor.cedarschema', import.meta.url));

let engine: PolicyEngine;

beforeAll(async () => {
  engine = await createPolicyEngine({ policyDir, schemaFile });
});

type Team = 'support' | 'payments' | 'ops';

function req(
  team: Team,
  action: string,
  opts: {
    mode?: 'session' | 'quote';
    ttl?: number;
    depth?: number;
    parentAction?: string;
    delegated?: boolean;
    resetSeen?: boolean;
    resource?: string;
    parentResource?: string;
    audience?: string;
    gateways?: { id: string; name: string }[];
  } = {},
): PolicyRequest {
  const depth = opts.depth ?? 0;
  return {
    runtime: { id: `rt_${team}`, name: `agent-${team}`, labels: { team } },
    action,
    resource: opts.resource ?? (action.startsWith('tickets') ? 'ticket:42' : 'acct:1234'),
    attestation: {
      pcrPolicy: 'debian-12',
      resetSeen: opts.resetSeen ?? false,
      sessionAgeSeconds: opts.mode === 'quote' ? 0 : 30,
      proofMode: opts.mode ?? 'session',
    },
    lineage: {
      depth,
      root: depth === 0 ? '' : 'gr_root',
      parentAction: opts.parentAction ?? null,
      delegated: opts.delegated ?? false,
      parentResource: depth === 0 ? null : (opts.parentResource ?? 'acct:1234'),
      parentRuntime: depth === 0 ? null : { id: `rt_${team}`, labels: { team } },
    },
    audience: {
      name: opts.audience ?? (action.startsWith('tickets') ? 'gw_tickets' : 'gw_payments'),
      gateways: opts.gateways ?? [{ id: 'gw_00000000000000aa', name: 'payments-gateway' }],
    },
    ttlSeconds: opts.ttl ?? 60,
  };
}

describe('the default policy set', () => {
  it('loads and validates against the schema', () => {
    const info = engine.info();
    expect(info?.files).toEqual(['guardrails.cedar', 'payments.cedar', 'tickets.cedar']);
    expect(info?.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  describe('tickets.read', () => {
    it('a support runtime reads tickets in session mode, ttl capped at 300 s', () => {
      const d = engine.decide(req('support', 'tickets.read'));
      expect(d.decision).toBe('allow');
      expect(d.determiningPolicies).toEqual(['tickets-read-support']);
      expect(d.obligations).toEqual({ requireQuote: false, maxTtlSeconds: 300 });
    });

    it('and in quote mode', () => {
      expect(engine.decide(req('support', 'tickets.read', { mode: 'quote' })).decision).toBe(
        'allow',
      );
    });

    it('other teams do not', () => {
      const d = engine.decide(req('payments', 'tickets.read'));
      expect(d.decision).toBe('deny');
      expect(d.reasons).toEqual(['no policy permits this request']);
    });

    it('a runtime without labels does not', () => {
      const r = {
        ...req('support', 'tickets.read'),
        runtime: { id: 'rt_x', name: 'x', labels: {} },
      };
      expect(engine.decide(r).decision).toBe('deny');
    });

    it('support may not update tickets (not permitted)', () => {
      expect(engine.decide(req('support', 'tickets.update')).decision).toBe('deny');
    });
  });

  describe('payments.transfer', () => {
    it('is denied in session mode with the reason that it needs a fresh quote', () => {
      const d = engine.decide(req('payments', 'payments.transfer'));
      expect(d.decision).toBe('deny');
      expect(d.reasons).toEqual(['moving money needs a fresh quote']);
      expect(d.determiningPolicies).toEqual(['payments-transfer-needs-quote']);
    });

    it('is allowed in quote mode for team=payments, requiring a quote, ttl capped at 60 s', () => {
      const d = engine.decide(req('payments', 'payments.transfer', { mode: 'quote', ttl: 600 }));
      expect(d.decision).toBe('allow');
      expect(d.obligations).toEqual({ requireQuote: true, maxTtlSeconds: 60 });
    });

    it('is denied for other teams even in quote mode', () => {
      const d = engine.decide(req('support', 'payments.transfer', { mode: 'quote' }));
      expect(d.decision).toBe('deny');
      expect(d.reasons).toEqual(['no policy permits this request']);
    });

    it('is denied after a TPM reset', () => {
      const d = engine.decide(
        req('payments', 'payments.transfer', { mode: 'quote', resetSeen: true }),
      );
      expect(d.decision).toBe('deny');
      expect(d.determiningPolicies).toEqual(['payments-transfer-no-reset']);
    });
  });

  describe('audit.delete', () => {
    it.each<Team>(['support', 'payments', 'ops'])(
      'is forbidden for team=%s in any mode',
      (team) => {
        for (const mode of ['session', 'quote'] as const) {
          const d = engine.decide(req(team, 'audit.delete', { mode }));
          expect(d.decision).toBe('deny');
          expect(d.reasons).toEqual(['audit data is never deleted']);
        }
      },
    );
  });

  describe('lineage', () => {
    it('payments.notify is allowed as a child of payments.transfer', () => {
      const d = engine.decide(
        req('payments', 'payments.notify', { depth: 1, parentAction: 'payments.transfer' }),
      );
      expect(d.decision).toBe('allow');
      expect(d.obligations.maxTtlSeconds).toBe(60);
    });

    it('payments.notify is not allowed as a root grant', () => {
      expect(engine.decide(req('payments', 'payments.notify')).decision).toBe('deny');
    });

    it('no other child grant is allowed', () => {
      const d = engine.decide(
        req('support', 'tickets.read', { depth: 1, parentAction: 'tickets.read' }),
      );
      expect(d.decision).toBe('deny');
      expect(d.reasons).toEqual([
        'a child grant may only be payments.notify under payments.transfer',
      ]);
    });

    it('a transfer cannot be a child grant', () => {
      const d = engine.decide(
        req('payments', 'payments.transfer', {
          mode: 'quote',
          depth: 1,
          parentAction: 'payments.transfer',
        }),
      );
      expect(d.decision).toBe('deny');
    });

    it('depth beyond 2 is refused', () => {
      const d = engine.decide(
        req('payments', 'payments.notify', { depth: 3, parentAction: 'payments.transfer' }),
      );
      expect(d.decision).toBe('deny');
      expect(d.reasons).toContain('a grant lineage is at most 2 deep');
    });

    it('delegation to another runtime is refused', () => {
      const d = engine.decide(
        req('payments', 'payments.notify', {
          depth: 1,
          parentAction: 'payments.transfer',
          delegated: true,
        }),
      );
      expect(d.decision).toBe('deny');
      expect(d.reasons).toEqual(['delegation to another runtime is not allowed']);
    });
  });

  describe('the request whole: parent resource, audience and gateways (issue 18)', () => {
    const notify = (over: Parameters<typeof req>[2] = {}) =>
      req('payments', 'payments.notify', { depth: 1, parentAction: 'payments.transfer', ...over });

    it("a notify child for its transfer's account is allowed; for any other account denied", () => {
      expect(engine.decide(notify({ resource: 'acct:1234' })).decision).toBe('allow');
      for (const resource of ['acct:0', 'acct:39', 'acct:12345', 'acct:1234 ']) {
        const d = engine.decide(notify({ resource }));
        expect(d.decision, resource).toBe('deny');
        expect(d.determiningPolicies).toEqual(['payments-notify-own-account']);
        expect(d.reasons).toEqual(["a payments.notify child must name its transfer's account"]);
      }
    });

    it('payments only for the payments audiences', () => {
      const quote = { mode: 'quote' as const };
      for (const audience of ['gw_payments', 'gw_demo']) {
        expect(
          engine.decide(req('payments', 'payments.transfer', { ...quote, audience })).decision,
        ).toBe('allow');
      }
      for (const audience of ['gw_tickets', '', 'gw_payments2']) {
        const d = engine.decide(req('payments', 'payments.transfer', { ...quote, audience }));
        expect(d.decision, audience).toBe('deny');
        expect(d.determiningPolicies).toEqual(['payments-audiences']);
      }
      expect(engine.decide(notify({ audience: 'gw_tickets' })).determiningPolicies).toEqual([
        'payments-audiences',
      ]);
    });

    it('payments only while an enrolled gateway holds the audience', () => {
      const d = engine.decide(
        req('payments', 'payments.transfer', { mode: 'quote', gateways: [] }),
      );
      expect(d.decision).toBe('deny');
      expect(d.reasons).toEqual(['no enrolled gateway holds this audience']);
      expect(engine.decide(notify({ gateways: [] })).decision).toBe('deny');
    });

    it('tickets are not bound to an audience by the shipped set', () => {
      expect(
        engine.decide(req('support', 'tickets.read', { audience: 'gw_x', gateways: [] })).decision,
      ).toBe('allow');
    });
  });

  it('no grant lives longer than an hour', () => {
    const d = engine.decide(req('support', 'tickets.read', { ttl: 3601 }));
    expect(d.decision).toBe('deny');
    expect(d.reasons).toEqual(['no grant lives longer than one hour']);
    expect(engine.decide(req('support', 'tickets.read', { ttl: 3600 })).decision).toBe('allow');
  });
});
