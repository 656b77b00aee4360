/**
 * A real nginx gates an existing upstream through `grantor-gateway`'s auth_request
 * endpoint (deploy/nginx/grantor-gateway.conf), with grants from the real appliance: a
 * missing, forged, expired, replayed, revoked, wrong-audience and wrong-parameters grant
 * are each refused with their code (in `Grantor-Refusal`) and the upstream executes
 * nothing; a good grant executes exactly once.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectNothingExecuted, startEnforcedGateway, type EnforcedGateway } from './harness.js';
import { startNginx, type Nginx } from '../../examples/nginx.js';

let rig: EnforcedGateway;
let appliance: EnforcedGateway['appliance'];
let upstream: EnforcedGateway['upstream'];
let nginx: Nginx;

beforeAll(async () => {
  rig = await startEnforcedGateway(() => ({
    authRequestPath: '/grantor-auth',
    clientAddressHeader: 'x-real-ip',
  }));
  ({ appliance, upstream } = rig);
  nginx = await startNginx(upstream.url, `http://127.0.0.1:${rig.url.port}`);
}, 180_000);

afterAll(async () => {
  await nginx.stop();
  await rig.close();
});

afterEach(() => {
  rig.clock.offsetMs = 0;
});

/** The grant and its proof, the challenge asked through nginx (bound to the client). */
const headersFor = (grantId: string, grant: string): Promise<Record<string, string>> =>
  rig.presented(grantId, grant, nginx.url);

const ticket = { path: { id: '42' }, query: { full: '1' } };

async function refused(res: Response, status: number, code: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get('grantor-refusal')).toBe(code);
  await res.arrayBuffer();
}

describe('nginx auth_request through grantor-gateway', () => {
  it('executes a good grant exactly once and hides the grant from the upstream', async () => {
    const before = upstream.executed.length;
    const { grantId, grant } = await appliance.issue('ticket:42', ticket);
    const res = await fetch(`${nginx.url}/tickets/42?full=1`, {
      headers: { ...(await headersFor(grantId, grant)), 'grantor-grant-id': 'forged' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('grantor-refusal')).toBeNull();
    expect(upstream.executed.length).toBe(before + 1);
    const seen = upstream.executed.at(-1);
    expect(seen?.url).toBe('/tickets/42?full=1');
    expect(seen?.headers.authorization).toBeUndefined();
    expect(seen?.headers['grant-pop']).toBeUndefined();
    expect(seen?.headers['grantor-grant-id']).toBe(grantId);
    expect(seen?.headers['grantor-runtime-id']).toBe(appliance.runtime.runtimeId);
    // The same grant again (fresh proof): refused, the upstream untouched.
    const replay = await fetch(`${nginx.url}/tickets/42?full=1`, {
      headers: await headersFor(grantId, grant),
    });
    await refused(replay, 403, 'grant_already_redeemed');
    expect(upstream.executed.length).toBe(before + 1);
    expect(await appliance.lineage(grantId)).toMatchObject({
      state: 'redeemed',
      redeemedBy: appliance.rig.gateway.id,
    });
  });

  describe('refusals, each with its code, nothing executed', () => {
    expectNothingExecuted(() => upstream);

    it('missing: 401 grant_missing', async () => {
      await refused(await fetch(`${nginx.url}/tickets/42?full=1`), 401, 'grant_missing');
    });

    it('forged: 403 grant_signature_invalid', async () => {
      const { grantId, grant } = await appliance.issue('ticket:42', ticket);
      const forged = grant.replace(/\.[^.]+$/, `.${Buffer.alloc(64, 9).toString('base64url')}`);
      const res = await fetch(`${nginx.url}/tickets/42?full=1`, {
        headers: await headersFor(grantId, forged),
      });
      await refused(res, 403, 'grant_signature_invalid');
    });

    it('expired: 403 grant_expired', async () => {
      const { grantId, grant } = await appliance.issue('ticket:42', ticket);
      const headers = await headersFor(grantId, grant);
      rig.clock.offsetMs = 10 * 60_000;
      await refused(
        await fetch(`${nginx.url}/tickets/42?full=1`, { headers }),
        403,
        'grant_expired',
      );
    });

    it('revoked: 403 grant_revoked', async () => {
      const { grantId, grant } = await appliance.issue('ticket:42', ticket);
      await appliance.revoke(grantId);
      const res = await fetch(`${nginx.url}/tickets/42?full=1`, {
        headers: await headersFor(grantId, grant),
      });
      await refused(res, 403, 'grant_revoked');
    });

    it('wrong audience: 403 grant_audience_mismatch', async () => {
      const { grantId, grant } = await appliance.issue('ticket:42', ticket, {
        audience: 'gw_payments',
      });
      const res = await fetch(`${nginx.url}/tickets/42?full=1`, {
        headers: await headersFor(grantId, grant),
      });
      await refused(res, 403, 'grant_audience_mismatch');
    });

    it('wrong parameters: 403 grant_parameters_mismatch', async () => {
      const { grantId, grant } = await appliance.issue('ticket:42', ticket);
      const res = await fetch(`${nginx.url}/tickets/42?full=0`, {
        headers: await headersFor(grantId, grant),
      });
      await refused(res, 403, 'grant_parameters_mismatch');
    });

    it('a body the route does not cover, a route that needs the body, no route: request_body_invalid, route_body_unavailable, route_not_found', async () => {
      const { grantId, grant } = await appliance.issue('ticket:42', ticket);
      // A GET with a body (node http: fetch refuses one): the digest does not cover it.
      const smuggled = await new Promise<{ status: number; refusal: unknown }>(
        (resolve, reject) => {
          void headersFor(grantId, grant).then((headers) => {
            const req = httpRequest(
              `${nginx.url}/tickets/42?full=1`,
              { method: 'GET', headers: { ...headers, 'content-length': '9' } },
              (res) => {
                res.resume();
                resolve({ status: res.statusCode ?? 0, refusal: res.headers['grantor-refusal'] });
              },
            );
            req.on('error', reject);
            req.end('{"x":"y"}');
          }, reject);
        },
      );
      expect(smuggled).toEqual({ status: 403, refusal: 'request_body_invalid' });
      const posted = await fetch(`${nginx.url}/tickets/42/read`, {
        method: 'POST',
        headers: { ...(await headersFor(grantId, grant)), 'content-type': 'application/json' },
        body: '{"a":1}',
      });
      await refused(posted, 403, 'route_body_unavailable');
      const unrouted = await fetch(`${nginx.url}/admin`, {
        headers: await headersFor(grantId, grant),
      });
      await refused(unrouted, 403, 'route_not_found');
    });
  });
});
