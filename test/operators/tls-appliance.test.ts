/**
 * The real appliance over TLS, as ./scripts/start runs it: startApplianceServer with a
 * configuration naming the certificates scripts/sim/make-tls creates, on a real swtpm and a
 * real SoftHSM2 token, listening on https 127.0.0.1:0. Clients verify the listener against
 * the local server CA; operators log in with the make-tls client certificates.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operatorPutParams } from '../../src/http/routes/operators.js';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { provisionOnTpm, startApplianceRig, type ApplianceRig } from '../rig/appliance.js';
import { repoRoot } from '../rig/sim.js';

const run = promisify(execFile);

interface Answer {
  status: number;
  json: unknown;
}

interface ErrorBody {
  error: { code: string };
}

let rig: ApplianceRig | undefined;
let dir: string;
let tls: string;

function config(overrides: Record<string, string> = {}): AppConfig {
  if (rig === undefined) throw new Error('the rig did not start');
  return loadConfig(rig.env({ GRANTOR_LISTEN: '127.0.0.1:0', ...overrides }), repoRoot);
}

beforeAll(async () => {
  // With a second, unrelated make-tls set in dir/foreign: its operator CA is not the appliance's.
  rig = await startApplianceRig('tls-appliance', { tls: true });
  ({ dir, tls } = rig);
  await provisionOnTpm(config());
});

// Stops the swtpm even when the set-up failed half way.
afterAll(async () => {
  await rig?.destroy();
});

async function listen(server: RunningServer): Promise<number> {
  await server.app.listen({ host: '127.0.0.1', port: 0 });
  return (server.app.server.address() as AddressInfo).port;
}

interface CallOptions {
  /** make-tls folder and role of the client certificate to present. */
  readonly cert?: { readonly dir: string; readonly role: string };
  /** Trust the local server CA (default) or only the system's CAs. */
  readonly trustLocalCa?: boolean;
  readonly token?: string;
  readonly body?: unknown;
}

async function call(
  port: number,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<Answer> {
  const ca = opts.trustLocalCa === false ? {} : { ca: await readFile(join(tls, 'server-ca.pem')) };
  const client =
    opts.cert === undefined
      ? {}
      : {
          cert: await readFile(join(opts.cert.dir, 'operators', `${opts.cert.role}.pem`)),
          key: await readFile(join(opts.cert.dir, 'operators', `${opts.cert.role}.key`)),
        };
  const headers = {
    ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }),
    ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
  };
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method, headers, ...ca, ...client },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, json: text === '' ? null : JSON.parse(text) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body === undefined ? undefined : JSON.stringify(opts.body));
  });
}

/** A client certificate for a person, issued by the make-tls operator CA (openssl). */
async function issuePersonCert(name: string, san: string, subject: string): Promise<void> {
  const out = join(tls, 'operators', name);
  const ext = join(dir, `${name}.ext`);
  await writeFile(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=clientAuth',
      `subjectAltName=${san}`,
      '',
    ].join('\n'),
  );
  await run('openssl', [
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-out',
    `${out}.key`,
  ]);
  await run('openssl', [
    'req',
    '-new',
    '-key',
    `${out}.key`,
    '-subj',
    subject,
    '-out',
    `${out}.csr`,
  ]);
  await run('openssl', [
    ...['x509', '-req', '-in', `${out}.csr`, '-CA', join(tls, 'operator-ca.pem')],
    ...['-CAkey', join(tls, 'operator-ca.key'), '-set_serial', `0x${Date.now().toString(16)}`],
    ...['-days', '30', '-sha256', '-extfile', ext, '-out', `${out}.pem`],
  ]);
}

function errorCode(a: Answer): string | undefined {
  return (a.json as Partial<ErrorBody> | null)?.error?.code;
}

describe('the appliance over TLS with operator client certificates', () => {
  let server: RunningServer | undefined;
  let port: number;

  beforeAll(async () => {
    server = await startApplianceServer(config());
    port = await listen(server);
    // The make-tls certificates name the people <role>-demo: register them (offline path).
    for (const role of ['auditor', 'operator', 'key_custodian'] as const) {
      await server.appliance?.operators.people.put(`${role}-demo`, {
        displayName: `${role} demo`,
        roles: [role],
      });
    }
  });
  afterAll(async () => {
    await server?.close();
  });

  it('serves /readyz over https, verified against the local server CA', async () => {
    const res = await call(port, 'GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'ready' });
  });

  it('is refused by a client that does not trust the local server CA', async () => {
    const err = await call(port, 'GET', '/readyz', { trustLocalCa: false }).then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    expect(err?.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('answers 401 without a credential', async () => {
    const read = await call(port, 'GET', '/v1/audit/entries?from=0');
    expect(read.status).toBe(401);
    expect(errorCode(read)).toBe('unauthenticated');
    const rotate = await call(port, 'POST', '/v1/keys/rotate');
    expect(rotate.status).toBe(401);
    expect(errorCode(rotate)).toBe('unauthenticated');
  });

  it('answers 401 to a certificate from another operator CA', async () => {
    const res = await call(port, 'GET', '/v1/audit/entries?from=0', {
      cert: { dir: join(dir, 'foreign'), role: 'auditor' },
    });
    expect(res.status).toBe(401);
    expect(errorCode(res)).toBe('unauthenticated');
  });

  it('lets an auditor certificate read the audit log, and not rotate keys (403)', async () => {
    const auditor = { cert: { dir: tls, role: 'auditor' } };
    const read = await call(port, 'GET', '/v1/audit/entries?from=0', auditor);
    expect(read.status).toBe(200);
    expect(Array.isArray((read.json as { entries: unknown }).entries)).toBe(true);
    const rotate = await call(port, 'POST', '/v1/keys/rotate', auditor);
    expect(rotate.status).toBe(403);
    expect(errorCode(rotate)).toBe('forbidden');
  });

  it('lets a key custodian certificate rotate the grant key, audited with its identity', async () => {
    const custodian = { cert: { dir: tls, role: 'key_custodian' } };
    const rotate = await call(port, 'POST', '/v1/keys/rotate', custodian);
    expect(rotate.status).toBe(200);
    const { active, previous } = rotate.json as {
      active: { kid: string; state: string };
      previous: { kid: string; state: string } | null;
    };
    expect(active.state).toBe('active');
    expect(previous?.state).toBe('retiring');
    expect(previous?.kid).not.toBe(active.kid);

    const read = await call(port, 'GET', '/v1/audit/entries?from=0&limit=1000', {
      cert: { dir: tls, role: 'auditor' },
    });
    const entries = (read.json as { entries: { type: string; subject: string }[] }).entries;
    expect(entries).toContainEqual(
      expect.objectContaining({
        type: 'operator.act',
        subject: expect.stringMatching(/^cert:[0-9a-f]{16}:[0-9a-f]+$/) as unknown,
        reasons: ['POST /v1/keys/rotate', 'role:key_custodian'],
      }),
    );
    expect(entries).toContainEqual(
      expect.objectContaining({ type: 'key.rotated', subject: active.kid }),
    );
  });
});

describe('people behind tokens and certificates over TLS (issue 14)', () => {
  let server: RunningServer | undefined;
  let port: number;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    server = await startApplianceServer(config());
    port = await listen(server);
    const ops = server.appliance?.operators;
    if (ops === undefined) throw new Error('the appliance did not open');
    // Offline bootstrap of the registry (as the CLI does with the appliance stopped).
    await ops.people.put('alice', {
      displayName: 'Alice Smith',
      roles: ['auditor', 'operator'],
      emails: ['alice@example.com'],
    });
    for (const who of ['alice', 'bob', 'dave']) {
      tokens[who] = (await ops.tokens.create({ role: 'operator', actor: who })).token;
    }
    // Alice's certificate: another spelling of her e-mail, a CN that is not her id.
    await issuePersonCert(
      'alice',
      'email:ALICE@Example.com,URI:urn:grantor:role:operator',
      '/CN=Alice Smith ',
    );
    // Case-changed URNs (RFC 8141) and an OU naming another role: the SAN decides.
    await issuePersonCert(
      'alice-auditor',
      'URI:URN:grantor:role:auditor,URI:URN:GRANTOR:OPERATOR:Alice',
      '/CN=alice/OU=key_custodian',
    );
  });
  afterAll(async () => {
    await server?.close();
  });

  it('counts the alice token and the Alice certificate as one person', async () => {
    const ops = server?.appliance?.operators;
    if (ops === undefined) throw new Error('no appliance');
    const carol = await ops.people.prepare('Carol', { displayName: 'Carol', roles: ['auditor'] });
    const params = operatorPutParams(carol);
    const req = await call(port, 'POST', '/v1/approvals', {
      token: tokens.bob ?? '',
      body: { act: 'operator.put', params },
    });
    expect(req.status).toBe(201);
    const id = (req.json as { id: string }).id;
    const byToken = await call(port, 'POST', `/v1/approvals/${id}/approve`, {
      token: tokens.alice ?? '',
    });
    expect(byToken.status).toBe(200);
    const byCert = await call(port, 'POST', `/v1/approvals/${id}/approve`, {
      cert: { dir: tls, role: 'alice' },
    });
    expect(byCert.status).toBe(409);
    expect(errorCode(byCert)).toBe('approval_duplicate_actor');
    // The registry change is dual-controlled: one approval is not enough.
    const put = () =>
      call(port, 'PUT', '/v1/operators/carol', {
        token: tokens.bob ?? '',
        body: { displayName: 'Carol', roles: ['auditor'] },
      });
    const early = await put();
    expect(errorCode(early)).toBe('approval_required');
    expect(
      (await call(port, 'POST', `/v1/approvals/${id}/approve`, { token: tokens.dave ?? '' }))
        .status,
    ).toBe(200);
    const done = await put();
    expect(done.status).toBe(200);
    expect(done.json).toMatchObject({ id: 'carol', roles: ['auditor'] });
  });

  it('reads the role from a case-changed URN, not from the OU', async () => {
    const cert = { cert: { dir: tls, role: 'alice-auditor' } };
    const read = await call(port, 'GET', '/v1/audit/entries?from=0&limit=5', cert);
    expect(read.status).toBe(200);
    const rotate = await call(port, 'POST', '/v1/keys/rotate', cert);
    expect(rotate.status).toBe(403);
    expect(errorCode(rotate)).toBe('forbidden');
  });

  it('refuses a revoked certificate at once, by issuer and serial, while running', async () => {
    const cert = { cert: { dir: tls, role: 'alice-auditor' } };
    const pem = await readFile(join(tls, 'operators', 'alice-auditor.pem'), 'utf8');
    const revoke = await call(port, 'POST', '/v1/operator-certificates/revocations', {
      token: tokens.bob ?? '',
      body: { pem },
    });
    expect(revoke.status).toBe(200);
    expect((revoke.json as { id: string }).id).toMatch(/^cert:[0-9a-f]{16}:[0-9a-f]+$/);
    const read = await call(port, 'GET', '/v1/audit/entries?from=0&limit=5', cert);
    expect(read.status).toBe(401);
    expect(errorCode(read)).toBe('unauthenticated');
    const entries = await call(port, 'GET', '/v1/audit/entries?from=0&limit=1000', {
      cert: { dir: tls, role: 'auditor' },
    });
    const list = (
      entries.json as { entries: { type: string; subject: string; reasons: string[] }[] }
    ).entries;
    const revoked = list.find((e) => e.type === 'operator.certificate_revoked');
    expect(revoked?.subject).toBe((revoke.json as { id: string }).id);
    expect(revoked?.reasons).toContain('person:alice');
  });
});

describe('the listener under connection floods (issue 14)', () => {
  let server: RunningServer | undefined;
  let port: number;

  beforeAll(async () => {
    server = await startApplianceServer(
      config({
        GRANTOR_TLS_HANDSHAKE_TIMEOUT_MS: '3000',
        GRANTOR_MAX_CONNECTIONS_PER_ADDRESS: '3',
      }),
    );
    port = await listen(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  /** A bare TCP connection that never sends a ClientHello; resolves once it is open. */
  function bare(): Promise<{ socket: Socket; closed: Promise<void> }> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      const closed = new Promise<void>((done) => {
        socket.once('close', () => {
          done();
        });
      });
      socket.once('connect', () => {
        resolve({ socket, closed });
      });
      socket.once('error', reject);
    });
  }

  it('closes a connection that never completes the TLS handshake', async () => {
    const { socket, closed } = await bare();
    // Closed by the server (Node's default would hold it 120 s, past this test's deadline).
    await closed;
    expect(socket.destroyed).toBe(true);
    expect(socket.bytesWritten).toBe(0);
  }, 20_000);

  it('caps the open connections of one address', async () => {
    const held = [await bare(), await bare(), await bare()];
    const extra = await bare();
    await extra.closed;
    // The first three are still open: the fourth was refused by the cap, not the timeout.
    expect(held.map((h) => h.socket.destroyed)).toEqual([false, false, false]);
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => h.closed));
    const ok = await call(port, 'GET', '/readyz');
    expect(ok.status).toBe(200);
  }, 20_000);

  it('audits a stolen token refused after a junk flood, and a TLS-rejected certificate as such', async () => {
    const ops = server?.appliance?.operators;
    if (ops === undefined) throw new Error('no appliance');
    const stolen = await ops.tokens.create({ role: 'auditor', actor: 'auditor-demo' });
    // A certificate from another operator CA: refused by TLS, recorded as such (junk, on
    // this address's budget: before the flood below spends it).
    const foreign = await call(port, 'GET', '/v1/keys', {
      cert: { dir: join(dir, 'foreign'), role: 'key_custodian' },
    });
    expect(foreign.status).toBe(401);
    // 100 junk tokens spend what used to be the whole window's budget...
    for (let i = 0; i < 100; i++) {
      const junk = `gop_${i.toString(16).padStart(16, '0')}${'J'.repeat(43)}`;
      const res = await call(port, 'GET', '/v1/audit/entries?from=0', { token: junk });
      expect(res.status).toBe(401);
    }
    // ...then a stolen auditor token tries to rotate the keys.
    const rotate = await call(port, 'POST', '/v1/keys/rotate', { token: stolen.token });
    expect(rotate.status).toBe(403);
    const read = await call(port, 'GET', '/v1/audit/entries?from=0&limit=1000', {
      cert: { dir: tls, role: 'auditor' },
    });
    const entries = (
      read.json as { entries: { type: string; subject: string; reasons: string[] }[] }
    ).entries.filter((e) => e.type === 'operator.refused');
    expect(entries).toContainEqual(
      expect.objectContaining({
        subject: stolen.info.id,
        reasons: expect.arrayContaining([
          'role_forbidden',
          'POST /v1/keys/rotate',
          'person:auditor-demo',
        ]) as unknown,
      }),
    );
    const rejected = entries.find((e) => e.reasons.includes('GET /v1/keys'));
    expect(rejected?.reasons[0]).toBe('certificate_rejected');
    expect(rejected?.reasons.some((r) => r.startsWith('tls:'))).toBe(true);
  }, 60_000);
});

describe('a degraded appliance over TLS', () => {
  it('still listens on https and answers 503 naming the HSM', async () => {
    const server = await startApplianceServer(
      config({ GRANTOR_HSM_PIN_FILE: '', GRANTOR_HSM_PIN: 'wrong-pin-27182' }),
    );
    try {
      expect(server.appliance).toBeUndefined();
      const port = await listen(server);
      const ready = await call(port, 'GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(errorCode(ready)).toBe('hsm_pin_incorrect');
    } finally {
      await server.close();
    }
  });
});

describe('TLS configuration errors', () => {
  it('refuses an unreadable certificate before opening any hardware', async () => {
    const err = await startApplianceServer(
      config({ GRANTOR_TLS_CERT: join(dir, 'missing.pem') }),
    ).then(
      () => undefined,
      (e: unknown) => e as { code?: string; key?: string },
    );
    expect(err?.code).toBe('config_invalid');
    expect(err?.key).toBe('GRANTOR_TLS_CERT');
  });
});
