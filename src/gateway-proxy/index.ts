/**
 * Wiring of `grantor-gateway` (one function, plain arguments): the checked configuration and
 * the gateway's token → the SDK's key source, redemption client, challenges, revocation view
 * (when `revocations` is configured) and Enforcer → the proxy and its metrics.
 *
 * Rooms: config.ts (the JSON configuration, checked whole), proxy.ts (forward only with a
 * valid, redeemed grant; report the outcome), metrics.ts (Prometheus), main.ts (the
 * `grantor-gateway` command). The enforcing itself is the SDK's (src/gateway).
 */
import {
  Enforcer,
  GrantorError,
  JwksClient,
  PopChallenges,
  RedemptionClient,
  RevocationView,
  type EnforcementRedeemer,
  type KeySource,
  type RevocationCheck,
} from '../gateway/index.js';
import type { GatewayProxyConfig } from './config.js';
import { createGatewayMetrics } from './metrics.js';
import { createGatewayProxy, type GatewayProxy, type GatewayProxyEvent } from './proxy.js';

export { parseGatewayConfig, type GatewayLimits, type GatewayProxyConfig } from './config.js';
export {
  REFUSAL_HEADER,
  createGatewayProxy,
  type GatewayProxy,
  type GatewayProxyEvent,
} from './proxy.js';
export { createGatewayMetrics, type FeedLag, type GatewayMetrics } from './metrics.js';

export interface GatewayWiring {
  /** The gateway's token at the appliance (`ggw_...`). */
  readonly gatewayToken: string;
  /** Keys instead of the appliance's JWKS (pinned keys, tests). */
  readonly keys?: KeySource;
  /** A revocation check instead of the feed's view that `config.revocations` asks for. */
  readonly revocation?: RevocationCheck;
  /** Redemption other than the appliance's (the bench's local first-call-wins set). */
  readonly redeemer?: EnforcementRedeemer;
  readonly now?: () => number;
  readonly log?: (event: GatewayProxyEvent) => void;
}

export function createGateway(config: GatewayProxyConfig, wiring: GatewayWiring): GatewayProxy {
  const base = config.appliance.url;
  const log = wiring.log;
  const now = wiring.now === undefined ? {} : { now: wiring.now };
  const keys =
    wiring.keys ??
    new JwksClient({
      url: config.appliance.jwksUrl ?? new URL('.well-known/jwks.json', base).toString(),
      ...now,
    });
  const redeemer =
    wiring.redeemer ??
    new RedemptionClient({
      applianceUrl: base,
      audience: config.appliance.audience,
      gatewayToken: wiring.gatewayToken,
    });
  const feed =
    config.revocations === undefined || wiring.revocation !== undefined
      ? undefined
      : new RevocationView({
          applianceUrl: base,
          gatewayToken: wiring.gatewayToken,
          issuer: config.appliance.issuer,
          keys,
          maxStalenessSeconds: config.revocations.maxStalenessSeconds,
          waitSeconds: config.revocations.waitSeconds,
          ...now,
        });
  const revocation = wiring.revocation ?? feed;
  const enforcer = new Enforcer({
    issuer: config.appliance.issuer,
    audience: config.appliance.audience,
    keys,
    redeemer,
    routes: config.routes,
    presentation: config.presentation,
    challenges: new PopChallenges(now),
    ...(revocation === undefined ? {} : { revocation }),
    ...now,
  });
  const proxy = createGatewayProxy(config, {
    enforcer,
    ...(config.metricsPath === undefined ? {} : { metrics: createGatewayMetrics(feed) }),
    ...(log === undefined ? {} : { log }),
  });
  if (feed === undefined) return proxy;
  // Until the first snapshot the view's lag is infinite: every grant is refused (fail closed).
  return {
    server: proxy.server,
    listen: () => {
      feed.start((err) => {
        log?.({
          event: 'revocation_feed_failed',
          code: err instanceof GrantorError ? err.code : 'internal_error',
        });
      });
      return proxy.listen();
    },
    close: async () => {
      await feed.stop();
      await proxy.close();
    },
  };
}
