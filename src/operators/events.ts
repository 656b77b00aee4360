/**
 * Credential and registry events: every change to who may act is written to the audit log
 * (with the person it concerns and who made it) before it takes effect.
 */
import type { Role } from './roles.js';

export type CredentialEventType =
  | 'operator.registered'
  | 'operator.removed'
  | 'operator.token_created'
  | 'operator.token_revoked'
  | 'operator.certificate_revoked'
  | 'gateway.enrolled'
  | 'gateway.revoked';

export interface CredentialEvent {
  readonly type: CredentialEventType;
  /** The credential (`tok_...`, `cert:...`) or, for registry events, the person id. */
  readonly subject: string;
  /** The person concerned (registry id), when known. */
  readonly person?: string;
  /** Who did it: an operator credential id with its person (`tok_...(alice)`), or `cli`. */
  readonly by: string;
  readonly roles?: readonly Role[];
  /** For gateway events: the audiences the gateway may redeem for. */
  readonly audiences?: readonly string[];
  readonly time: string;
}

export type CredentialEventSink = (event: CredentialEvent) => Promise<void>;

export const NO_EVENTS: CredentialEventSink = () => Promise.resolve();

/** How an acting operator is named in `by`. */
export function byActor(actor: { readonly id: string; readonly person: string }): string {
  return `${actor.person}:${actor.id}`;
}
