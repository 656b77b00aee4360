/**
 * EV_EFI_VARIABLE_AUTHORITY, SbatLevel and MokList rules on real logs from
 * shared/testdata: each rule with a log it accepts and one it refuses, naming the event.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors.js';
import { EV } from './event-types.js';
import { parseMeasuredBootPolicy } from './policy.js';
import { evaluateBootRules } from './rules.js';
import { authorityId, parseSbatLevel, SHIM_LOCK_GUID } from './shim-rules.js';
import { parseEventLog, type TcgEvent } from './tcg-log.js';
import { fixture } from './testing.js';
import { parseUefiVariable } from './uefi.js';

const events = (path: string): TcgEvent[] =>
  parseEventLog(fixture(path)).events.filter((e) => e.type !== EV.NO_ACTION);
const policy = (raw: Record<string, unknown>) =>
  parseMeasuredBootPolicy({ pcrs: { sha256: [0, 2, 4, 7, 14] }, ...raw }, 'test');
const rules = (raw: Record<string, unknown>, path: string) =>
  evaluateBootRules(policy(raw), events(path), 'sha256');

const KEYLIME_SB = 'keylime-eventlogs/binary_bios_measurements-secureboot';
const RHEL8 = 'go-tpm-tools/eventlogs/rhel8-uefi.bin';
const GDC = 'go-tpm-tools/eventlogs/gdc-host.bin';

/** The ids the authority events of a log name, by variable. */
function authorities(path: string): { name: string; id: string | undefined }[] {
  return events(path)
    .filter((e) => e.type === EV.EFI_VARIABLE_AUTHORITY)
    .map((e) => parseUefiVariable(e.data))
    .filter((v) => !['SbatLevel', 'MokListTrusted'].includes(v.name))
    .map((v) => ({ name: v.name, id: authorityId(v.data) }));
}

function sha256Of(path: string, pcr: number, data: string): string {
  const e = events(path).find((x) => x.pcr === pcr && x.data.toString('latin1') === data);
  const d = e?.digests.get(0x0b);
  if (d === undefined) throw new Error('no event');
  return d.toString('hex');
}

describe('EV_EFI_VARIABLE_AUTHORITY: which entry authorised each boot component', () => {
  it('names db, vendor_db and shim built-in certificates by the SHA-256 of their DER', () => {
    const keylime = authorities(KEYLIME_SB);
    expect(keylime.map((a) => a.name)).toEqual(['db', 'vendor_db']);
    const rhel = authorities(RHEL8);
    expect(rhel.map((a) => a.name)).toEqual(['db', 'Shim']);
    for (const a of [...keylime, ...rhel]) expect(a.id).toMatch(/^[0-9a-f]{64}$/);
  });

  it('allows a log whose authorities are all listed; names the one that is not', () => {
    const ids = authorities(KEYLIME_SB).map((a) => a.id ?? '');
    expect(rules({ authority: { allow: ids } }, KEYLIME_SB)).toEqual([]);
    const [db, vendor] = ids;
    const out = rules({ authority: { allow: [db] } }, KEYLIME_SB);
    expect(out).toEqual([
      {
        code: 'boot_authority_not_allowed',
        detail: expect.stringMatching(
          new RegExp(
            `^pcr=7 event=\\d+ type=EV_EFI_VARIABLE_AUTHORITY sha256=[0-9a-f]{64} authority=vendor_db:${vendor ?? ''}$`,
          ),
        ) as unknown,
      },
    ]);
  });

  it('refuses a forbidden authority (shim vendor certificate on RHEL 8), allows it otherwise', () => {
    const shim = authorities(RHEL8).find((a) => a.name === 'Shim')?.id ?? '';
    expect(rules({ authority: { forbid: ['00'.repeat(32)] } }, RHEL8)).toEqual([]);
    const out = rules({ authority: { forbid: [shim] } }, RHEL8);
    expect(out.map((v) => v.code)).toEqual(['boot_authority_forbidden']);
    expect(out[0]?.detail).toContain(`authority=Shim:${shim}`);
  });

  it('fails closed on an authority event it cannot read (old shim: 6 bytes after the data)', () => {
    expect(
      rules({ authority: { allow: ['00'.repeat(32)] } }, 'go-attestation/sb_cert_eventlog').map(
        (v) => v.code,
      ),
    ).toContain('event_data_malformed');
  });

  it('does not read an authority event whose digest does not cover its data', () => {
    const evs = events(KEYLIME_SB).map((e) => {
      if (e.type !== EV.EFI_VARIABLE_AUTHORITY || parseUefiVariable(e.data).name !== 'db') return e;
      const data = Buffer.from(e.data);
      data[data.length - 1] = (data.at(-1) ?? 0) ^ 1;
      return { ...e, data };
    });
    const ids = authorities(KEYLIME_SB).map((a) => a.id ?? '');
    expect(
      evaluateBootRules(policy({ authority: { allow: ids } }), evs, 'sha256').map((v) => v.code),
    ).toEqual(['event_data_mismatch']);
  });
});

describe('SbatLevel (shim, PCR 7)', () => {
  it('parses the revocation levels', () => {
    expect(parseSbatLevel('sbat,1,2023012900\nshim,2\ngrub,3\ngrub.debian,4\n')).toEqual(
      new Map([
        ['sbat', 1],
        ['shim', 2],
        ['grub', 3],
        ['grub.debian', 4],
      ]),
    );
    expect(parseSbatLevel('shim,2\n')).toBeUndefined();
    expect(parseSbatLevel('sbat,x\n')).toBeUndefined();
  });

  it('allows a level at least the policy minimum; names the component below it', () => {
    expect(rules({ sbatLevel: { shim: 2, grub: 3 } }, KEYLIME_SB)).toEqual([]);
    const low = rules({ sbatLevel: { grub: 4 } }, KEYLIME_SB);
    expect(low.map((v) => v.code)).toEqual(['sbat_level_too_low']);
    expect(low[0]?.detail).toMatch(
      /^pcr=7 event=\d+ type=EV_EFI_VARIABLE_AUTHORITY sha256=[0-9a-f]{64} component=grub got=3 need=4$/,
    );
    // The original SbatLevel (2021) revokes nothing: shim generation 1 is still accepted.
    expect(rules({ sbatLevel: { shim: 2 } }, GDC)[0]?.detail).toContain(
      'component=shim got=1 need=2',
    );
  });

  it('an unmeasured SbatLevel is a reason (no shim, or a shim before SBAT)', () => {
    expect(rules({ sbatLevel: { shim: 1 } }, RHEL8)).toEqual([
      { code: 'sbat_level_unmeasured', detail: 'pcr=7 variable="SbatLevel"' },
    ]);
  });

  it('is measured under shim\u2019s GUID', () => {
    const sbat = events(GDC)
      .filter((e) => e.type === EV.EFI_VARIABLE_AUTHORITY)
      .map((e) => parseUefiVariable(e.data))
      .find((v) => v.name === 'SbatLevel');
    expect(sbat?.guid).toBe(SHIM_LOCK_GUID);
  });
});

describe('MokList, MokListX, MokListTrusted (shim, PCR 14)', () => {
  it('allows listed contents; names a variable with other contents', () => {
    const mokList = sha256Of(GDC, 14, 'MokList\0');
    const mokListX = sha256Of(GDC, 14, 'MokListX\0');
    expect(rules({ mok: { MokList: [mokList], MokListX: [mokListX] } }, GDC)).toEqual([]);
    const out = rules({ mok: { MokList: ['00'.repeat(32)] } }, GDC);
    expect(out).toEqual([
      {
        code: 'mok_variable_not_allowed',
        detail: `pcr=14 event=${String(events(GDC).find((e) => e.pcr === 14)?.index)} type=EV_IPL sha256=${mokList} variable="MokList"`,
      },
    ]);
  });

  it('an unmeasured MOK variable is a reason', () => {
    expect(rules({ mok: { MokListTrusted: ['00'.repeat(32)] } }, RHEL8)).toEqual([
      { code: 'mok_variable_unmeasured', detail: 'pcr=14 variable="MokListTrusted"' },
    ]);
  });
});

describe('policy', () => {
  it.each([
    [{ authority: { allow: [] } }, 'authority/sbatLevel needs PCR 7'],
    [{ sbatLevel: { shim: 2 } }, 'authority/sbatLevel needs PCR 7'],
    [{ mok: { MokList: [] } }, 'mok needs PCR 14'],
  ])('refuses a rule whose PCR is not replayed: %j', (raw, message) => {
    expect(() => parseMeasuredBootPolicy({ pcrs: { sha256: [0] }, ...raw }, 't')).toThrow(message);
  });

  it.each([
    { authority: { allow: ['xyz'] } },
    { authority: { trust: [] } },
    { sbatLevel: { shim: -1 } },
    { sbatLevel: { 'a b': 1 } },
    { sbatLevel: {} },
    { mok: { MokListRT: [] } },
  ])('refuses a malformed rule: %j', (raw) => {
    expect(() => policy(raw)).toThrow(ConfigError);
  });
});
