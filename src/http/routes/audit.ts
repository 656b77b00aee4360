/**
 * Audit routes (PROTOCOL.md §4): checkpoint (optionally NV-certified with a nonce), the
 * verifier key, entries (auditor), batch boundaries, inclusion and consistency proofs
 * bounded by the latest checkpoint. Every answer's schema also filters what leaves the process.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AuditService } from '../../audit/service.js';
import { ErrorSchema } from '../schemas.js';

const Hex32 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Base64 = Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$' });
const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Size = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });

const EntrySchema = Type.Object(
  {
    seq: Seq,
    time: Type.String(),
    type: Type.String(),
    subject: Type.String(),
    decision: Type.Optional(Type.String()),
    reasons: Type.Optional(Type.Array(Type.String())),
    digest: Type.String(),
    prevHash: Hex32,
    hash: Hex32,
  },
  { additionalProperties: false },
);

const NvCertifySchema = Type.Object(
  {
    index: Type.Union([Type.Literal('counter'), Type.Literal('extend')]),
    nvIndex: Type.String({ pattern: '^0x[0-9a-f]{8}$' }),
    attest: Base64,
    signature: Base64,
  },
  { additionalProperties: false },
);

const CheckpointSchema = Type.Object(
  {
    note: Type.String(),
    origin: Type.String(),
    treeSize: Type.Integer({ minimum: 0 }),
    rootHash: Base64,
    nvCounter: Type.String({ pattern: '^[0-9]+$' }),
    nvExtend: Base64,
    nvCertify: Type.Optional(Type.Array(NvCertifySchema)),
    nonce: Type.Optional(Type.String({ pattern: '^[0-9a-f]+$' })),
  },
  { additionalProperties: false },
);

const VerifierSchema = Type.Object(
  {
    origin: Type.String(),
    noteVerifierKey: Type.String(),
    jwk: Type.Object(
      { kty: Type.Literal('OKP'), crv: Type.Literal('Ed25519'), x: Type.String() },
      { additionalProperties: false },
    ),
    akPublic: Type.Optional(Base64),
    anchorPin: Type.Optional(
      Type.Object(
        {
          names: Type.Object(
            {
              counter: Type.String({ pattern: '^000b[0-9a-f]{64}$' }),
              extend: Type.String({ pattern: '^000b[0-9a-f]{64}$' }),
            },
            { additionalProperties: false },
          ),
          genesisCounter: Type.String({ pattern: '^[0-9]+$' }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const BatchSchema = Type.Object(
  { index: Seq, size: Size, root: Hex32 },
  { additionalProperties: false },
);

const PathSchema = Type.Array(Hex32);

const errors = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  429: ErrorSchema,
  503: ErrorSchema,
};

/** Checked before validation: any `nonce` parameter at all asks for TPM work. */
const hasNonce = (request: FastifyRequest): boolean =>
  typeof request.query === 'object' &&
  request.query !== null &&
  Object.hasOwn(request.query, 'nonce');

export const auditRoutes: FastifyPluginAsyncTypebox<{ audit: AuditService }> = (app, { audit }) => {
  app.get(
    '/v1/audit/checkpoint',
    {
      // Public: anyone may check the log's consistency and inclusion (they reveal no entry).
      // With a nonce it costs the TPM work the audit anchor queues behind: limited per
      // address and for the whole appliance (bucket `certify`).
      config: {
        public: true,
        rateLimit: { bucket: 'certify', perRuntime: false, when: hasNonce },
      },
      schema: {
        querystring: Type.Object(
          // At most 32 bytes: it becomes NV_Certify's qualifyingData.
          { nonce: Type.Optional(Type.String({ pattern: '^([0-9a-fA-F]{2}){1,32}$' })) },
          { additionalProperties: false },
        ),
        response: { 200: CheckpointSchema, ...errors },
      },
    },
    async (request) => {
      const { nonce } = request.query;
      const cp = await audit.checkpoint(
        nonce === undefined ? {} : { nonce: Buffer.from(nonce, 'hex') },
      );
      const { nvCertify, ...rest } = cp;
      return nvCertify === undefined ? rest : { ...rest, nvCertify: [...nvCertify] };
    },
  );

  app.get(
    '/v1/audit/verifier',
    { config: { public: true }, schema: { response: { 200: VerifierSchema, ...errors } } },
    async () => audit.verifier(),
  );

  app.get(
    '/v1/audit/entries',
    {
      config: { role: 'auditor' },
      schema: {
        querystring: Type.Object(
          {
            from: Type.Optional(Seq),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ entries: Type.Array(EntrySchema) }, { additionalProperties: false }),
          404: ErrorSchema,
          ...errors,
        },
      },
    },
    async (request) => {
      const entries = await audit.entries(request.query.from ?? 0, request.query.limit ?? 100);
      return {
        entries: entries.map(({ reasons, ...e }) =>
          reasons === undefined ? e : { ...e, reasons: [...reasons] },
        ),
      };
    },
  );

  app.get(
    '/v1/audit/batches',
    {
      // Public like the proofs: sizes and roots tie the TPM anchor to the checkpoints.
      config: { public: true },
      schema: {
        querystring: Type.Object(
          {
            from: Type.Optional(Seq),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ batches: Type.Array(BatchSchema) }, { additionalProperties: false }),
          404: ErrorSchema,
          ...errors,
        },
      },
    },
    async (request) => ({
      batches: [...(await audit.batches(request.query.from ?? 0, request.query.limit ?? 100))],
    }),
  );

  app.get(
    '/v1/audit/proof/inclusion',
    {
      // Public: anyone may check the log's consistency and inclusion (they reveal no entry).
      config: { public: true },
      schema: {
        querystring: Type.Object({ seq: Seq, size: Size }, { additionalProperties: false }),
        response: {
          200: Type.Object(
            { seq: Seq, treeSize: Size, leafHash: Hex32, path: PathSchema },
            { additionalProperties: false },
          ),
          ...errors,
        },
      },
    },
    (request) => {
      const proof = audit.inclusionProof(request.query.seq, request.query.size);
      return { ...proof, path: [...proof.path] };
    },
  );

  app.get(
    '/v1/audit/proof/consistency',
    {
      // Public: anyone may check the log's consistency and inclusion (they reveal no entry).
      config: { public: true },
      schema: {
        querystring: Type.Object({ from: Size, to: Size }, { additionalProperties: false }),
        response: {
          200: Type.Object(
            { from: Size, to: Size, path: PathSchema },
            { additionalProperties: false },
          ),
          ...errors,
        },
      },
    },
    (request) => {
      const proof = audit.consistencyProof(request.query.from, request.query.to);
      return { ...proof, path: [...proof.path] };
    },
  );

  return Promise.resolve();
};
