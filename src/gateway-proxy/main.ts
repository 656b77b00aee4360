#!/usr/bin/env node
/**
 * `grantor-gateway --config gateway.json` (or GRANTOR_GATEWAY_CONFIG): the standalone
 * enforcement proxy. The token comes from `appliance.gatewayTokenFile` or
 * GRANTOR_GATEWAY_TOKEN; it is never logged. A bad configuration exits 2 naming the field.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../gateway/index.js';
import { createGateway, parseGatewayConfig } from './index.js';

function fail(message: string): never {
  process.stderr.write(`grantor-gateway: ${message}\n`);
  process.exit(2);
}

const flag = process.argv.indexOf('--config');
const file = (flag >= 0 ? process.argv[flag + 1] : undefined) ?? process.env.GRANTOR_GATEWAY_CONFIG;
if (file === undefined || file === '') fail('give --config FILE or GRANTOR_GATEWAY_CONFIG');

let config;
try {
  config = parseGatewayConfig(JSON.parse(await readFile(file, 'utf8')));
} catch (err) {
  if (err instanceof ConfigError) fail(err.message);
  fail(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
}
const tokenFile = config.appliance.gatewayTokenFile;
const token = (
  tokenFile === undefined
    ? (process.env.GRANTOR_GATEWAY_TOKEN ?? '')
    : await readFile(tokenFile, 'utf8')
).trim();
if (token === '') fail('no gateway token (appliance.gatewayTokenFile or GRANTOR_GATEWAY_TOKEN)');

const gateway = createGateway(config, {
  gatewayToken: token,
  log: (event) => {
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  },
});
const url = await gateway.listen();
process.stdout.write(`${JSON.stringify({ event: 'listening', url: url.toString() })}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void gateway.close();
  });
}
