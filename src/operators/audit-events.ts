/**
 * How the operator plane's acts read in the audit log: each approval step and each
 * credential or registry change as one entry, with its actors in `reasons` and its typed
 * facts. The composition root hands `auditOperatorEvents(audit)` to `createOperators`.
 */
import { factId, factList, factText, type AuditEvent, type AuditService } from '../audit/index.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import type { ApprovalEvent } from './approvals.js';
import type { CredentialEvent, CredentialEventSink } from './events.js';

function actorName(a: ApprovalEvent['actors'][number]): string {
  return `${a.role}:${a.id}${a.person === undefined ? '' : `:${a.person}`}`;
}

export function approvalAuditEvent(event: ApprovalEvent): AuditEvent {
  const actors = event.actors.map(actorName);
  return {
    type: event.type,
    subject: event.approvalId,
    reasons: [event.act, ...actors],
    digest: jcsSha256Hex(event),
    facts: {
      approval: factId(event.approvalId),
      act: factId(event.act),
      target: factText(event.target),
      paramsDigest: jcsSha256Hex(event.params),
      actors: factList(actors),
    },
  };
}

export function credentialAuditEvent(event: CredentialEvent): AuditEvent {
  return {
    type: event.type,
    subject: event.subject,
    reasons: [
      ...(event.person === undefined ? [] : [`person:${event.person}`]),
      `by:${event.by}`,
      ...(event.roles ?? []).map((r) => `role:${r}`),
      ...(event.audiences ?? []).map((a) => `audience:${a}`),
    ],
    digest: jcsSha256Hex(event),
    facts: {
      credential: factText(event.subject),
      person: event.person === undefined ? null : factId(event.person),
      actor: factId(event.by),
      roles: factList(event.roles ?? []),
      audiences: factList(event.audiences ?? []),
    },
  };
}

/** The two hooks of `OperatorsOptions`, each writing its entry before the act takes effect. */
export function auditOperatorEvents(audit: Pick<AuditService, 'append'>): {
  readonly onApprovalEvent: (event: ApprovalEvent) => Promise<void>;
  readonly onCredentialEvent: CredentialEventSink;
} {
  return {
    onApprovalEvent: async (event) => {
      await audit.append(approvalAuditEvent(event));
    },
    onCredentialEvent: async (event) => {
      await audit.append(credentialAuditEvent(event));
    },
  };
}
