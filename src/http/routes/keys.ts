/**
 * Key routes: the public key set gateways trust (GET /.well-known/jwks.json) and the
 * operator routes of PROTOCOL.md §5. Operator routes declare the role they need in
 * `config.role`, which the operator authentication hook (../plugins/auth.ts) enforces.
 */
import type { Approvals } from '../../operators/approvals.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import { KeyStateInvalidError, type KeyRecord, type KeyService } from '../../keys/index.js';
import { bodyLimit } from '../plugins/body-limit.js';
import { errorResponses } from '../schemas.js';

const JwkSchema = Type.Object(
  {
    kty: Type.Literal('EC'),
    crv: Type.Literal('P-256'),
    x: Type.String(),
    y: Type.String(),
    kid: Type.String(),
    alg: Type.Literal('ES256'),
    use: Type.Literal('sig'),
  },
  { additionalProperties: false },
);

const JwksSchema = Type.Object({ keys: Type.Array(JwkSchema) }, { additionalProperties: false });

const PurposeSchema = Type.Union([Type.Literal('grant'), Type.Literal('audit')]);

export const KeyViewSchema = Type.Object(
  {
    kid: Type.String(),
    purpose: PurposeSchema,
    alg: Type.Union([Type.Literal('ES256'), Type.Literal('EdDSA')]),
    state: Type.Union([
      Type.Literal('active'),
      Type.Literal('retiring'),
      Type.Literal('retired'),
      Type.Literal('next'),
    ]),
    hsmLabel: Type.String(),
    createdAt: Type.String(),
    retiringAt: Type.Optional(Type.String()),
    retiredAt: Type.Optional(Type.String()),
    destroyedAt: Type.Optional(Type.String()),
    /** A retiring or retired grant key: when the last grant it signed expires(d). */
    lastGrantExpiresAt: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

type KeyView = Static<typeof KeyViewSchema>;

/** What an operator sees of a key: the members named here (not its HSM id nor public key). */
function view(r: KeyRecord): KeyView {
  const { kid, purpose, alg, state, hsmLabel, createdAt } = r;
  const { retiringAt, retiredAt, destroyedAt, maxExp } = r;
  // A key that stopped signing stays published until the last grant it signed expires.
  const lastGrant =
    maxExp === undefined || state === 'active' || state === 'next'
      ? {}
      : { lastGrantExpiresAt: new Date(maxExp * 1000).toISOString() };
  return {
    kid,
    purpose,
    alg,
    state,
    hsmLabel,
    createdAt,
    ...(retiringAt === undefined ? {} : { retiringAt }),
    ...(retiredAt === undefined ? {} : { retiredAt }),
    ...(destroyedAt === undefined ? {} : { destroyedAt }),
    ...lastGrant,
  };
}

/** Does an If-None-Match header name this entity tag (weak comparison, RFC 9110 §13.1.2)? */
function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  return ifNoneMatch.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}

export interface KeysRoutesOptions {
  readonly keys: KeyService;
  /**
   * Dual control of destruction and of audit-key rotation; without it the destroy route is
   * not offered and the audit key cannot be rotated over the API.
   */
  readonly approvals?: Pick<Approvals, 'perform'>;
}

export const keysRoutes: FastifyPluginAsyncTypebox<KeysRoutesOptions> = (app, opts) => {
  const { keys, approvals } = opts;

  app.get(
    '/.well-known/jwks.json',
    {
      config: { public: true },
      schema: {
        headers: Type.Object({ 'if-none-match': Type.Optional(Type.String()) }),
        response: { 200: JwksSchema, 304: Type.Null() },
      },
    },
    async (request, reply) => {
      const { jwks, etag, maxAgeSeconds } = keys.publishedKeySet();
      // A cache may keep the set until the next scheduled rotation or retirement, no longer.
      void reply.header('cache-control', `public, max-age=${maxAgeSeconds}`).header('etag', etag);
      if (matches(request.headers['if-none-match'], etag)) return reply.code(304).send(null);
      return reply.code(200).send(jwks);
    },
  );

  app.get(
    '/v1/keys',
    {
      // Key custodians list the keys they are asked to retire and destroy.
      config: { role: ['operator', 'key_custodian'] },
      schema: {
        querystring: Type.Object(
          { purpose: Type.Optional(PurposeSchema) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ keys: Type.Array(KeyViewSchema) }, { additionalProperties: false }),
          ...errorResponses(400, 401, 403),
        },
      },
    },
    (request) => {
      const purpose = request.query.purpose ?? 'grant';
      return {
        keys: keys
          .list()
          .filter((k) => k.purpose === purpose)
          .map(view),
      };
    },
  );

  app.post(
    '/v1/keys/rotate',
    {
      ...bodyLimit('tiny'),
      // Limited after authentication (the auth hook runs first): only custodians spend it.
      config: { role: 'key_custodian', rateLimit: { bucket: 'rotate', perRuntime: false } },
      // A bodiless POST (curl -X POST) means the default: rotate the grant key.
      preValidation: (request, _reply, done) => {
        if ((request.body as unknown) === undefined) request.body = {};
        done();
      },
      schema: {
        body: Type.Optional(
          Type.Object({ purpose: Type.Optional(PurposeSchema) }, { additionalProperties: false }),
        ),
        response: {
          200: Type.Object(
            { active: KeyViewSchema, previous: Type.Union([KeyViewSchema, Type.Null()]) },
            { additionalProperties: false },
          ),
          ...errorResponses(400, 401, 403, 409, 429, 503),
        },
      },
    },
    async (request) => {
      const purpose = request.body.purpose ?? 'grant';
      // Auditors pin the audit key: rotating it is dual-controlled (act audit_key.rotate).
      const rotate = () => keys.rotate(purpose, 'on_demand');
      let result: Awaited<ReturnType<typeof rotate>>;
      if (purpose === 'audit') {
        if (approvals === undefined) {
          throw new KeyStateInvalidError('the audit key is rotated under dual control only');
        }
        result = await approvals.perform('audit_key.rotate', {}, rotate);
      } else {
        result = await rotate();
      }
      const { active, previous } = result;
      return { active: view(active), previous: previous === undefined ? null : view(previous) };
    },
  );

  if (approvals !== undefined) {
    // Destroying the HSM object is irreversible: dual control (M-of-N approvals of
    // `key.destroy` with params {kid}, see POST /v1/approvals), each approval single-use.
    app.post(
      '/v1/keys/:kid/destroy',
      {
        ...bodyLimit('tiny'),
        config: { role: 'key_custodian' },
        schema: {
          params: Type.Object(
            { kid: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }) },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ key: KeyViewSchema }, { additionalProperties: false }),
            ...errorResponses(400, 401, 403, 404, 409, 503),
          },
        },
      },
      async (request) => {
        const { kid } = request.params;
        // The key's state first (404 key_not_found, 409 key_state_invalid): a destroy that
        // cannot happen must not use up its approvals.
        const precheck = () => {
          const r = keys.get(kid);
          if (r.state !== 'retired' || r.destroyedAt !== undefined) {
            throw new KeyStateInvalidError(
              'only a retired, not yet destroyed key can be destroyed',
              {
                kid,
                state: r.state,
              },
            );
          }
        };
        const destroyed = await approvals.perform(
          'key.destroy',
          { kid },
          () => keys.destroy(kid),
          precheck,
        );
        return { key: view(destroyed) };
      },
    );
  }

  return Promise.resolve();
};
