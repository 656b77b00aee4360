import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseReferencePolicy } from '../reference-policy.js';
import { EV } from './event-types.js';
import { parseImaAscii } from './ima.js';
import { evaluateImaRules } from './ima-rules.js';
import { learnReferencePolicy } from './learn.js';
import { runReferencePoliciesCli } from './learn-cli.js';
import { evaluateBootRules } from './rules.js';
import { parseEventLog } from './tcg-log.js';
import { FIXTURES, fixture } from './testing.js';

const LOGS = [
  'go-attestation/sb_cert_eventlog',
  'go-tpm-tools/eventlogs/ubuntu-2104-no-secure-boot.bin',
  'go-tpm-tools/eventlogs/cos-101-amd-sev.bin',
  'keylime-eventlogs/binary_bios_measurements-secureboot',
];

describe('learning a reference policy from a known-good machine', () => {
  it.each(LOGS)('%s: the learned policy accepts the machine it was learned from', (path) => {
    const log = parseEventLog(fixture(path));
    const { policy } = learnReferencePolicy(log, undefined, { name: 'golden' });
    const mb = policy.measuredBoot;
    if (mb === undefined) throw new Error('no measuredBoot');
    expect(mb.pcrs.get('sha256')?.length).toBeGreaterThan(0);
    const events = log.events.filter((e) => e.type !== EV.NO_ACTION);
    expect(evaluateBootRules(mb, events, 'sha256')).toEqual([]);
  });

  it('learns Secure Boot, the boot applications and the command line; another machine fails them', () => {
    const sb = learnReferencePolicy(
      parseEventLog(fixture('go-attestation/sb_cert_eventlog')),
      undefined,
      { name: 'sb' },
    );
    expect(sb.policy.measuredBoot?.secureBoot).toBe(true);
    expect(sb.policy.measuredBoot?.signatureDbs.get('dbx')?.require.size).toBeGreaterThan(0);
    const ubuntu = learnReferencePolicy(
      parseEventLog(fixture('go-tpm-tools/eventlogs/ubuntu-2104-no-secure-boot.bin')),
      undefined,
      { name: 'u' },
    );
    const cmd = (ubuntu.json.measuredBoot as { kernelCmdline: { require: string[] } }).kernelCmdline
      .require;
    expect(cmd).toContain('ro');
    expect(cmd.some((t) => t.startsWith('/boot/'))).toBe(false);
    const mb = ubuntu.policy.measuredBoot;
    if (mb === undefined) throw new Error('no measuredBoot');
    const cos = parseEventLog(fixture('go-tpm-tools/eventlogs/cos-101-amd-sev.bin')).events;
    const codes = new Set(evaluateBootRules(mb, cos, 'sha256').map((v) => v.code));
    expect(codes.has('boot_application_not_allowed')).toBe(true);
    expect(codes.has('kernel_cmdline_missing')).toBe(true);
  });

  it('learns every IMA file digest; a new file is then named', () => {
    const entries = parseImaAscii(fixture('keylime/ima/ascii_runtime_measurements_ima-ng'));
    const log = parseEventLog(fixture('go-attestation/sb_cert_eventlog'));
    const { policy } = learnReferencePolicy(log, entries.slice(0, 800), { name: 'ima' });
    const rules = policy.measuredBoot?.ima;
    if (rules === undefined) throw new Error('no ima');
    expect(evaluateImaRules(rules, entries.slice(0, 800))).toEqual([]);
    const later = evaluateImaRules(rules, entries.slice(800));
    expect(later.length).toBeGreaterThan(0);
    expect(later.every((v) => v.code === 'ima_digest_not_allowed')).toBe(true);
  });

  it('CLI: writes a policy that loads, and refuses bad arguments', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-learn-'));
    const io = { out: () => undefined, err: () => undefined };
    try {
      const out = join(dir, 'golden.json');
      expect(
        await runReferencePoliciesCli(
          [
            'learn',
            '--event-log',
            `${FIXTURES}go-attestation/sb_cert_eventlog`,
            '--ima',
            `${FIXTURES}keylime/ima/ima-sig_measurements.txt`,
            '--name',
            'golden',
            '--selector',
            'platform=gce',
            '--out',
            out,
          ],
          io,
        ),
      ).toBe(0);
      const policy = parseReferencePolicy(JSON.parse(await readFile(out, 'utf8')), out);
      expect(policy.selector).toEqual({ platform: 'gce' });
      expect(policy.measuredBoot?.ima?.allow.get('/usr/bin/dd')?.size).toBe(1);
      expect(await runReferencePoliciesCli(['learn', '--name', 'x'], io)).toBe(2);
      expect(await runReferencePoliciesCli(['forget'], io)).toBe(2);
      expect(
        await runReferencePoliciesCli(
          ['learn', '--event-log', out, '--name', 'x', '--selector', 'bad'],
          io,
        ),
      ).toBe(2);
      await expect(
        runReferencePoliciesCli(['learn', '--event-log', out, '--name', 'x'], io),
      ).rejects.toMatchObject({ code: 'event_log_malformed' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('learning the shim and authority rules', () => {
  it('learns the authorities, the SbatLevel and the MOK variables; another machine is named', () => {
    const learned = learnReferencePolicy(
      parseEventLog(fixture('keylime-eventlogs/binary_bios_measurements-secureboot')),
      undefined,
      { name: 'k' },
    );
    const mb = learned.policy.measuredBoot;
    if (mb === undefined) throw new Error('no measuredBoot');
    expect(mb.authority?.allow?.size).toBe(2);
    expect(mb.sbatLevel).toEqual(
      new Map([
        ['sbat', 1],
        ['shim', 2],
        ['grub', 3],
        ['grub.debian', 4],
      ]),
    );
    expect([...(mb.mok?.keys() ?? [])]).toEqual(['MokList', 'MokListX', 'MokListTrusted']);
    expect(mb.pcrs.get('sha256')).toContain(14);
    const other = parseEventLog(fixture('go-tpm-tools/eventlogs/cos-101-amd-sev.bin')).events;
    const codes = new Set(evaluateBootRules(mb, other, 'sha256').map((v) => v.code));
    expect(codes).toContain('boot_authority_not_allowed');
    expect(codes).toContain('sbat_level_too_low');
    expect(codes).toContain('mok_variable_not_allowed');
    // A log whose authority events cannot all be read (old shim) learns no authority rule.
    const old = learnReferencePolicy(
      parseEventLog(fixture('go-attestation/sb_cert_eventlog')),
      undefined,
      { name: 'o' },
    );
    expect(old.policy.measuredBoot?.authority).toBeUndefined();
  });
});
