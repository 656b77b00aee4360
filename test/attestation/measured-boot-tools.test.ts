/**
 * Differential test against tpm2_eventlog (tpm2-tools 5.4, installed on the rig): for every
 * fixture event log, our replay and tpm2_eventlog's `pcrs:` agree, except PCR 0 of the four
 * logs with EV_NO_ACTION events after the Spec ID event. There tpm2_eventlog is wrong: it
 * extends those events (StartupLocality, SP800-155 reference manifests), which the PC Client
 * Platform Firmware Profile (§10.4.3) says are never extended, and it ignores the locality
 * PCR 0 was reset at. Our value is the one go-tpm-tools checks against real quotes.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EV } from '../../src/attestation/measured-boot/event-types.js';
import { replayEventLog } from '../../src/attestation/measured-boot/replay.js';
import { parseEventLog } from '../../src/attestation/measured-boot/tcg-log.js';
import {
  FIXTURES,
  fixture,
  yamlPcrs,
  type Pcrs,
} from '../../src/attestation/measured-boot/testing.js';

/** The logs tpm2_eventlog gets PCR 0 wrong on: EV_NO_ACTION events after the Spec ID. */
const PCR0_WRONG_IN_TPM2_TOOLS = [
  'go-tpm-tools/eventlogs/confidential-gke-debug-251000_eventlog.bin',
  'go-tpm-tools/eventlogs/eventlogwithsp800155.bin',
  'go-tpm-tools/eventlogs/gdc-host.bin',
  'go-tpm-tools/eventlogs/glinux-alex.bin',
  'keylime-eventlogs/binary_bios_measurements',
];

function laterNoAction(path: string): boolean {
  return parseEventLog(fixture(path)).events.some((e) => e.index > 0 && e.type === EV.NO_ACTION);
}

const logs = [
  ...readdirSync(`${FIXTURES}go-tpm-tools/eventlogs`)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => `go-tpm-tools/eventlogs/${f}`),
  ...readdirSync(`${FIXTURES}tpm2-tools/eventlogs`)
    .filter((f) => f.endsWith('.bin') && f !== 'specid-vendordata.bin')
    .map((f) => `tpm2-tools/eventlogs/${f}`),
  ...readdirSync(`${FIXTURES}tpm2-tss/eventlogs`)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => `tpm2-tss/eventlogs/${f}`),
  'keylime/uefi/mb_log.bin',
  'keylime-eventlogs/binary_bios_measurements',
  'keylime-eventlogs/binary_bios_measurements-secureboot',
  ...readdirSync(`${FIXTURES}go-attestation`)
    // tpm2_eventlog 5.4 crashes (SIGSEGV) on the Windows log (EV_NO_ACTION on PCR 0xFFFFFFFF)
    // and the one-event EV_NO_ACTION log has no PCRs.
    .filter((f) => f.endsWith('eventlog') && !/^(short_no_action|option_rom)_/.test(f))
    .map((f) => `go-attestation/${f}`),
];

function ours(path: string): Pcrs {
  const out: Pcrs = {};
  for (const [bank, pcrs] of replayEventLog(parseEventLog(fixture(path))).pcrs)
    out[bank] = Object.fromEntries([...pcrs].map(([i, v]) => [String(i), v.toString('hex')]));
  return out;
}

function tpm2Eventlog(path: string): Pcrs {
  const sha1 = parseEventLog(fixture(path)).format === 'sha1';
  const args = [...(sha1 ? ['--eventlog-version=1'] : []), FIXTURES + path];
  return yamlPcrs(
    execFileSync('tpm2_eventlog', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
  );
}

describe('replay vs tpm2_eventlog', () => {
  const expected = JSON.parse(
    readFileSync(`${FIXTURES}go-tpm-tools/eventlogs/expected_pcrs.json`, 'utf8'),
  ) as Record<string, { pcrs: Pcrs }>;

  it('knows which logs tpm2_eventlog gets PCR 0 wrong on', () => {
    expect(logs.filter(laterNoAction)).toEqual(PCR0_WRONG_IN_TPM2_TOOLS);
  });

  it.each(logs)('%s', (path) => {
    const theirs = tpm2Eventlog(path);
    const mine = ours(path);
    expect(Object.keys(theirs).length).toBeGreaterThan(0);
    const wrong = PCR0_WRONG_IN_TPM2_TOOLS.includes(path);
    for (const [bank, pcrs] of Object.entries(theirs)) {
      for (const [i, v] of Object.entries(pcrs)) {
        if (wrong && i === '0') {
          expect(mine[bank]?.[i], `${bank}:0 differs`).not.toBe(v);
          const name = path.split('/').pop() ?? '';
          const want = expected[name]?.pcrs[bank]?.['0'];
          if (want !== undefined) expect(mine[bank]?.[i], `${bank}:0 = go-tpm-tools`).toBe(want);
        } else {
          expect(mine[bank]?.[i], `${bank}:${i}`).toBe(v);
        }
      }
    }
  });
});
