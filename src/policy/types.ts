/** The request and decision model of the policy engine (see docs/policy.md). */

export type ProofMode = 'session' | 'quote';

/** What the grant pipeline knows about one grant request when it asks for a decision. */
export interface PolicyRequest {
  /** The principal: the enrolled runtime asking for the grant. */
  readonly runtime: {
    readonly id: string;
    readonly name: string;
    /** Labels from enrollment. Only keys the schema declares are visible to policies. */
    readonly labels: Readonly<Record<string, string>>;
  };
  /** The requested action, e.g. "payments.transfer"; must be declared in the schema. */
  readonly action: string;
  /** The requested resource, e.g. "acct:1234". */
  readonly resource: string;
  readonly attestation: {
    /** Name of the PCR reference policy the attestation was verified against. */
    readonly pcrPolicy: string;
    /** A TPM reset or restart was seen since the previous quote. */
    readonly resetSeen: boolean;
    /** Seconds since the attested session was opened (0 in quote mode). */
    readonly sessionAgeSeconds: number;
    readonly proofMode: ProofMode;
  };
  readonly lineage: {
    /** 0 for a root grant, parent depth + 1 for a child grant. */
    readonly depth: number;
    /** Root grant id of the lineage; "" for a root grant (it has no id yet). */
    readonly root: string;
    /** The parent grant's action; null for a root grant. */
    readonly parentAction: string | null;
    /** The parent grant belongs to another runtime. */
    readonly delegated: boolean;
    /** The parent grant's resource; absent or null for a root grant (Cedar sees ""). */
    readonly parentResource?: string | null;
    /**
     * The parent grant's runtime and its labels as an operator or enrollment rule assigned
     * them (never what a runtime asked for); absent or null for a root grant.
     */
    readonly parentRuntime?: PolicyParentRuntime | null;
  };
  /**
   * Where the grant may be executed: the requested audience and the enrolled gateways
   * (unrevoked, unexpired) that hold it at decision time, the only ones that can redeem it.
   * The pipeline always sets it; absent, Cedar sees `""` and no gateway.
   */
  readonly audience?: PolicyAudience;
  /** The lifetime the runtime asked for. */
  readonly ttlSeconds: number;
}

export interface PolicyParentRuntime {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface PolicyAudience {
  readonly name: string;
  readonly gateways: readonly { readonly id: string; readonly name: string }[];
}

/**
 * Duties attached to an allow, taken from the annotations of the permit policies that
 * determined it (the strictest value wins). The engine itself enforces `requireQuote` and
 * `maxDepth` (a request that breaks them is denied); the issuer must cap the grant's
 * lifetime at `maxTtlSeconds` (see `grantTtlSeconds`).
 */
export interface Obligations {
  readonly requireQuote: boolean;
  readonly maxTtlSeconds?: number;
  readonly maxDepth?: number;
}

export interface PolicyDecision {
  readonly decision: 'allow' | 'deny';
  /**
   * Why a request was denied, for the caller and the audit log: the `@reason` of each
   * determining forbid policy (or a generated sentence naming it), the obligation that
   * failed, or "no policy permits this request". Empty on allow.
   */
  readonly reasons: readonly string[];
  /** Ids (`@id`) of the policies that determined the decision. */
  readonly determiningPolicies: readonly string[];
  /** Hex SHA-256 of the policy set that decided (the grant's `pol` claim). */
  readonly policyHash: string;
  /** Activation counter of that set in this engine (1 for the first set loaded). */
  readonly policyVersion: number;
  readonly obligations: Obligations;
}

/** Description of the active policy set. */
export interface PolicySetInfo {
  readonly hash: string;
  readonly version: number;
  /** Policy file names (relative to the policy directory), sorted. */
  readonly files: readonly string[];
  readonly policyIds: readonly string[];
  /** Actions the schema declares, sorted. */
  readonly actions: readonly string[];
  /** Epoch milliseconds of activation (engine clock). */
  readonly activatedAt: number;
}

/** What the grant pipeline asks for decisions: the engine, or its worker threads. */
export interface PolicyDecider {
  decide(req: PolicyRequest): PolicyDecision | Promise<PolicyDecision>;
}
