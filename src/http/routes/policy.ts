/**
 * Policy set routes: which Cedar set decides (GET /v1/policy) and an operator's reload of
 * the policy directory and schema (POST /v1/policy/reload). The reload is the engine's
 * (atomic: a refused set answers `policy_set_invalid` and the previous set keeps deciding);
 * auditing it is the policy domain's job (src/policy/reloads.ts), not the route's.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import type { OperatorActor } from '../../operators/roles.js';
import {
  PolicySetNotFoundError,
  PolicyUnavailableError,
  type ArchivedPolicySet,
  type PolicySetInfo,
} from '../../policy/index.js';
import { OPERATOR_AUTH_PLUGIN, requireActor } from '../plugins/auth.js';
import { bodyLimit } from '../plugins/body-limit.js';
import { errorResponses } from '../schemas.js';

/** What the routes need of the policy domain. */
export interface PolicyAdministration {
  /** The active set, or undefined when none is loaded. */
  info(): PolicySetInfo | undefined;
  /**
   * Re-reads the policy directory and schema and activates them atomically, audited as done
   * by `actor`; rejects with PolicySetInvalidError (the previous set stays active).
   */
  reload(actor: OperatorActor): Promise<PolicySetInfo>;
  /** A set from the policy archive by its hash (checked against it), or undefined. */
  archived?(hash: string): Promise<ArchivedPolicySet | undefined>;
}

/** An archived set: its texts exactly as hashed (docs/protocol.md §6, "Policy archive"). */
export const ArchivedPolicySetSchema = Type.Object(
  {
    hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    schema: Type.String(),
    /** File name -> text; hash = SHA-256(JCS({policies, schema})). */
    policies: Type.Record(Type.String(), Type.String()),
  },
  { additionalProperties: false },
);

export const PolicySetInfoSchema = Type.Object(
  {
    /** Hex SHA-256 over JCS({policies, schema}): the grants' `pol` (docs/policy.md). */
    hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    /** Activations in this process: 1 for the set loaded at start. */
    version: Type.Integer({ minimum: 1 }),
    files: Type.Array(Type.String()),
    policyIds: Type.Array(Type.String()),
    actions: Type.Array(Type.String()),
    /** RFC 3339, the appliance's clock. */
    activatedAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

type PolicySetView = Static<typeof PolicySetInfoSchema>;

function view(info: PolicySetInfo): PolicySetView {
  return {
    hash: info.hash,
    version: info.version,
    files: [...info.files],
    policyIds: [...info.policyIds],
    actions: [...info.actions],
    activatedAt: new Date(info.activatedAt).toISOString(),
  };
}

const errorStatuses = [400, 401, 403, 503] as const;

export const policyRoutes: FastifyPluginAsyncTypebox<{ policy: PolicyAdministration }> = (
  app,
  { policy },
) => {
  // Every route here needs a role: without the auth hook they would be open to anyone.
  if (!app.hasPlugin(OPERATOR_AUTH_PLUGIN)) {
    return Promise.reject(new TypeError('policyRoutes needs operatorAuth registered first'));
  }

  app.get(
    '/v1/policy',
    {
      // Auditors check which set decided; operators see what they are about to replace.
      config: { role: ['auditor', 'operator'] },
      schema: { response: { 200: PolicySetInfoSchema, ...errorResponses(...errorStatuses) } },
    },
    () => {
      const info = policy.info();
      if (info === undefined) throw new PolicyUnavailableError('no policy set is loaded');
      return view(info);
    },
  );

  const archived = policy.archived?.bind(policy);
  if (archived !== undefined) {
    app.get(
      '/v1/policy/:hash',
      {
        // Which rules decided: a grant's `pol`, an entry's policyHash, back into texts.
        config: { role: ['auditor', 'operator'] },
        schema: {
          params: Type.Object(
            { hash: Type.String({ pattern: '^[0-9a-f]{64}$' }) },
            { additionalProperties: false },
          ),
          response: { 200: ArchivedPolicySetSchema, ...errorResponses(...errorStatuses, 404) },
        },
      },
      async (request) => {
        const set = await archived(request.params.hash);
        if (set === undefined) {
          throw new PolicySetNotFoundError(`no policy set ${request.params.hash} in the archive`);
        }
        return { hash: set.hash, schema: set.schema, policies: { ...set.policies } };
      },
    );
  }

  app.post(
    '/v1/policy/reload',
    {
      ...bodyLimit('tiny'),
      config: { role: 'operator' },
      // A bodiless POST (curl -X POST) is the usual call; `{}` is accepted too.
      preValidation: (request, _reply, done) => {
        if ((request.body as unknown) === undefined) request.body = {};
        done();
      },
      schema: {
        body: Type.Optional(Type.Object({}, { additionalProperties: false })),
        response: { 200: PolicySetInfoSchema, ...errorResponses(...errorStatuses, 422) },
      },
    },
    async (request) => view(await policy.reload(requireActor(request))),
  );

  return Promise.resolve();
};
