/**
 * `grantor operators token create|list|revoke` against a running appliance: the token
 * administration of src/operators/cli.ts over /v1/operator-tokens, through the CLI's one
 * client of the appliance API (src/cli/remote.ts: https, or http on loopback only, the CA,
 * a deadline, the token only in the Authorization header).
 */
import { runOperatorsCli, type TokenAdministration } from '../operators/cli.js';
import type { Role } from '../operators/roles.js';
import type { CreatedToken, TokenInfo } from '../operators/tokens.js';
import type { Parsed } from './args.js';
import type { Command } from './commands.js';
import type { Io } from './io.js';
import { call, connectionFrom, errorOf, type Answer, type Connection } from './remote.js';

/** `operators token` goes to a running appliance when both its URL and a token are set. */
export function remoteTokensSet(env: NodeJS.ProcessEnv): boolean {
  return (
    env.GRANTOR_URL !== undefined &&
    env.GRANTOR_URL !== '' &&
    env.GRANTOR_OPERATOR_TOKEN !== undefined &&
    env.GRANTOR_OPERATOR_TOKEN !== ''
  );
}

/** Runs `operators token ...` (its checked arguments in `args`) against the running appliance. */
export function runRemoteTokens(
  command: Command,
  parsed: Parsed,
  args: readonly string[],
  io: Io,
): Promise<number> {
  const client = new RemoteTokens(connectionFrom(parsed));
  return runOperatorsCli([...command.path.slice(1), ...args], client, {
    log: io.out,
    error: io.err,
  });
}

export class RemoteTokens implements TokenAdministration {
  readonly #conn: Connection;
  constructor(conn: Connection) {
    this.#conn = conn;
  }

  async #expect<T>(answer: Promise<Answer>, ok: number): Promise<T> {
    const a = await answer;
    if (a.status !== ok) throw errorOf(a);
    return a.body as T;
  }

  create(input: {
    readonly role: Role;
    readonly actor?: string;
    readonly ttlSeconds?: number;
  }): Promise<CreatedToken> {
    // The appliance issues it to the caller's own person: there is no actor to send.
    return this.#expect<CreatedToken>(
      call(this.#conn, 'POST', '/v1/operator-tokens', {
        role: input.role,
        ...(input.ttlSeconds === undefined ? {} : { ttlSeconds: input.ttlSeconds }),
      }),
      201,
    );
  }

  async list(): Promise<TokenInfo[]> {
    const body = await this.#expect<{ tokens: TokenInfo[] }>(
      call(this.#conn, 'GET', '/v1/operator-tokens'),
      200,
    );
    return body.tokens;
  }

  revoke(id: string): Promise<TokenInfo> {
    return this.#expect<TokenInfo>(
      call(this.#conn, 'POST', `/v1/operator-tokens/${encodeURIComponent(id)}/revoke`),
      200,
    );
  }
}
