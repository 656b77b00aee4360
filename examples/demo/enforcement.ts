/**
 * The demo's enforcement stories (issue 18): a transfer executed through the real nginx in
 * front of `grantor-gateway`, with its outcome in the grant's lineage; and an offline
 * gateway (no redeem call, following the revocation feed) refusing a revoked runtime's
 * grant within its bound.
 *
 * nginx: `auth_request` cannot report an outcome (the auth subrequest never sees the
 * upstream's answer; the one nginx directive that runs after it, `post_action`, is
 * undocumented and called dangerous by its maintainers), so nginx forwards to
 * `grantor-gateway` in proxy mode (deploy/nginx/grantor-gateway-proxy.conf), which forwards
 * to the upstream and reports the outcome from its answer (docs/gateway.md "nginx").
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Attester } from '../../attester/attester.js';
import { createGateway, parseGatewayConfig } from '../../src/gateway-proxy/index.js';
import { createGatewayExample } from '../gateway/app.js';
import { NGINX, startNginx } from '../nginx.js';
import {
  StepFailed,
  call,
  errorCode,
  short,
  until,
  type AuditorCredential,
  type Issued,
  type Step,
} from './story.js';

export interface StoryRuntime {
  readonly label: string;
  readonly runtimeId: string;
  readonly attester: Attester;
}

export interface EnforcementContext {
  readonly url: string;
  readonly issuer: string;
  readonly audience: string;
  readonly gatewayToken: string;
  readonly auditor: AuditorCredential | undefined;
  readonly operator: AuditorCredential | undefined;
  readonly step: Step;
  /** Called at the end of the demo, failed or not. */
  readonly onClose: (close: () => Promise<void>) => void;
}

/** A payments.transfer grant for these parameters, in quote mode (what policy wants). */
export type TransferGrant = (parameters: Record<string, unknown>) => Promise<Issued>;

const grantIdOf = (grant: string): string =>
  String(
    (
      JSON.parse(Buffer.from(grant.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
        jti?: unknown;
      }
    ).jti,
  );

function popHeaders(rt: StoryRuntime, audience: string, grant: string, challenge: string) {
  const pop = rt.attester.proofOfPossession({ audience, grantId: grantIdOf(grant), challenge });
  return { authorization: `Grant ${grant}`, 'grant-pop': pop.header };
}

/** The demo bank: an upstream that moves money for every request that reaches it. */
async function startBank(): Promise<{
  url: string;
  moved: () => number;
  close: () => Promise<void>;
}> {
  let moved = 0;
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      moved += 1;
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ transferId: `bank_${moved}`, status: 'executed' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    moved: () => moved,
    close: () =>
      new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/**
 * A transfer through nginx → grantor-gateway (proxy mode) → the demo bank: executed once,
 * its replay refused by the gateway, and `succeeded` in the grant's lineage.
 */
export async function nginxStory(
  ctx: EnforcementContext,
  rt: StoryRuntime,
  transferGrant: TransferGrant,
  nginxDir: string | undefined,
): Promise<void> {
  const { step, audience } = ctx;
  let front = '';
  let moved = (): number => 0;
  await step('nginx', async () => {
    const bank = await startBank();
    ctx.onClose(bank.close);
    moved = bank.moved;
    const gateway = createGateway(
      parseGatewayConfig({
        listen: { host: '127.0.0.1', port: 0 },
        upstream: bank.url,
        appliance: { url: `${ctx.url}/`, issuer: ctx.issuer, audience },
        clientAddressHeader: 'x-real-ip',
        routes: [
          {
            method: 'POST',
            path: '/accounts/:acct/transfer',
            action: 'payments.transfer',
            resource: 'acct:{acct}',
            parameters: 'body',
          },
        ],
      }),
      { gatewayToken: ctx.gatewayToken },
    );
    const gw = await gateway.listen();
    ctx.onClose(() => gateway.close());
    const nginx = await startNginx(bank.url, `http://127.0.0.1:${gw.port}`, {
      site: 'grantor-gateway-proxy.conf',
      ...(nginxDir === undefined ? {} : { dir: nginxDir }),
    });
    ctx.onClose(() => nginx.stop());
    front = nginx.url;
    return `${NGINX} at ${front} (its own configuration${nginxDir === undefined ? '' : ` in ${nginxDir}`}) in front of grantor-gateway (proxy mode, ${gw.host}) and the demo bank`;
  });
  const params = { from: 'acct:1234', to: 'acct:5555', amountCents: 1200, currency: 'EUR' };
  let issued: Issued | undefined;
  await step('grant', async () => {
    issued = await transferGrant(params);
    return `payments.transfer 12.00 EUR to acct:5555, quote mode: ALLOWED, grant ${short(issued.grantId)}`;
  });
  const grant = issued?.grant ?? '';
  const grantId = issued?.grantId ?? '';
  const send = async () => {
    const chal = await fetch(`${front}/grantor/pop/challenge`, { method: 'POST' });
    const { challenge } = (await chal.json()) as { challenge: string };
    return fetch(`${front}/accounts/1234/transfer`, {
      method: 'POST',
      headers: {
        ...popHeaders(rt, audience, grant, challenge),
        'content-type': 'application/json',
      },
      body: JSON.stringify(params),
    });
  };
  await step('execute', async () => {
    const res = await send();
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status !== 200)
      throw new StepFailed(
        `through nginx: ${res.status} ${res.headers.get('grantor-refusal') ?? errorCode(body)}`,
      );
    return `through nginx: grantor-gateway verified the grant and its proof, redeemed it, forwarded the exact body; the bank moved the money: ${String(body.transferId)} (${moved()} transfer)`;
  });
  await step('outcome', async () => {
    if (ctx.auditor === undefined)
      throw new StepFailed('no auditor credential to read the lineage with');
    const auditor = ctx.auditor;
    // The gateway reports after the bank answered; the appliance records it once.
    const seen = await until(10_000, async () => {
      const res = await call(ctx.url, 'GET', `/v1/grants/${grantId}/lineage`, undefined, auditor);
      const g = res.body.grant as
        { redeemedBy?: string; execution?: { outcome?: string; gateway?: string } } | undefined;
      return g?.execution?.outcome === undefined ? undefined : g;
    });
    if (seen?.execution?.outcome !== 'succeeded')
      throw new StepFailed(`lineage of ${grantId}: outcome ${seen?.execution?.outcome ?? 'none'}`);
    return `GET /v1/grants/${short(grantId)}/lineage: redeemed by ${seen.redeemedBy ?? '?'}, outcome succeeded (reported by grantor-gateway from the bank's 200; audited grant.outcome)`;
  });
  await step('replay', async () => {
    const res = await send();
    await res.arrayBuffer();
    const code = res.headers.get('grantor-refusal');
    if (res.status !== 409 || code !== 'grant_already_redeemed')
      throw new StepFailed(
        `replay through nginx: expected 409 grant_already_redeemed, got ${res.status} ${String(code)}`,
      );
    return `the same grant again through nginx: refused, 409 ${code}; the bank moved ${moved()} transfer in all`;
  });
}

/**
 * An offline gateway (no redeem call; the revocation feed's view, fail closed past
 * `boundSeconds`) executes a grant; the operator revokes the runtime; the same grant is
 * refused (`grant_revoked`: the runtime's cascade revoked it; or `grant_runtime_revoked`), and the delay is measured against the bound.
 */
export async function offlineRevocationStory(
  ctx: EnforcementContext,
  rt: StoryRuntime,
  transferGrant: TransferGrant,
  boundSeconds: number,
): Promise<void> {
  const { step, audience } = ctx;
  const gateway = await createGatewayExample({
    issuer: ctx.issuer,
    audience,
    applianceUrl: ctx.url,
    gatewayToken: ctx.gatewayToken,
    offline: { maxStalenessSeconds: boundSeconds },
  });
  ctx.onClose(() => gateway.app.close());
  const params = { from: 'acct:1234', to: 'acct:7777', amountCents: 300, currency: 'EUR' };
  const execute = async (grant: string) => {
    const issued = await gateway.app.inject({ method: 'POST', url: '/pop/challenge' });
    const challenge = String(issued.json<{ challenge?: unknown }>().challenge);
    const r = await gateway.app.inject({
      method: 'POST',
      url: '/payments/transfer',
      payload: params,
      headers: popHeaders(rt, audience, grant, challenge),
    });
    return { status: r.statusCode, code: errorCode(r.json<Record<string, unknown>>()) };
  };
  let grant = '';
  await step('offline', async () => {
    const issued = await transferGrant(params);
    grant = issued.grant;
    const r = await execute(grant);
    if (r.status !== 200) throw new StepFailed(`offline gateway: ${r.status} ${r.code}`);
    return `an offline gateway (no redeem call; revocation feed at seq ${String(gateway.revocations?.seq)}, bound ${boundSeconds} s) verified grant ${short(issued.grantId)} and its proof, moved the money`;
  });
  let revokedAt = 0;
  await step('revoke', async () => {
    if (ctx.operator === undefined) throw new StepFailed('no operator credential to revoke with');
    const res = await call(
      ctx.url,
      'POST',
      `/v1/runtimes/${rt.runtimeId}/revoke`,
      {},
      ctx.operator,
    );
    revokedAt = performance.now();
    if (res.status !== 200) throw new StepFailed(`revoke: ${res.status} ${errorCode(res.body)}`);
    return `an operator revoked ${rt.label} (${rt.runtimeId}): its session ends, its live grants are revoked, the feed carries it`;
  });
  await step('refused', async () => {
    // Until the feed's event arrives the gateway still knows the grant only as executed here.
    const refused = await until(boundSeconds * 1000, async () => {
      const r = await execute(grant);
      if (r.status === 409 && r.code === 'grant_already_redeemed') return undefined;
      return r;
    });
    const seconds = (performance.now() - revokedAt) / 1000;
    if (refused === undefined)
      throw new StepFailed(
        `the offline gateway still accepts the grant ${seconds.toFixed(1)} s after the revoke (bound ${boundSeconds} s)`,
      );
    // The cascade revokes the runtime's live grants too: the grant's own event may come first.
    if (
      refused.status !== 403 ||
      (refused.code !== 'grant_revoked' && refused.code !== 'grant_runtime_revoked')
    )
      throw new StepFailed(
        `expected 403 grant_revoked or grant_runtime_revoked, got ${refused.status} ${refused.code}`,
      );
    if (seconds > boundSeconds)
      throw new StepFailed(
        `refused after ${seconds.toFixed(2)} s: past the bound of ${boundSeconds} s`,
      );
    return `the same grant at the offline gateway: REFUSED 403 ${refused.code}, ${seconds.toFixed(2)} s after the revoke (bound ${boundSeconds} s)`;
  });
}
