/**
 * The demo driver (examples/demo/demo.ts, what ./scripts/demo runs) end to end on the real
 * parts: the appliance in process (listening on a loopback port, as the driver talks HTTP)
 * over an swtpm and its own SoftHSM2 token, and two runtime swtpms freshly provisioned by
 * scripts/sim/provision-tpm from one EK CA, which the appliance trusts. Every step's line
 * and outcome is asserted, and a run against an appliance that does not answer fails.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main as attestCli } from '../../attester/cli.js';
import { MeasuredRuntime } from '../../examples/demo/boot.js';
import { runDemo } from '../../examples/demo/demo.js';
import { provisionAppliance } from '../../src/appliance.js';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import { freePortPair, provisionSimHsm, repoRoot, startSimTpm, type SimTpm } from '../rig/sim.js';

const run = promisify(execFile);
const sim = (script: string): string => join(repoRoot, 'scripts/sim', script);

let dir = '';
let applianceTpm: SimTpm | undefined;
let server: RunningServer | undefined;
let url: string;
let auditorToken: string;
let operatorToken: string;
let pinFile: string;
const runtimeDirs: string[] = [];
const tctis: string[] = [];

/** A runtime swtpm with an EK of its own; `caFrom` makes its EK CA the same as another's. */
async function runtimeTpm(name: string, caFrom?: string): Promise<string> {
  const tpmDir = join(dir, name);
  await mkdir(join(tpmDir, 'ca'), { recursive: true });
  if (caFrom !== undefined) {
    for (const f of ['signkey.pem', 'issuercert.pem', 'swtpm-localca-rootca-cert.pem'])
      await cp(join(caFrom, 'ca', f), join(tpmDir, 'ca', f));
  }
  await run(sim('provision-tpm'), [tpmDir]);
  runtimeDirs.push(tpmDir);
  const port = await freePortPair();
  const tcti = (await run(sim('start-tpm'), [tpmDir, String(port)])).stdout.trim();
  tctis.push(tcti);
  return tpmDir;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-demo-'));
  const payments = await runtimeTpm('runtime-tpm');
  await runtimeTpm('support-tpm', payments);
  applianceTpm = await startSimTpm();
  // A token of this file's own (this process has not initialised the module yet).
  const hsm = await provisionSimHsm(join(dir, 'hsm'), 'grantor-demo-test');
  // The operators' enrollment rules, as ./scripts/demo writes them: each runtime TPM's EKs
  // by fingerprint (tpm2-tools and openssl), with its team.
  const fingerprints = async (tcti: string): Promise<string[]> =>
    (await run(sim('ek-fingerprint'), [tcti])).stdout.trim().split('\n');
  const rule = async (name: string, tcti: string, team: string) => ({
    name,
    match: { ekPublicKeySha256: await fingerprints(tcti) },
    labels: { team, boot: 'measured' },
    state: 'active',
  });
  await writeFile(
    join(dir, 'enrollment-rules.json'),
    JSON.stringify({
      version: 1,
      rules: [
        await rule('payments-fleet', tctis[0] ?? '', 'payments'),
        await rule('support-fleet', tctis[1] ?? '', 'support'),
      ],
    }),
  );
  process.env.SOFTHSM2_CONF = hsm.conf;
  const config: AppConfig = loadConfig(
    {
      GRANTOR_APPLIANCE_ID: 'grantor-demo-test',
      GRANTOR_TPM_TCTI: applianceTpm.tcti,
      GRANTOR_PKCS11_MODULE: hsm.module,
      GRANTOR_HSM_TOKEN_LABEL: hsm.tokenLabel,
      GRANTOR_HSM_PIN_FILE: hsm.pinFile,
      GRANTOR_STATE_DIR: join(dir, 'appliance'),
      GRANTOR_EK_CA_BUNDLE: [
        join(payments, 'ca/issuercert.pem'),
        join(payments, 'ca/swtpm-localca-rootca-cert.pem'),
      ].join(','),
      GRANTOR_ENROLLMENT_RULES: join(dir, 'enrollment-rules.json'),
      GRANTOR_POLICY_WATCH: 'false',
      GRANTOR_LOG_LEVEL: 'warn',
      // As ./scripts/demo passes it for its swtpm.
      GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS: '0',
      // As ./scripts/demo passes it: no reference policy is active by default.
      GRANTOR_REFERENCE_POLICIES:
        'reference-policies/swtpm-dev.json,reference-policies/swtpm-demo-measured.json',
    },
    repoRoot,
  );
  pinFile = config.audit.pinFile;
  const t = await openTpm(config.tpm);
  try {
    await provisionAppliance(config, t);
  } finally {
    await t.close();
  }
  const started = await startApplianceServer(config);
  server = started;
  const appliance = started.appliance;
  if (appliance === undefined) throw new Error('the appliance started degraded');
  const token = async (role: 'auditor' | 'operator', actor: string) =>
    (await appliance.operators.tokens.create({ role, actor, ttlSeconds: 3600 })).token;
  auditorToken = await token('auditor', 'demo');
  operatorToken = await token('operator', 'demo-operator');
  await started.app.listen({ host: '127.0.0.1', port: 0 });
  const address = started.app.server.address() as AddressInfo;
  url = `http://127.0.0.1:${address.port}`;
}, 120_000);

afterAll(async () => {
  await server?.close();
  for (const d of runtimeDirs) await run(sim('stop-tpm'), [d]).catch(() => undefined);
  await applianceTpm?.destroy();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('./scripts/demo, the driver', () => {
  it('runs the whole story: every step ok, one line each, nginx, the offline revoke, the auditor', async () => {
    const lines: string[] = [];
    const exportFile = join(dir, 'audit-bundle.ndjson');
    const result = await runDemo({
      url,
      paymentsTcti: tctis[0] ?? '',
      supportTcti: tctis[1] ?? '',
      auditor: { token: auditorToken },
      operator: { token: operatorToken },
      exportFile,
      pinFile,
      nginxDir: join(dir, 'nginx'),
      runId: 't1',
      print: (line) => lines.push(line),
    });
    const expected: RegExp[] = [
      /^ok {3}appliance grantor "grantor-demo-test" is ready/,
      /^ok {3}enroll {4}support-agent-t1 enrolled .*\(requesting team=support\).*: rt_\S+ is active$/,
      /^ok {3}identity {2}the operators' enrollment rule assigned it team=support \(rule:support-fleet\)/,
      /^ok {3}enroll {4}payments-agent-t1 enrolled .*\(requesting team=payments\).*: rt_\S+ is active$/,
      /^ok {3}identity {2}the operators' enrollment rule assigned it team=payments \(rule:payments-fleet\)/,
      /^ok {3}boot {6}support-agent-t1's firmware measured .* PCRs 2, 4, 8 \(event log: 6 events\) and IMA 2 files into PCR 10$/,
      /^ok {3}boot {6}payments-agent-t1's firmware measured /,
      /^ok {3}attest {4}support-agent-t1 quoted PCRs 0,2,4,7,8,10 .*event log \(6 events replayed\) and IMA list \(2 entries\): trusted, session at_/,
      /^ok {3}attest {4}payments-agent-t1 quoted .*: trusted, session at_/,
      /^ok {3}gateway {3}an operator enrolled the example gateway for gw_\S+: gw_[0-9a-f]{16} \(audited gateway\.enrolled\)/,
      /^ok {3}grant {5}tickets\.read on ticket:T-42, session mode .*: ALLOWED, grant gr_/,
      /^ok {3}execute {3}gateway verified the grant offline and the runtime's proof of possession, .* read T-42: "Refund for order 1881"$/,
      /^ok {3}replay {4}.*gateway refused, 409 grant_already_redeemed$/,
      /^ok {3}grant {5}payments\.transfer .* session mode: DENIED \(403 policy_denied: "moving money needs a fresh quote"\)$/,
      /^ok {3}grant {5}payments\.transfer .* quote mode .*: ALLOWED, grant gr_/,
      /^ok {3}execute {3}gateway verified and redeemed the grant, moved the money once: tr_1 executed \(1 transfer in total\)$/,
      /^ok {3}replay {4}.*gateway refused, 409 grant_already_redeemed$/,
      /^ok {3}grant {5}payments\.notify as a child of gr_\S+ \(lineage depth 1\): ALLOWED, grant gr_/,
      /^ok {3}execute {3}gateway SDK verified and redeemed the child grant \(root gr_\S+, depth 1\)/,
      /^ok {3}replay {4}the child grant again: gateway SDK refused, grant_already_redeemed$/,
      // A transfer through the real nginx, its outcome in the lineage.
      /^ok {3}nginx {5}\S*nginx at http:\/\/127\.0\.0\.1:\d+ \(its own configuration in \S+\) in front of grantor-gateway \(proxy mode/,
      /^ok {3}grant {5}payments\.transfer 12\.00 EUR to acct:5555, quote mode: ALLOWED, grant gr_/,
      /^ok {3}execute {3}through nginx: .* the bank moved the money: bank_1 \(1 transfer\)$/,
      /^ok {3}outcome {3}GET \/v1\/grants\/gr_\S+\/lineage: redeemed by gw_[0-9a-f]{16}, outcome succeeded/,
      /^ok {3}replay {4}the same grant again through nginx: refused, 409 grant_already_redeemed; the bank moved 1 transfer in all$/,
      // The offline gateway refuses the revoked runtime's grant within its bound.
      /^ok {3}offline {3}an offline gateway \(no redeem call; revocation feed at seq \d+, bound 60 s\) verified grant gr_/,
      /^ok {3}revoke {4}an operator revoked payments-agent-t1 \(rt_\S+\)/,
      /^ok {3}refused {3}the same grant at the offline gateway: REFUSED 403 grant_(runtime_)?revoked, \d+\.\d\d s after the revoke \(bound 60 s\)$/,
      /^ok {3}refusal {3}payments-agent-t1, revoked, asks for another transfer: REFUSED \(4\d\d [a-z_]+\), audited grant\.refused$/,
      /^ok {3}tamper {4}support-agent-t1 sent an event log with the kernel's digest edited: REFUSED \(422 event_log_mismatch, sha256 PCR 4\)/,
      /^ok {3}ima {7}support-agent-t1's kernel measured \/tmp\/dropper .* UNTRUSTED: ima_digest_not_allowed pcr=10 entry=2 name="\/tmp\/dropper" sha256=[0-9a-f]{64}$/,
      // The auditor: a bundle exported while serving, verified offline, the question answered.
      /^ok {3}export {4}grantor audit export --url http:\/\/127\.0\.0\.1:\d+ \(auditor, .*\): exported an evidence bundle of \d+ entries/,
      /^ok {3}verify {4}grantor audit verify, offline \(verifier key, anchor pin and the nonce\): OK: evidence bundle of /,
      /^ok {3}auditor {3}what did payments-agent-t1 \(rt_\S+\) do\? From the bundle alone: \d+ entries \(.*grant\.decision.*\)$/,
      /^ok {3}allow {5}#\d+ grant\.decision allow payments\.transfer on acct:1234, under policy set \S+ \(.*payments\.cedar.*\), its request body in the bundle$/,
      /^ok {3}deny {6}#\d+ grant\.decision deny payments\.transfer on acct:1234, under policy set .*, its request body in the bundle$/,
      /^ok {3}refusal {3}#\d+ grant\.refused [a-z_]+, its request body in the bundle$/,
      /^the story ran/,
    ];
    expect(lines.length, lines.join('\n')).toBe(expected.length);
    expected.forEach((re, i) => {
      expect(lines[i]).toMatch(re);
    });
    expect(result.ok).toBe(true);
    expect(result.steps.every((s) => s.ok)).toBe(true);

    // The bundle on disk, read independently of the demo: every decision of the story, the
    // deny's reason, both outcomes of the example gateway and the one reported through nginx.
    const records = (await readFile(exportFile, 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map(
        (l) =>
          JSON.parse(l) as {
            type: string;
            entry?: { type: string; decision?: string; reasons?: string[] };
          },
      );
    const entries = records.flatMap((r) => (r.entry === undefined ? [] : [r.entry]));
    const decisions = entries.filter((e) => e.type === 'grant.decision');
    expect(decisions.map((e) => e.decision)).toEqual([
      'allow',
      'deny',
      'allow',
      'allow',
      'allow',
      'allow',
    ]);
    expect(decisions[1]?.reasons).toContain('moving money needs a fresh quote');
    expect(entries.filter((e) => e.type === 'grant.redeem')).toHaveLength(4);
    expect(entries.filter((e) => e.type === 'grant.outcome').map((e) => e.decision)).toEqual([
      'succeeded',
      'succeeded',
      'succeeded',
    ]);
    expect(entries.filter((e) => e.type === 'gateway.enrolled')).toHaveLength(1);
    // nginx ran from the demo's folder, with its own configuration.
    expect(await readFile(join(dir, 'nginx/nginx.conf'), 'utf8')).toContain(
      'proxy_pass http://127.0.0.1:',
    );
  });

  it('stops at the first step that goes wrong and says so (no appliance at the URL)', async () => {
    const lines: string[] = [];
    const result = await runDemo({
      url: `http://127.0.0.1:${await freePortPair()}`, // nothing listens there
      paymentsTcti: tctis[0] ?? '',
      supportTcti: tctis[1] ?? '',
      print: (line) => lines.push(line),
    });
    expect(result.ok).toBe(false);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^FAIL appliance /);
  });
});

describe('grantor-attest grant (the attester CLI against the same appliance)', () => {
  it('enrolls, then obtains grants in session mode and in quote mode', async () => {
    const tpmDir = await runtimeTpm('cli-tpm', runtimeDirs[0]);
    const tcti = tctis[tctis.length - 1] ?? '';
    const state = join(tpmDir, 'attester.json');
    const printed: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      printed.push(String(chunk));
      return true;
    });
    const base = ['--url', url, '--tcti', tcti, '--state', state];
    const ask = [
      '--action',
      'tickets.read',
      '--resource',
      'ticket:T-7',
      '--parameters-digest',
      'ab'.repeat(32),
      '--audience',
      'gw_cli',
    ];
    try {
      expect(
        await attestCli([
          'enroll',
          ...base,
          '--name',
          `cli-${randomBytes(3).toString('hex')}`,
          '--label',
          'team=support',
        ]),
      ).toBe(0);
      // No enrollment rule knows this TPM: it waits, with no labels, until an operator
      // approves it and assigns what it asked for.
      const { runtimeId } = JSON.parse(await readFile(state, 'utf8')) as { runtimeId: string };
      const attestation = server?.appliance?.attestation;
      if (attestation === undefined) throw new Error('no appliance');
      expect((await attestation.getRuntime(runtimeId)).state).toBe('pending_approval');
      await attestation.approve(runtimeId);
      await attestation.assignLabels(
        runtimeId,
        { team: 'support' },
        { id: 'op_t', role: 'operator' },
      );
      expect(await attestCli(['grant', ...base, ...ask])).toBe(0);
      expect(await attestCli(['grant', ...base, ...ask, '--quote'])).toBe(0);
      // Measured boot from the command line: the TPM boots (examples/demo/boot.ts), the
      // operator moves it to the measured policy, and the logs go with both quotes.
      const t = await openTpm({ tcti });
      let booted: MeasuredRuntime;
      try {
        booted = await MeasuredRuntime.boot(t);
      } finally {
        await t.close();
      }
      const logFile = join(tpmDir, 'binary_bios_measurements');
      const imaFile = join(tpmDir, 'ascii_runtime_measurements');
      await writeFile(logFile, booted.log);
      await writeFile(imaFile, (await booted.source().imaAscii?.()) ?? '');
      await attestation.assignLabels(
        runtimeId,
        { team: 'support', boot: 'measured' },
        { id: 'op_t', role: 'operator' },
      );
      const measured = ['--pcrs', 'sha256:0,2,4,7,8,10'];
      await expect(attestCli(['attest', ...base, ...measured])).rejects.toMatchObject({
        code: 'event_log_required',
      });
      const files = ['--event-log', logFile, '--ima', imaFile];
      expect(await attestCli(['grant', ...base, ...ask, '--quote', ...measured, ...files])).toBe(0);
      // Missing flags are refused before any TPM or HTTP work.
      await expect(attestCli(['grant', ...base, '--action', 'tickets.read'])).rejects.toThrow(
        /required/,
      );
    } finally {
      spy.mockRestore();
    }
    const grants = printed
      .map((line) => JSON.parse(line) as { grant?: string })
      .filter((o) => o.grant !== undefined);
    expect(grants).toHaveLength(3);
    for (const g of grants) {
      const payload = JSON.parse(
        Buffer.from(g.grant?.split('.')[1] ?? '', 'base64url').toString('utf8'),
      ) as { aud: string; act: { action: string; resource: string } };
      expect(payload.aud).toBe('gw_cli');
      expect(payload.act).toMatchObject({ action: 'tickets.read', resource: 'ticket:T-7' });
    }
  });
});
