import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LogMalformedError } from './errors.js';
import { EV } from './event-types.js';
import { parseEventLog } from './tcg-log.js';
import { event2, failure, fixture, specIdEvent, syntheticLog } from './testing.js';

const BANKS = ['sha1', 'sha256'];
const sep = { pcr: 4, type: EV.SEPARATOR, data: Buffer.alloc(4) };

describe('parseEventLog', () => {
  it('reads the Spec ID event: banks, digest sizes, vendor info', () => {
    const log = parseEventLog(fixture('tpm2-tss/eventlogs/binary_measurements_hcrtm.bin'));
    expect(log.format).toBe('crypto-agile');
    expect(log.specId?.algorithms).toEqual([
      { id: 0x0004, size: 20 },
      { id: 0x000b, size: 32 },
      { id: 0x0012, size: 32 },
    ]);
    expect(log.events).toHaveLength(204);
    const hcrtm = log.events[1];
    expect(hcrtm?.type).toBe(EV.EFI_HCRTM_EVENT);
    expect(hcrtm?.data.toString('latin1')).toBe('HCRTM');
    expect(hcrtm?.digests.size).toBe(3);
  });

  it('reads the SHA-1 legacy format', () => {
    const log = parseEventLog(fixture('go-tpm-tools/eventlogs/debian-10.bin'));
    expect(log.format).toBe('sha1');
    expect(log.specId).toBeUndefined();
    expect(log.events.every((e) => e.digests.size === 1 && e.digests.get(4)?.length === 20)).toBe(
      true,
    );
  });

  it('reads the StartupLocality event (locality 3)', () => {
    expect(parseEventLog(fixture('go-tpm-tools/eventlogs/glinux-alex.bin')).startupLocality).toBe(
      3,
    );
    expect(parseEventLog(fixture('go-tpm-tools/eventlogs/rhel8-uefi.bin')).startupLocality).toBe(0);
  });

  it('keeps Windows EV_NO_ACTION records on PCR 0xFFFFFFFF, refuses other events there', () => {
    const log = parseEventLog(fixture('go-attestation/option_rom_eventlog'));
    expect(log.events.some((e) => e.pcr === 0xffffffff && e.type === EV.NO_ACTION)).toBe(true);
    const bad = syntheticLog(BANKS, [{ pcr: 24, type: EV.SEPARATOR, data: Buffer.alloc(4) }]);
    expect(failure(() => parseEventLog(bad))).toMatchObject({
      reason: 'invalid',
      field: 'pcrIndex',
    });
  });

  it('refuses the malformed fixtures with a named reason', () => {
    // EventSize 37 leaves out the 4 vendorInfo bytes (tpm2_eventlog reads past the event).
    expect(
      failure(() => parseEventLog(fixture('tpm2-tools/eventlogs/specid-vendordata.bin'))),
    ).toEqual({
      code: 'event_log_malformed',
      reason: 'truncated',
      field: 'specId.vendorInfo',
    });
    expect(
      failure(() => parseEventLog(fixture('keylime-eventlogs/binary_bios_measurements-bogus'))),
    ).toEqual({
      code: 'event_log_malformed',
      reason: 'invalid',
      field: 'pcrIndex',
    });
    expect(
      failure(() => parseEventLog(fixture('keylime-eventlogs/binary_bios_measurements-empty'))),
    ).toEqual({
      code: 'event_log_malformed',
      reason: 'truncated',
      field: 'pcrIndex',
    });
  });

  it('refuses a truncated log at every length', () => {
    const spec = specIdEvent(BANKS);
    const e1 = event2(BANKS, sep);
    const log = Buffer.concat([
      spec,
      e1,
      event2(BANKS, { pcr: 7, type: EV.EFI_ACTION, data: Buffer.from('x') }),
    ]);
    expect(parseEventLog(log).events).toHaveLength(3);
    const boundaries = new Map([
      [spec.length, 1],
      [spec.length + e1.length, 2],
    ]);
    for (let n = 0; n < log.length; n++) {
      const events = boundaries.get(n);
      // A cut exactly between two records is a shorter, valid log.
      if (events !== undefined)
        expect(parseEventLog(log.subarray(0, n)).events).toHaveLength(events);
      else
        expect(failure(() => parseEventLog(log.subarray(0, n)))).toMatchObject({
          code: 'event_log_malformed',
          reason: 'truncated',
        });
    }
  });

  it('refuses an oversized event size and bank count, and trailing bytes in the Spec ID', () => {
    const spec = specIdEvent(BANKS);
    const ev = event2(BANKS, sep);
    const big = Buffer.from(ev);
    big.writeUInt32LE(0xffffffff, ev.length - 8); // eventSize of the separator
    expect(failure(() => parseEventLog(Buffer.concat([spec, big])))).toMatchObject({
      reason: 'oversized',
      field: 'event.size',
    });
    const many = Buffer.from(spec);
    many.writeUInt32LE(1000, 32 + 24); // numberOfAlgorithms
    expect(failure(() => parseEventLog(many))).toMatchObject({
      reason: 'oversized',
      field: 'specId.numberOfAlgorithms',
    });
    const trailing = Buffer.from(spec);
    trailing.writeUInt32LE(trailing.readUInt32LE(28) + 1, 28);
    expect(failure(() => parseEventLog(Buffer.concat([trailing, Buffer.alloc(1)])))).toMatchObject({
      reason: 'trailing',
      field: 'specId.end',
    });
  });

  it('refuses digests of an undeclared or repeated bank, and a wrong digest size', () => {
    const spec = specIdEvent(['sha256']);
    const ev = event2(['sha256'], sep);
    const undeclared = Buffer.from(ev);
    undeclared.writeUInt16LE(0x000c, 12);
    expect(failure(() => parseEventLog(Buffer.concat([spec, undeclared])))).toMatchObject({
      reason: 'invalid',
      field: 'digests[0].hashAlg',
    });
    const twice = event2(['sha256', 'sha256'], sep);
    expect(failure(() => parseEventLog(Buffer.concat([spec, twice])))).toMatchObject({
      reason: 'invalid',
      field: 'digests.count',
    });
    const wrongSize = specIdEvent(['sha256']);
    wrongSize.writeUInt16LE(20, 32 + 30);
    expect(failure(() => parseEventLog(wrongSize))).toMatchObject({
      reason: 'invalid',
      field: 'specId.digestSizes[0].digestSize',
    });
  });

  it('refuses a second StartupLocality event or one after PCR 0 was extended', () => {
    const loc = (n: number) => ({
      pcr: 0,
      type: EV.NO_ACTION,
      data: Buffer.concat([Buffer.from('StartupLocality\0', 'latin1'), Buffer.from([n])]),
      digests: { sha1: Buffer.alloc(20), sha256: Buffer.alloc(32) },
    });
    expect(parseEventLog(syntheticLog(BANKS, [loc(3), sep])).startupLocality).toBe(3);
    const s0 = { pcr: 0, type: EV.S_CRTM_VERSION, data: Buffer.alloc(2) };
    for (const events of [[loc(3), loc(3)], [s0, loc(3)], [loc(2)]])
      expect(failure(() => parseEventLog(syntheticLog(BANKS, events)))).toMatchObject({
        reason: 'invalid',
        field: 'startupLocality',
      });
  });

  it('enforces the byte and event limits before parsing further', () => {
    const log = syntheticLog(BANKS, [sep, sep, sep]);
    expect(failure(() => parseEventLog(log, { maxBytes: log.length - 1, maxEvents: 100 }))).toEqual(
      {
        code: 'event_log_too_large',
      },
    );
    expect(failure(() => parseEventLog(log, { maxBytes: 1 << 20, maxEvents: 3 }))).toEqual({
      code: 'event_log_too_large',
    });
    expect(parseEventLog(log, { maxBytes: log.length, maxEvents: 4 }).events).toHaveLength(4);
  });

  it('does not alias the caller buffer', () => {
    const log = syntheticLog(BANKS, [{ pcr: 7, type: EV.EFI_ACTION, data: Buffer.from('abc') }]);
    const parsed = parseEventLog(log);
    log.fill(0);
    expect(parsed.events[1]?.data.toString()).toBe('abc');
  });

  it('turns arbitrary bytes into a log or its own error', () => {
    const prefix = specIdEvent(BANKS);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.boolean(), (bytes, withSpec) => {
        const input = withSpec ? Buffer.concat([prefix, bytes]) : bytes;
        try {
          parseEventLog(input);
        } catch (e) {
          expect(e).toBeInstanceOf(LogMalformedError);
          expect((e as LogMalformedError).code).toBe('event_log_malformed');
        }
      }),
      { numRuns: 2000 },
    );
  });
});
