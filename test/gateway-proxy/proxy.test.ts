/**
 * `grantor-gateway` as a reverse proxy, end to end: grants issued by the real appliance
 * (test/grants/rig.ts), redeemed through its HTTP API by an enrolled gateway, the proxy on
 * a real socket, a test upstream that counts what it executes. Every refusal asserts its
 * code and that the upstream executed nothing; the good grant executes exactly once and its
 * outcome is recorded at the appliance.
 */
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { text } from 'node:stream/consumers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createGateway,
  parseGatewayConfig,
  type GatewayProxyEvent,
} from '../../src/gateway-proxy/index.js';
import {
  AUDIENCE,
  ISSUER,
  ROUTES,
  expectNothingExecuted,
  startEnforcedGateway,
  type Appliance,
  type EnforcedGateway,
  type Upstream,
} from './harness.js';

let rig: EnforcedGateway;
let appliance: Appliance;
let upstream: Upstream;
let base: URL;
const events: GatewayProxyEvent[] = [];

beforeAll(async () => {
  rig = await startEnforcedGateway(
    (up) => ({ upstream: up.url, limits: { maxBodyBytes: 4096, maxHeaderBytes: 8192 } }),
    { log: (e) => events.push(e) },
  );
  ({ appliance, upstream, url: base } = rig);
}, 180_000);

afterAll(async () => {
  await rig.close();
});

afterEach(() => {
  rig.clock.offsetMs = 0;
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw HTTP request (the target is sent exactly as given, no normalisation). */
async function send(
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  const req = httpRequest({ host: base.hostname, port: base.port, method, path: target, headers });
  req.end(body);
  // `once` rejects with the request's 'error'.
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  return { status: res.statusCode ?? 0, headers: res.headers, body: await text(res) };
}

async function challenge(): Promise<string> {
  const res = await send('POST', '/grantor/pop/challenge');
  expect(res.status).toBe(200);
  return (JSON.parse(res.body) as { challenge: string }).challenge;
}

const presented = (grantId: string, grant: string): Promise<Record<string, string>> =>
  rig.presented(grantId, grant);

const codeOf = (a: Answer): string =>
  (JSON.parse(a.body) as { error: { code: string } }).error.code;

function expectRefused(answer: Answer, status: number, code: string): void {
  expect(answer.status, answer.body).toBe(status);
  expect(codeOf(answer)).toBe(code);
  expect(answer.headers['grantor-refusal']).toBe(code);
}

describe('grantor-gateway forwards only authorised requests', () => {
  it('forwards a good grant once, strips the grant and proof, and records the outcome', async () => {
    const before = upstream.executed.length;
    const { grantId, grant } = await appliance.issue('ticket:T-42', {
      path: { id: 'T-42' },
      query: { full: '1' },
    });
    const headers = {
      ...(await presented(grantId, grant)),
      'grantor-grant-id': 'forged',
      'x-keep': 'me',
    };
    const first = await send('GET', '/tickets/T-42?full=1', headers);
    expect(first.status, first.body).toBe(200);
    expect(first.headers['x-upstream']).toBe('yes');
    expect(upstream.executed.length).toBe(before + 1);
    const seen = upstream.executed.at(-1)!;
    expect(seen.url).toBe('/tickets/T-42?full=1');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['grant-pop']).toBeUndefined();
    expect(seen.headers['grantor-grant-id']).toBe(grantId);
    expect(seen.headers['grantor-runtime-id']).toBe(appliance.runtime.runtimeId);
    expect(seen.headers['x-keep']).toBe('me');

    // The replay: a fresh proof, the same grant: the appliance's redemption refuses it.
    const replay = await send('GET', '/tickets/T-42?full=1', await presented(grantId, grant));
    expectRefused(replay, 409, 'grant_already_redeemed');
    expect(upstream.executed.length).toBe(before + 1);

    await expect
      .poll(async () => appliance.lineage(grantId))
      .toMatchObject({
        state: 'redeemed',
        redeemedBy: appliance.rig.gateway.id,
        execution: { gateway: appliance.rig.gateway.id, outcome: 'succeeded' },
      });
  });

  it('forwards a JSON body whose digest the grant names, byte for byte', async () => {
    const body = '{"ticketId":"T-7","fields":["subject"]}';
    const { grantId, grant } = await appliance.issue('ticket:T-7', JSON.parse(body));
    const res = await send(
      'POST',
      '/tickets/T-7/read',
      {
        ...(await presented(grantId, grant)),
        'content-type': 'application/json',
      },
      body,
    );
    expect(res.status, res.body).toBe(200);
    expect(upstream.executed.at(-1)?.body).toBe(body);
  });

  it('reports failed for a 5xx answer of the upstream', async () => {
    const { grantId, grant } = await appliance.issue('ticket:9', {});
    const res = await send('POST', '/failing/9', await presented(grantId, grant));
    expect(res.status).toBe(500);
    await expect
      .poll(async () => appliance.lineage(grantId))
      .toMatchObject({ execution: { outcome: 'failed' } });
  });

  it('executes a grant sent three times at once exactly once', async () => {
    const before = upstream.executed.length;
    const { grantId, grant } = await appliance.issue('ticket:C', { path: { id: 'C' }, query: {} });
    const answers = await Promise.all(
      [0, 1, 2].map(async () => send('GET', '/tickets/C', await presented(grantId, grant))),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409]);
    expect(upstream.executed.length).toBe(before + 1);
  });

  describe('refusals, each with its code, nothing executed', () => {
    const executed = expectNothingExecuted(() => upstream);

    it('no grant: 401 grant_missing', async () => {
      expectRefused(await send('GET', '/tickets/1'), 401, 'grant_missing');
      expectRefused(
        await send('GET', '/tickets/1', { authorization: 'Bearer x.y.z' }),
        401,
        'grant_missing',
      );
    });

    it('a forged grant: 403 grant_signature_invalid', async () => {
      const { grantId, grant } = await appliance.issue('ticket:1', {
        path: { id: '1' },
        query: {},
      });
      const forged = grant.replace(/\.[^.]+$/, `.${Buffer.alloc(64, 7).toString('base64url')}`);
      expectRefused(
        await send('GET', '/tickets/1', await presented(grantId, forged)),
        403,
        'grant_signature_invalid',
      );
    });

    it('an expired grant: 403 grant_expired', async () => {
      const { grantId, grant } = await appliance.issue('ticket:1', {
        path: { id: '1' },
        query: {},
      });
      const headers = await presented(grantId, grant);
      rig.clock.offsetMs = 10 * 60_000;
      expectRefused(await send('GET', '/tickets/1', headers), 403, 'grant_expired');
    });

    it('a revoked grant: 403 grant_revoked (the appliance refuses the redemption)', async () => {
      const { grantId, grant } = await appliance.issue('ticket:1', {
        path: { id: '1' },
        query: {},
      });
      await appliance.revoke(grantId);
      expectRefused(
        await send('GET', '/tickets/1', await presented(grantId, grant)),
        403,
        'grant_revoked',
      );
    });

    it('a grant for another audience: 403 grant_audience_mismatch', async () => {
      const { grantId, grant } = await appliance.issue(
        'ticket:1',
        { path: { id: '1' }, query: {} },
        { audience: 'gw_other' },
      );
      expectRefused(
        await send('GET', '/tickets/1', await presented(grantId, grant)),
        403,
        'grant_audience_mismatch',
      );
    });

    it('other parameters, resource or route: grant_parameters_mismatch, grant_resource_mismatch, route_not_found', async () => {
      const { grantId, grant } = await appliance.issue('ticket:1', {
        path: { id: '1' },
        query: {},
      });
      expectRefused(
        await send('GET', '/tickets/1?all=1', await presented(grantId, grant)),
        403,
        'grant_parameters_mismatch',
      );
      expectRefused(
        await send('GET', '/tickets/2', await presented(grantId, grant)),
        403,
        'grant_resource_mismatch',
      );
      expectRefused(
        await send('DELETE', '/tickets/1', await presented(grantId, grant)),
        404,
        'route_not_found',
      );
      const body = await appliance.issue('ticket:1', { a: 1 });
      expectRefused(
        await send(
          'POST',
          '/tickets/1/read',
          await presented(body.grantId, body.grant),
          '{"a":1,"a":2}',
        ),
        400,
        'request_body_invalid',
      );
      // The grant was never redeemed: it still works for what it names.
      const ok = await send('GET', '/tickets/1', await presented(grantId, grant));
      expect(ok.status).toBe(200);
      executed.allow();
    });

    it('a copied grant without the session key: 403 grant_pop_invalid', async () => {
      const { grantId, grant } = await appliance.issue('ticket:1', {
        path: { id: '1' },
        query: {},
      });
      expectRefused(
        await send('GET', '/tickets/1', { authorization: `Grant ${grant}` }),
        403,
        'grant_pop_invalid',
      );
      const chal = await challenge();
      const otherAudience = appliance.pop(grantId, chal, 'gw_payments');
      expectRefused(
        await send('GET', '/tickets/1', {
          authorization: `Grant ${grant}`,
          'grant-pop': otherAudience,
        }),
        403,
        'grant_pop_invalid',
      );
    });

    it('paths in another spelling, uncovered parts: request_path_invalid, request_query_invalid, request_body_invalid', async () => {
      const { grantId, grant } = await appliance.issue('ticket:1', {});
      for (const target of [
        '/tickets/x/../1',
        '/tickets//1',
        '/tickets/%2e%2e',
        '/tickets/a%2Fb',
        '/tickets/%zz',
      ]) {
        expectRefused(
          await send('GET', target, await presented(grantId, grant)),
          400,
          'request_path_invalid',
        );
      }
      expectRefused(
        await send('POST', '/failing/1?x=1', await presented(grantId, grant)),
        400,
        'request_query_invalid',
      );
      expectRefused(
        await send('GET', '/tickets/1?a=1&a=2', await presented(grantId, grant)),
        400,
        'request_query_invalid',
      );
      expectRefused(
        await send('POST', '/failing/1', await presented(grantId, grant), 'smuggled'),
        400,
        'request_body_invalid',
      );
    });

    it('past the limits: 413 request_too_large, 431 for headers', async () => {
      const { grantId, grant } = await appliance.issue('ticket:1', {});
      const big = JSON.stringify({ pad: 'x'.repeat(5000) });
      expectRefused(
        await send('POST', '/tickets/1/read', await presented(grantId, grant), big),
        413,
        'request_too_large',
      );
      const res = await send('GET', '/tickets/1', { 'x-pad': 'y'.repeat(9000) });
      expect(res.status).toBe(431);
    });
  });

  it('an upstream that does not answer: 502 upstream_unavailable, outcome aborted', async () => {
    const down = createGateway(
      parseGatewayConfig({
        listen: { host: '127.0.0.1', port: 0 },
        upstream: 'http://127.0.0.1:1',
        appliance: { url: appliance.url, issuer: ISSUER, audience: AUDIENCE },
        presentation: { requirePop: false },
        routes: ROUTES,
      }),
      { gatewayToken: appliance.rig.gateway.token },
    );
    const url = await down.listen();
    try {
      const { grantId, grant } = await appliance.issue('ticket:9', {});
      const res = await fetch(new URL('/failing/9', url), {
        method: 'POST',
        headers: { authorization: `Grant ${grant}` },
      });
      expect(res.status).toBe(502);
      expect(res.headers.get('grantor-refusal')).toBe('upstream_unavailable');
      await expect
        .poll(async () => appliance.lineage(grantId))
        .toMatchObject({ execution: { outcome: 'aborted' } });
    } finally {
      await down.close();
    }
  });

  it('never logs a grant or a proof', () => {
    const text = JSON.stringify(events);
    expect(text).not.toMatch(/eyJ/);
    expect(text).not.toContain(appliance.rig.gateway.token);
  });
});
