/**
 * An example gateway: a small Fastify service that protects two toy actions with the
 * grantor gateway SDK. Each request carries its grant in `Authorization: Grant <jws>`; the
 * gateway checks that the grant names exactly this execution (action, resource, SHA-256 of
 * the canonical JSON parameters), redeems it online with the appliance (first call wins),
 * executes once, refuses a replay, and reports the outcome (`succeeded`/`failed` with the
 * digest of the result) to the appliance. It authenticates at the appliance as an enrolled
 * gateway (`gatewayToken`).
 *
 *   POST /tickets/read         {"ticketId": "T-42"}                 action tickets.read, resource ticket:T-42
 *   POST /payments/transfer    {"from": "acct:1234", "to": "acct:9876", "amountCents": 2500, "currency": "EUR"}
 *                                                                  action payments.transfer, resource = from
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  GrantRejectedError,
  JwksClient,
  PopChallenges,
  RedemptionClient,
  RevocationView,
  createGrantVerifier,
  parsePopHeader,
  parametersDigest,
  type ExecutionOutcome,
  type GrantVerifier,
  type KeySource,
} from '../../src/gateway/index.js';
import { GrantorError } from '../../src/shared/errors.js';

export interface GatewayExampleOptions {
  /** The appliance id grants must be issued by (`iss`). */
  readonly issuer: string;
  /** This gateway's audience (`aud`), e.g. "gw_payments". */
  readonly audience: string;
  /** Base URL of the appliance, for redemption (and the JWKS unless `jwksUrl` is set). */
  readonly applianceUrl: string;
  /** Default: `<applianceUrl>/.well-known/jwks.json`. */
  readonly jwksUrl?: string;
  /** Keys to use instead of fetching the JWKS (e.g. a pinned key set). */
  readonly keys?: KeySource;
  /**
   * This gateway's token at the appliance (`ggw_...`, from `POST /v1/gateways` by an
   * operator): redemptions and outcomes are refused without it.
   */
  readonly gatewayToken?: string;
  /** Extra headers sent with each redemption. */
  readonly redeemHeaders?: Readonly<Record<string, string>>;
  readonly clockToleranceSeconds?: number;
  readonly now?: () => number;
  readonly logger?: boolean;
  /**
   * Demand proof of possession of the grant's session key (default: on, issue 18): the
   * runtime fetches a challenge (`POST /pop/challenge`) and sends `Grant-PoP: <base64url of
   * JSON {challenge, signature, publicKey}>` (the attester's `proofOfPossession().header`;
   * see README). `false` accepts a bare grant: anyone holding a copy can use it.
   */
  readonly requireProofOfPossession?: boolean;
  /**
   * Offline verification (docs/protocol.md §3.1): no redeem call per request; revocations are
   * learned from the appliance's signed snapshot and feed (needs `gatewayToken`), and every
   * grant is refused while the view is older than `maxStalenessSeconds` (default 60).
   */
  readonly offline?: { readonly maxStalenessSeconds?: number };
}

export interface Transfer {
  readonly transferId: string;
  readonly grantId: string;
  readonly runtimeId: string;
  readonly from: string;
  readonly to: string;
  readonly amountCents: number;
  readonly currency: string;
}

export interface GatewayExample {
  readonly app: FastifyInstance;
  /** The revocation view in offline mode (its `lagSeconds()` is the feed lag). */
  readonly revocations?: RevocationView;
  /** Every transfer executed, in order (the "money moved" side effect). */
  readonly transfers: readonly Transfer[];
}

const TICKETS: Readonly<Record<string, { id: string; subject: string; status: string }>> = {
  'T-42': { id: 'T-42', subject: 'Refund for order 1881', status: 'open' },
  'T-43': { id: 'T-43', subject: 'Cannot log in', status: 'pending' },
};

class UnauthenticatedError extends GrantorError {
  constructor(message: string) {
    super('unauthenticated', message);
  }
}

function statusFor(err: GrantorError): number {
  if (err.code === 'unauthenticated') return 401;
  if (err.code === 'grant_already_redeemed') return 409;
  if (err.code === 'bad_request') return 400;
  if (err instanceof GrantRejectedError) return 403;
  return 503;
}

function grantOf(request: FastifyRequest): string {
  const header = request.headers.authorization;
  const match = header === undefined ? null : /^Grant ([A-Za-z0-9_.-]+)$/i.exec(header.trim());
  if (match?.[1] === undefined) throw new UnauthenticatedError('send Authorization: Grant <jws>');
  return match[1];
}

export async function createGatewayExample(
  options: GatewayExampleOptions,
): Promise<GatewayExample> {
  const base = options.applianceUrl.endsWith('/')
    ? options.applianceUrl
    : `${options.applianceUrl}/`;
  const keys =
    options.keys ??
    new JwksClient({
      url: options.jwksUrl ?? new URL('.well-known/jwks.json', base).toString(),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  const redeemer = new RedemptionClient({
    applianceUrl: base,
    audience: options.audience,
    ...(options.gatewayToken === undefined ? {} : { gatewayToken: options.gatewayToken }),
    ...(options.redeemHeaders === undefined ? {} : { headers: options.redeemHeaders }),
  });
  const offline = options.offline;
  let revocations: RevocationView | undefined;
  if (offline !== undefined) {
    if (options.gatewayToken === undefined) {
      throw new GrantorError('config_invalid', 'offline mode needs the gateway token (the feed)');
    }
    revocations = new RevocationView({
      applianceUrl: base,
      gatewayToken: options.gatewayToken,
      issuer: options.issuer,
      keys,
      ...(offline.maxStalenessSeconds === undefined
        ? {}
        : { maxStalenessSeconds: offline.maxStalenessSeconds }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  }
  // Bounded per client address and in all; the verifier spends one only for a proof that
  // verified (the Enforcer's model: verify first, then consume atomically).
  const challenges = new PopChallenges(options.now === undefined ? {} : { now: options.now });
  const verifier: GrantVerifier = createGrantVerifier({
    issuer: options.issuer,
    audience: options.audience,
    keys,
    redeemer,
    challenges,
    ...(revocations === undefined ? {} : { revocations }),
    ...(options.clockToleranceSeconds === undefined
      ? {}
      : { clockToleranceSeconds: options.clockToleranceSeconds }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  const transfers: Transfer[] = [];
  // Defence in depth: the appliance's redemption is authoritative, this guards one process.
  const executed = new Set<string>();

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: 16 * 1024,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // The parameters digest is computed over the body that executes: no coercion, no
    // silently dropped members.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });
  app.setErrorHandler((err: Error, _request: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof GrantorError) {
      return reply.code(statusFor(err)).send({ error: { code: err.code, message: err.message } });
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return reply.code(status).send({ error: { code: 'bad_request', message: err.message } });
    }
    return reply.code(500).send({ error: { code: 'internal_error', message: 'internal error' } });
  });

  /** Verifies and redeems the grant for this execution; returns who may run it. */
  async function authorize(
    request: FastifyRequest,
    action: string,
    resource: string,
  ): Promise<{ grantId: string; runtimeId: string }> {
    const jws = grantOf(request);
    const header = request.headers['grant-pop'];
    const pop =
      options.requireProofOfPossession === false
        ? undefined
        : parsePopHeader(typeof header === 'string' ? header : undefined);
    const grant = await verifier.verify(jws, {
      execution: { action, resource, parameters: request.body },
      // A challenge is good only from the client it was issued to.
      ...(pop === undefined ? {} : { pop: { ...pop, client: request.ip } }),
      // Offline: the revocation view stands in for the appliance; `executed` for single use.
      redeem: revocations === undefined,
    });
    if (executed.has(grant.grantId)) {
      throw new GrantorError('grant_already_redeemed', 'grant already executed here');
    }
    executed.add(grant.grantId);
    return { grantId: grant.grantId, runtimeId: grant.runtimeId };
  }

  /**
   * Reports what was executed (once per grant). The action already ran: a failed report is
   * logged, never turned into an error for the caller.
   */
  async function report(
    request: FastifyRequest,
    grantId: string,
    outcome: ExecutionOutcome,
    result?: unknown,
  ): Promise<void> {
    // The result digest: SHA-256 of its canonical JSON, like the parameters digest.
    const digest = result === undefined ? undefined : parametersDigest(result);
    await redeemer.reportOutcome(grantId, outcome, digest).catch((err: unknown) => {
      request.log.warn({ err, grantId }, 'could not report the outcome to the appliance');
    });
  }

  // Bounded per client address and in all (PopChallenges); past the bound: 503
  // pop_challenges_exhausted. Who may ask at all is not restricted yet (issue 18).
  app.post('/pop/challenge', (request) => ({ challenge: challenges.issue(request.ip) }));

  app.post<{ Body: { ticketId: string } }>(
    '/tickets/read',
    {
      schema: {
        body: {
          type: 'object',
          required: ['ticketId'],
          additionalProperties: false,
          properties: { ticketId: { type: 'string', minLength: 1, maxLength: 64 } },
        },
      },
    },
    async (request, reply) => {
      const { ticketId } = request.body;
      const { grantId } = await authorize(request, 'tickets.read', `ticket:${ticketId}`);
      const ticket = TICKETS[ticketId];
      if (ticket === undefined) {
        await report(request, grantId, 'failed');
        return reply.code(404).send({ error: { code: 'not_found', message: 'no such ticket' } });
      }
      await report(request, grantId, 'succeeded', ticket);
      return ticket;
    },
  );

  app.post<{ Body: { from: string; to: string; amountCents: number; currency: string } }>(
    '/payments/transfer',
    {
      schema: {
        body: {
          type: 'object',
          required: ['from', 'to', 'amountCents', 'currency'],
          additionalProperties: false,
          properties: {
            from: { type: 'string', pattern: '^acct:[0-9]{1,20}$' },
            to: { type: 'string', pattern: '^acct:[0-9]{1,20}$' },
            amountCents: { type: 'integer', minimum: 1, maximum: 100_000_000 },
            currency: { type: 'string', pattern: '^[A-Z]{3}$' },
          },
        },
      },
    },
    async (request) => {
      const { from, to, amountCents, currency } = request.body;
      const { grantId, runtimeId } = await authorize(request, 'payments.transfer', from);
      const transfer: Transfer = {
        transferId: `tr_${transfers.length + 1}`,
        grantId,
        runtimeId,
        from,
        to,
        amountCents,
        currency,
      };
      transfers.push(transfer);
      const result = { transferId: transfer.transferId, status: 'executed' };
      await report(request, grantId, 'succeeded', result);
      return result;
    },
  );

  if (revocations !== undefined) {
    const view = revocations;
    await view.loadSnapshot();
    view.start((err) => {
      app.log.warn({ err }, 'revocation feed: retrying');
    });
    app.addHook('onClose', async () => {
      await view.stop();
    });
  }
  await app.ready();
  return { app, transfers, ...(revocations === undefined ? {} : { revocations }) };
}
