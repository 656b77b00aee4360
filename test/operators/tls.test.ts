/**
 * Operators over mutual TLS, with the certificates scripts/sim/make-tls creates: an https
 * listener on 127.0.0.1:0, the real operatorAuth hook and the real certificate check.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { promisify } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installErrorHandler } from '../../src/http/errors.js';
import { operatorAuth, requireActor } from '../../src/http/plugins/auth.js';
import { operatorCaPem, tlsOptions } from '../../src/http/plugins/tls.js';
import { OperatorCertificateVerifier } from '../../src/operators/client-cert.js';
import { createFakeOperatorTokens } from '../../src/operators/token-store.memory.js';
import type { OperatorTokens } from '../../src/operators/tokens.js';

const run = promisify(execFile);

interface Answer {
  status: number;
  body: { error?: { code: string }; role?: string; credential?: string };
}

let dir: string;
let other: string;
let app: FastifyInstance | undefined;
let port: number;
let tokens: OperatorTokens;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-tls-'));
  other = await mkdtemp(join(tmpdir(), 'grantor-tls-other-'));
  await run('scripts/sim/make-tls', [dir]);
  await run('scripts/sim/make-tls', [other]);
  const config = {
    certFile: join(dir, 'server.pem'),
    keyFile: join(dir, 'server.key'),
    operatorCaFile: join(dir, 'operator-ca.pem'),
  };
  const ca = operatorCaPem(config);
  if (ca === undefined) throw new Error('no operator CA');
  tokens = createFakeOperatorTokens();
  // The make-tls certificates name the people <role>-demo (SAN urn:grantor:operator:...).
  for (const role of ['auditor', 'operator', 'key_custodian'] as const) {
    await tokens.people.put(`${role}-demo`, { displayName: `${role} demo`, roles: [role] });
  }
  const a = Fastify({ https: tlsOptions(config) });
  installErrorHandler(a);
  await a.register(operatorAuth, {
    tokens,
    certificates: new OperatorCertificateVerifier(ca, { people: tokens.people }),
  });
  a.get('/v1/audit/entries', { config: { role: 'auditor' } }, (req) => {
    const actor = requireActor(req);
    return { role: actor.role, credential: actor.credential };
  });
  a.post('/v1/keys/rotate', { config: { role: 'key_custodian' } }, (req) => ({
    role: requireActor(req).role,
  }));
  a.post('/v1/grants', { config: { actor: 'runtime' } }, () => ({ role: 'none' }));
  await a.listen({ host: '127.0.0.1', port: 0 });
  port = (a.server.address() as AddressInfo).port;
  app = a;
});

afterAll(async () => {
  await app?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(other, { recursive: true, force: true });
});

async function call(
  method: string,
  path: string,
  opts: { certDir?: string; role?: string; token?: string } = {},
): Promise<Answer> {
  const ca = await readFile(join(dir, 'server-ca.pem'));
  const client =
    opts.certDir !== undefined && opts.role !== undefined
      ? {
          cert: await readFile(join(opts.certDir, 'operators', `${opts.role}.pem`)),
          key: await readFile(join(opts.certDir, 'operators', `${opts.role}.key`)),
        }
      : {};
  const req = request({
    host: '127.0.0.1',
    servername: 'localhost',
    port,
    path,
    method,
    ca,
    ...client,
    headers: opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` },
  });
  req.end();
  // `once` rejects with the request's 'error' (a refused handshake).
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  return { status: res.statusCode ?? 0, body: JSON.parse(await text(res)) as Answer['body'] };
}

describe('operators over mutual TLS', () => {
  it('lets an auditor certificate read an auditor route', async () => {
    const res = await call('GET', '/v1/audit/entries', { certDir: dir, role: 'auditor' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ role: 'auditor', credential: 'certificate' });
  });

  it('answers 403 forbidden to an auditor certificate on a key custodian route', async () => {
    const res = await call('POST', '/v1/keys/rotate', { certDir: dir, role: 'auditor' });
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe('forbidden');
    const custodian = await call('POST', '/v1/keys/rotate', {
      certDir: dir,
      role: 'key_custodian',
    });
    expect(custodian.status).toBe(200);
  });

  it('answers 401 unauthenticated without certificate or token', async () => {
    const res = await call('GET', '/v1/audit/entries');
    expect(res.status).toBe(401);
    expect(res.body.error?.code).toBe('unauthenticated');
  });

  it('answers 401 to a certificate from another operator CA', async () => {
    const res = await call('GET', '/v1/audit/entries', { certDir: other, role: 'auditor' });
    expect(res.status).toBe(401);
    expect(res.body.error?.code).toBe('unauthenticated');
  });

  it('still accepts a bearer token over TLS without a client certificate', async () => {
    const { token } = await tokens.create({ role: 'auditor', actor: 'ada' });
    const res = await call('GET', '/v1/audit/entries', { token });
    expect(res.status).toBe(200);
    expect(res.body.credential).toBe('token');
  });

  it('refuses an operator certificate on a runtime route, and serves a runtime without one', async () => {
    const op = await call('POST', '/v1/grants', { certDir: dir, role: 'operator' });
    expect(op.status).toBe(403);
    expect(op.body.error?.code).toBe('forbidden');
    expect((await call('POST', '/v1/grants')).status).toBe(200);
  });
});

describe('tlsOptions', () => {
  it('names the missing file by its setting', () => {
    expect(() => tlsOptions({ certFile: join(dir, 'nope.pem'), keyFile: 'x' })).toThrow(
      expect.objectContaining({ code: 'config_invalid', key: 'GRANTOR_TLS_CERT' }),
    );
    expect(() =>
      tlsOptions({ certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.pem') }),
    ).toThrow(expect.objectContaining({ code: 'config_invalid', key: 'GRANTOR_TLS_KEY' }));
  });

  it('does not ask for client certificates without an operator CA', () => {
    const opts = tlsOptions({
      certFile: join(dir, 'server.pem'),
      keyFile: join(dir, 'server.key'),
    });
    expect(opts.requestCert).toBe(false);
    expect(opts.ca).toBeUndefined();
  });
});
