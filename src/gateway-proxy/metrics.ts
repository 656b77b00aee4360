/**
 * `grantor-gateway`'s Prometheus metrics (served at `metricsPath`): what it authorised and
 * refused, and how far behind the appliance its revocation view may be. One prom-client
 * Registry per gateway, never the global one. Label values are refusal codes from a fixed
 * vocabulary; anything else is counted as `other`, so a caller cannot grow the series.
 */
import { Counter, Gauge, Registry } from 'prom-client';

/** What the lag gauge reads (the SDK's RevocationView). */
export interface FeedLag {
  /** Seconds since the view was last confirmed current; Infinity before the first snapshot. */
  lagSeconds(): number;
}

export interface GatewayMetrics {
  /** One request allowed to run (proxy: forwarded; auth_request: answered 200). */
  authorised(): void;
  /** One request refused, by its code. */
  refused(code: string): void;
  /** The text exposition (Prometheus 0.0.4). */
  exposition(): Promise<{ readonly contentType: string; readonly text: string }>;
}

const STALE = 'revocation_view_stale';

export function createGatewayMetrics(view: FeedLag | undefined): GatewayMetrics {
  const registry = new Registry();
  const authorised = new Counter({
    name: 'grantor_gateway_authorised_total',
    help: 'Requests authorised: grant verified, proof checked, redeemed',
    registers: [registry],
  });
  const refusals = new Counter({
    name: 'grantor_gateway_refusals_total',
    help: 'Requests refused, by refusal code',
    labelNames: ['code'],
    registers: [registry],
  });
  const stale = new Counter({
    name: 'grantor_gateway_revocation_stale_refusals_total',
    help: 'Requests refused because the revocation view was older than its bound',
    registers: [registry],
  });
  if (view !== undefined) {
    new Gauge({
      name: 'grantor_gateway_revocation_lag_seconds',
      help: 'Seconds since the revocation view was last confirmed current (+Inf: never)',
      registers: [registry],
      collect() {
        this.set(view.lagSeconds());
      },
    });
  }
  // Zero from the start: a rate over a series that appears late misses its first count.
  refusals.inc({ code: STALE }, 0);
  return {
    authorised: () => {
      authorised.inc();
    },
    refused: (code) => {
      refusals.inc({ code: /^[a-z_]{1,64}$/.test(code) ? code : 'other' });
      if (code === STALE) stale.inc();
    },
    exposition: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
  };
}
