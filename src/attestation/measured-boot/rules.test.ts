import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors.js';
import { EV } from './event-types.js';
import { parseImaAscii } from './ima.js';
import { evaluateImaRules } from './ima-rules.js';
import { parseMeasuredBootPolicy } from './policy.js';
import { evaluateBootRules } from './rules.js';
import { parseEventLog, type TcgEvent } from './tcg-log.js';
import { FIXTURES, fixture } from './testing.js';
import { parseSignatureLists, parseUefiVariable } from './uefi.js';

const events = (path: string): TcgEvent[] =>
  parseEventLog(fixture(path)).events.filter((e) => e.type !== EV.NO_ACTION);
const policy = (raw: Record<string, unknown>) =>
  parseMeasuredBootPolicy({ pcrs: { sha256: [0, 2, 4, 7, 8, 12] }, ...raw }, 'test');
const codes = (v: { code: string }[]) => v.map((x) => x.code);

describe('boot rules', () => {
  it('Secure Boot: enabled logs pass; a disabled one names the SecureBoot event', () => {
    const sb = policy({ secureBoot: true });
    expect(evaluateBootRules(sb, events('go-attestation/sb_cert_eventlog'), 'sha256')).toEqual([]);
    expect(
      evaluateBootRules(
        sb,
        events('keylime-eventlogs/binary_bios_measurements-secureboot'),
        'sha256',
      ),
    ).toEqual([]);
    const off = evaluateBootRules(
      sb,
      events('go-tpm-tools/eventlogs/ubuntu-2104-no-secure-boot.bin'),
      'sha256',
    );
    expect(off).toHaveLength(1);
    expect(off[0]?.code).toBe('secure_boot_disabled');
    expect(off[0]?.detail).toMatch(
      /^pcr=7 event=\d+ type=EV_EFI_VARIABLE_DRIVER_CONFIG sha256=[0-9a-f]{64}$/,
    );
    // Arch workstation: SecureBoot with no data (go-tpm-tools: "data len is 0, expected 1").
    expect(
      codes(
        evaluateBootRules(
          sb,
          events('go-tpm-tools/eventlogs/arch-linux-workstation.bin'),
          'sha256',
        ),
      ),
    ).toEqual(['secure_boot_disabled']);
    expect(codes(evaluateBootRules(sb, [], 'sha256'))).toEqual(['secure_boot_unmeasured']);
  });

  it('refuses to read variable data the digest does not cover', () => {
    const evs = events('go-attestation/sb_cert_eventlog').map((e) => {
      if (e.type !== EV.EFI_VARIABLE_DRIVER_CONFIG) return e;
      const v = parseUefiVariable(e.data);
      if (v.name !== 'SecureBoot') return e;
      const data = Buffer.from(e.data);
      data[data.length - 1] = 1; // claims enabled whatever was measured
      data[data.length - 1] = (e.data.at(-1) ?? 0) ^ 0xff;
      return { ...e, data };
    });
    expect(codes(evaluateBootRules(policy({ secureBoot: true }), evs, 'sha256'))).toEqual([
      'event_data_mismatch',
      'secure_boot_unmeasured',
    ]);
  });

  it('PK/KEK/db/dbx: allow, forbid and require by certificate or hash id', () => {
    const evs = events('go-attestation/sb_cert_eventlog');
    const ids: Record<string, string[]> = {};
    for (const e of evs) {
      if (e.type !== EV.EFI_VARIABLE_DRIVER_CONFIG) continue;
      const v = parseUefiVariable(e.data);
      if (['PK', 'KEK', 'db', 'dbx'].includes(v.name))
        ids[v.name.toLowerCase()] = parseSignatureLists(v.data).map((s) => s.id);
    }
    expect(ids.db?.length).toBeGreaterThan(0);
    expect(ids.dbx?.length).toBeGreaterThan(0);
    const db = ids.db ?? [];
    const all = policy({
      pk: { allow: ids.pk },
      kek: { allow: ids.kek },
      db: { allow: db },
      dbx: { require: ids.dbx },
    });
    expect(evaluateBootRules(all, evs, 'sha256')).toEqual([]);
    const strict = evaluateBootRules(
      policy({ db: { allow: db.slice(1), forbid: [] }, dbx: { require: ['ab'.repeat(32)] } }),
      evs,
      'sha256',
    );
    expect(codes(strict)).toEqual(['signature_db_entry_not_allowed', 'signature_db_entry_missing']);
    expect(strict[0]?.detail).toContain(`db=${db[0] ?? ''}`);
    const forbid = evaluateBootRules(policy({ db: { forbid: [db[0]] } }), evs, 'sha256');
    expect(codes(forbid)).toEqual(['signature_db_entry_forbidden']);
    expect(codes(evaluateBootRules(policy({ kek: { allow: [] } }), [], 'sha256'))).toEqual([
      'signature_db_unmeasured',
    ]);
  });

  it('boot applications: go-tpm-tools expected EFI app digests pass; any other is named', () => {
    const expected = JSON.parse(
      readFileSync(`${FIXTURES}go-tpm-tools/eventlogs/expected_pcrs.json`, 'utf8'),
    ) as Record<string, { expected_efi_app_digests?: { sha256: string[] } }>;
    for (const name of [
      'rhel8-uefi.bin',
      'cos-101-amd-sev.bin',
      'ubuntu-2104-no-secure-boot.bin',
    ]) {
      const allow = expected[name]?.expected_efi_app_digests?.sha256 ?? [];
      expect(allow.length).toBeGreaterThan(0);
      const evs = events(`go-tpm-tools/eventlogs/${name}`).filter(
        (e) => e.type !== EV.EFI_BOOT_SERVICES_DRIVER,
      );
      expect(evaluateBootRules(policy({ bootApplications: allow }), evs, 'sha256'), name).toEqual(
        [],
      );
      const missing = evaluateBootRules(
        policy({ bootApplications: allow.slice(1) }),
        evs,
        'sha256',
      );
      expect(codes(missing)).toEqual(['boot_application_not_allowed']);
      expect(missing[0]?.detail).toContain(
        `type=EV_EFI_BOOT_SERVICES_APPLICATION sha256=${allow[0] ?? ''}`,
      );
    }
  });

  it('kernel command line: GRUB and systemd-boot, require and forbid tokens', () => {
    const grub = events('go-tpm-tools/eventlogs/ubuntu-2104-no-secure-boot.bin');
    expect(
      evaluateBootRules(
        policy({ kernelCmdline: { require: ['ro'], forbid: ['init='] } }),
        grub,
        'sha256',
      ),
    ).toEqual([]);
    const bad = evaluateBootRules(
      policy({ kernelCmdline: { require: ['lockdown=integrity'], forbid: ['root='] } }),
      grub,
      'sha256',
    );
    expect(codes(bad)).toEqual(['kernel_cmdline_forbidden', 'kernel_cmdline_missing']);
    expect(bad[0]?.detail).toMatch(
      /^pcr=8 event=96 type=EV_IPL sha256=[0-9a-f]{64} token="root=PARTUUID=/,
    );
    const sd = events('tpm2-tools/eventlogs/event-sd-boot-fedora37.bin');
    expect(
      evaluateBootRules(policy({ kernelCmdline: { require: ['console=ttyS0'] } }), sd, 'sha256'),
    ).toEqual([]);
    // The Arch workstation's PCR 8 command line does not match its digest.
    const arch = events('go-tpm-tools/eventlogs/arch-linux-workstation.bin');
    expect(
      codes(evaluateBootRules(policy({ kernelCmdline: { forbid: ['init='] } }), arch, 'sha256')),
    ).toEqual(['event_data_mismatch', 'kernel_cmdline_unmeasured']);
  });

  it('refuses invalid policies at load', () => {
    for (const raw of [
      {},
      { pcrs: { md5: [0] } },
      { pcrs: { sha256: [24] } },
      { pcrs: { sha256: [0] }, secureBoot: 'yes' },
      { pcrs: { sha256: [0] }, db: { allow: ['xyz'] } },
      { pcrs: { sha256: [0] }, kernelCmdline: { forbid: [''] } },
      { pcrs: { sha256: [0] }, ima: { keys: ['not a key'] } },
      { pcrs: { sha256: [0] }, ima: { exclude: ['('] } },
      { pcrs: { sha256: [0] }, other: 1 },
      // A rule over events on PCRs the policy does not have quoted would pass vacuously.
      { pcrs: { sha256: [0] }, secureBoot: true },
      { pcrs: { sha256: [0, 4] }, bootApplications: [] },
      { pcrs: { sha256: [0] }, kernelCmdline: { require: ['ro'] } },
    ])
      expect(() => parseMeasuredBootPolicy(raw, 't'), JSON.stringify(raw)).toThrow(ConfigError);
  });
});

describe('IMA rules', () => {
  const sig = parseImaAscii(fixture('keylime/ima/ima-sig_measurements.txt'));
  const keys = ['rsa2048pub.pem', 'secp256k1pub.pem'].map((f) =>
    readFileSync(`${FIXTURES}keylime/ima/keys/${f}`, 'utf8'),
  );
  const keylime = (f: string) => {
    const p = JSON.parse(readFileSync(`${FIXTURES}keylime/ima/${f}`, 'utf8')) as {
      digests: Record<string, string[]>;
    };
    return p.digests;
  };
  const ima = (raw: Record<string, unknown>) => {
    const rules = policy({ ima: raw }).ima;
    if (rules === undefined) throw new Error('no rules');
    return rules;
  };

  it("keylime's runtime policy accepts its list; the wrong digests name the files", () => {
    expect(evaluateImaRules(ima({ allow: keylime('runtime_policy.json') }), sig)).toEqual([]);
    const wrong = evaluateImaRules(
      ima({ allow: keylime('runtime_policy_wrong_digests.json') }),
      sig,
    );
    expect(codes(wrong)).toEqual(Array(5).fill('ima_digest_not_allowed'));
    expect(wrong[3]?.detail).toBe(
      'pcr=10 entry=3 name="/usr/bin/dd" sha256=d33d5d13792292e202dbf69a6f1b07bc8a02f01424db8489ba7bb7d43c0290ef',
    );
  });

  it('accepts ima-sig entries signed by a listed key (RSA and ECDSA secp256k1)', () => {
    const v = evaluateImaRules(ima({ keys }), sig);
    // dd (RSA) and zmore (ECDSA) are signed; the three others are not and are not listed.
    expect(v.map((x) => x.detail.split(' ')[2])).toEqual([
      'name="boot_aggregate"',
      'name="/lib/modules/5.4.48-openpower1/kernel/drivers/usb/common/usb-common.ko"',
      'name="/lib/modules/5.4.48-openpower1/kernel/drivers/gpu/drm/drm_panel_orientation_quirks.ko"',
    ]);
    // Only the RSA key listed: zmore is not allowed.
    expect(
      evaluateImaRules(
        ima({ keys: keys.slice(0, 1), exclude: ['^boot_aggregate$', '^/lib/'] }),
        sig,
      ).map((x) => x.detail.split(' ')[2]),
    ).toEqual(['name="/usr/bin/zmore"']);
  });

  it('refuses a signature that does not verify (ima_signature_invalid)', () => {
    const tampered = sig.map((e) => {
      if (e.name !== '/usr/bin/dd' || e.signature === undefined) return e;
      const s = Buffer.from(e.signature);
      s[s.length - 1] = (s.at(-1) ?? 0) ^ 1;
      return { ...e, signature: s };
    });
    expect(
      codes(evaluateImaRules(ima({ keys, exclude: ['^boot_aggregate$', '^/lib/'] }), tampered)),
    ).toEqual(['ima_signature_invalid']);
    const wrongDigest = sig.map((e) =>
      e.name === '/usr/bin/zmore' ? { ...e, digest: Buffer.alloc(32, 1) } : e,
    );
    expect(
      codes(evaluateImaRules(ima({ keys, exclude: ['^boot_aggregate$', '^/lib/'] }), wrongDigest)),
    ).toEqual(['ima_signature_invalid']);
  });

  it('denylist, violations and excludes', () => {
    const list = parseImaAscii(fixture('keylime/ima/ascii_runtime_measurements_ima'));
    expect(codes(evaluateImaRules(ima({}), list))).toEqual(Array(9).fill('ima_violation'));
    expect(evaluateImaRules(ima({ allowViolations: true }), list)).toEqual([]);
    const sh = list.find((e) => e.name === '/bin/sh');
    const denied = evaluateImaRules(
      ima({ allowViolations: true, deny: [sh?.digest.toString('hex')] }),
      list,
    );
    expect(codes(denied)).toEqual(['ima_digest_denied']);
    expect(denied[0]?.detail).toContain(
      'name="/bin/sh" sha1=c90333979f56f38bbd41b81806015b0de502f3cc',
    );
    expect(
      evaluateImaRules(
        ima({ allowViolations: true, deny: [sh?.digest.toString('hex')], exclude: ['^/bin/'] }),
        list,
      ),
    ).toEqual([]);
  });
});
