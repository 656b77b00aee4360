/**
 * Wiring of `grantor-gateway` (one function, plain arguments): the checked configuration and
 * the gateway's token → the SDK's key source, redemption client, challenges and Enforcer →
 * the proxy. The revocation feed's view plugs in here (`revocation`).
 */
import {
  Enforcer,
  JwksClient,
  PopChallenges,
  RedemptionClient,
  type EnforcementRedeemer,
  type KeySource,
  type RevocationCheck,
} from '../gateway/index.js';
import type { GatewayProxyConfig } from './config.js';
import { createGatewayProxy, type GatewayProxy, type GatewayProxyEvent } from './proxy.js';

export { parseGatewayConfig, type GatewayLimits, type GatewayProxyConfig } from './config.js';
export {
  REFUSAL_HEADER,
  createGatewayProxy,
  type GatewayProxy,
  type GatewayProxyEvent,
} from './proxy.js';

export interface GatewayWiring {
  /** The gateway's token at the appliance (`ggw_...`). */
  readonly gatewayToken: string;
  /** Keys instead of the appliance's JWKS (pinned keys, tests). */
  readonly keys?: KeySource;
  readonly revocation?: RevocationCheck;
  /** Redemption other than the appliance's (the bench's local first-call-wins set). */
  readonly redeemer?: EnforcementRedeemer;
  readonly now?: () => number;
  readonly log?: (event: GatewayProxyEvent) => void;
}

export function createGateway(config: GatewayProxyConfig, wiring: GatewayWiring): GatewayProxy {
  const base = config.appliance.url;
  const keys =
    wiring.keys ??
    new JwksClient({
      url: config.appliance.jwksUrl ?? new URL('.well-known/jwks.json', base).toString(),
      ...(wiring.now === undefined ? {} : { now: wiring.now }),
    });
  const redeemer =
    wiring.redeemer ??
    new RedemptionClient({
      applianceUrl: base,
      audience: config.appliance.audience,
      gatewayToken: wiring.gatewayToken,
    });
  const enforcer = new Enforcer({
    issuer: config.appliance.issuer,
    audience: config.appliance.audience,
    keys,
    redeemer,
    routes: config.routes,
    presentation: config.presentation,
    challenges: new PopChallenges(wiring.now === undefined ? {} : { now: wiring.now }),
    ...(wiring.revocation === undefined ? {} : { revocation: wiring.revocation }),
    ...(wiring.now === undefined ? {} : { now: wiring.now }),
  });
  return createGatewayProxy(config, {
    enforcer,
    ...(wiring.log === undefined ? {} : { log: wiring.log }),
  });
}
