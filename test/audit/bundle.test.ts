/**
 * The live evidence bundle on the real appliance (startApplianceServer over swtpm, SoftHSM2,
 * LevelDB, Cedar): a runtime is granted, denied and refused; the policy set is reloaded; an
 * auditor exports a bundle with GET /v1/audit/export while grant requests keep coming, and
 * `grantor audit verify` checks it offline against the anchor pin, the note verifier key
 * and the auditor's own nonce (NV_Certify by the appliance TPM's AK). The auditor then
 * answers "what did this runtime do" from the bundle alone. The same through the CLI over
 * the network (`grantor audit export --url`), and the route's refusals.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAnchorPin } from '../../src/audit/anchor-pin.js';
import { parseVerifierKey } from '../../src/audit/checkpoint.js';
import { verifyBundle, type BundleTrust } from '../../src/audit/verify-bundle.js';
import { bundleRecords, runtimeStory } from '../../src/audit/bundle-story.js';
import { run } from '../../src/cli/main.js';
import type { App } from '../../src/http/app.js';
import { newSessionKeyPair } from '../grants/rig.js';
import { startRealAppliance, type RealAppliance } from '../appliance/real.js';
import { attestedSupportRuntime, type SupportRuntime } from '../rig/support-runtime.js';
import { BundleInvalidError } from '../../src/audit/errors.js';

let real: RealAppliance;
let app: App;
let support: SupportRuntime;
const tokens = { operator: '', auditor: '' };
const as = (who: keyof typeof tokens) => ({ authorization: `Bearer ${tokens[who]}` });
let trust: BundleTrust;
let verifierKeyText: string;

const grant = (over?: Record<string, unknown>, key?: KeyObject) =>
  app.inject({
    method: 'POST',
    url: '/v1/grants',
    payload: support.request(over, key),
  });

beforeAll(async () => {
  real = await startRealAppliance('audit-bundle');
  app = real.server.app;
  const ops = real.server.appliance?.operators.tokens;
  if (ops === undefined) throw new Error('the appliance did not start');
  tokens.operator = (await ops.create({ role: 'operator', actor: 'olivia' })).token;
  tokens.auditor = (await ops.create({ role: 'auditor', actor: 'aude' })).token;
  support = await attestedSupportRuntime(real.rig);
  expect((await grant()).statusCode).toBe(201);
  const denied = await grant({
    action: 'payments.transfer',
    resource: 'acct:1',
    audience: 'gw_payments',
  });
  expect(denied.json<{ error: { code: string } }>().error.code).toBe('policy_denied');
  const refused = await grant({}, newSessionKeyPair().privateKey);
  expect(refused.json<{ error: { code: string } }>().error.code).toBe('request_signature_invalid');
  const reload = await app.inject({
    method: 'POST',
    url: '/v1/policy/reload',
    headers: as('operator'),
  });
  expect(reload.statusCode).toBe(200);
  expect((await grant()).statusCode).toBe(201);

  // What the auditor holds from before: the pin file and the note verifier key.
  const pin = parseAnchorPin(await readFile(real.config().audit.pinFile, 'utf8'), 'pin');
  verifierKeyText = (await app.inject({ url: '/v1/audit/verifier' })).json<{
    noteVerifierKey: string;
  }>().noteVerifierKey;
  trust = {
    verifierKey: parseVerifierKey(verifierKeyText),
    pin: { names: pin.names, genesisCounter: pin.genesisCounter, akPublic: pin.akPublic },
  };
}, 240_000);

afterAll(async () => {
  await real.close();
});

async function exportBundle(qs: string): Promise<string[]> {
  const res = await app.inject({ url: `/v1/audit/export?${qs}`, headers: as('auditor') });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
  return res.body.split('\n').filter((l) => l !== '');
}

/** POST /v1/audit/periods (operator), then one grant: the new period holds a decision. */
async function startPeriod(): Promise<void> {
  const started = await app.inject({
    method: 'POST',
    url: '/v1/audit/periods',
    headers: as('operator'),
  });
  expect(started.statusCode, started.body).toBe(201);
  expect((await grant()).statusCode).toBe(201);
}

async function problemOf(lines: readonly string[], t: BundleTrust) {
  try {
    await verifyBundle(lines, t);
    return undefined;
  } catch (e) {
    if (e instanceof BundleInvalidError) return e.problem;
    throw e;
  }
}

describe('GET /v1/audit/export on the real appliance', () => {
  let lines: string[];
  let nonce: string;

  it('streams a bundle while grants keep coming, and it verifies offline against the pin and the nonce', async () => {
    nonce = randomBytes(32).toString('hex');
    const [exported] = await Promise.all([
      exportBundle(`nonce=${nonce}`),
      ...[1, 2, 3].map(() => grant()),
    ]);
    lines = exported;
    const report = await verifyBundle(lines, { ...trust, nonce });
    expect(report.nvCertified).toBe(true);
    expect(report.nonceChecked).toBe(true);
    expect(report.entries).toBe(report.treeSize);
    // The reload activated the same files: one hash, carried once.
    expect(report.policies).toBe(1);
    expect(report.bodies).toBeGreaterThanOrEqual(3);
  });

  it('answers "what did this runtime do" from the bundle alone: allow, deny, refusal, with bodies and rules', () => {
    const mine = runtimeStory(bundleRecords(lines), support.runtime.runtimeId);
    const decisions = mine.map(({ entry }) => `${entry.type}:${entry.decision ?? ''}`);
    expect(decisions).toContain('grant.decision:allow');
    expect(decisions).toContain('grant.decision:deny');
    expect(decisions).toContain('grant.refused:request_signature_invalid');
    const deny = mine.find(({ entry }) => entry.decision === 'deny');
    // The request it was made on, and the rules that decided, are both in the bundle.
    expect(JSON.parse(deny?.body ?? '{}')).toMatchObject({ action: 'payments.transfer' });
    expect(Object.keys(deny?.policy?.policies ?? {})).toContain('payments.cedar');
  });

  it('a partial range with since verifies too', async () => {
    const size = (JSON.parse(lines[0] ?? '{}') as { treeSize: number }).treeSize;
    const batches = (await app.inject({ url: '/v1/audit/batches?from=0&limit=1000' })).json<{
      batches: { size: number }[];
    }>().batches;
    const since = batches[1]?.size ?? 1;
    const n = randomBytes(16).toString('hex');
    const part = await exportBundle(`from=2&to=${size - 1}&since=${since}&nonce=${n}`);
    const r = await verifyBundle(part, { ...trust, nonce: n });
    expect([r.from, r.to, r.since]).toEqual([2, size - 1, since]);
  });

  it('refuses the wrong nonce, an unpinned verifier, and a certification edited', async () => {
    expect(await problemOf(lines, { ...trust, nonce: 'ab'.repeat(32) })).toBe('nonce_mismatch');
    const { pin: _pin, ...unpinned } = trust;
    expect(await problemOf(lines, unpinned)).toBe('tpm_evidence_unpinned');
    const cp = JSON.parse(lines[1] ?? '{}') as { nvCertify: { signature: string }[] };
    const first = cp.nvCertify[0];
    if (first !== undefined) {
      const sig = Buffer.from(first.signature, 'base64');
      sig.writeUInt8(sig.readUInt8(sig.length - 1) ^ 1, sig.length - 1);
      first.signature = sig.toString('base64');
    }
    const edited = [...lines];
    edited[1] = JSON.stringify(cp);
    expect(await problemOf(edited, trust)).toBe('nv_certify_invalid');
    // Another appliance's pin (other genesis): the counter does not fit.
    const pin = trust.pin;
    if (pin === undefined) throw new Error('no pin');
    const other = { ...trust, pin: { ...pin, genesisCounter: pin.genesisCounter + 1n } };
    expect(await problemOf(lines, other)).toBe('anchor_mismatch');
  });

  it('refuses a bad range (422), a bad nonce (400), no credential (401), an operator (403)', async () => {
    const tooFar = await app.inject({ url: '/v1/audit/export?to=100000', headers: as('auditor') });
    expect(tooFar.statusCode).toBe(422);
    expect(tooFar.json<{ error: { code: string } }>().error.code).toBe('audit_query_invalid');
    const badNonce = await app.inject({
      url: '/v1/audit/export?nonce=xyz',
      headers: as('auditor'),
    });
    expect(badNonce.statusCode).toBe(400);
    expect((await app.inject({ url: '/v1/audit/export' })).statusCode).toBe(401);
    const operator = await app.inject({ url: '/v1/audit/export', headers: as('operator') });
    expect(operator.statusCode).toBe(403);
  });
});

describe('grantor audit export against the running appliance, then verify', () => {
  it('downloads with a progress bar, and the offline verify reports what it checked', async () => {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const file = join(real.dir, 'remote.ndjson');
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    const nonce = randomBytes(32).toString('hex');
    const code = await run(
      ['audit', 'export', file, '--url', url, '--token', tokens.auditor, '--nonce', nonce],
      io,
    );
    expect(code, err.join('\n')).toBe(0);
    expect(err.some((l) => /\[#{30}\] 100% \d+\/\d+ entries/.test(l))).toBe(true);
    expect(out.join('\n')).toMatch(/exported an evidence bundle of \d+ entries/);
    // Never overwrites evidence.
    expect(
      await run(['audit', 'export', file, '--url', url, '--token', tokens.auditor], io),
    ).not.toBe(0);

    const pinFile = real.config().audit.pinFile;
    const verified: string[] = [];
    const vio = { out: (l: string) => verified.push(l), err: (l: string) => verified.push(l) };
    const ok = await run(
      ['audit', 'verify', file, '--key', verifierKeyText, '--pin', pinFile, '--nonce', nonce],
      vio,
    );
    expect(ok, verified.join('\n')).toBe(0);
    expect(verified.join('\n')).toMatch(/^OK: evidence bundle of /m);
    expect(verified.join('\n')).toMatch(/NV_Certify by the pinned AK .*\(the one given\)/);

    // One edited request body: exit 1, naming the line.
    const text = (await readFile(file, 'utf8')).split('\n');
    const at = text.findIndex((l) => l.startsWith('{"type":"body"'));
    text[at] = (text[at] ?? '').replace('ticket:42', 'ticket:43');
    const tampered = join(real.dir, 'tampered.ndjson');
    await writeFile(tampered, text.join('\n'));
    const failed: string[] = [];
    const fio = { out: (l: string) => failed.push(l), err: (l: string) => failed.push(l) };
    expect(
      await run(['audit', 'verify', tampered, '--key', verifierKeyText, '--pin', pinFile], fio),
    ).toBe(1);
    expect(failed.join('\n')).toContain(`FAIL at line ${at + 1}:`);
    expect(failed.join('\n')).toContain('(body)');
  });
});

describe('a frozen log period exported from the real appliance', () => {
  it('carries the link to the TPM-certified current checkpoint, verifies with the pin and the nonce, and refuses an edited certification', async () => {
    const before = (await app.inject({ url: '/v1/audit/checkpoint' })).json<{
      period: number;
    }>().period;
    await startPeriod();
    const nonce = randomBytes(32).toString('hex');
    const frozen = await exportBundle(`period=${before}&nonce=${nonce}`);
    expect(JSON.parse(frozen[0] ?? '{}')).toMatchObject({ successors: 1, nonce });
    const report = await verifyBundle(frozen, { ...trust, nonce });
    expect(report).toMatchObject({ nvCertified: true, nonceChecked: true, successors: 1 });
    expect(report.entries).toBe(report.treeSize);

    // The NV_Certify of the current checkpoint, one bit changed: the chain vouches for nothing.
    const at = frozen.findIndex((l) => l.startsWith('{"type":"successor"'));
    const succ = JSON.parse(frozen[at] ?? '{}') as {
      checkpoint: { nvCertify: { signature: string }[] };
    };
    const first = succ.checkpoint.nvCertify[0];
    if (first === undefined) throw new Error('no certification');
    const sig = Buffer.from(first.signature, 'base64');
    sig.writeUInt8(sig.readUInt8(sig.length - 1) ^ 1, sig.length - 1);
    first.signature = sig.toString('base64');
    const edited = [...frozen];
    edited[at] = JSON.stringify(succ);
    expect(await problemOf(edited, { ...trust, nonce })).toBe('nv_certify_invalid');
    expect(await problemOf(frozen, { ...trust, nonce: 'ab'.repeat(32) })).toBe('nonce_mismatch');

    // A period beyond the current one: 404 before any byte.
    const beyond = await app.inject({
      url: `/v1/audit/export?period=${before + 2}`,
      headers: as('auditor'),
    });
    expect(beyond.statusCode).toBe(404);
    expect(beyond.json<{ error: { code: string } }>().error.code).toBe('audit_period_not_found');
  });
});

describe('two consecutive periods’ bundles verified across their link on the real appliance', () => {
  it('grantor audit verify A B: exit 0 for periods m and m+1, exit 1 with the code for the files swapped and an edited B', async () => {
    expect((await grant()).statusCode).toBe(201);
    const m = (await app.inject({ url: '/v1/audit/periods' })).json<{ current: number }>().current;
    await startPeriod();
    await startPeriod();
    // Both frozen now, each exported over its own nonce (verify reads it from the header).
    const files: string[] = [];
    for (const period of [m, m + 1]) {
      const lines = await exportBundle(`period=${period}&nonce=${randomBytes(32).toString('hex')}`);
      const file = join(real.dir, `period-${period}.ndjson`);
      await writeFile(file, `${lines.join('\n')}\n`);
      files.push(file);
    }
    const [a = '', b = ''] = files;
    const pinFile = real.config().audit.pinFile;
    const verify = async (...pair: string[]) => {
      const lines: string[] = [];
      const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
      const code = await run(
        ['audit', 'verify', ...pair, '--key', verifierKeyText, '--pin', pinFile],
        io,
      );
      return { code, text: lines.join('\n') };
    };

    const ok = await verify(a, b);
    expect(ok.code, ok.text).toBe(0);
    expect(ok.text).toContain(`(period ${m}) and ${b} (period ${m + 1}) are consecutive periods`);
    expect(ok.text).toMatch(/NV_Certify by the pinned AK/);
    expect(ok.text).toMatch(
      /^ {2}link: entry 0 of period \d+ \(hash [0-9a-f]{64}\) names exactly/m,
    );
    expect(ok.text).toContain(
      "tied by: the first bundle's own successor chain carries this same link",
    );

    const swapped = await verify(b, a);
    expect(swapped.code, swapped.text).toBe(1);
    expect(swapped.text).toMatch(/^FAIL across .* \(pair_order\)$/m);

    // B's link edited to name an earlier size of period m: B itself no longer verifies.
    const text = (await readFile(b, 'utf8')).split('\n');
    const at = text.findIndex((l) => l.startsWith('{"type":"link"'));
    const link = JSON.parse(text[at] ?? '{}') as { entry: { facts: { previousSize: number } } };
    link.entry.facts.previousSize -= 1;
    text[at] = JSON.stringify(link);
    const edited = join(real.dir, `period-${m + 1}-edited.ndjson`);
    await writeFile(edited, text.join('\n'));
    const refused = await verify(a, edited);
    expect(refused.code, refused.text).toBe(1);
    expect(refused.text).toContain(`FAIL in ${edited} at line ${at + 1}:`);
    expect(refused.text).toMatch(/\(link\)$/m);
  });
});

describe('retention on the real appliance', () => {
  it('retires the frozen period through the operator route: 410 for its entries, proofs still served, refusals by code', async () => {
    const periods = (await app.inject({ url: '/v1/audit/periods' })).json<{ current: number }>();
    const frozen = periods.current - 1;
    const retire = (period: number, who: keyof typeof tokens = 'operator') =>
      app.inject({
        method: 'POST',
        url: `/v1/audit/periods/${period}/retire`,
        headers: as(who),
      });
    expect((await retire(frozen, 'auditor')).statusCode).toBe(403);
    const done = await retire(frozen);
    expect(done.statusCode, done.body).toBe(200);
    const record = done.json<{ bundleDigest: string; to: number; state: string }>();
    expect(record.state).toBe('done');
    const gone = await app.inject({
      url: `/v1/audit/entries?period=${frozen}&from=1`,
      headers: as('auditor'),
    });
    expect(gone.statusCode).toBe(410);
    expect(gone.json<{ error: { code: string } }>().error.code).toBe('audit_entries_retired');
    const proof = await app.inject({
      url: `/v1/audit/proof/inclusion?period=${frozen}&seq=1&size=${record.to}`,
    });
    expect(proof.statusCode).toBe(200);
    const again = await retire(frozen);
    expect([again.statusCode, again.json<{ error: { code: string } }>().error.code]).toEqual([
      409,
      'audit_period_retired',
    ]);
    const current = await retire(periods.current);
    expect([current.statusCode, current.json<{ error: { code: string } }>().error.code]).toEqual([
      409,
      'audit_period_current',
    ]);
    const acts = await app.inject({
      url: '/v1/audit/entries?type=audit.period.retired',
      headers: as('auditor'),
    });
    expect(acts.json<{ entries: { digest: string }[] }>().entries.map((e) => e.digest)).toEqual([
      record.bundleDigest,
    ]);
  });
});
