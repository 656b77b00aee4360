/**
 * Online redemption (PROTOCOL.md §3, `POST /v1/grants/{grantId}/redeem`): the first call for
 * a grant wins; later calls answer 409 `grant_already_redeemed`. Anything but a clear answer
 * means the gateway must not execute.
 */
import { ConfigError } from '../shared/errors.js';
import {
  GrantAlreadyRedeemedError,
  GrantRedemptionRefusedError,
  RedemptionUnavailableError,
} from './errors.js';
import { parseStrictJson } from './strict-json.js';
import { endpointUrl } from './url.js';

export type RedemptionOutcome = 'started' | 'succeeded' | 'failed';

/** What the gateway executed, reported once after redeem (`POST .../outcome`). */
export type ExecutionOutcome = 'succeeded' | 'failed' | 'aborted';

export interface Redeemer {
  redeem(grantId: string, outcome?: RedemptionOutcome): Promise<void>;
}

export interface RedemptionClientOptions {
  /** Base URL of the appliance (https, or http to loopback). */
  readonly applianceUrl: string;
  /** The gateway's audience, sent with each redemption. */
  readonly audience: string;
  /**
   * The gateway's token (`ggw_...`, from `POST /v1/gateways`), sent as
   * `Authorization: Bearer`: the appliance refuses redemptions from anyone else.
   */
  readonly gatewayToken?: string;
  readonly fetch?: typeof fetch;
  /** Extra headers, e.g. the gateway's credentials. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Per-call deadline. Default 5000. */
  readonly timeoutMs?: number;
}

function errorCode(text: string): string | undefined {
  try {
    const body = parseStrictJson(text);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
    const error = body.error;
    if (typeof error !== 'object' || error === null || Array.isArray(error)) return undefined;
    return typeof error.code === 'string' ? error.code : undefined;
  } catch {
    return undefined;
  }
}

export class RedemptionClient implements Redeemer {
  readonly #base: URL;
  readonly #options: RedemptionClientOptions;
  readonly #fetch: typeof fetch;

  constructor(options: RedemptionClientOptions) {
    this.#base = endpointUrl('redeem.applianceUrl', options.applianceUrl);
    if (options.audience === '') throw new ConfigError('redeem.audience', 'is required');
    this.#options = options;
    this.#fetch = options.fetch ?? fetch;
  }

  /**
   * Redeems a grant. Throws GrantAlreadyRedeemedError (409), GrantRedemptionRefusedError
   * (another 4xx) or RedemptionUnavailableError (network, deadline, 5xx, anything else).
   */
  async redeem(grantId: string, outcome?: RedemptionOutcome): Promise<void> {
    await this.#post(
      grantId,
      'redeem',
      outcome === undefined
        ? { audience: this.#options.audience }
        : { audience: this.#options.audience, outcome },
    );
  }

  /**
   * Reports what this gateway executed for a grant it redeemed (once). Throws like
   * `redeem`: GrantRedemptionRefusedError with the appliance's code (e.g.
   * `grant_outcome_recorded`), RedemptionUnavailableError otherwise.
   */
  async reportOutcome(
    grantId: string,
    outcome: ExecutionOutcome,
    resultDigest?: string,
  ): Promise<void> {
    await this.#post(
      grantId,
      'outcome',
      resultDigest === undefined ? { outcome } : { outcome, resultDigest },
    );
  }

  async #post(grantId: string, what: 'redeem' | 'outcome', payload: object): Promise<void> {
    const url = new URL(`v1/grants/${encodeURIComponent(grantId)}/${what}`, this.#base);
    const body = JSON.stringify(payload);
    const token = this.#options.gatewayToken;
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(url, {
        method: 'POST',
        headers: {
          ...this.#options.headers,
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          'content-type': 'application/json',
        },
        body,
        redirect: 'error',
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 5000),
      });
      text = await response.text();
    } catch (cause) {
      throw new RedemptionUnavailableError('the redemption endpoint is unreachable', { cause });
    }
    if (response.status >= 200 && response.status < 300) return;
    const code = errorCode(text);
    if (response.status === 409 && code === 'grant_already_redeemed') {
      throw new GrantAlreadyRedeemedError(grantId);
    }
    if (response.status >= 400 && response.status < 500) {
      throw new GrantRedemptionRefusedError(
        `the appliance refused the redemption (${response.status} ${code ?? 'no code'})`,
        { details: { status: response.status, ...(code === undefined ? {} : { code }) } },
      );
    }
    throw new RedemptionUnavailableError(`the redemption endpoint answered ${response.status}`);
  }
}
