/**
 * Operator routes over what the registrar trusts (issue 7, dual control):
 *
 * - GET  /v1/attestation/ek-ca: the trusted EK CA bundle's digest and certificates
 *   (auditor, operator).
 * - PUT  /v1/attestation/ek-ca {pem}: replace the bundle (operator). Needs M approvals of
 *   `ekca.replace` with params `{bundleSha256}`, the hex SHA-256 of `pem` exactly as sent
 *   (`sha256sum bundle.pem`), so approvals for one bundle never replace another.
 * - GET  /v1/attestation/reference-policies (auditor, operator).
 * - POST /v1/attestation/reference-policies/{name}/disable | /enable (operator). Need M
 *   approvals of `refpolicy.disable` / `refpolicy.enable` with params `{name}`.
 * - PUT  /v1/attestation/reference-policies/{name} {policy}: add or replace a reference
 *   policy (operator; e.g. golden values from `grantor reference-policies learn`). Needs M
 *   approvals of `refpolicy.put` with params `{name, policySha256}`, the hex SHA-256 of
 *   JCS(policy); the previous version is kept (GET .../{name}/versions).
 *
 * Each act validates first (a refused bundle or a no-op never uses up approvals), then
 * consumes the approvals (single use, audited with the approvers), then acts (audited with
 * the acting operator; see src/attestation/registrar.ts).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AttestationTrust } from '../../attestation/index.js';
import type { Approvals } from '../../operators/approvals.js';
import { bodyLimit } from '../plugins/body-limit.js';
import { OPERATOR_AUTH_PLUGIN, requireActor } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';

const closed = { additionalProperties: false } as const;
const Hex64 = Type.String({ pattern: '^[0-9a-f]{64}$' });

const EkCaReply = Type.Object(
  {
    sha256: Hex64,
    source: Type.Union([Type.Literal('configuration'), Type.Literal('replaced')]),
    replacedAt: Type.Optional(Type.String()),
    replacedBy: Type.Optional(Type.String()),
    certificates: Type.Array(
      Type.Object(
        {
          subject: Type.String(),
          issuer: Type.String(),
          serialNumber: Type.String(),
          sha256: Hex64,
          notBefore: Type.String(),
          notAfter: Type.String(),
        },
        closed,
      ),
    ),
  },
  closed,
);

const PolicyView = Type.Object(
  {
    name: Type.String(),
    selector: Type.Record(Type.String(), Type.String()),
    enabled: Type.Boolean(),
    disabledAt: Type.Optional(Type.String()),
    disabledBy: Type.Optional(Type.String()),
  },
  closed,
);

const RulesReply = Type.Object(
  {
    sha256: Hex64,
    source: Type.Union([Type.Literal('configuration'), Type.Literal('replaced')]),
    replacedAt: Type.Optional(Type.String()),
    replacedBy: Type.Optional(Type.String()),
    // Validated by the registrar (src/attestation/enrollment-rules.ts), shown as stored.
    ruleSet: Type.Unknown(),
  },
  closed,
);

// The whole set, validated whole by the registrar (422 enrollment_rules_invalid).
const RuleSetBody = Type.Object(
  { version: Type.Literal(1), rules: Type.Array(Type.Unknown(), { maxItems: 256 }) },
  closed,
);

const PolicyParams = Type.Object(
  { name: Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' }) },
  closed,
);

const PolicyVersionView = Type.Object(
  {
    policy: Type.Record(Type.String(), Type.Unknown()),
    sha256: Hex64,
    at: Type.String(),
    by: Type.String(),
  },
  closed,
);

const errorStatuses = [400, 422, 401, 403, 404, 409, 413, 429, 503] as const;

export interface AttestationRoutesOptions {
  readonly trust: AttestationTrust;
  readonly approvals: Pick<Approvals, 'perform'>;
}

export const attestationRoutes: FastifyPluginAsyncTypebox<AttestationRoutesOptions> = (
  app,
  { trust, approvals },
) => {
  if (!app.hasPlugin(OPERATOR_AUTH_PLUGIN)) {
    return Promise.reject(new TypeError('attestationRoutes needs operatorAuth registered first'));
  }

  app.get(
    '/v1/attestation/ek-ca',
    {
      config: { role: ['auditor', 'operator'] },
      schema: { response: { 200: EkCaReply, ...errorResponses(...errorStatuses) } },
    },
    () => trust.ekCa(),
  );

  app.put(
    '/v1/attestation/ek-ca',
    {
      // A vendor bundle of a few hundred CA certificates fits; the schema allows less.
      ...bodyLimit('large'),
      config: { role: 'operator' },
      schema: {
        body: Type.Object({ pem: Type.String({ minLength: 1, maxLength: 240 * 1024 }) }, closed),
        response: { 200: EkCaReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const pem = request.body.pem;
      // Validate before the approvals are used: a refused bundle leaves them usable.
      const { sha256 } = trust.checkEkCa(pem);
      return approvals.perform('ekca.replace', { bundleSha256: sha256 }, () =>
        trust.replaceEkCa(pem, actor),
      );
    },
  );

  app.get(
    '/v1/attestation/enrollment-rules',
    {
      config: {
        role: ['auditor', 'operator'],
        rateLimit: { bucket: 'inventory', perRuntime: false },
      },
      schema: { response: { 200: RulesReply, ...errorResponses(...errorStatuses) } },
    },
    () => trust.enrollmentRulesView(),
  );

  // Validates a set and answers the digest that `enrollrules.replace` approvals must bind,
  // changing nothing: what an operator asks approvals for before the PUT.
  app.post(
    '/v1/attestation/enrollment-rules/check',
    {
      ...bodyLimit('large'),
      config: { role: 'operator', rateLimit: { bucket: 'inventory', perRuntime: false } },
      schema: {
        body: RuleSetBody,
        response: {
          200: Type.Object({ sha256: Hex64, rules: Type.Integer() }, closed),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    (request) => {
      const { sha256, set } = trust.checkEnrollmentRules(request.body);
      return { sha256, rules: set.rules.length };
    },
  );

  app.put(
    '/v1/attestation/enrollment-rules',
    {
      ...bodyLimit('large'),
      config: { role: 'operator', rateLimit: { bucket: 'inventory', perRuntime: false } },
      schema: {
        body: RuleSetBody,
        response: { 200: RulesReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      // Validate before the approvals are used: a refused set leaves them usable.
      const { sha256, set } = trust.checkEnrollmentRules(request.body);
      return approvals.perform('enrollrules.replace', { rulesSha256: sha256 }, () =>
        trust.replaceEnrollmentRules(set, actor),
      );
    },
  );

  app.get(
    '/v1/attestation/reference-policies',
    {
      config: { role: ['auditor', 'operator'] },
      schema: {
        response: {
          200: Type.Object({ policies: Type.Array(PolicyView) }, closed),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    () => ({ policies: trust.referencePolicyViews() }),
  );

  app.put(
    '/v1/attestation/reference-policies/:name',
    {
      ...bodyLimit('large'),
      config: { role: 'operator' },
      schema: {
        params: PolicyParams,
        body: Type.Object({ policy: Type.Record(Type.String(), Type.Unknown()) }, closed),
        response: {
          200: Type.Object(
            {
              name: Type.String(),
              sha256: Hex64,
              replaced: Type.Boolean(),
              versions: Type.Integer(),
            },
            closed,
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const { name } = request.params;
      const policy = request.body.policy;
      // Validate before the approvals are used: a refused policy leaves them usable.
      const { sha256 } = trust.checkPutReferencePolicy(name, policy);
      return approvals.perform('refpolicy.put', { name, policySha256: sha256 }, () =>
        trust.putReferencePolicy(name, policy, actor),
      );
    },
  );

  app.get(
    '/v1/attestation/reference-policies/:name/versions',
    {
      config: { role: ['auditor', 'operator'] },
      schema: {
        params: PolicyParams,
        response: {
          200: Type.Object(
            {
              current: Type.Union([PolicyVersionView, Type.Null()]),
              previous: Type.Array(PolicyVersionView),
            },
            closed,
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    (request) => {
      const h = trust.referencePolicyHistory(request.params.name);
      return { current: h?.current ?? null, previous: [...(h?.previous ?? [])] };
    },
  );

  for (const change of ['disable', 'enable'] as const) {
    const enable = change === 'enable';
    app.post(
      `/v1/attestation/reference-policies/:name/${change}`,
      {
        ...bodyLimit('tiny'),
        config: { role: 'operator' },
        schema: {
          params: PolicyParams,
          response: { 200: PolicyView, ...errorResponses(...errorStatuses) },
        },
      },
      async (request) => {
        const actor = requireActor(request);
        const { name } = request.params;
        // A missing policy or a no-op is refused before the approvals are used.
        trust.checkReferencePolicy(name, !enable);
        return approvals.perform(`refpolicy.${change}`, { name }, () =>
          trust.setReferencePolicyEnabled(name, enable, actor),
        );
      },
    );
  }

  return Promise.resolve();
};
