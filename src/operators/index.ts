/**
 * Wiring for the operator plane: tokens and approvals on the appliance database, and the
 * client-certificate verifier when an operator CA is configured.
 */
import type { Database } from '../shared/db.level.js';
import { LevelApprovalStore } from './approval-store.level.js';
import { Approvals, type ApprovalEvent, type ApprovalPolicy } from './approvals.js';
import { OperatorCertificateVerifier } from './client-cert.js';
import { LevelTokenStore } from './token-store.level.js';
import { OperatorTokens } from './tokens.js';

export interface OperatorsOptions {
  /** PEM of the operator CA; client certificates are refused without it. */
  readonly operatorCaPem?: string;
  readonly approvalPolicy?: ApprovalPolicy;
  /** The audit log's append, for every approval step. */
  readonly onApprovalEvent?: (event: ApprovalEvent) => Promise<void>;
  readonly clock?: () => Date;
}

export interface Operators {
  readonly tokens: OperatorTokens;
  readonly approvals: Approvals;
  readonly certificates: OperatorCertificateVerifier | undefined;
}

export function createOperators(db: Database, options: OperatorsOptions = {}): Operators {
  const clock = options.clock ?? (() => new Date());
  return {
    tokens: new OperatorTokens(new LevelTokenStore(db), clock),
    approvals: new Approvals({
      store: new LevelApprovalStore(db),
      clock,
      ...(options.approvalPolicy === undefined ? {} : { policy: options.approvalPolicy }),
      ...(options.onApprovalEvent === undefined ? {} : { onEvent: options.onApprovalEvent }),
    }),
    certificates:
      options.operatorCaPem === undefined
        ? undefined
        : new OperatorCertificateVerifier(options.operatorCaPem),
  };
}

export type { ApprovalEvent, ApprovalPolicy } from './approvals.js';
export {
  Approvals,
  DEFAULT_APPROVAL_POLICY,
  approvalPolicyFromSettings,
  approvalTarget,
} from './approvals.js';
export type { OperatorActor, Actor, Role } from './roles.js';
export { ROLES } from './roles.js';
export { OperatorTokens } from './tokens.js';
export { OperatorCertificateVerifier } from './client-cert.js';
export { runOperatorsCli } from './cli.js';
