/** A policy request for tests: a support runtime reading a ticket in session mode. */
import type { PolicyRequest } from '../types.js';

export function policyRequest(overrides: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    runtime: { id: 'rt_1', name: 'agent-1', labels: { team: 'support' } },
    action: 'tickets.read',
    resource: 'ticket:1',
    attestation: {
      pcrPolicy: 'base',
      resetSeen: false,
      sessionAgeSeconds: 10,
      proofMode: 'session',
    },
    lineage: { depth: 0, root: '', parentAction: null, delegated: false },
    ttlSeconds: 60,
    ...overrides,
  };
}
