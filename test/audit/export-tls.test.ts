/**
 * `grantor audit export --url https://...` against the whole appliance over TLS (issue 16):
 * the appliance's server certificate checked against the CA given to the CLI, an auditor
 * token from a profile's token file; a CA that did not sign the server certificate is
 * refused with a clear error before any request is sent; the token is never printed. And
 * GRANTOR_AUDIT_EXPORT_MAX_ENTRIES bounds one bundle (422 audit_export_range_too_large).
 */
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import type { RunningServer } from '../../src/http/server.js';
import { startHttpsAppliance, type HttpsAppliance } from './https-appliance.js';

interface Result {
  code: number;
  out: string;
  err: string;
}

async function grantor(args: readonly string[]): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** A small bound, so that a range past it is cheap to ask for. */
const MAX_ENTRIES = 40;
const NONCE = 'aa'.repeat(32);

let https: HttpsAppliance | undefined;
let server: RunningServer | undefined;
let url: string;
let token: string;
let verifierKey: string;
let dir: string;
let pinFile: string;

beforeAll(async () => {
  https = await startHttpsAppliance('export-tls', {
    GRANTOR_AUDIT_EXPORT_MAX_ENTRIES: String(MAX_ENTRIES),
  });
  ({ server, url } = https);
  dir = https.rig.dir;
  expect(https.config.audit.exportMaxEntries).toBe(MAX_ENTRIES);
  pinFile = https.config.audit.pinFile;
  const appliance = server.appliance;
  if (appliance === undefined) throw new Error('the appliance did not start');
  token = (await appliance.operators.tokens.create({ role: 'auditor', actor: 'aude' })).token;
  verifierKey = (await appliance.audit.verifier()).noteVerifierKey;
  // A few entries (each reload is audited), fewer than the bound.
  await appliance.reloadPolicy('export-tls-test');
  await appliance.reloadPolicy('export-tls-test');
  // The auditor's profile: URL, the CA that signed the server certificate, a token file.
  await writeFile(join(dir, 'auditor.token'), `${token}\n`);
  await chmod(join(dir, 'auditor.token'), 0o600);
  await writeFile(
    join(dir, 'auditor.json'),
    JSON.stringify({
      url,
      cacert: join(https.rig.tls, 'server-ca.pem'),
      tokenFile: 'auditor.token',
    }),
  );
}, 180_000);

afterAll(async () => {
  await https?.close();
});

describe('grantor audit export over HTTPS', () => {
  it('downloads a bundle that verifies, checking the server against the CA given', async () => {
    const file = join(dir, 'tls.ndjson');
    const exported = await exportWithProfile(file, '--nonce', NONCE);
    expect(exported.code, exported.err).toBe(0);
    expect(exported.out).toMatch(/exported an evidence bundle of \d+ entries/);
    expect(`${exported.out}\n${exported.err}`).not.toContain(token);
    expect((await stat(file)).mode & 0o077).toBe(0);
    expect(await readFile(file, 'utf8')).not.toContain(token);
    const checks = ['--key', verifierKey, '--pin', pinFile, '--nonce', NONCE];
    const verified = await grantor(['audit', 'verify', file, ...checks]);
    expect(verified.code, verified.err).toBe(0);
    expect(verified.out).toMatch(/^OK: evidence bundle of /m);
  });

  it('refuses a server whose certificate the CA given did not sign, sending nothing', async () => {
    const file = join(dir, 'wrong-ca.ndjson');
    const remote = ['--url', url, '--cacert', join(dir, 'foreign', 'server-ca.pem')];
    const refused = await grantor(['audit', 'export', file, ...remote, '--token', token]);
    expect(refused.code, refused.err).toBe(1);
    expect(refused.err).toMatch(/remote_unreachable/);
    expect(refused.err).toContain("the server's certificate does not verify against the CA given");
    expect(refused.err).toContain('--cacert');
    expect(`${refused.out}\n${refused.err}`).not.toContain(token);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a range past GRANTOR_AUDIT_EXPORT_MAX_ENTRIES (422 audit_export_range_too_large)', async () => {
    const appliance = server?.appliance;
    if (appliance === undefined) throw new Error('no appliance');
    while ((await appliance.audit.checkpoint({})).treeSize <= MAX_ENTRIES) {
      await appliance.reloadPolicy('export-tls-test');
    }
    const res = await fetchExport(`/v1/audit/export?from=0&to=${MAX_ENTRIES + 1}`);
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({
      error: { code: 'audit_export_range_too_large', details: { max: MAX_ENTRIES } },
    });
    const file = join(dir, 'too-large.ndjson');
    const cli = await exportWithProfile(file, '--to', String(MAX_ENTRIES + 1));
    expect(cli.code).not.toBe(0);
    expect(cli.err).toContain('audit_export_range_too_large');
    expect(`${cli.out}\n${cli.err}`).not.toContain(token);
  });
});

/** `grantor audit export FILE` as the auditor's profile says (URL, CA, token file). */
function exportWithProfile(file: string, ...flags: string[]): Promise<Result> {
  return grantor(['audit', 'export', file, '--profile', join(dir, 'auditor.json'), ...flags]);
}

/** GET through the app itself (no TLS needed to read the error body). */
async function fetchExport(path: string): Promise<{ status: number; body: unknown }> {
  const app = server?.app;
  if (app === undefined) throw new Error('no server');
  const res = await app.inject({ url: path, headers: { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, body: res.json() };
}
