/**
 * Who may act on the appliance. Operators carry exactly one role; a runtime is never an
 * operator and an operator credential is never a runtime identity (PROTOCOL.md §6).
 */
export const ROLES = ['auditor', 'operator', 'key_custodian'] as const;

/** `auditor` reads audit, checkpoints, runtimes; `operator` runs runtimes, policies,
 * approvals; `key_custodian` manages keys. No role implies another (least privilege). */
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** How the operator proved who they are. */
export type CredentialKind = 'token' | 'certificate';

/** An authenticated operator, as audited: `id` is stable (token id or certificate serial). */
export interface OperatorActor {
  readonly kind: 'operator';
  /** `tok_<hex>` for a bearer token, `cert:<issuer serial hex>` for a client certificate. */
  readonly id: string;
  readonly role: Role;
  /** The human-readable name (token's actor name, or the certificate subject CN). */
  readonly name: string;
  readonly credential: CredentialKind;
}

/**
 * A runtime, identified by the proofs its requests carry (a quote or an attested session),
 * never by an operator credential; it can never hold a role.
 */
export interface RuntimeActor {
  readonly kind: 'runtime';
  readonly id: string;
}

/** Whoever acts; the audit log records one of these for every act. */
export type Actor = OperatorActor | RuntimeActor;
