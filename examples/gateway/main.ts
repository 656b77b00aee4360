/**
 * Runs the example gateway:
 *
 *   GATEWAY_ISSUER=<appliance id> GATEWAY_AUDIENCE=gw_payments GATEWAY_TOKEN=ggw_... \
 *   NODE_EXTRA_CA_CERTS=var/tls/server-ca.pem GRANTOR_URL=https://127.0.0.1:8443 GATEWAY_LISTEN=127.0.0.1:9080 \
 *   npx tsx examples/gateway/main.ts
 */
import { createGatewayExample } from './app.js';

function env(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
}

const [host = '127.0.0.1', port = '9080'] = env('GATEWAY_LISTEN', '127.0.0.1:9080').split(':');
const { app } = await createGatewayExample({
  issuer: env('GATEWAY_ISSUER'),
  audience: env('GATEWAY_AUDIENCE', 'gw_payments'),
  applianceUrl: env('GRANTOR_URL'),
  // From an operator: POST /v1/gateways {"name", "audiences": ["gw_payments"]}.
  gatewayToken: env('GATEWAY_TOKEN'),
  // GATEWAY_OFFLINE=1: verify offline, revocations from the appliance's feed (§3.1).
  ...(process.env.GATEWAY_OFFLINE === '1'
    ? { offline: { maxStalenessSeconds: Number(process.env.GATEWAY_MAX_STALENESS_SECONDS ?? 60) } }
    : {}),
  logger: true,
});
await app.listen({ host, port: Number(port) });
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void app.close();
  });
}
