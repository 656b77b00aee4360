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

/**
 * An authenticated operator, as audited: `id` names the credential (token id, or the
 * certificate's issuer and serial), `person` the person it was issued to (the operator
 * registry's id): dual control counts people.
 */
export interface OperatorActor {
  readonly kind: 'operator';
  /** `tok_<hex>` for a bearer token, `cert:<issuer hash>:<serial hex>` for a certificate. */
  readonly id: string;
  /** The normalised id of the person in the operator registry. */
  readonly person: string;
  readonly role: Role;
  /** The person's display name. */
  readonly name: string;
  readonly credential: CredentialKind;
  /** When the credential stops being valid (token expiry, certificate notAfter). */
  readonly expiresAt: string;
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
