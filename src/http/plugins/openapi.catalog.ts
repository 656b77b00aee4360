/**
 * The words of the OpenAPI document that the route schemas do not carry: a summary per
 * operation and the tags that group them. One table, so the route files stay about
 * behaviour. test/appliance/openapi.test.ts keeps it exact: every operation of the real
 * app has a summary and a defined tag, and every summary is of a real operation.
 */

export interface Tag {
  readonly name: string;
  readonly description: string;
}

export const TAGS: readonly Tag[] = [
  { name: 'runtimes', description: 'Enrollment, challenges and attestations of runtimes (§1, §2)' },
  { name: 'grants', description: 'Pre-execution grants, redeem, lineage, revocation, JWKS (§3)' },
  { name: 'audit', description: 'The anchored, Merkle-provable audit log (§4)' },
  { name: 'keys', description: 'Grant and audit signing keys in the HSM (§5)' },
  {
    name: 'attestation',
    description: 'EK CA bundle, reference policies, enrollment rules (§1, §6)',
  },
  { name: 'operators', description: 'People, credentials and dual control (§6)' },
  { name: 'gateways', description: 'Enrolled gateways: the parties that redeem grants (§3)' },
  { name: 'policy', description: 'The active Cedar policy set (§6)' },
  { name: 'operations', description: 'Health, readiness, metrics and this document' },
];

/** The tag of a path: by its first segment under /v1/, else operations. */
export function tagOf(path: string): string {
  if (path === '/.well-known/jwks.json') return 'grants';
  const first = /^\/v1\/([a-z-]+)/.exec(path)?.[1];
  switch (first) {
    case 'runtimes':
    case 'grants':
    case 'audit':
    case 'keys':
    case 'attestation':
    case 'policy':
    case 'gateways':
      return first;
    case 'revocations':
      return 'grants';
    case 'approvals':
    case 'operators':
    case 'operator-tokens':
    case 'operator-certificates':
      return 'operators';
    default:
      return 'operations';
  }
}

/** `METHOD /path/{param}` -> summary. */
export const SUMMARIES: Readonly<Record<string, string>> = {
  'POST /v1/runtimes': 'Enroll a runtime (EK, AK, credential activation challenge)',
  'POST /v1/runtimes/{runtimeId}/activation': 'Prove the AK with the activated credential',
  'GET /v1/runtimes': 'List runtimes',
  'GET /v1/runtimes/{runtimeId}': 'Read a runtime',
  'PUT /v1/runtimes/{runtimeId}/labels': 'Replace the labels of a runtime',
  'POST /v1/runtimes/{runtimeId}/release': 'Release a runtime held for review',
  'POST /v1/runtimes/{runtimeId}/approve': 'Approve a pending runtime',
  'POST /v1/runtimes/{runtimeId}/revoke': 'Revoke a runtime and its live grants',
  'POST /v1/runtimes/{runtimeId}/challenges': 'Get a fresh nonce to quote over',
  'POST /v1/runtimes/{runtimeId}/attestations': 'Attest with a TPM quote (opens a session)',
  'POST /v1/grants': 'Request a grant',
  'POST /v1/grants/{grantId}/redeem': 'Redeem a grant (gateway)',
  'GET /v1/grants/{grantId}/lineage': 'Read the lineage of a grant',
  'POST /v1/grants/{grantId}/revoke': 'Revoke a grant and its descendants',
  'GET /v1/revocations': 'Follow the revocation feed from a sequence number (long-poll)',
  'GET /v1/revocations/snapshot': 'The signed snapshot of what is revoked now',
  'GET /.well-known/jwks.json': 'The grant verification keys (JWKS)',
  'GET /v1/audit/checkpoint': 'A signed checkpoint of the audit log (TPM-certified with a nonce)',
  'GET /v1/audit/verifier': 'The audit log verifier key and anchor description',
  'GET /v1/audit/entries': 'Read audit entries',
  'GET /v1/audit/bodies/{digest}': 'Read a grant request body by its digest',
  'GET /v1/runtimes/{runtimeId}/timeline':
    "A runtime's timeline across every log period, each line with its period and seq",
  'GET /v1/gateways': 'List enrolled gateways',
  'POST /v1/gateways': 'Enroll a gateway for its audiences (token shown once)',
  'POST /v1/gateways/{gatewayId}/revoke': 'Revoke a gateway',
  'POST /v1/grants/{grantId}/outcome': 'Record the outcome of an execution (redeeming gateway)',
  'GET /v1/audit/batches': 'Read anchored batch boundaries',
  'GET /v1/audit/tlog/{period}/checkpoint': 'The C2SP checkpoint of a log period (signed note)',
  'GET /v1/audit/tlog/{period}/tile/{path}': 'A C2SP tlog-tiles hash tile (<L>/<N>[.p/<W>])',
  'GET /v1/audit/tlog/{period}/tile/entries/{path}': 'A C2SP tlog-tiles entry bundle',
  'GET /v1/audit/export': 'Stream an evidence bundle of the audit log (NDJSON)',
  'GET /v1/audit/proof/inclusion': 'Merkle inclusion proof of an entry',
  'GET /v1/audit/proof/consistency': 'Merkle consistency proof between two tree sizes',
  'GET /v1/audit/periods': 'The audit log periods and the final checkpoint each links to',
  'POST /v1/audit/periods': 'Freeze the current audit log period and start the next',
  'GET /v1/audit/periods/{period}/link':
    "A log period's link entry: the frozen period's end, leaf 0 of its tree",
  'POST /v1/audit/periods/{period}/retire':
    'Retire a frozen audit log period into a verified bundle (proofs kept)',
  'GET /v1/keys': 'List signing keys',
  'POST /v1/keys/rotate': 'Rotate a signing key',
  'POST /v1/keys/{kid}/destroy': 'Destroy a retired key (dual control)',
  'GET /v1/attestation/ek-ca': 'Read the trusted EK CA bundle',
  'PUT /v1/attestation/ek-ca': 'Replace the trusted EK CA bundle (dual control)',
  'GET /v1/attestation/enrollment-rules': 'Read the enrollment rules',
  'POST /v1/attestation/enrollment-rules/check': 'Check enrollment rules without applying them',
  'PUT /v1/attestation/enrollment-rules': 'Replace the enrollment rules (dual control)',
  'GET /v1/attestation/reference-policies': 'List reference policies',
  'PUT /v1/attestation/reference-policies/{name}': 'Add or replace a reference policy',
  'GET /v1/attestation/reference-policies/{name}/versions':
    'List the versions of a reference policy',
  'POST /v1/attestation/reference-policies/{name}/disable':
    'Disable a reference policy (dual control)',
  'POST /v1/attestation/reference-policies/{name}/enable':
    'Enable a reference policy (dual control)',
  'POST /v1/approvals': 'Request a dual-control act',
  'POST /v1/approvals/{approvalId}/approve': 'Approve a dual-control request',
  'GET /v1/approvals': 'List dual-control requests',
  'GET /v1/approvals/{approvalId}': 'Read a dual-control request',
  'GET /v1/operators': 'List operators',
  'GET /v1/operators/{operatorId}': 'Read an operator',
  'PUT /v1/operators/{operatorId}': 'Add or change an operator (dual control)',
  'DELETE /v1/operators/{operatorId}': 'Remove an operator (dual control)',
  'GET /v1/operator-tokens': 'List operator tokens',
  'POST /v1/operator-tokens': 'Create an operator token for yourself',
  'POST /v1/operator-tokens/{tokenId}/revoke': 'Revoke an operator token',
  'GET /v1/operator-certificates/revocations': 'List revoked operator certificates',
  'POST /v1/operator-certificates/revocations': 'Revoke an operator certificate',
  'GET /v1/policy': 'Read the active policy set',
  'POST /v1/policy/reload': 'Reload the policy set from disk',
  'GET /v1/policy/{hash}': 'Read a policy set ever active from the archive, by its hash',
  'GET /healthz': 'Liveness: the process answers',
  'GET /readyz': 'Readiness: TPM, HSM, audit log and policy usable',
  'GET /metrics': 'Prometheus metrics (text exposition format)',
  'GET /openapi.json': 'This API, as an OpenAPI 3.1 document',
};
