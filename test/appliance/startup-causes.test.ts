/**
 * Every start-up failure keeps its cause: the log line and `/readyz` name the PKCS#11
 * module and its loader error, the token label no token has, the TPM address that refuses
 * connections, the policy file and line that does not parse, a missing EK CA file or policy
 * directory (real swtpm, real SoftHSM2, real policy engine; nothing faked).
 */
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApplianceServer } from '../../src/http/server.js';
import { loadConfig } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { provisionOnTpm, startApplianceRig, type ApplianceRig } from '../rig/appliance.js';
import { applianceEnv, freePortPair, repoRoot, type SimHsm, type SimTpm } from '../rig/sim.js';

interface ReadyAnswer {
  error: {
    code: string;
    details: { down: string[]; checks: Record<string, { ok: boolean; reason?: string }> };
  };
}

let rig: ApplianceRig | undefined;
let dir: string;
let tpm: SimTpm;
let hsm: SimHsm;

beforeAll(async () => {
  rig = await startApplianceRig('causes');
  ({ dir, tpm, hsm } = rig);
  // Provisioned, so that the failures after the audit start-up check are reached.
  await provisionOnTpm(loadConfig(rig.env(), repoRoot));
});

afterAll(async () => {
  await rig?.destroy();
});

/** Starts the server with `overrides`, returns its /readyz answer and its log lines. */
async function start(
  overrides: Record<string, string>,
): Promise<{ status: number; body: ReadyAnswer; log: string; other: number }> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const logger = createLogger('info', sink);
  const config = loadConfig(applianceEnv(tpm, hsm, dir, overrides), repoRoot);
  const server = await startApplianceServer(config, logger);
  try {
    expect(server.appliance).toBeUndefined();
    const ready = await server.app.inject({ url: '/readyz' });
    const other = await server.app.inject({ url: '/.well-known/jwks.json' });
    return {
      status: ready.statusCode,
      body: ready.json<ReadyAnswer>(),
      log: lines.join(''),
      other: other.statusCode,
    };
  } finally {
    await server.close();
  }
}

function reasonOf(body: ReadyAnswer, component: string): string {
  expect(body.error.details.down).toEqual([component]);
  return body.error.details.checks[component]?.reason ?? '';
}

describe('start-up failures keep their cause', () => {
  it('a PKCS#11 module path that does not load: the path and the loader error', async () => {
    const bogus = join(dir, 'no-such-pkcs11-module.so');
    const r = await start({ GRANTOR_PKCS11_MODULE: bogus });
    expect(r.status).toBe(503);
    expect(r.other).toBe(503);
    expect(r.body.error.code).toBe('hsm_unavailable');
    const reason = reasonOf(r.body, 'hsm');
    expect(reason).toContain(`GRANTOR_PKCS11_MODULE / GRANTOR_HSM_TOKEN_LABEL ${bogus}`);
    expect(reason).toContain('cannot open shared object file');
    expect(r.log).toContain(bogus);
    expect(r.log).toContain('cannot open shared object file');
  });

  it('a token label no token has: "no token labelled X" in the module', async () => {
    const r = await start({ GRANTOR_HSM_TOKEN_LABEL: 'no-such-token' });
    expect(r.body.error.code).toBe('hsm_unavailable');
    const reason = reasonOf(r.body, 'hsm');
    expect(reason).toContain(`no token labelled "no-such-token" in ${hsm.module}`);
    expect(r.log).toContain('no token labelled \\"no-such-token\\"');
  });

  it('a TPM port with nothing listening: host:port connection refused', async () => {
    const port = await freePortPair();
    const tcti = `swtpm:host=127.0.0.1,port=${port}`;
    const r = await start({ GRANTOR_TPM_TCTI: tcti });
    expect(r.body.error.code).toBe('tpm_unavailable');
    const reason = reasonOf(r.body, 'tpm');
    expect(reason).toContain(`GRANTOR_TPM_TCTI ${tcti}: 127.0.0.1:${port} connection refused`);
    expect(r.log).toContain(`127.0.0.1:${port} connection refused`);
  });

  it('a policy file with a syntax error: its name and line', async () => {
    const policies = join(dir, 'policies-broken');
    await cp(join(repoRoot, 'policies', 'default'), policies, { recursive: true });
    await writeFile(join(policies, 'zz-broken.cedar'), '// fine\n\npermit (principal, action\n');
    const r = await start({ GRANTOR_POLICY_DIR: policies });
    expect(r.body.error.code).toBe('policy_unavailable');
    expect(r.other).toBe(503);
    const reason = reasonOf(r.body, 'policy');
    expect(reason).toContain(`GRANTOR_POLICY_DIR ${policies}: zz-broken.cedar does not parse`);
    expect(reason).toMatch(/line [34]:\d+/);
    expect(r.log).toContain('zz-broken.cedar does not parse');
  });

  it('a missing policy directory: the key and the path', async () => {
    const missing = join(dir, 'no-policies');
    const r = await start({ GRANTOR_POLICY_DIR: missing });
    expect(r.body.error.code).toBe('policy_unavailable');
    const reason = reasonOf(r.body, 'policy');
    expect(reason).toContain(`GRANTOR_POLICY_DIR ${missing}: cannot list the policy directory`);
    expect(reason).toContain('ENOENT');
    expect(r.log).toContain(missing);
  });

  it('a missing EK CA file: the key and the path', async () => {
    const missing = join(dir, 'no-ek-ca.pem');
    const r = await start({ GRANTOR_EK_CA_BUNDLE: missing });
    expect(r.body.error.code).toBe('not_ready');
    expect(r.other).toBe(503);
    const reason = reasonOf(r.body, 'attestation');
    expect(reason).toContain(`GRANTOR_EK_CA_BUNDLE: cannot read ${missing}: no such file`);
    expect(r.log).toContain(`GRANTOR_EK_CA_BUNDLE: cannot read ${missing}`);
  });
});
