import { describe, expect, it } from 'vitest';
import { checkEvent } from '../audit/entry.js';
import { keyLifecycleAuditEvent } from './audit-events.js';

describe('key lifecycle as audit entries', () => {
  it('a rotation reads key.rotated with the new and the previous kid', () => {
    const e = checkEvent(
      keyLifecycleAuditEvent({
        type: 'key_rotated',
        kid: 'grant-2',
        purpose: 'grant',
        previousKid: 'grant-1',
        reason: 'scheduled',
        at: '2030-01-01T00:00:00.000Z',
      }),
    );
    expect(e.type).toBe('key.rotated');
    expect(e.subject).toBe('grant-2');
    expect(e.reasons).toEqual(['scheduled']);
    expect(e.facts).toEqual({
      kid: 'grant-2',
      purpose: 'grant',
      previousKid: 'grant-1',
      reason: 'scheduled',
    });
  });

  it('a first key has no previous kid', () => {
    const e = keyLifecycleAuditEvent({
      type: 'key_created',
      kid: 'audit-1',
      purpose: 'audit',
      reason: 'first_start',
      at: '2030-01-01T00:00:00.000Z',
    });
    expect(e.type).toBe('key.created');
    expect(e.facts).toMatchObject({ previousKid: null });
  });
});
