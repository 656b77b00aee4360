import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GrantorError } from '../../shared/errors.js';
import { parseImaAscii } from './ima.js';
import { EMPTY_IMA_STATE, replayIma } from './ima-replay.js';
import { verifyMeasuredBoot } from './verify.js';
import { DEFAULT_MEASURED_BOOT_LIMITS, MeasuredBoot } from './measured-boot.js';
import { parseMeasuredBootPolicy } from './policy.js';
import { EV } from './event-types.js';
import { replayEventLog } from './replay.js';
import { parseEventLog } from './tcg-log.js';
import { syntheticLog } from './testing.js';

function imaLines(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const digest = createHash('sha256').update(`f${i}`).digest('hex');
    const draft = parseImaAscii(`10 ${'00'.repeat(20)} ima-ng sha256:${digest} /f${i}`)[0];
    if (draft === undefined) throw new Error('entry');
    out.push(
      `10 ${createHash('sha1').update(draft.hashInput).digest('hex')} ima-ng sha256:${digest} /f${i}`,
    );
  }
  return out.join('\n');
}

describe('measured-boot request members', () => {
  const mb = new MeasuredBoot();

  it('turns arbitrary JSON members into evidence or a coded refusal, never a crash', () => {
    const b64 = fc.base64String({ maxLength: 400 });
    const member = fc.oneof(fc.jsonValue(), b64);
    const ima = fc.oneof(
      fc.jsonValue(),
      fc.record({
        offset: fc.oneof(fc.integer(), fc.double()),
        format: fc.constantFrom('ascii', 'binary', 'x'),
        log: b64,
      }),
    );
    const codes = new Set([
      'quote_malformed',
      'event_log_malformed',
      'ima_log_malformed',
      'event_log_too_large',
      'ima_log_too_large',
    ]);
    fc.assert(
      fc.property(
        fc.option(member, { nil: undefined }),
        fc.option(ima, { nil: undefined }),
        (eventLog, imaMember) => {
          try {
            mb.parse({ eventLog, ima: imaMember });
          } catch (e) {
            expect(e).toBeInstanceOf(GrantorError);
            expect(codes.has((e as GrantorError).code)).toBe(true);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('refuses by the base64 length before decoding', () => {
    const small = new MeasuredBoot({
      ...DEFAULT_MEASURED_BOOT_LIMITS,
      eventLog: { maxBytes: 30, maxEvents: 10 },
    });
    expect(() => small.parse({ eventLog: 'AAAA'.repeat(11) })).toThrow(
      expect.objectContaining({ code: 'event_log_too_large' }),
    );
  });

  it('bounds the reasons of one attestation, naming the first offending entries', () => {
    const entries = parseImaAscii(imaLines(100));
    const value = replayIma(entries, ['sha256']).pcrs.get('sha256')?.get(10) ?? Buffer.alloc(32);
    const policy = parseMeasuredBootPolicy(
      { pcrs: { sha256: [0] }, ima: { allowDigests: ['00'.repeat(32)] } },
      't',
    );
    const log = parseEventLog(
      syntheticLog(['sha256'], [{ pcr: 0, type: EV.SEPARATOR, data: Buffer.alloc(4) }]),
    );
    const pcr0 = replayEventLog(log).pcrs.get('sha256')?.get(0) ?? Buffer.alloc(32);
    const out = mb.verify(
      { eventLog: log, ima: { offset: 0, entries } },
      { sha256: { 0: pcr0, 10: value } },
      { resetCount: 1, restartCount: 0 },
      policy,
      undefined,
    );
    expect(out.reasons).toHaveLength(64);
    expect(out.reasons[0]).toMatch(/^ima_digest_not_allowed pcr=10 entry=0 name="\/f0" sha256=/);
    expect(out.reasons.at(-1)).toBe('measured_boot_more_reasons count=37');
  });
});

describe('verified events', () => {
  it('are only those on PCRs whose replay matched in the bank the rules read', () => {
    const events = [
      { pcr: 0, type: EV.SEPARATOR, data: Buffer.alloc(4) },
      { pcr: 4, type: EV.EFI_BOOT_SERVICES_APPLICATION, data: Buffer.from('app') },
    ];
    const log = parseEventLog(syntheticLog(['sha1', 'sha256'], events));
    const r = replayEventLog(log).pcrs;
    const v = (bank: 'sha1' | 'sha256', pcr: number) => r.get(bank)?.get(pcr) ?? Buffer.alloc(0);
    const policy = parseMeasuredBootPolicy({ pcrs: { sha256: [0] } }, 't');
    // PCR 4 quoted in SHA-1 only: its events' SHA-256 digests are bound to nothing.
    const facts = verifyMeasuredBoot(
      { eventLog: log, ima: undefined },
      { sha256: { 0: v('sha256', 0) }, sha1: { 4: v('sha1', 4) } },
      policy,
      EMPTY_IMA_STATE,
    );
    expect(facts.bank).toBe('sha256');
    expect(facts.events.map((e) => e.pcr)).toEqual([0]);
    const both = verifyMeasuredBoot(
      { eventLog: log, ima: undefined },
      { sha256: { 0: v('sha256', 0), 4: v('sha256', 4) } },
      policy,
      EMPTY_IMA_STATE,
    );
    expect(both.events.map((e) => e.pcr)).toEqual([0, 4]);
  });
});
