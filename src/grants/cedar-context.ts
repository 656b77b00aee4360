/**
 * The policy request of one grant decision (docs/policy.md, "The request model"): the
 * request whole, as far as the appliance vouches for it. The runtime, its labels and the
 * parent's runtime and labels come from the registrar (assigned by an enrollment rule or an
 * operator, never what a runtime asked for); the attestation facts from the verified proof;
 * the parent grant from the grant store; the gateways from the operators' enrollments. Only
 * the action, resource, audience and lifetime are the request's own words, and they are
 * what the policy judges.
 */
import type { AttestationService, RuntimeView } from '../attestation/index.js';
import type { PolicyAudience, PolicyParentRuntime, PolicyRequest } from '../policy/index.js';
import { PolicyUnavailableError } from '../policy/index.js';
import { GrantorError, UnavailableError } from '../shared/errors.js';
import type { GrantRecord } from './grant-store.port.js';
import { GrantStoreUnavailableError } from './errors.js';
import type { CheckedRequest } from './request.js';

/** One enrolled gateway as policies see it. */
export interface AudienceGateway {
  readonly id: string;
  readonly name: string;
}

/**
 * Who can redeem grants for an audience: the enrolled gateways holding it now (unrevoked,
 * unexpired). The gateway registry (src/operators/gateways.ts) is the real one.
 */
export interface AudienceGateways {
  serving(audience: string): Promise<readonly AudienceGateway[]>;
}

/** What the pipeline has established before it asks for a decision. */
export interface DecisionInputs {
  readonly req: CheckedRequest;
  readonly runtime: RuntimeView;
  readonly proof: { readonly resetSeen: boolean; readonly sessionAgeSeconds: number };
  readonly link:
    | { readonly parent: GrantRecord; readonly depth: number; readonly delegated: boolean }
    | undefined;
}

export interface ContextSources {
  readonly attestation: Pick<AttestationService, 'getRuntime'>;
  /** Absent: no gateway is known to hold any audience (policies see an empty set). */
  readonly gateways?: AudienceGateways | undefined;
}

/**
 * The parent's runtime with its assigned labels (the requester's own view when it is the
 * same runtime). The lineage check has already refused an unknown or revoked one, so a
 * failure here is an unavailable registrar.
 */
async function parentRuntime(
  link: DecisionInputs['link'],
  runtime: RuntimeView,
  sources: ContextSources,
): Promise<PolicyParentRuntime | null> {
  if (link === undefined) return null;
  const id = link.parent.runtimeId;
  if (id === runtime.runtimeId) return { id, labels: { ...runtime.labels } };
  try {
    const parent = await sources.attestation.getRuntime(id);
    return { id, labels: { ...parent.labels } };
  } catch (e) {
    if (e instanceof UnavailableError) throw e;
    throw new GrantStoreUnavailableError({ cause: e });
  }
}

async function audience(name: string, sources: ContextSources): Promise<PolicyAudience> {
  if (sources.gateways === undefined) return { name, gateways: [] };
  try {
    const serving = await sources.gateways.serving(name);
    return { name, gateways: serving.map((g) => ({ id: g.id, name: g.name })) };
  } catch (cause) {
    if (cause instanceof GrantorError) throw cause;
    // Without knowing who could redeem it, the policy cannot judge the request: fail closed.
    throw new PolicyUnavailableError('the enrolled gateways could not be read', { cause });
  }
}

/** The policy request for one grant decision. */
export async function policyRequestFor(
  inputs: DecisionInputs,
  sources: ContextSources,
): Promise<PolicyRequest> {
  const { req, runtime, proof, link } = inputs;
  const [parent, aud] = await Promise.all([
    parentRuntime(link, runtime, sources),
    audience(req.audience, sources),
  ]);
  return {
    runtime: { id: runtime.runtimeId, name: runtime.name, labels: { ...runtime.labels } },
    action: req.action,
    resource: req.resource,
    attestation: {
      pcrPolicy: runtime.referencePolicy ?? '',
      resetSeen: proof.resetSeen,
      sessionAgeSeconds: proof.sessionAgeSeconds,
      proofMode: req.proof.mode,
    },
    lineage: {
      depth: link?.depth ?? 0,
      root: link?.parent.root ?? '',
      parentAction: link?.parent.action ?? null,
      delegated: link?.delegated ?? false,
      parentResource: link?.parent.resource ?? null,
      parentRuntime: parent,
    },
    audience: aud,
    ttlSeconds: req.ttlSeconds,
  };
}
