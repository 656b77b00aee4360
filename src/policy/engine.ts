/**
 * The policy engine: one active, validated, content-hashed Cedar policy set, decisions on
 * the preparsed fast path (`statefulIsAuthorized`), atomic reloads (from an explicit call or
 * a debounced file watch). Any engine failure is a PolicyUnavailableError: never an allow.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type {
  AuthorizationAnswer,
  CedarPort,
  CedarValueJson,
  EntityJson,
  PolicySet,
  StatefulAuthorizationCall,
} from './cedar.port.js';
import {
  PolicyRequestInvalidError,
  PolicySetInvalidError,
  PolicyUnavailableError,
} from './errors.js';
import {
  compilePolicySet,
  readPolicySource,
  staticPolicies,
  type CompiledPolicySet,
  type PolicySource,
} from './policy-set.js';
import type { Obligations, PolicyDecision, PolicyRequest, PolicySetInfo } from './types.js';

export interface PolicyEngineOptions {
  /** Directory whose `*.cedar` files form the policy set (not recursive). */
  readonly policyDir: string;
  /** The Cedar schema (e.g. policies/grantor.cedarschema). Part of the set's hash. */
  readonly schemaFile: string;
  /** The Cedar engine; default: the wasm build. */
  readonly cedar: CedarPort;
  /** Clock in epoch milliseconds (context.time and activation times). Default Date.now. */
  readonly now?: () => number;
  /** Debounce for file-change reloads (see `watch()`). Default 250 ms. */
  readonly watchDebounceMs?: number;
  /** Called after every successful activation (explicit or watched). */
  readonly onReload?: (info: PolicySetInfo) => void;
  /** Called when a watched reload is refused; the previous set stays active. */
  readonly onReloadError?: (error: PolicySetInvalidError) => void;
  /**
   * Called by `reload` with every set that compiled, before it becomes active (e.g. the
   * policy archive's `keep`): a rejection refuses the activation with policy_unavailable and
   * the previous set stays active. `activate` alone does not call it.
   */
  readonly keep?: (source: PolicySource) => Promise<unknown>;
}

interface ActiveSet {
  readonly set: CompiledPolicySet;
  readonly slotId: string;
  readonly schemaName: string;
  readonly info: PolicySetInfo;
}

const NO_OBLIGATIONS: Obligations = { requireQuote: false };
const MAX_STRING = 4096;
let engineCounter = 0;

function invalid(message: string): never {
  throw new PolicyRequestInvalidError(`policy request: ${message}`);
}

function checkString(name: string, value: unknown, allowEmpty = false): string {
  if (typeof value !== 'string' || value.length > MAX_STRING || (!allowEmpty && value === '')) {
    invalid(`${name} must be a ${allowEmpty ? '' : 'non-empty '}string`);
  }
  return value;
}

function checkCount(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    invalid(`${name} must be a non-negative integer`);
  }
  return value;
}

function checkBool(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') invalid(`${name} must be a boolean`);
  return value;
}

/** The labels the schema declares (undeclared keys could not appear in a validated policy). */
function declaredLabels(
  name: string,
  given: Readonly<Record<string, string>>,
  declared: ReadonlySet<string>,
): Record<string, CedarValueJson> {
  const labels: Record<string, CedarValueJson> = {};
  for (const [key, value] of Object.entries(given)) {
    checkString(`${name}.${key}`, value, true);
    if (declared.has(key)) labels[key] = value;
  }
  return labels;
}

/** A Cedar set (JSON array, each member once) of one member of each gateway. */
function gatewaySet(name: string, gateways: unknown, key: 'id' | 'name'): string[] {
  // The type says so, but callers build requests from parsed JSON: check at run time.
  if (!Array.isArray(gateways)) invalid(`${name} must be a list`);
  const out = new Set<string>();
  for (const g of gateways as unknown[]) {
    const value = typeof g === 'object' && g !== null ? (g as Record<string, unknown>)[key] : g;
    out.add(checkString(`${name}.${key}`, value));
  }
  return [...out].sort();
}

function strictest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function decided(
  info: PolicySetInfo,
  decision: 'allow' | 'deny',
  reasons: string[],
  determiningPolicies: string[],
  obligations: Obligations,
): PolicyDecision {
  return {
    decision,
    reasons,
    determiningPolicies,
    policyHash: info.hash,
    policyVersion: info.version,
    obligations,
  };
}

/** What another wasm instance needs to hold a set: the slot names and the texts. */
export interface PolicySlot {
  readonly slotId: string;
  readonly schemaName: string;
  readonly policies: PolicySet;
  readonly schema: string;
  readonly hash: string;
}

function slotOf(active: ActiveSet): PolicySlot {
  return {
    slotId: active.slotId,
    schemaName: active.schemaName,
    policies: { staticPolicies: staticPolicies(active.set.policies) },
    schema: active.set.schema,
    hash: active.info.hash,
  };
}

/** The lifetime to issue: the requested one, capped by the decision's `maxTtlSeconds`. */
export function grantTtlSeconds(requested: number, obligations: Obligations): number {
  return obligations.maxTtlSeconds === undefined
    ? requested
    : Math.min(requested, obligations.maxTtlSeconds);
}

/**
 * A request of the fixed shape the pipeline sends, with neutral values: for checks that
 * need one decision's worth of input (the shape check at activation, readiness).
 */
export function canaryRequest(action: string): PolicyRequest {
  return {
    runtime: { id: 'rt_canary', name: 'canary', labels: {} },
    action,
    resource: 'canary',
    attestation: { pcrPolicy: '', resetSeen: false, sessionAgeSeconds: 0, proofMode: 'session' },
    lineage: { depth: 0, root: '', parentAction: null, delegated: false },
    audience: { name: 'canary', gateways: [{ id: 'gw_canary', name: 'canary' }] },
    ttlSeconds: 1,
  };
}

export class PolicyEngine {
  readonly #options: PolicyEngineOptions;
  readonly #cedar: CedarPort;
  readonly #now: () => number;
  readonly #instance: number;
  #active: ActiveSet | undefined;
  #version = 0;
  #nextSlot = 0;
  #reloads: Promise<unknown> = Promise.resolve();
  #watchers: FSWatcher[] = [];
  readonly #listeners: ((slot: PolicySlot) => void)[] = [];
  #debounce: NodeJS.Timeout | undefined;

  constructor(options: PolicyEngineOptions) {
    this.#options = options;
    this.#cedar = options.cedar;
    this.#now = options.now ?? Date.now;
    this.#instance = ++engineCounter;
  }

  /** The active set, or undefined before the first successful load. */
  info(): PolicySetInfo | undefined {
    return this.#active?.info;
  }

  /**
   * Reads the policy directory and schema and activates them. Reloads run one after the
   * other in call order. A set that cannot be read, parsed or validated is refused with
   * PolicySetInvalidError and the previous set stays active.
   */
  reload(): Promise<PolicySetInfo> {
    const next = this.#reloads.then(async () => {
      const source = await readPolicySource(this.#options.policyDir, this.#options.schemaFile);
      const keep = this.#options.keep;
      if (keep !== undefined) {
        // Kept before it can decide: every hash a decision names can be looked up. Only a
        // set that compiles is kept (activation may still refuse it later; harmless).
        compilePolicySet(this.#cedar, source);
        try {
          await keep(source);
        } catch (cause) {
          throw new PolicyUnavailableError('the policy set could not be archived', { cause });
        }
      }
      return this.activate(source);
    });
    this.#reloads = next.catch(() => undefined);
    return next;
  }

  /**
   * Compiles and activates an in-memory policy set. Synchronous from validation to the
   * swap of one reference, so no decision ever sees a mix of two sets.
   */
  activate(source: PolicySource): PolicySetInfo {
    const set = compilePolicySet(this.#cedar, source);
    // Two wasm cache slots per engine: the new set goes into the one not in use.
    const slot = this.#nextSlot;
    const slotId = `grantor-${this.#instance}-${slot}`;
    const schemaName = `${slotId}-schema`;
    const schemaAnswer = this.#call(() => this.#cedar.preparseSchema(schemaName, set.schema));
    if (schemaAnswer.type === 'failure') {
      throw new PolicySetInvalidError(
        `schema does not parse: ${schemaAnswer.errors.map((e) => e.message).join('; ')}`,
      );
    }
    const setAnswer = this.#call(() =>
      this.#cedar.preparsePolicySet(slotId, { staticPolicies: staticPolicies(set.policies) }),
    );
    if (setAnswer.type === 'failure') {
      throw new PolicySetInvalidError(
        `policy set does not parse: ${setAnswer.errors.map((e) => e.message).join('; ')}`,
      );
    }
    this.#checkRequestShape(set, slotId, schemaName);
    const info: PolicySetInfo = {
      hash: set.hash,
      version: this.#version + 1,
      files: set.files,
      policyIds: [...set.policies.keys()].sort(),
      actions: [...set.actions].sort(),
      activatedAt: this.#now(),
    };
    const next: ActiveSet = { set, slotId, schemaName, info };
    // Other instances get the set before any decision can name it (see onActivate).
    for (const listener of this.#listeners) {
      try {
        listener(slotOf(next));
      } catch (cause) {
        throw new PolicySetInvalidError('the policy set could not be handed to a worker', {
          cause,
        });
      }
    }
    this.#version += 1;
    this.#active = next;
    this.#nextSlot = 1 - slot;
    this.#options.onReload?.(info);
    return info;
  }

  /**
   * Decides one request against the active set. Throws PolicyUnavailableError when no set
   * is loaded or the engine fails in any way (including an evaluation error in any policy:
   * Cedar skips an erroring policy, which could turn a forbid into an allow), and
   * PolicyRequestInvalidError when the request does not fit the model.
   */
  decide(req: PolicyRequest): PolicyDecision {
    const begun = this.#begin(req);
    if ('decision' in begun) return begun;
    const { active, call } = begun;
    const answer = this.#call(() => this.#cedar.statefulIsAuthorized(call));
    return this.#finish(active, req, answer);
  }

  /**
   * `decide`, with the Cedar call made by `evaluate` (another thread's wasm instance, see
   * workers.ts) against the slot the call names, which must hold the set of `hash` (the
   * evaluator refuses otherwise). The set is the one active when this is called: a reload
   * meanwhile does not change which set decides (or which hash it reports).
   */
  async decideWith(
    req: PolicyRequest,
    evaluate: (call: StatefulAuthorizationCall, hash: string) => Promise<AuthorizationAnswer>,
  ): Promise<PolicyDecision> {
    const begun = this.#begin(req);
    if ('decision' in begun) return begun;
    let answer: AuthorizationAnswer;
    try {
      answer = await evaluate(begun.call, begun.active.info.hash);
    } catch (cause) {
      if (cause instanceof PolicyUnavailableError) throw cause;
      throw new PolicyUnavailableError('the policy engine failed', { cause });
    }
    return this.#finish(begun.active, req, answer);
  }

  /**
   * Calls `listener` with every set activated from now on (before any decision can use it)
   * and at once with the active one: how another thread's wasm instance follows reloads.
   * A listener that throws refuses the activation (the previous set stays active).
   */
  onActivate(listener: (slot: PolicySlot) => void): void {
    this.#listeners.push(listener);
    const active = this.#active;
    if (active !== undefined) listener(slotOf(active));
  }

  /** The active set and its Cedar call, or the decision when no call is needed. */
  #begin(
    req: PolicyRequest,
  ): { active: ActiveSet; call: StatefulAuthorizationCall } | PolicyDecision {
    const active = this.#active;
    if (active === undefined) throw new PolicyUnavailableError('no policy set is loaded');
    const call = this.#request(req, active.set);
    if (!active.set.actions.has(req.action)) {
      return decided(
        active.info,
        'deny',
        [`action "${req.action}" is not declared in the policy schema`],
        [],
        NO_OBLIGATIONS,
      );
    }
    return {
      active,
      call: {
        ...call,
        preparsedPolicySetId: active.slotId,
        preparsedSchemaName: active.schemaName,
        // Checked once per action at activation instead (#checkRequestShape): ~1/3 of a call.
        validateRequest: false,
      },
    };
  }

  /** The decision from Cedar's answer: diagnostics, reasons and obligations. */
  #finish(active: ActiveSet, req: PolicyRequest, answer: AuthorizationAnswer): PolicyDecision {
    const { set, info } = active;
    if (answer.type === 'failure') {
      throw new PolicyUnavailableError('the policy engine could not evaluate the request', {
        details: { errors: answer.errors.map((e) => e.message) },
      });
    }
    const { decision, diagnostics } = answer.response;
    if (diagnostics.errors.length > 0) {
      throw new PolicyUnavailableError('a policy failed to evaluate', {
        details: {
          policies: diagnostics.errors.map((e) => e.policyId),
          errors: diagnostics.errors.map((e) => e.error.message),
        },
      });
    }
    const determining = [...diagnostics.reason].sort();
    const policies = determining.map((id) => {
      const p = set.policies.get(id);
      if (p === undefined) throw new PolicyUnavailableError(`engine reported unknown policy ${id}`);
      return p;
    });
    if (decision === 'deny') {
      if (policies.length === 0) {
        return decided(info, 'deny', ['no policy permits this request'], [], NO_OBLIGATIONS);
      }
      return decided(
        info,
        'deny',
        policies.map((p) => p.reason ?? `denied by policy "${p.id}"`),
        determining,
        NO_OBLIGATIONS,
      );
    }
    let obligations: Obligations = NO_OBLIGATIONS;
    for (const p of policies) {
      if (p.effect !== 'permit') throw new PolicyUnavailableError(`forbid ${p.id} decided allow`);
      const maxTtlSeconds = strictest(obligations.maxTtlSeconds, p.maxTtlSeconds);
      const maxDepth = strictest(obligations.maxDepth, p.maxDepth);
      obligations = {
        requireQuote: obligations.requireQuote || p.requireQuote,
        ...(maxTtlSeconds === undefined ? {} : { maxTtlSeconds }),
        ...(maxDepth === undefined ? {} : { maxDepth }),
      };
    }
    // Obligations the request itself can break are enforced here, not left to the caller.
    const broken: string[] = [];
    const brokenBy: string[] = [];
    for (const p of policies) {
      if (p.requireQuote && req.attestation.proofMode !== 'quote') {
        broken.push(`policy "${p.id}" requires quote mode`);
        brokenBy.push(p.id);
      }
      if (p.maxDepth !== undefined && req.lineage.depth > p.maxDepth) {
        broken.push(`policy "${p.id}" allows a lineage depth of at most ${p.maxDepth}`);
        brokenBy.push(p.id);
      }
    }
    if (broken.length > 0) return decided(info, 'deny', broken, brokenBy, obligations);
    return decided(info, 'allow', [], determining, obligations);
  }

  /**
   * Reloads on changes to the policy directory or the schema file, debounced. A refused set
   * goes to `onReloadError`; the previous set stays active. Idempotent.
   */
  watch(): void {
    if (this.#watchers.length > 0) return;
    const schemaDir = dirname(this.#options.schemaFile);
    const schemaName = basename(this.#options.schemaFile);
    const trigger = (): void => {
      if (this.#debounce !== undefined) clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => {
        this.#debounce = undefined;
        this.reload().catch((err: unknown) => {
          const error =
            err instanceof PolicySetInvalidError
              ? err
              : new PolicySetInvalidError('policy reload failed', { cause: err });
          this.#options.onReloadError?.(error);
        });
      }, this.#options.watchDebounceMs ?? 250);
    };
    this.#watchers.push(watch(this.#options.policyDir, trigger));
    this.#watchers.push(
      watch(schemaDir, (_event, name) => {
        if (name === null || name === schemaName) trigger();
      }),
    );
    for (const w of this.#watchers) w.unref();
  }

  /** Stops watching. Idempotent; decisions keep working on the active set. */
  close(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    if (this.#debounce !== undefined) clearTimeout(this.#debounce);
    this.#debounce = undefined;
  }

  /**
   * Cedar's request validation (principal and resource types in the action's `appliesTo`,
   * context of the action's context type), done here once per declared action instead of
   * on every decision. Sound because `#request` fixes everything it checks: the principal
   * is always a `Runtime`, the resource a `Resource`, and the context always has the same
   * attributes with the same types (strings, booleans and safe integers, checked per call);
   * only values vary, and no value can change the outcome of this check. What does depend
   * on values is still checked on every call, since the schema is passed with it: entity
   * attributes must conform and context records must have exactly the declared attributes.
   * A schema our requests do not fit is refused at load rather than failing every decision.
   */
  #checkRequestShape(set: CompiledPolicySet, slotId: string, schemaName: string): void {
    for (const action of set.actions) {
      const probe = this.#request(canaryRequest(action), set);
      const answer = this.#call(() =>
        this.#cedar.statefulIsAuthorized({
          ...probe,
          preparsedPolicySetId: slotId,
          preparsedSchemaName: schemaName,
          validateRequest: true,
        }),
      );
      if (answer.type === 'failure') {
        throw new PolicySetInvalidError(
          `grant requests for action "${action}" do not fit the schema: ${answer.errors.map((e) => e.message).join('; ')}`,
        );
      }
    }
  }

  /** Runs one wasm call; anything it throws (a trap, a panic) means "cannot decide". */
  #call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (cause) {
      throw new PolicyUnavailableError('the policy engine failed', { cause });
    }
  }

  #request(
    req: PolicyRequest,
    set: CompiledPolicySet,
  ): {
    principal: { type: string; id: string };
    action: { type: string; id: string };
    resource: { type: string; id: string };
    context: Record<string, CedarValueJson>;
    entities: EntityJson[];
  } {
    const runtimeId = checkString('runtime.id', req.runtime.id);
    const name = checkString('runtime.name', req.runtime.name, true);
    const action = checkString('action', req.action);
    const resource = checkString('resource', req.resource);
    const labels = declaredLabels('runtime.labels', req.runtime.labels, set.labelKeys);
    const { attestation: att, lineage: lin } = req;
    // The type says so, but callers build requests from parsed JSON: check at run time.
    const proofMode: string = att.proofMode;
    if (proofMode !== 'session' && proofMode !== 'quote') {
      invalid('attestation.proofMode must be "session" or "quote"');
    }
    const parentAction =
      lin.parentAction === null ? '' : checkString('lineage.parentAction', lin.parentAction);
    // A root grant has no parent: "" and no labels (policies test `depth > 0` first).
    const parentResource =
      lin.parentResource === undefined || lin.parentResource === null
        ? ''
        : checkString('lineage.parentResource', lin.parentResource);
    const parentRuntime = lin.parentRuntime ?? null;
    const audience = req.audience ?? { name: '', gateways: [] };
    const nowMs = this.#now();
    const context: Record<string, CedarValueJson> = {
      attestation: {
        pcrPolicy: checkString('attestation.pcrPolicy', att.pcrPolicy, true),
        resetSeen: checkBool('attestation.resetSeen', att.resetSeen),
        sessionAgeSeconds: checkCount('attestation.sessionAgeSeconds', att.sessionAgeSeconds),
        proofMode: att.proofMode,
      },
      lineage: {
        depth: checkCount('lineage.depth', lin.depth),
        root: checkString('lineage.root', lin.root, true),
        parentAction,
        delegated: checkBool('lineage.delegated', lin.delegated),
        // An entity, so a policy compares it with `resource` itself; Resource::"" (no request
        // can name it: a resource is never empty) for a root grant.
        parentResource: { __entity: { type: 'Resource', id: parentResource } },
        parentRuntime:
          parentRuntime === null ? '' : checkString('lineage.parentRuntime.id', parentRuntime.id),
        parentLabels:
          parentRuntime === null
            ? {}
            : declaredLabels('lineage.parentRuntime.labels', parentRuntime.labels, set.labelKeys),
      },
      audience: {
        name: checkString('audience.name', audience.name, true),
        gateways: gatewaySet('audience.gateways', audience.gateways, 'id'),
        gatewayNames: gatewaySet('audience.gateways', audience.gateways, 'name'),
      },
      time: {
        epochSeconds: Math.floor(nowMs / 1000),
        hourUtc: new Date(nowMs).getUTCHours(),
      },
      ttlSeconds: checkCount('ttlSeconds', req.ttlSeconds),
    };
    const principal = { type: 'Runtime', id: runtimeId };
    const resourceUid = { type: 'Resource', id: resource };
    return {
      principal,
      action: { type: 'Action', id: action },
      resource: resourceUid,
      context,
      entities: [
        { uid: principal, attrs: { name, labels }, parents: [] },
        { uid: resourceUid, attrs: {}, parents: [] },
      ],
    };
  }
}
