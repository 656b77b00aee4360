import { describe, expect, it } from 'vitest';
import { checkEvent } from '../audit/entry.js';
import { approvalAuditEvent, auditOperatorEvents, credentialAuditEvent } from './audit-events.js';
import type { ApprovalEvent } from './approvals.js';
import type { CredentialEvent } from './events.js';

const approval: ApprovalEvent = {
  type: 'approval.given',
  approvalId: 'apr_1',
  act: 'key.destroy',
  target: 'kid-1',
  params: {},
  actors: [
    { id: 'tok_a', person: 'alice', name: 'Alice', role: 'key_custodian' },
    { id: 'tok_b', name: 'Bob', role: 'key_custodian' },
  ],
  time: '2030-01-01T00:00:00.000Z',
};

const credential: CredentialEvent = {
  type: 'gateway.enrolled',
  subject: 'gw_1',
  person: 'carol',
  by: 'alice:tok_a',
  audiences: ['payments'],
  time: '2030-01-01T00:00:00.000Z',
};

describe('operator acts as audit entries', () => {
  it('an approval step names its act and each actor with role, credential and person', () => {
    const e = checkEvent(approvalAuditEvent(approval));
    expect(e.type).toBe('approval.given');
    expect(e.subject).toBe('apr_1');
    expect(e.reasons).toEqual(['key.destroy', 'key_custodian:tok_a:alice', 'key_custodian:tok_b']);
    expect(e.facts).toMatchObject({
      approval: 'apr_1',
      act: 'key.destroy',
      target: 'kid-1',
      actors: ['key_custodian:tok_a:alice', 'key_custodian:tok_b'],
    });
  });

  it('a credential change names the person, who made it and what it grants', () => {
    const e = checkEvent(credentialAuditEvent(credential));
    expect(e.reasons).toEqual(['person:carol', 'by:alice:tok_a', 'audience:payments']);
    expect(e.facts).toMatchObject({
      credential: 'gw_1',
      person: 'carol',
      audiences: ['payments'],
      roles: [],
    });
  });

  it('the hooks append before they resolve, and a failed append fails the act', async () => {
    const appended: string[] = [];
    const hooks = auditOperatorEvents({
      append: (event) => {
        appended.push(event.type);
        return Promise.resolve({ seq: 0 } as never);
      },
    });
    await hooks.onApprovalEvent(approval);
    await hooks.onCredentialEvent(credential);
    expect(appended).toEqual(['approval.given', 'gateway.enrolled']);
    const failing = auditOperatorEvents({ append: () => Promise.reject(new Error('log down')) });
    await expect(failing.onCredentialEvent(credential)).rejects.toThrow('log down');
  });
});
