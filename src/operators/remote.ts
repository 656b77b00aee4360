/**
 * The operator CLI as a remote client of a running appliance: token create (for the
 * caller's own person), list and revoke over the operator API (`/v1/operator-tokens`),
 * authenticated with the caller's own bearer token. The token is sent only in the
 * Authorization header, never printed or put in a URL.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { GrantorError } from '../shared/errors.js';
import type { Role } from './roles.js';
import type { CreatedToken, TokenInfo } from './tokens.js';

/** What the token CLI needs: the local service (offline) or this client (remote). */
export interface TokenAdministration {
  create(input: {
    readonly role: Role;
    readonly actor?: string;
    readonly ttlSeconds?: number;
  }): Promise<CreatedToken>;
  list(): Promise<TokenInfo[]>;
  revoke(id: string): Promise<TokenInfo>;
}

export interface RemoteOptions {
  /** The appliance, e.g. https://127.0.0.1:8443. */
  readonly url: string;
  /** The caller's own operator token. */
  readonly token: string;
  /** PEM of the CA the listener's certificate chains to (default: the system's). */
  readonly ca?: string;
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
}

export class RemoteTokens implements TokenAdministration {
  private readonly base: URL;

  constructor(private readonly options: RemoteOptions) {
    this.base = new URL(options.url);
    if (this.base.protocol !== 'https:' && this.base.protocol !== 'http:') {
      throw new TypeError('the appliance URL must be http(s)');
    }
  }

  private call(method: string, path: string, body?: unknown): Promise<Answer> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: {
            authorization: `Bearer ${this.options.token}`,
            ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(this.options.ca === undefined ? {} : { ca: this.options.ca }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = null;
            try {
              parsed = text === '' ? null : JSON.parse(text);
            } catch {
              parsed = null;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  private async expect<T>(answer: Promise<Answer>, ok: number): Promise<T> {
    const { status, body } = await answer;
    if (status === ok) return body as T;
    const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new GrantorError(
      error?.code ?? 'remote_error',
      `${error?.message ?? 'the appliance refused'} (HTTP ${status})`,
    );
  }

  create(input: {
    readonly role: Role;
    readonly actor?: string;
    readonly ttlSeconds?: number;
  }): Promise<CreatedToken> {
    return this.expect<CreatedToken>(
      this.call('POST', '/v1/operator-tokens', {
        role: input.role,
        ...(input.ttlSeconds === undefined ? {} : { ttlSeconds: input.ttlSeconds }),
      }),
      201,
    );
  }

  async list(): Promise<TokenInfo[]> {
    const body = await this.expect<{ tokens: TokenInfo[] }>(
      this.call('GET', '/v1/operator-tokens'),
      200,
    );
    return body.tokens;
  }

  revoke(id: string): Promise<TokenInfo> {
    return this.expect<TokenInfo>(
      this.call('POST', `/v1/operator-tokens/${encodeURIComponent(id)}/revoke`),
      200,
    );
  }
}
