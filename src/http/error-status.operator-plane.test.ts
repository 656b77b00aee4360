import { describe, expect, it } from 'vitest';
import {
  EkCaBundleInvalidError,
  ReferencePolicyNotFoundError,
  ReferencePolicyStateError,
} from '../attestation/errors.js';
import { statusForCode } from './error-status.js';

describe('operator-managed attestation trust codes', () => {
  it('map to 400, 404 and 409', () => {
    const errors = [
      new EkCaBundleInvalidError('x', { reason: 'empty' }),
      new ReferencePolicyNotFoundError('p'),
      new ReferencePolicyStateError('p', true),
    ];
    expect(errors.map((e) => [e.code, statusForCode(e.code)])).toEqual([
      ['ek_ca_bundle_invalid', 400],
      ['reference_policy_not_found', 404],
      ['reference_policy_state_invalid', 409],
    ]);
  });
});
