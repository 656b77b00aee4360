/**
 * The `grantor` CLI as people run it, as a real process: help without any configuration,
 * unknown commands and options refused by name, `doctor` on a good and on broken set-ups,
 * the local commands refusing to run beside the server (its LevelDB lock), and the remote
 * mode against a running appliance on a real swtpm and SoftHSM2 token, with mutual TLS and
 * with a bearer token from a profile file.
 */
import { execFile } from 'node:child_process';
import { chmod, cp, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor, type Check } from '../../src/cli/doctor.js';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig } from '../../src/shared/config.js';
import { startApplianceRig, type ApplianceRig } from '../rig/appliance.js';
import { freePortPair, repoRoot } from '../rig/sim.js';

interface Result {
  code: number;
  out: string;
  err: string;
}

let rig: ApplianceRig | undefined;
let dir: string;
let tls: string;

function env(overrides: Record<string, string> = {}): Record<string, string> {
  if (rig === undefined) throw new Error('the rig did not start');
  return rig.env(overrides);
}

/** Runs the CLI as a process; `base` replaces the inherited environment when given. */
function grantor(
  args: readonly string[],
  extra: Record<string, string> = {},
  base: NodeJS.ProcessEnv = process.env,
): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'src/cli.ts'), ...args],
      { cwd: repoRoot, env: { ...base, ...extra }, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, out: stdout, err: stderr });
      },
    );
  });
}

let auditorToken = '';

beforeAll(async () => {
  rig = await startApplianceRig('cli', { tls: true });
  ({ dir, tls } = rig);
  const provisioned = await grantor(['provision'], env());
  expect(provisioned.err).toBe('');
  expect(provisioned.code).toBe(0);
  expect(provisioned.out).toContain('audit log: consistent with its TPM anchor');
  for (const role of ['auditor', 'operator']) {
    const added = await grantor(
      ['operators', 'person', 'add', `${role}-demo`, '--role', role],
      env(),
    );
    expect(added.code).toBe(0);
  }
  const token = await grantor(
    ['operators', 'token', 'create', '--role', 'auditor', '--actor', 'auditor-demo', '--ttl', '1h'],
    env(),
  );
  expect(token.code).toBe(0);
  auditorToken = token.out.trim().split('\n').pop() ?? '';
  expect(auditorToken.length).toBeGreaterThan(20);
}, 180_000);

afterAll(async () => {
  await rig?.destroy();
});

describe('help and usage need no configuration', () => {
  const bare = { PATH: process.env.PATH ?? '', HOME: join(tmpdir(), 'grantor-cli-no-home') };

  it('--help, --version, a command help; unknown command and option exit 2', async () => {
    const help = await grantor(['--help'], {}, bare);
    expect(help.code).toBe(0);
    expect(help.out).toContain('doctor');
    expect(help.err).toBe('');
    const version = await grantor(['--version'], {}, bare);
    expect(version.code).toBe(0);
    expect(version.out).toMatch(/^grantor \d+\.\d+\.\d+/);
    const keys = await grantor(['keys', 'rotate', '--help'], {}, bare);
    expect(keys.code).toBe(0);
    expect(keys.out).toContain('examples:');
    const unknown = await grantor(['frobnicate'], {}, bare);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "frobnicate"');
    const flag = await grantor(['keys', 'list', '--frob'], {}, bare);
    expect(flag.code).toBe(2);
    expect(flag.err).toContain('unknown option --frob');
    expect(flag.err).not.toContain('GRANTOR_');
  }, 60_000);

  it('a configuration error names the key, without a stack', async () => {
    const r = await grantor(['keys', 'list'], {}, bare);
    expect(r.code).toBe(1);
    expect(r.err).toContain('configuration error: GRANTOR_');
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

function states(checks: readonly Check[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of checks) if (out[c.check] !== 'fail') out[c.check] = c.state;
  return out;
}

function failure(checks: readonly Check[], name: string): Check | undefined {
  return checks.find((c) => c.check === name && c.state === 'fail');
}

describe('grantor doctor', () => {
  it('passes on a good set-up, one line per check (exit 0)', async () => {
    const r = await grantor(['doctor'], env());
    expect(r.err).toBe('');
    expect(r.code, r.out).toBe(0);
    for (const check of ['config', 'tls', 'policy', 'ek-ca', 'hsm', 'tpm', 'anchor']) {
      expect(r.out).toMatch(new RegExp(`^ok\\s+${check}\\s`, 'm'));
    }
    expect(r.out).not.toContain('FAIL');
  }, 60_000);

  it('names a wrong token label, a bogus module and a wrong PIN', async () => {
    const label = await doctor(env({ GRANTOR_HSM_TOKEN_LABEL: 'no-such-label' }), repoRoot);
    expect(failure(label, 'hsm')?.detail).toContain('no token labelled "no-such-label"');
    expect(failure(label, 'hsm')?.fix).toContain('GRANTOR_HSM_TOKEN_LABEL');
    const bogus = join(dir, 'bogus-module.so');
    const module = await doctor(env({ GRANTOR_PKCS11_MODULE: bogus }), repoRoot);
    expect(failure(module, 'hsm')?.detail).toContain(`module ${bogus} does not load`);
    const wrongPin = 'wrong-pin-4242';
    const pin = await doctor(
      env({ GRANTOR_HSM_PIN_FILE: '', GRANTOR_HSM_PIN: wrongPin }),
      repoRoot,
    );
    expect(failure(pin, 'hsm')?.detail).toContain('refused the configured user PIN');
    expect(JSON.stringify(pin)).not.toContain(wrongPin);
    // The other checks still ran and passed.
    expect(states(label)).toMatchObject({ config: 'ok', tls: 'ok', policy: 'ok', tpm: 'ok' });
  }, 60_000);

  it('names a TPM port with nothing listening, a policy syntax error, a missing EK CA', async () => {
    const port = await freePortPair();
    const tpmDown = await doctor(
      env({ GRANTOR_TPM_TCTI: `swtpm:host=127.0.0.1,port=${port}` }),
      repoRoot,
    );
    expect(failure(tpmDown, 'tpm')?.detail).toContain(`127.0.0.1:${port} connection refused`);
    const policies = join(dir, 'broken-policies');
    await cp(join(repoRoot, 'policies', 'default'), policies, { recursive: true });
    await writeFile(join(policies, 'zz.cedar'), 'permit (principal,\n');
    const policy = await doctor(env({ GRANTOR_POLICY_DIR: policies }), repoRoot);
    expect(failure(policy, 'policy')?.detail).toMatch(/zz\.cedar does not parse: line \d+:\d+/);
    const missing = join(dir, 'missing-ek-ca.pem');
    const ekCa = await doctor(env({ GRANTOR_EK_CA_BUNDLE: missing }), repoRoot);
    expect(failure(ekCa, 'ek-ca')?.detail).toContain(`GRANTOR_EK_CA_BUNDLE ${missing}: ENOENT`);
  }, 60_000);

  it("names a TLS key that is not the certificate's, and a missing configuration key", async () => {
    const mismatch = await doctor(
      env({ GRANTOR_TLS_KEY: join(dir, 'foreign', 'server.key') }),
      repoRoot,
    );
    expect(failure(mismatch, 'tls')?.detail).toContain('is not the key of GRANTOR_TLS_CERT');
    const noConfig = await doctor({ PATH: process.env.PATH ?? '' }, repoRoot);
    expect(noConfig).toHaveLength(1);
    expect(noConfig[0]).toMatchObject({ check: 'config', state: 'fail' });
    expect(noConfig[0]?.detail).toMatch(/^GRANTOR_[A-Z0-9_]+: /);
  });

  it('names an unprovisioned appliance and exits 1', async () => {
    const r = await grantor(
      ['doctor'],
      env({ GRANTOR_AUDIT_ANCHOR_PIN: join(dir, 'no-pin.json') }),
    );
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^FAIL\s+anchor\s+not provisioned: .* run `grantor provision`/m);
  }, 60_000);
});

describe('beside a running appliance', () => {
  let server: RunningServer;
  let url: string;
  beforeAll(async () => {
    server = await startApplianceServer(loadConfig(env(), repoRoot));
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    url = `https://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await server.close();
  });

  const mtls = (role: string): string[] => [
    '--url',
    url,
    '--cacert',
    join(tls, 'server-ca.pem'),
    '--cert',
    join(tls, 'operators', `${role}.pem`),
    '--key',
    join(tls, 'operators', `${role}.key`),
  ];

  it('a local command says the server holds the state instead of a stack trace', async () => {
    const r = await grantor(['keys', 'list'], env());
    expect(r.code).toBe(1);
    expect(r.err).toContain('the running grantor server holds the state');
    expect(r.err).toContain('--url');
    expect(r.err).not.toMatch(/\n\s+at /);
  }, 60_000);

  it('remote with mutual TLS: status, keys, runtimes, approvals, policy; tables and --json', async () => {
    const status = await grantor(
      ['status', ...mtls('operator')],
      {},
      { PATH: process.env.PATH ?? '' },
    );
    expect(status.err).toBe('');
    expect(status.code).toBe(0);
    expect(status.out).toContain(`${url}: ready`);
    expect(status.out).toMatch(/^tpm\s+ok/m);
    const keys = await grantor(['keys', 'list', '--json', ...mtls('operator')]);
    expect(keys.code).toBe(0);
    const body = JSON.parse(keys.out) as { keys: { alg: string; purpose: string }[] };
    expect(body.keys.map((k) => k.purpose)).toContain('grant');
    const table = await grantor(['keys', 'list', ...mtls('operator')]);
    expect(table.out).toMatch(/^kid\s+purpose\s+alg\s+state/m);
    expect(table.out).toContain('ES256');
    for (const command of [
      ['runtimes', 'list'],
      ['approvals', 'list'],
      ['policy', 'show'],
    ]) {
      const r = await grantor([...command, ...mtls('operator')]);
      expect(r.err, command.join(' ')).toBe('');
      expect(r.code).toBe(0);
    }
    // The auditor's certificate may not list keys: the appliance's code, exit 1.
    const refused = await grantor(['keys', 'list', ...mtls('auditor')]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('grantor: forbidden');
  }, 120_000);

  it('remote with a token from a profile file; the token is never printed', async () => {
    const tokenFile = join(dir, 'auditor.token');
    await writeFile(tokenFile, `${auditorToken}\n`, { mode: 0o600 });
    const profile = join(dir, 'auditor.json');
    await writeFile(
      profile,
      JSON.stringify({ url, cacert: join(tls, 'server-ca.pem'), tokenFile: 'auditor.token' }),
    );
    const entries = await grantor(['audit', 'entries', '--limit', '5', '--profile', profile]);
    expect(entries.err).toBe('');
    expect(entries.code).toBe(0);
    expect(entries.out).toMatch(/^seq\s+time\s+type/m);
    expect(entries.out).not.toContain(auditorToken);
    const json = await grantor(['audit', 'entries', '--json', '--profile', profile]);
    expect(JSON.parse(json.out)).toHaveProperty('entries');
    // A wrong token: the appliance's refusal, never the token.
    const wrong = `gto_${'x'.repeat(40)}`;
    const refused = await grantor(['audit', 'entries', '--profile', profile, '--token', wrong]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('unauthenticated');
    expect(refused.err + refused.out).not.toContain(wrong);
    // A token file others can read is refused.
    await chmod(tokenFile, 0o644);
    const open = await grantor(['audit', 'entries', '--profile', profile]);
    expect(open.code).toBe(1);
    expect(open.err).toContain('readable by others');
    expect(open.err).not.toContain(auditorToken);
  }, 120_000);
});
