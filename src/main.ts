/**
 * The appliance process: configuration, logger, the composed services, the HTTP(S) server
 * (https when GRANTOR_TLS_CERT/GRANTOR_TLS_KEY are set; plain HTTP only on loopback).
 * A bad configuration (including an unreadable TLS file) exits 2 with a message naming the key. A dependency that fails at
 * start (TPM, HSM, audit, policy) leaves a degraded server that answers 503 naming it.
 */
import { startApplianceServer, type RunningServer } from './http/server.js';
import { loadConfig, redactedConfig, type AppConfig } from './shared/config.js';
import { ConfigError } from './shared/errors.js';
import { createLogger } from './shared/logger.js';

function configurationError(e: unknown): number {
  if (e instanceof ConfigError) {
    process.stderr.write(`grantor: configuration error: ${e.message}\n`);
    return 2;
  }
  throw e;
}

async function main(): Promise<number> {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (e) {
    return configurationError(e);
  }
  const logger = createLogger(config.logLevel);
  logger.info({ config: redactedConfig(config) }, 'starting grantor');
  let server: RunningServer;
  try {
    // Reads the TLS files (tlsOptions) before opening the hardware.
    server = await startApplianceServer(config, logger);
  } catch (e) {
    return configurationError(e);
  }
  const stop = async (signal: string): Promise<void> => {
    logger.info({ signal }, 'stopping');
    await server.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  await server.app.listen({ host: config.listen.host, port: config.listen.port });
  return 0;
}

main().then(
  (code) => {
    if (code !== 0) process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`grantor: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
