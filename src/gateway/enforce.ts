/**
 * Enforcement of a route table: the one path every enforcement point takes (the Fastify
 * and node `http` middleware, the `grantor-gateway` proxy and its nginx `auth_request`
 * endpoint). For a request it finds the execution (route table), reads the grant and its
 * proof of possession from the configured headers, verifies the grant offline, asks the
 * revocation view, and only then redeems it at the appliance (first call wins). After the
 * action ran, `report` tells the appliance what happened, once.
 */
import type { RevocationCheck } from './revocations.js';
import { ConfigError, UnavailableError, type GrantorError } from '../shared/errors.js';
import {
  GrantAlreadyRedeemedError,
  GrantMissingError,
  GrantPopInvalidError,
  GrantRedemptionRefusedError,
  GrantRejectedError,
  RequestBodyInvalidError,
  RequestPathInvalidError,
  RequestQueryInvalidError,
  RequestTooLargeError,
  RouteBodyUnavailableError,
  RouteNotFoundError,
} from './errors.js';
import type { KeySource } from './jwks.js';
import { parsePopHeader, type PopChallenges, type PresentedPop } from './pop.js';
import type { ExecutionOutcome, Redeemer } from './redeem.js';
import type { RouteExecution, RouteRequest, RouteTable } from './route-table.js';
import { createGrantVerifier, type GrantVerifier, type VerifiedGrant } from './verify-grant.js';

/** How the runtime presents its grant and its proof of possession. */
export interface GrantPresentation {
  /** Header that carries the grant. Default `authorization`. */
  readonly grantHeader?: string;
  /** Scheme before the grant in that header (`Grant <jws>`); `''` for the bare JWS. Default `Grant`. */
  readonly grantScheme?: string;
  /** Header that carries the proof of possession. Default `grant-pop`. */
  readonly popHeader?: string;
  /** Demand a proof of possession of the grant's `cnf` key. Default true. */
  readonly requirePop?: boolean;
}

/** Redeems and reports outcomes (the SDK's RedemptionClient). */
export interface EnforcementRedeemer extends Redeemer {
  reportOutcome(grantId: string, outcome: ExecutionOutcome, resultDigest?: string): Promise<void>;
}

export interface EnforcerConfig {
  readonly issuer: string;
  readonly audience: string;
  readonly keys: KeySource;
  readonly redeemer: EnforcementRedeemer;
  readonly routes: RouteTable;
  readonly presentation?: GrantPresentation;
  /** Challenges for proofs of possession; required when `requirePop` (the default). */
  readonly challenges?: PopChallenges;
  /** The revoked grants and runtimes this gateway follows (revocations.ts, RevocationView). */
  readonly revocation?: RevocationCheck;
  readonly clockToleranceSeconds?: number;
  readonly now?: () => number;
}

/** A request as an enforcement point saw it. */
export interface EnforceRequest extends RouteRequest {
  /** Header values by lower-case name (node's IncomingHttpHeaders shape). */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** Who is asking, for proof-of-possession challenges (an address or credential id). */
  readonly client: string;
}

export interface Authorized {
  readonly grant: VerifiedGrant;
  readonly execution: RouteExecution;
}

/** The outcome of an upstream's HTTP answer: 2xx succeeded, any other answer failed. */
export function outcomeOfStatus(status: number): ExecutionOutcome {
  return status >= 200 && status < 300 ? 'succeeded' : 'failed';
}

/**
 * The code to show for a refusal: the appliance's own code when it refused the
 * redemption (e.g. `grant_revoked`), else the error's code.
 */
export function refusalCode(err: GrantorError): string {
  if (err instanceof GrantRedemptionRefusedError) {
    const code = err.details?.code;
    if (typeof code === 'string' && /^[a-z_]{1,64}$/.test(code)) return code;
  }
  return err.code;
}

/** The HTTP status for a refusal at a gateway. */
export function refusalStatus(err: GrantorError): number {
  if (err instanceof GrantMissingError) return 401;
  if (err instanceof RouteNotFoundError) return 404;
  if (err instanceof RequestTooLargeError) return 413;
  if (
    err instanceof RequestPathInvalidError ||
    err instanceof RequestQueryInvalidError ||
    err instanceof RequestBodyInvalidError
  ) {
    return 400;
  }
  if (err instanceof GrantAlreadyRedeemedError) return 409;
  if (err instanceof GrantRejectedError || err instanceof RouteBodyUnavailableError) return 403;
  if (err instanceof UnavailableError) return 503;
  return err.code === 'bad_request' ? 400 : 503;
}

function single(
  headers: EnforceRequest['headers'],
  name: string,
  missing: () => never,
): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') return missing();
  return value;
}

const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$/;

export class Enforcer {
  readonly #config: EnforcerConfig;
  readonly #grantHeader: string;
  readonly #scheme: string;
  readonly #popHeader: string;
  readonly #requirePop: boolean;
  readonly #verifier: GrantVerifier;

  constructor(config: EnforcerConfig) {
    this.#config = config;
    const p = config.presentation ?? {};
    this.#grantHeader = (p.grantHeader ?? 'authorization').toLowerCase();
    this.#scheme = p.grantScheme ?? 'Grant';
    this.#popHeader = (p.popHeader ?? 'grant-pop').toLowerCase();
    this.#requirePop = p.requirePop ?? true;
    if (this.#requirePop && config.challenges === undefined) {
      throw new ConfigError('gateway.challenges', 'required with requirePop');
    }
    this.#verifier = createGrantVerifier({
      issuer: config.issuer,
      audience: config.audience,
      keys: config.keys,
      ...(config.challenges === undefined ? {} : { challenges: config.challenges }),
      ...(config.clockToleranceSeconds === undefined
        ? {}
        : { clockToleranceSeconds: config.clockToleranceSeconds }),
      ...(config.now === undefined ? {} : { now: config.now }),
    });
  }

  get routes(): RouteTable {
    return this.#config.routes;
  }

  /** The header names the enforcer consumes (a proxy strips them before forwarding). */
  get consumedHeaders(): readonly string[] {
    return [this.#grantHeader, this.#popHeader];
  }

  /**
   * Everything that must hold before the action runs, in order: the route and the parts
   * it covers, the grant, the proof, the offline checks, the revocation view, and last
   * (the only change of state) the redemption. Throws a GrantorError; nothing may execute.
   */
  async authorize(request: EnforceRequest): Promise<Authorized> {
    const execution = this.#config.routes.executionOf(request);
    const jws = this.#grantOf(request.headers);
    const pop = this.#requirePop ? this.#popOf(request.headers) : undefined;
    const grant = await this.#verifier.verify(jws, {
      execution: {
        action: execution.action,
        resource: execution.resource,
        parameters: execution.parameters,
      },
      // The verifier spends the challenge once the proof verified (its `challenges`).
      ...(pop === undefined ? {} : { pop: { ...pop, client: request.client } }),
    });
    this.#config.revocation?.check(grant.claims);
    await this.#config.redeemer.redeem(grant.grantId);
    return { grant: { ...grant, redeemed: true }, execution };
  }

  /**
   * Reports what ran for a grant this enforcer redeemed. The action already happened: a
   * failed report is returned, never thrown, for the caller to log.
   */
  async report(
    grantId: string,
    outcome: ExecutionOutcome,
    resultDigest?: string,
  ): Promise<unknown> {
    try {
      await this.#config.redeemer.reportOutcome(grantId, outcome, resultDigest);
      return undefined;
    } catch (err) {
      return err;
    }
  }

  /** A challenge for `client` (the proxy serves it; PopChallenges bounds it). */
  issueChallenge(client: string): string {
    const challenges = this.#config.challenges;
    if (challenges === undefined) {
      throw new ConfigError('gateway.challenges', 'not configured');
    }
    return challenges.issue(client);
  }

  #grantOf(headers: EnforceRequest['headers']): string {
    const missing = (): never => {
      throw new GrantMissingError(
        `send the grant in ${this.#grantHeader}${this.#scheme === '' ? '' : `: ${this.#scheme} <jws>`}`,
      );
    };
    const value = single(headers, this.#grantHeader, missing)?.trim() ?? missing();
    let jws = value;
    if (this.#scheme !== '') {
      const space = value.indexOf(' ');
      if (space < 0 || value.slice(0, space).toLowerCase() !== this.#scheme.toLowerCase())
        missing();
      jws = value.slice(space + 1).trim();
    }
    if (!JWS.test(jws)) missing();
    return jws;
  }

  #popOf(headers: EnforceRequest['headers']): PresentedPop {
    const header = single(headers, this.#popHeader, () => {
      throw new GrantPopInvalidError(`send one ${this.#popHeader} header`);
    });
    return parsePopHeader(header, this.#popHeader);
  }
}
