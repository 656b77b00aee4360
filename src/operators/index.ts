/**
 * Wiring for the operator plane: the registry of people, their tokens, the certificate
 * denylist and approvals on the appliance database, and the client-certificate verifier
 * when an operator CA is configured. See docs/operators.md.
 *
 * Rooms: roles.ts (who may act), people.ts (the registry of persons), tokens.ts with
 * bearer.ts (operator tokens, `gop_`; the bearer format shared with gateways' `ggw_`),
 * client-cert.ts with x509.ts (operators by client certificate), cert-revocations.ts with
 * its fake cert-revocations.memory.ts and cert-revocations.service.ts (the certificate
 * denylist), approvals.ts (dual control, M-of-N), gateways.ts (enrolled gateways and their
 * audiences), refusals.ts (refused attempts audited without a flood filling the log),
 * events.ts (registry changes for the audit log) and audit-events.ts (how approvals and
 * registry changes read as audit entries), cli.ts (`grantor operators token ...`),
 * errors.ts, config.ts; each store as `x-store.port.ts` with `x-store.level.ts` and its
 * fake `x-store.memory.ts` (approval, gateway, person, token); testing/ (certificates and
 * CLI output, for tests).
 */
import type { Database } from '../shared/db.level.js';
import { LevelApprovalStore } from './approval-store.level.js';
import { personOfRef, type ApprovalActorRef } from './approval-store.port.js';
import { Approvals, type ApprovalEvent, type ApprovalPolicy } from './approvals.js';
import { CertificateRevocations } from './cert-revocations.service.js';
import {
  LevelCertificateRevocationStore,
  type CertificateRevocationStore,
} from './cert-revocations.js';
import { MemoryCertificateRevocationStore } from './cert-revocations.memory.js';
import { MemoryApprovalStore } from './approval-store.memory.js';
import type { ApprovalStore } from './approval-store.port.js';
import { MemoryPersonStore } from './person-store.memory.js';
import type { PersonStore } from './person-store.port.js';
import { MemoryTokenStore } from './token-store.memory.js';
import type { TokenStore } from './token-store.port.js';
import { OperatorCertificateVerifier } from './client-cert.js';
import { NO_EVENTS, type CredentialEventSink } from './events.js';
import { People } from './people.js';
import { LevelPersonStore } from './person-store.level.js';
import { LevelTokenStore } from './token-store.level.js';
import { LevelGatewayStore } from './gateway-store.level.js';
import { MemoryGatewayStore } from './gateway-store.memory.js';
import type { GatewayStore } from './gateway-store.port.js';
import { GatewayRegistry } from './gateways.js';
import { OperatorTokens } from './tokens.js';

export interface OperatorsOptions {
  /** PEM of the operator CA; client certificates are refused without it. */
  readonly operatorCaPem?: string;
  readonly approvalPolicy?: ApprovalPolicy;
  /** At most this many open approval requests per person. */
  readonly maxOpenApprovalRequestsPerPerson?: number;
  /** The audit log's append, for every credential and registry change. */
  readonly onCredentialEvent?: CredentialEventSink;
  /** The audit log's append, for every approval step. */
  readonly onApprovalEvent?: (event: ApprovalEvent) => Promise<void>;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  readonly now?: () => number;
}

export interface Operators {
  readonly people: People;
  readonly tokens: OperatorTokens;
  readonly approvals: Approvals;
  readonly revocations: CertificateRevocations;
  readonly certificates: OperatorCertificateVerifier | undefined;
  /** Enrolled gateways (redeem, outcome): created and revoked by operators. */
  readonly gateways: GatewayRegistry;
}

/** The operator plane's stores (LevelDB on the appliance, memory in service tests). */
export interface OperatorStores {
  readonly people: PersonStore;
  readonly tokens: TokenStore;
  readonly revocations: CertificateRevocationStore;
  readonly approvals: ApprovalStore;
  /** Enrolled gateways; memory when absent. */
  readonly gateways?: GatewayStore;
}

export function createOperators(db: Database, options: OperatorsOptions = {}): Operators {
  return createOperatorsOn(
    {
      people: new LevelPersonStore(db),
      tokens: new LevelTokenStore(db),
      revocations: new LevelCertificateRevocationStore(db),
      approvals: new LevelApprovalStore(db),
      gateways: new LevelGatewayStore(db),
    },
    options,
  );
}

/** The operator plane on memory stores, for service and route tests. */
export function createMemoryOperators(options: OperatorsOptions = {}): Operators {
  return createOperatorsOn(
    {
      people: new MemoryPersonStore(),
      tokens: new MemoryTokenStore(),
      revocations: new MemoryCertificateRevocationStore(),
      approvals: new MemoryApprovalStore(),
      gateways: new MemoryGatewayStore(),
    },
    options,
  );
}

export function createOperatorsOn(
  stores: OperatorStores,
  options: OperatorsOptions = {},
): Operators {
  const now = options.now ?? Date.now;
  const onEvent = options.onCredentialEvent ?? NO_EVENTS;
  const people = new People(stores.people, now, onEvent);
  const tokens = new OperatorTokens(stores.tokens, now, people, onEvent);
  const revocationStore = stores.revocations;
  const certificates =
    options.operatorCaPem === undefined
      ? undefined
      : new OperatorCertificateVerifier(options.operatorCaPem, {
          people,
          revocations: revocationStore,
        });
  // Each approval's credential, checked again when the approvals are used.
  const credentialValid = async (ref: ApprovalActorRef): Promise<boolean> => {
    const person = personOfRef(ref);
    if (ref.id.startsWith('tok_')) return tokens.stillValid(ref.id, person, ref.role);
    if (ref.id.startsWith('cert:') && ref.credentialExpiresAt !== undefined) {
      // Without an operator CA no certificate is a credential any more.
      return (
        certificates?.stillValid(
          ref.id,
          person,
          ref.role,
          ref.credentialExpiresAt,
          new Date(now()),
        ) ?? false
      );
    }
    return false;
  };
  return {
    people,
    tokens,
    revocations: new CertificateRevocations(revocationStore, now, onEvent),
    certificates,
    gateways: new GatewayRegistry(stores.gateways ?? new MemoryGatewayStore(), now, onEvent),
    approvals: new Approvals({
      store: stores.approvals,
      now,
      credentialValid,
      ...(options.approvalPolicy === undefined ? {} : { policy: options.approvalPolicy }),
      ...(options.onApprovalEvent === undefined ? {} : { onEvent: options.onApprovalEvent }),
      ...(options.maxOpenApprovalRequestsPerPerson === undefined
        ? {}
        : { maxOpenPerPerson: options.maxOpenApprovalRequestsPerPerson }),
    }),
  };
}

export type { ApprovalEvent, ApprovalPolicy } from './approvals.js';
export type { CredentialEvent } from './events.js';
export {
  Approvals,
  DEFAULT_APPROVAL_POLICY,
  approvalPolicyFromSettings,
  approvalTarget,
} from './approvals.js';
export type { OperatorActor, Actor, Role } from './roles.js';
export { ROLES } from './roles.js';
export { OperatorTokens } from './tokens.js';
export { People } from './people.js';
export { CertificateRevocations } from './cert-revocations.service.js';
export { OperatorCertificateVerifier } from './client-cert.js';
export { GatewayRegistry, looksLikeGatewayToken } from './gateways.js';
export type { GatewayIdentity, GatewayInfo, EnrolledGateway } from './gateways.js';
export { runOperatorsCli } from './cli.js';
