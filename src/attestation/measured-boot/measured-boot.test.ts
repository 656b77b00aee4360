/**
 * The attestation service with measured boot, against a software TPM whose PCRs are set to
 * what the firmware would have extended: the log replays to the quote, and every edit of
 * the log (event removed, reordered, digest changed, event added, wrong bank) is refused
 * with its code. IMA is replayed incrementally. (The swtpm version of this is
 * test/attestation/measured-boot.test.ts.)
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openDatabase, type Database } from '../../shared/db.level.js';
import { parseReferencePolicy } from '../reference-policy.js';
import { LevelRuntimeStore } from '../runtime-store.level.js';
import { AttestationService, type AuditSink } from '../service.js';
import { enrollRuntime, sessionKey } from '../testing/fakes.js';
import { SoftEk, SoftTpm } from '../testing/soft-tpm.js';
import { qualifyingData } from '../verify-quote.js';
import { EV } from './event-types.js';
import { parseImaAscii } from './ima.js';
import { replayEventLog } from './replay.js';
import { parseEventLog } from './tcg-log.js';
import { event2, specIdEvent, type SyntheticEvent } from './testing.js';

const audit: AuditSink = { record: () => Promise.resolve() };

const BANKS = ['sha1', 'sha256'];
const EVENTS: SyntheticEvent[] = [
  { pcr: 0, type: EV.S_CRTM_VERSION, data: Buffer.from('1.0\0', 'utf16le') },
  { pcr: 0, type: EV.EFI_PLATFORM_FIRMWARE_BLOB, data: Buffer.alloc(16, 1) },
  { pcr: 7, type: EV.EFI_VARIABLE_DRIVER_CONFIG, data: Buffer.from('SecureBoot') },
  { pcr: 4, type: EV.EFI_ACTION, data: Buffer.from('Calling EFI Application from Boot Option') },
  ...[0, 4, 7].map((pcr) => ({ pcr, type: EV.SEPARATOR, data: Buffer.alloc(4) })),
  { pcr: 4, type: EV.EFI_BOOT_SERVICES_APPLICATION, data: Buffer.from('shim') },
  { pcr: 4, type: EV.EFI_BOOT_SERVICES_APPLICATION, data: Buffer.from('grub') },
];

function logOf(events: readonly SyntheticEvent[], banks = BANKS): Buffer {
  return Buffer.concat([specIdEvent(banks), ...events.map((e) => event2(banks, e))]);
}

/** Put the replay of `log` into the soft TPM's PCRs, as firmware extending them would. */
function boot(tpm: SoftTpm, log: Buffer): void {
  for (const [bank, pcrs] of replayEventLog(parseEventLog(log)).pcrs)
    for (const [i, v] of pcrs) {
      const values = tpm.pcrs.get(bank);
      if (values !== undefined) values[i] = v;
    }
}

const IMA = [
  '10 1d8d532d463c9f8c205d0df7787669a85f93e260 ima-ng sha1:0000000000000000000000000000000000000000 boot_aggregate',
  '10 c156ebdcbfcd28fe1060ef4cdec0aab04d3a9b63 ima-ng sha1:19f13b42c2745066347e76454788c0fe083643f3 /init',
  '10 790ff4fe72889b071a0f7585112710be6d0084fe ima-ng sha1:c90333979f56f38bbd41b81806015b0de502f3cc /bin/sh',
];

function extendIma(tpm: SoftTpm, lines: readonly string[]): void {
  for (const e of parseImaAscii(lines.join('\n'))) {
    const values = tpm.pcrs.get('sha256');
    const old = values?.[10];
    if (values === undefined || old === undefined) throw new Error('no PCR');
    values[10] = createHash('sha256')
      .update(old)
      .update(createHash('sha256').update(e.hashInput).digest())
      .digest();
  }
}

let tpm: SoftTpm;
let svc: AttestationService;
let dir: string;
let db: Database;
let store: LevelRuntimeStore;
let runtimeId: string;
const sel = [{ bank: 'sha256' as const, pcrs: [0, 4, 7, 10] }];

async function attest(
  extra: Record<string, unknown>,
  options: Parameters<SoftTpm['quote']>[2] = { selection: sel },
) {
  const { nonce } = await svc.challenge(runtimeId);
  const key = sessionKey();
  const n = Buffer.from(nonce, 'base64');
  return svc.attest(runtimeId, {
    ...tpm.quote(n, qualifyingData(n, key), options),
    sessionKey: key,
    ...extra,
  });
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; details?: unknown }> {
  try {
    await p;
  } catch (e) {
    const err = e as { code: string; details?: unknown };
    return { code: err.code, details: err.details };
  }
  return { code: 'ok' };
}

const ima = (lines: readonly string[], offset = 0) => ({
  offset,
  format: 'ascii',
  log: Buffer.from(lines.join('\n')).toString('base64'),
});

const POLICY = {
  name: 'mb',
  catchAll: true,
  allowReset: true,
  measuredBoot: { pcrs: { sha256: [0, 4, 7] }, ima: {} },
};

function service(policy: Record<string, unknown> = POLICY): AttestationService {
  return new AttestationService(
    { trustedEkCas: [], referencePolicies: [parseReferencePolicy(policy, 'test')] },
    { store, audit },
  );
}

/** The appliance stops and starts again on the same LevelDB (nothing in memory survives). */
async function restart(policy?: Record<string, unknown>): Promise<void> {
  await db.close();
  db = await openDatabase(join(dir, 'db'));
  store = new LevelRuntimeStore(db);
  svc = service(policy);
}

afterEach(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  tpm = new SoftTpm('ecc');
  dir = await mkdtemp(join(tmpdir(), 'grantor-mb-svc-'));
  db = await openDatabase(join(dir, 'db'));
  store = new LevelRuntimeStore(db);
  svc = service();
  const enrolled = await enrollRuntime(svc, new SoftEk(), tpm, 'agent');
  await svc.activate(enrolled.runtimeId, { secret: enrolled.secret });
  await svc.approve(enrolled.runtimeId);
  runtimeId = enrolled.runtimeId;
  boot(tpm, logOf(EVENTS));
  extendIma(tpm, IMA);
});

describe('measured boot in the attestation service', () => {
  it('trusts a quote whose event log and IMA list replay to it', async () => {
    const res = await attest({ eventLog: logOf(EVENTS).toString('base64'), ima: ima(IMA) });
    expect(res.verdict).toBe('trusted');
    expect(res.measuredBoot).toEqual({ events: 9, imaEntries: 3 });
  });

  const swap = <T>(a: readonly T[], i: number, j: number): T[] => {
    const out = [...a];
    const x = out[i];
    const y = out[j];
    if (x === undefined || y === undefined) throw new Error('index');
    out[i] = y;
    out[j] = x;
    return out;
  };

  it.each([
    ['an event removed', logOf(EVENTS.filter((_, i) => i !== 8)), 4],
    ['events reordered', logOf(swap(EVENTS, 7, 8)), 4],
    [
      'a digest changed',
      logOf(
        EVENTS.map((e, i) =>
          i === 2 ? { ...e, digests: { sha1: Buffer.alloc(20), sha256: Buffer.alloc(32, 7) } } : e,
        ),
      ),
      7,
    ],
    [
      'an event added',
      logOf([
        ...EVENTS,
        { pcr: 4, type: EV.EFI_BOOT_SERVICES_APPLICATION, data: Buffer.from('evil') },
      ]),
      4,
    ],
    ['a PCR left out of the log', logOf(EVENTS.filter((e) => e.pcr !== 7)), 7],
    ['the wrong bank', logOf(EVENTS, ['sha1']), 0],
  ] as const)(
    'refuses the log with %s (event_log_mismatch naming the PCR)',
    async (_, log, pcr) => {
      const err = await codeOf(attest({ eventLog: log.toString('base64'), ima: ima(IMA) }));
      expect(err).toEqual({ code: 'event_log_mismatch', details: { bank: 'sha256', pcr } });
    },
  );

  it('refuses an attestation without the log the policy requires', async () => {
    expect((await codeOf(attest({ ima: ima(IMA) }))).code).toBe('event_log_required');
    expect((await codeOf(attest({ eventLog: logOf(EVENTS).toString('base64') }))).code).toBe(
      'ima_log_required',
    );
  });

  it('refuses a malformed or oversized log before verifying anything', async () => {
    expect(
      (await codeOf(attest({ eventLog: logOf(EVENTS).subarray(0, 100).toString('base64') }))).code,
    ).toBe('event_log_malformed');
    expect((await codeOf(attest({ eventLog: 'not base64!' }))).code).toBe('quote_malformed');
    expect((await codeOf(attest({ eventLog: 'AAAA'.repeat(1 << 19) }))).code).toBe(
      'event_log_too_large',
    );
    expect(
      (
        await codeOf(
          attest({
            eventLog: logOf(EVENTS).toString('base64'),
            ima: { offset: -1, format: 'ascii', log: '' },
          }),
        )
      ).code,
    ).toBe('quote_malformed');
  });

  it('replays IMA incrementally: only the entries after the last verified quote', async () => {
    const log = logOf(EVENTS).toString('base64');
    expect(
      (await attest({ eventLog: log, ima: ima(IMA.slice(0, 3)) })).measuredBoot?.imaEntries,
    ).toBe(3);
    const more = [
      '10 5426cf3031a43f5bfca183d79950698a95a728f6 ima-ng sha1:19f13b42c2745066347e76454788c0fe083643f3 /init2',
    ];
    // A new entry the kernel logged; the verifier gets only it, from offset 3.
    const line = parseImaAscii(more.join('\n'))[0];
    if (line === undefined) throw new Error('entry');
    const fixed = [
      `10 ${createHash('sha1').update(line.hashInput).digest('hex')} ima-ng sha1:19f13b42c2745066347e76454788c0fe083643f3 /init2`,
    ];
    extendIma(tpm, fixed);
    expect((await attest({ eventLog: log, ima: ima(fixed, 3) })).measuredBoot?.imaEntries).toBe(4);
    // Sending from the wrong offset: told where to start.
    expect(await codeOf(attest({ eventLog: log, ima: ima(fixed, 3) }))).toEqual({
      code: 'ima_log_offset_invalid',
      details: { expected: 4, got: 3 },
    });
    // Nothing new: an empty list from offset 4 still matches.
    expect((await attest({ eventLog: log, ima: ima([], 4) })).verdict).toBe('trusted');
  });

  it('accepts entries logged after the quote, verifying only the prefix the quote covers', async () => {
    const draft = parseImaAscii(`10 ${'00'.repeat(20)} ima-ng sha1:${'11'.repeat(20)} /late`)[0];
    if (draft === undefined) throw new Error('entry');
    const th = createHash('sha1').update(draft.hashInput).digest('hex');
    const late = `10 ${th} ima-ng sha1:${'11'.repeat(20)} /late`;
    const res = await attest({
      eventLog: logOf(EVENTS).toString('base64'),
      ima: ima([...IMA, late]),
    });
    expect(res.measuredBoot?.imaEntries).toBe(3);
  });

  it('refuses an IMA list that does not replay to the quote, or a tampered entry', async () => {
    const log = logOf(EVENTS).toString('base64');
    expect(await codeOf(attest({ eventLog: log, ima: ima(IMA.slice(0, 2)) }))).toMatchObject({
      code: 'ima_log_mismatch',
    });
    const tampered = [...IMA.slice(0, 2), IMA[2]?.replace('/bin/sh', '/bin/xx') ?? ''];
    expect(await codeOf(attest({ eventLog: log, ima: ima(tampered) }))).toMatchObject({
      code: 'ima_log_mismatch',
      details: { reason: 'template_hash', entry: 2 },
    });
  });

  it('starts IMA again at 0 after a TPM reset', async () => {
    const log = logOf(EVENTS).toString('base64');
    await attest({ eventLog: log, ima: ima(IMA) });
    tpm.resetCount += 1;
    expect(await codeOf(attest({ eventLog: log, ima: ima([], 3) }))).toEqual({
      code: 'ima_log_offset_invalid',
      details: { expected: 0, got: 3 },
    });
    expect((await attest({ eventLog: log, ima: ima(IMA) })).measuredBoot?.imaEntries).toBe(3);
  });

  it('requires the policy PCRs in the quote', async () => {
    const err = await codeOf(
      attest(
        { eventLog: logOf(EVENTS).toString('base64'), ima: ima(IMA) },
        { selection: [{ bank: 'sha256', pcrs: [0, 7, 10] }] },
      ),
    );
    expect(err.code).toBe('pcr_selection_incomplete');
  });
});

/** An ima-ng line with a correct template hash. */
function imaLine(path: string, sha1Hex: string): string {
  const draft = parseImaAscii(`10 ${'00'.repeat(20)} ima-ng sha1:${sha1Hex} ${path}`)[0];
  if (draft === undefined) throw new Error('entry');
  const th = createHash('sha1').update(draft.hashInput).digest('hex');
  return `10 ${th} ima-ng sha1:${sha1Hex} ${path}`;
}

describe('the IMA state stored with the runtime', () => {
  const log = () => logOf(EVENTS).toString('base64');
  const SH = 'c90333979f56f38bbd41b81806015b0de502f3cc'; // /bin/sh in IMA
  const denySh = { ...POLICY, measuredBoot: { ...POLICY.measuredBoot, ima: { deny: [SH] } } };

  it('survives an appliance restart: the next attestation sends only the new entries', async () => {
    expect((await attest({ eventLog: log(), ima: ima(IMA) })).measuredBoot?.imaEntries).toBe(3);
    await restart();
    const more = [imaLine('/usr/bin/new', '22'.repeat(20))];
    extendIma(tpm, more);
    const res = await attest({ eventLog: log(), ima: ima(more, 3) });
    expect(res).toMatchObject({ verdict: 'trusted', measuredBoot: { imaEntries: 4 } });
    expect((await store.get(runtimeId))?.imaState).toMatchObject({
      resetCount: tpm.resetCount,
      restartCount: tpm.restartCount,
      count: 4,
    });
  });

  it('keeps a violation found before the restart as a reason after it', async () => {
    await restart(denySh);
    const reason = `ima_digest_denied pcr=10 entry=2 name="/bin/sh" sha1=${SH}`;
    expect(await attest({ eventLog: log(), ima: ima(IMA) })).toMatchObject({
      verdict: 'untrusted',
      reasons: [expect.stringMatching(/^ima_digest_denied pcr=10 entry=2 name="\/bin\/sh"/)],
    });
    await restart(denySh);
    const again = await attest({ eventLog: log(), ima: ima([], 3) });
    expect(again.verdict).toBe('untrusted');
    expect(again.reasons[0]?.startsWith(reason.slice(0, 40))).toBe(true);
  });

  it.each([
    ['absent (a record from before, or lost)', null],
    ['unreadable (a value of the wrong length)', { pcrs: { sha256: { 10: 'abcd' } } }],
    ['unreadable (a bank the verifier does not know)', { pcrs: { md5: {} } }],
    ['unreadable (a count that is not a count)', { count: -1 }],
  ])('a state %s starts again at 0 and verifies every entry again', async (_, edit) => {
    await attest({ eventLog: log(), ima: ima(IMA) });
    const record = await store.get(runtimeId);
    if (record?.imaState === undefined || record.imaState === null) throw new Error('no state');
    await store.update({
      ...record,
      imaState: edit === null ? null : { ...record.imaState, ...edit },
    });
    await restart();
    expect(await codeOf(attest({ eventLog: log(), ima: ima([], 3) }))).toEqual({
      code: 'ima_log_offset_invalid',
      details: { expected: 0, got: 3 },
    });
    expect((await attest({ eventLog: log(), ima: ima(IMA) })).measuredBoot?.imaEntries).toBe(3);
  });

  it('starts again at 0 after a TPM restart, and under other IMA rules', async () => {
    await attest({ eventLog: log(), ima: ima(IMA) });
    tpm.restartCount += 1;
    expect(await codeOf(attest({ eventLog: log(), ima: ima([], 3) }))).toMatchObject({
      code: 'ima_log_offset_invalid',
      details: { expected: 0 },
    });
    await attest({ eventLog: log(), ima: ima(IMA) });
    // The operator now denies a file the runtime measured before: every entry is judged again.
    await restart(denySh);
    expect(await codeOf(attest({ eventLog: log(), ima: ima([], 3) }))).toMatchObject({
      code: 'ima_log_offset_invalid',
      details: { expected: 0 },
    });
    expect((await attest({ eventLog: log(), ima: ima(IMA) })).verdict).toBe('untrusted');
  });

  it('is written only by a verified quote whose IMA entries replayed to it', async () => {
    await attest({ eventLog: log(), ima: ima(IMA) });
    const before = (await store.get(runtimeId))?.imaState;
    const more = [imaLine('/usr/bin/other', '33'.repeat(20))];
    extendIma(tpm, more);
    // An entry the TPM never measured in place of the one it did: refused, the state stays.
    const other = [imaLine('/usr/bin/listed', '44'.repeat(20))];
    expect(await codeOf(attest({ eventLog: log(), ima: ima(other, 3) }))).toMatchObject({
      code: 'ima_log_mismatch',
    });
    expect((await store.get(runtimeId))?.imaState).toEqual(before);
    // A quote that is not the runtime's AK's: refused before anything is replayed.
    const { nonce } = await svc.challenge(runtimeId);
    const key = sessionKey();
    const n = Buffer.from(nonce, 'base64');
    const forged = { ...tpm.quote(n, qualifyingData(n, key), { selection: sel }) };
    forged.signature = new SoftTpm('ecc').quote(n, qualifyingData(n, key), {
      selection: sel,
    }).signature;
    expect(
      await codeOf(
        svc.attest(runtimeId, { ...forged, sessionKey: key, eventLog: log(), ima: ima(more, 3) }),
      ),
    ).toMatchObject({ code: 'quote_signature_invalid' });
    expect((await store.get(runtimeId))?.imaState).toEqual(before);
  });

  it('stays where it was when its write fails after the verdict: no session, nothing skipped', async () => {
    const { attestationId } = await attest({ eventLog: log(), ima: ima(IMA) });
    const before = (await store.get(runtimeId))?.imaState;
    const more = [imaLine('/usr/bin/new', '22'.repeat(20))];
    extendIma(tpm, more);
    vi.spyOn(store, 'update').mockRejectedValueOnce(new Error('disk full'));
    await expect(attest({ eventLog: log(), ima: ima(more, 3) })).rejects.toThrow('disk full');
    expect((await store.get(runtimeId))?.imaState).toEqual(before);
    // The failed attestation opened no session, and the one before it ended.
    expect(svc.sessionFor(attestationId)).toBeUndefined();
    // The runtime was not told the entries were verified: it sends them again, from 3.
    expect(await codeOf(attest({ eventLog: log(), ima: ima([], 4) }))).toMatchObject({
      code: 'ima_log_offset_invalid',
      details: { expected: 3, got: 4 },
    });
    const res = await attest({ eventLog: log(), ima: ima(more, 3) });
    expect(res).toMatchObject({ verdict: 'trusted', measuredBoot: { imaEntries: 4 } });
  });

  it('is dropped when the runtime is revoked', async () => {
    await attest({ eventLog: log(), ima: ima(IMA) });
    await svc.revoke(runtimeId);
    expect((await store.get(runtimeId))?.imaState).toBeNull();
  });
});

describe('quote mode (a grant request carrying a fresh quote)', () => {
  const log = () => logOf(EVENTS).toString('base64');
  const qd = createHash('sha256').update('the grant request').digest();

  async function quoted(extra: Record<string, unknown>) {
    const { nonce } = await svc.challenge(runtimeId);
    const n = Buffer.from(nonce, 'base64');
    return svc.proveQuote(
      runtimeId,
      { ...tpm.quote(n, qualifyingData(n, qd), { selection: sel }), ...extra },
      qualifyingData(n, qd),
    );
  }

  it('replays the event log and the IMA entries since the last attestation', async () => {
    expect((await attest({ eventLog: log(), ima: ima(IMA) })).verdict).toBe('trusted');
    const more = [imaLine('/usr/bin/new', '22'.repeat(20))];
    extendIma(tpm, more);
    const verified = await quoted({ eventLog: log(), ima: ima(more, 3) });
    expect(verified.runtimeId).toBe(runtimeId);
    // The stored state stays where the last attestation left it (the grant answer cannot
    // tell the attester where the verified entries end).
    expect((await store.get(runtimeId))?.imaState?.count).toBe(3);
  });

  it.each([
    ['an event removed', logOf(EVENTS.filter((_, i) => i !== 8)), 4],
    ['the wrong bank', logOf(EVENTS, ['sha1']), 0],
  ] as const)('refuses a log with %s: event_log_mismatch naming the PCR', async (_, bad, pcr) => {
    const { attestationId } = await attest({ eventLog: log(), ima: ima(IMA) });
    expect(svc.sessionFor(attestationId)).toBeDefined();
    expect(await codeOf(quoted({ eventLog: bad.toString('base64'), ima: ima([], 3) }))).toEqual({
      code: 'event_log_mismatch',
      details: { bank: 'sha256', pcr },
    });
    // The quote was authentic: the runtime's attested session ends.
    expect(svc.sessionFor(attestationId)).toBeUndefined();
  });

  it('refuses a quote without the logs the policy requires', async () => {
    expect((await codeOf(quoted({ ima: ima(IMA) }))).code).toBe('event_log_required');
    expect((await codeOf(quoted({ eventLog: log() }))).code).toBe('ima_log_required');
  });

  it('applies the same policy rules: a denied file is measured_boot_violation naming it', async () => {
    await restart({
      ...POLICY,
      measuredBoot: { ...POLICY.measuredBoot, ima: { deny: ['22'.repeat(20)] } },
    });
    expect((await attest({ eventLog: log(), ima: ima(IMA) })).verdict).toBe('trusted');
    const more = [imaLine('/usr/bin/new', '22'.repeat(20))];
    extendIma(tpm, more);
    expect(await codeOf(quoted({ eventLog: log(), ima: ima(more, 3) }))).toEqual({
      code: 'measured_boot_violation',
      details: {
        reasons: [`ima_digest_denied pcr=10 entry=3 name="/usr/bin/new" sha1=${'22'.repeat(20)}`],
      },
    });
    const record = await store.get(runtimeId);
    expect(record?.lastAttestation).toMatchObject({
      verdict: 'untrusted',
      reasons: [expect.stringMatching(/^ima_digest_denied /)],
    });
  });
});
