/**
 * The process the grants crash harness kills (and bench/abuse.ts serves from): the real
 * appliance, composed by startApplianceServer exactly as src/main.ts does, configured from
 * the GRANTOR_* environment, listening on 127.0.0.1 on a free port. Protocol on stdout,
 * one line each:
 *   listening <port>        the server accepts connections (ready or not: /readyz says)
 *   error <message>         start-up failed (the harness fails)
 * Logs go to stderr (pino JSON lines), never to stdout.
 */
import { pino } from 'pino';
import { startApplianceServer } from '../../src/http/server.js';
import { loadConfig } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { repoRoot } from '../rig/sim.js';

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  const config = loadConfig(process.env, repoRoot);
  const logger = createLogger(config.logLevel, pino.destination(2));
  const server = await startApplianceServer(config, logger);
  await server.app.listen({ host: '127.0.0.1', port: config.listen.port });
  const address = server.app.server.address();
  say(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`);
  const stop = (): void => {
    void server.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  say(`error ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
