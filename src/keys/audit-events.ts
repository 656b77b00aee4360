/**
 * How a key's lifecycle reads in the audit log: `key.created`, `key.rotated`, ... with the
 * kid as subject and the reason. The composition root hands `auditKeyLifecycle(audit)` to
 * `createKeys` as its `onLifecycle` hook. (src/audit imports this domain for the anchor
 * key's PKCS#11 library, so only leaf modules of src/audit are imported here.)
 */
import type { AuditEvent } from '../audit/entry.js';
import { factId } from '../audit/facts.js';
import type { AuditService } from '../audit/service.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import type { KeyLifecycleEvent } from './key-service.js';

export function keyLifecycleAuditEvent(event: KeyLifecycleEvent): AuditEvent {
  return {
    type: `key.${event.type.replace(/^key_/, '')}`,
    subject: event.kid,
    reasons: [event.reason],
    digest: jcsSha256Hex(event),
    facts: {
      kid: factId(event.kid),
      purpose: event.purpose,
      previousKid: event.previousKid === undefined ? null : factId(event.previousKid),
      reason: event.reason,
    },
  };
}

export function auditKeyLifecycle(
  audit: Pick<AuditService, 'append'>,
): (event: KeyLifecycleEvent) => Promise<void> {
  return async (event) => {
    await audit.append(keyLifecycleAuditEvent(event));
  };
}
