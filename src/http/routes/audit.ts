/**
 * Audit routes (PROTOCOL.md §4): checkpoint (optionally NV-certified with a nonce), the
 * verifier key, entries (auditor), batch boundaries, inclusion and consistency proofs
 * bounded by the latest checkpoint. Every answer's schema also filters what leaves the process.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';
import type { AuditEntry } from '../../audit/entry.js';
import {
  AuditPeriodNotFoundError,
  AuditQueryInvalidError,
  AuditUnavailableError,
} from '../../audit/errors.js';
import { factOf } from '../../audit/facts.js';
import type { AuditFilter } from '../../audit/query.js';
import { factId } from '../../audit/facts.js';
import { MAX_PERIOD } from '../../audit/periods.js';
import { queryAcrossPeriods } from '../../audit/timeline.js';
import type { AuditService, LogService } from '../../audit/service.js';
import { requireActor } from '../plugins/auth.js';
import { errorResponses, RuntimeParams } from '../schemas.js';

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
    /** 2 on an entry with typed facts (docs/protocol.md §4, "Entry facts"). */
    v: Type.Optional(Type.Literal(2)),
    facts: Type.Optional(
      Type.Record(
        Type.String(),
        Type.Union([
          Type.String(),
          Type.Number(),
          Type.Boolean(),
          Type.Null(),
          Type.Array(Type.String()),
        ]),
      ),
    ),
    prevHash: Hex32,
    hash: Hex32,
  },
  { additionalProperties: false },
);

/** An id as the log writes them (entry.ts): type, subject, decision filters. */
const AuditId = Type.String({ pattern: '^[A-Za-z0-9_.:@/+-]{1,128}$' });
const Rfc3339 = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
  maxLength: 40,
});

/** RFC 3339 as the log writes times (`toISOString`), or a 422 naming the parameter. */
function normalisedTime(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new AuditQueryInvalidError(`${name} is not a time`, name);
  return new Date(ms).toISOString();
}

/** The `since` and `until` parameters as a filter's range, or a 422 when they make none. */
function timeRange(
  since: string | undefined,
  until: string | undefined,
): Pick<AuditFilter, 'since' | 'until'> {
  const s = normalisedTime('since', since);
  const u = normalisedTime('until', until);
  if (s !== undefined && u !== undefined && s >= u) {
    throw new AuditQueryInvalidError('since must be before until', 'until');
  }
  return { ...(s === undefined ? {} : { since: s }), ...(u === undefined ? {} : { until: u }) };
}

/** Copies an entry for the response schema (arrays copied, readonly dropped). */
function entryOut(entry: AuditEntry): Static<typeof EntrySchema> {
  const { reasons, facts, ...rest } = entry;
  return {
    ...rest,
    ...(reasons === undefined ? {} : { reasons: [...reasons] }),
    ...(facts === undefined
      ? {}
      : { facts: { ...(facts as Readonly<Record<string, string | number | boolean | null>>) } }),
  };
}

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
    period: Type.Integer({ minimum: 0 }),
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

const errorStatuses = [400, 401, 403, 429, 503] as const;

/** A log period's number (docs/protocol.md §4, "Log periods"). */
const Period = Type.Integer({ minimum: 0, maximum: MAX_PERIOD });

const TimelineLine = Type.Object(
  {
    /** The log period the line is in: `seq` counts from 0 in each (§4.5). */
    period: Period,
    seq: Seq,
    time: Type.String(),
    /** enrollment, attestation, grant, refusal, outcome, revocation, other */
    kind: Type.String(),
    type: Type.String(),
    subject: Type.String(),
    decision: Type.Optional(Type.String()),
    grant: Type.Optional(Type.String()),
    hash: Hex32,
  },
  { additionalProperties: false },
);

/** The timeline's kinds: what an auditor reads a runtime's history by. */
function kindOf(type: string): string {
  if (type === 'runtime.enroll' || type === 'runtime.activate' || type === 'runtime.approve') {
    return 'enrollment';
  }
  // `runtime.attestation`: a rejected attestation as stores before the fix wrote it.
  if (
    type === 'runtime.attest' ||
    type === 'runtime.attestation' ||
    type === 'runtime.quote' ||
    type === 'runtime.firmware'
  ) {
    return 'attestation';
  }
  if (type === 'grant.decision' || type === 'grant.issue_failed') return 'grant';
  if (type === 'grant.refused') return 'refusal';
  if (type === 'grant.redeem') return 'outcome';
  if (type === 'grant.revoke' || type === 'runtime.revoke') return 'revocation';
  return 'other';
}

function timelineLine(period: number, e: AuditEntry): Static<typeof TimelineLine> {
  const fact = factOf(e.facts, 'grant');
  const grant = e.subject.startsWith('gr_')
    ? e.subject
    : typeof fact === 'string'
      ? fact
      : undefined;
  return {
    period,
    seq: e.seq,
    time: e.time,
    kind: kindOf(e.type),
    type: e.type,
    subject: e.subject,
    ...(e.decision === undefined ? {} : { decision: e.decision }),
    ...(grant === undefined ? {} : { grant }),
    hash: e.hash,
  };
}

const PeriodEndSchema = Type.Object(
  {
    period: Period,
    origin: Type.String(),
    size: Type.Integer({ minimum: 0 }),
    root: Hex32,
    counter: Type.String({ pattern: '^[0-9]+$' }),
    extend: Hex32,
  },
  { additionalProperties: false },
);

const PeriodSchema = Type.Object(
  {
    period: Period,
    origin: Type.String(),
    state: Type.Union([Type.Literal('current'), Type.Literal('frozen')]),
    startedAt: Type.Union([Type.String(), Type.Null()]),
    previous: Type.Optional(PeriodEndSchema),
  },
  { additionalProperties: false },
);

/**
 * The log period a read names (`?period=`, default the current one) and its service. A
 * switch between the two steps answers from the period asked for, now frozen: still right.
 */
async function inPeriod(
  audit: AuditService,
  period: number | undefined,
): Promise<{ period: number; log: LogService }> {
  let n = period ?? audit.currentPeriod();
  if (n === undefined) {
    // Not serving: this throws the log's refusal, or that it is not ready.
    await audit.inPeriod(0);
    n = audit.currentPeriod() ?? 0;
  }
  return { period: n, log: await audit.inPeriod(n) };
}

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
          {
            nonce: Type.Optional(Type.String({ pattern: '^([0-9a-fA-F]{2}){1,32}$' })),
            period: Type.Optional(Period),
          },
          { additionalProperties: false },
        ),
        response: { 200: CheckpointSchema, ...errorResponses(...errorStatuses) },
      },
    },
    async (request) => {
      const { nonce } = request.query;
      const { period, log } = await inPeriod(audit, request.query.period);
      const cp = await log.checkpoint(
        nonce === undefined ? {} : { nonce: Buffer.from(nonce, 'hex') },
      );
      const { nvCertify, ...rest } = cp;
      return nvCertify === undefined
        ? { period, ...rest }
        : { period, ...rest, nvCertify: [...nvCertify] };
    },
  );

  app.get(
    '/v1/audit/verifier',
    {
      config: { public: true },
      schema: { response: { 200: VerifierSchema, ...errorResponses(...errorStatuses) } },
    },
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
            type: Type.Optional(AuditId),
            subject: Type.Optional(AuditId),
            decision: Type.Optional(AuditId),
            since: Type.Optional(Rfc3339),
            until: Type.Optional(Rfc3339),
            cursor: Type.Optional(Seq),
            period: Type.Optional(Period),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            {
              period: Type.Integer({ minimum: 0 }),
              entries: Type.Array(EntrySchema),
              /** With a filter or a cursor: the next page's cursor, null at the end. */
              next: Type.Optional(Type.Union([Seq, Type.Null()])),
            },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses, 404, 422),
        },
      },
    },
    async (request) => {
      const { from, limit, type, subject, decision, since, until, cursor } = request.query;
      const filtered = [type, subject, decision, since, until, cursor].some((v) => v !== undefined);
      const { period, log } = await inPeriod(audit, request.query.period);
      if (!filtered) {
        const entries = await log.entries(from ?? 0, limit ?? 100);
        return { period, entries: entries.map(entryOut) };
      }
      if (from !== undefined && cursor !== undefined) {
        throw new AuditQueryInvalidError('give either from or cursor, not both', 'cursor');
      }
      const filter: AuditFilter = {
        ...(type === undefined ? {} : { type }),
        ...(subject === undefined ? {} : { subject }),
        ...(decision === undefined ? {} : { decision }),
        ...timeRange(since, until),
      };
      const page = await log.query(filter, cursor ?? from ?? 0, limit ?? 100);
      return { period, entries: page.entries.map(entryOut), next: page.next };
    },
  );

  app.get(
    '/v1/audit/bodies/:digest',
    {
      // The request a decision was made on (its digest is the entry's): auditors only.
      config: { role: 'auditor' },
      schema: {
        params: Type.Object({ digest: Hex32 }, { additionalProperties: false }),
        querystring: Type.Object(
          { period: Type.Optional(Period) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ digest: Hex32, body: Type.String() }, { additionalProperties: false }),
          ...errorResponses(...errorStatuses, 404),
        },
      },
    },
    async (request) => ({
      digest: request.params.digest,
      body: await (await inPeriod(audit, request.query.period)).log.body(request.params.digest),
    }),
  );

  app.get(
    '/v1/runtimes/:runtimeId/timeline',
    {
      // What one runtime did, each line with its seq (provable with the inclusion proof).
      config: { role: 'auditor' },
      schema: {
        params: RuntimeParams,
        querystring: Type.Object(
          {
            // The cursor: a seq inside a log period (default period 0, the oldest).
            period: Type.Optional(Period),
            cursor: Type.Optional(Seq),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
            since: Type.Optional(Rfc3339),
            until: Type.Optional(Rfc3339),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            {
              runtimeId: Type.String(),
              events: Type.Array(TimelineLine),
              next: Type.Union([Seq, Type.Null()]),
              nextPeriod: Type.Union([Period, Type.Null()]),
            },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses, 404, 422),
        },
      },
    },
    async (request) => {
      const { runtimeId } = request.params;
      const { period, cursor, limit, since, until } = request.query;
      // Every period in order, oldest first: the runtime's whole history, not the current
      // period's alone.
      const page = await queryAcrossPeriods(
        audit,
        { subject: runtimeId, ...timeRange(since, until) },
        { period: period ?? 0, seq: cursor ?? 0 },
        limit ?? 100,
      );
      return {
        runtimeId,
        events: page.entries.map((e) => timelineLine(e.period, e.entry)),
        next: page.next?.seq ?? null,
        nextPeriod: page.next?.period ?? null,
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
            period: Type.Optional(Period),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            { period: Type.Integer({ minimum: 0 }), batches: Type.Array(BatchSchema) },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses, 404),
        },
      },
    },
    async (request) => {
      const { period, log } = await inPeriod(audit, request.query.period);
      const batches = await log.batches(request.query.from ?? 0, request.query.limit ?? 100);
      return { period, batches: [...batches] };
    },
  );

  app.get(
    '/v1/audit/proof/inclusion',
    {
      // Public: anyone may check the log's consistency and inclusion (they reveal no entry).
      config: { public: true },
      schema: {
        querystring: Type.Object(
          { seq: Seq, size: Size, period: Type.Optional(Period) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            {
              period: Type.Integer({ minimum: 0 }),
              seq: Seq,
              treeSize: Size,
              leafHash: Hex32,
              path: PathSchema,
            },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request) => {
      const { period, log } = await inPeriod(audit, request.query.period);
      const proof = await log.inclusionProof(request.query.seq, request.query.size);
      return { period, ...proof, path: [...proof.path] };
    },
  );

  app.get(
    '/v1/audit/proof/consistency',
    {
      // Public: anyone may check the log's consistency and inclusion (they reveal no entry).
      config: { public: true },
      schema: {
        querystring: Type.Object(
          { from: Size, to: Size, period: Type.Optional(Period) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            { period: Type.Integer({ minimum: 0 }), from: Size, to: Size, path: PathSchema },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request) => {
      const { period, log } = await inPeriod(audit, request.query.period);
      const proof = await log.consistencyProof(request.query.from, request.query.to);
      return { period, ...proof, path: [...proof.path] };
    },
  );

  app.get(
    '/v1/audit/periods',
    {
      // Public like the checkpoint: each period's origin and the final checkpoint of the one
      // before it, as its link entry records them.
      config: { public: true },
      schema: {
        response: {
          200: Type.Object(
            { current: Period, periods: Type.Array(PeriodSchema) },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async () => {
      const periods = await audit.periods();
      const current = periods.find((p) => p.state === 'current')?.period ?? 0;
      return { current, periods: periods.map((p) => ({ ...p })) };
    },
  );

  app.get(
    '/v1/audit/periods/:period/link',
    {
      // Public like the proofs: a watcher follows a switch with it (the link is leaf 0 of
      // the period's signed tree: prove it with /v1/audit/proof/inclusion?period=&seq=0).
      config: { public: true },
      schema: {
        params: Type.Object({ period: Period }, { additionalProperties: false }),
        response: {
          200: Type.Object({ period: Period, entry: EntrySchema }, { additionalProperties: false }),
          ...errorResponses(...errorStatuses, 404),
        },
      },
    },
    async (request) => {
      const { period } = request.params;
      // Period 0 is the first: it links to nothing.
      if (period === 0) throw new AuditPeriodNotFoundError('log period 0 has no link entry');
      const [entry] = await (await audit.inPeriod(period)).entries(0, 1);
      if (entry === undefined) throw new AuditUnavailableError('the link entry cannot be read');
      return { period, entry: entryOut(entry) };
    },
  );

  app.post(
    '/v1/audit/periods',
    {
      // Freeze the current period and start the next now (recorded as an operator act, and
      // the new period's first entry names the operator).
      config: { role: 'operator' },
      schema: { response: { 201: PeriodSchema, ...errorResponses(...errorStatuses) } },
    },
    async (request, reply) => {
      const started = await audit.startPeriod(factId(requireActor(request).id));
      return reply.code(201).send({ ...started });
    },
  );

  return Promise.resolve();
};
