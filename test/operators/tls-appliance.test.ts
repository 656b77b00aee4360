/**
 * The real appliance over TLS, as ./scripts/start runs it: startApplianceServer with a
 * configuration naming the certificates scripts/sim/make-tls creates, on a real swtpm and a
 * real SoftHSM2 token, listening on https 127.0.0.1:0. Clients verify the listener against
 * the local server CA; operators log in with the make-tls client certificates.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionAppliance } from '../../src/appliance.js';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import {
  applianceEnv,
  provisionSimHsm,
  repoRoot,
  startSimTpm,
  type SimHsm,
  type SimTpm,
  writeEkTrust,
} from '../rig/sim.js';

const run = promisify(execFile);

interface Answer {
  status: number;
  json: unknown;
}

interface ErrorBody {
  error: { code: string };
}

let dir: string;
let tls: string;
let tpm: SimTpm | undefined;
let hsm: SimHsm;

function config(overrides: Record<string, string> = {}): AppConfig {
  if (tpm === undefined) throw new Error('the swtpm did not start');
  return loadConfig(
    applianceEnv(tpm, hsm, dir, {
      GRANTOR_LISTEN: '127.0.0.1:0',
      GRANTOR_TLS_CERT: join(tls, 'server.pem'),
      GRANTOR_TLS_KEY: join(tls, 'server.key'),
      GRANTOR_OPERATOR_CA: join(tls, 'operator-ca.pem'),
      ...overrides,
    }),
    repoRoot,
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-tls-appliance-'));
  tls = join(dir, 'tls');
  await run(join(repoRoot, 'scripts/sim/make-tls'), [tls]);
  // A second, unrelated set: its operator CA is not the appliance's.
  await run(join(repoRoot, 'scripts/sim/make-tls'), [join(dir, 'foreign')]);
  tpm = await startSimTpm();
  hsm = await provisionSimHsm(join(dir, 'hsm'), 'grantor-tls-appliance');
  process.env.SOFTHSM2_CONF = hsm.conf;
  await writeEkTrust(dir, tpm.ekCaPem);
  const t = await openTpm(config().tpm);
  try {
    await provisionAppliance(config(), t);
  } finally {
    await t.close();
  }
});

// Stops the swtpm even when the set-up failed half way.
afterAll(async () => {
  await tpm?.destroy();
  await rm(dir, { recursive: true, force: true });
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
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, ...ca, ...client }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, json: text === '' ? null : JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
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
        subject: expect.stringMatching(/^cert:[0-9a-f]+$/) as unknown,
        reasons: ['POST /v1/keys/rotate', 'role:key_custodian'],
      }),
    );
    expect(entries).toContainEqual(
      expect.objectContaining({ type: 'key.rotated', subject: active.kid }),
    );
  });
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
