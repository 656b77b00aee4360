/**
 * The attestation verifier's configuration section: trusted EK CAs, reference policies,
 * enrollment rules and the bounds of what a runtime may send. Composed into AppConfig by
 * src/shared/config.ts.
 */
import { resolve } from 'node:path';
import {
  bool,
  integer,
  list,
  shipped,
  type FileKeys,
  type Source,
} from '../shared/config-parse.js';

export interface AttestationSettings {
  /** PEM files or folders of PEM files: trusted TPM-manufacturer (EK) CAs. */
  readonly ekCaBundle: readonly string[];
  /** Reference policy JSON files or folders of them. */
  readonly referencePolicies: readonly string[];
  /** The operators' enrollment rules (JSON); none: no runtime is assigned anything. */
  readonly enrollmentRules: string | undefined;
  /** How long an enrollment may wait for activation before it expires. */
  readonly pendingEnrollmentTtlSeconds: number;
  /** Largest TCG event log (bytes) and IMA list (bytes, per attestation) accepted. */
  readonly eventLogMaxBytes: number;
  readonly imaLogMaxBytes: number;
  /**
   * Whether disabling or replacing a reference policy, or replacing the EK CA bundle, ends
   * the sessions and revokes the grants of the runtimes that rested on it (issue 18).
   */
  readonly trustChangeCascade: boolean;
}

export const ATTESTATION_FILE_KEYS: FileKeys = {
  ekCaBundle: 'GRANTOR_EK_CA_BUNDLE',
  referencePolicies: 'GRANTOR_REFERENCE_POLICIES',
  enrollmentRules: 'GRANTOR_ENROLLMENT_RULES',
  enrollmentPendingTtlSeconds: 'GRANTOR_ENROLLMENT_PENDING_TTL_SECONDS',
  trustChangeCascade: 'GRANTOR_TRUST_CHANGE_CASCADE',
};

export function attestationSettings(src: Source, cwd: string): AttestationSettings {
  return {
    ekCaBundle: list(src, 'GRANTOR_EK_CA_BUNDLE', [shipped('trust/ek-ca')], cwd),
    // No default: no reference policy is active unless configured (fail closed).
    referencePolicies: list(src, 'GRANTOR_REFERENCE_POLICIES', [], cwd),
    enrollmentRules:
      src.GRANTOR_ENROLLMENT_RULES === undefined || src.GRANTOR_ENROLLMENT_RULES.trim() === ''
        ? undefined
        : resolve(cwd, src.GRANTOR_ENROLLMENT_RULES.trim()),
    pendingEnrollmentTtlSeconds: integer(
      src,
      'GRANTOR_ENROLLMENT_PENDING_TTL_SECONDS',
      900,
      10,
      7 * 86400,
    ),
    eventLogMaxBytes: integer(src, 'GRANTOR_EVENT_LOG_MAX_BYTES', 1 << 19, 1024, 1 << 26),
    imaLogMaxBytes: integer(src, 'GRANTOR_IMA_LOG_MAX_BYTES', 1 << 22, 1024, 1 << 28),
    // On unless turned off; anything but true/false/1/0 stops the start (fail closed).
    trustChangeCascade: bool(src, 'GRANTOR_TRUST_CHANGE_CASCADE', true),
  };
}
