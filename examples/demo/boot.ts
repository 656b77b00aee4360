/**
 * A measured boot for the demo's simulated runtimes: what firmware, shim, GRUB and the
 * kernel's IMA would have done on a real machine. It writes a TCG event log (crypto-agile,
 * SHA-256) and extends the runtime swtpm's PCRs with the same digests, so the log and a
 * quote agree; then it measures files the way IMA does (ima-ng entries into PCR 10).
 *
 * The digests it extends are those `reference-policies/swtpm-demo-measured.json` allows
 * (`npx tsx examples/demo/boot.ts` prints that policy's measuredBoot member again).
 * PCRs 0 and 7 are left alone: the swtpm development policies want them all zero.
 */
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import type { MeasuredBootSource } from '../../attester/attester.js';
import { EV } from '../../src/attestation/measured-boot/event-types.js';
import { parseImaAscii } from '../../src/attestation/measured-boot/ima.js';
import { syntheticLog, type SyntheticEvent } from '../../src/attestation/measured-boot/testing.js';
import type { TpmPort } from '../../src/tpm/tpm.port.js';

const sha256 = (data: string | Buffer): Buffer => createHash('sha256').update(data).digest();

/** The boot components, by the content whose digest stands in for their Authenticode hash. */
export const BOOT_APPLICATIONS = ['demo shim 15.8', 'demo grub 2.12', 'demo kernel 6.12'];
export const KERNEL_CMDLINE = 'root=/dev/vda1 ro lockdown=integrity ima_policy=tcb';
/** The files the demo's IMA measures at boot: name -> content. */
export const IMA_FILES: ReadonlyArray<readonly [string, string]> = [
  ['boot_aggregate', 'demo boot aggregate'],
  ['/usr/bin/agent', 'demo agent 1.0'],
];

/** The firmware's events, in order: PCRs 2, 4 and 8 (with their separators). */
export function bootEvents(applications = BOOT_APPLICATIONS): SyntheticEvent[] {
  const line = `/vmlinuz ${KERNEL_CMDLINE}`;
  return [
    ...[2, 4].map((pcr) => ({ pcr, type: EV.SEPARATOR, data: Buffer.alloc(4) })),
    ...applications.map((content, i) => ({
      pcr: 4,
      type: EV.EFI_BOOT_SERVICES_APPLICATION,
      data: Buffer.from(`\\EFI\\demo\\stage${i}.efi`),
      digests: { sha256: sha256(content) },
    })),
    {
      // GRUB measures the command line without its prefix and NUL.
      pcr: 8,
      type: EV.IPL,
      data: Buffer.from(`kernel_cmdline: ${line}\0`),
      digests: { sha256: sha256(line) },
    },
  ];
}

/** The TCG event log of `events`, as /sys/kernel/security/tpm0/binary_bios_measurements. */
export function eventLog(events: readonly SyntheticEvent[] = bootEvents()): Buffer {
  return syntheticLog(['sha256'], events);
}

/** One ima-ng line with its template hash, as /sys/kernel/security/ima/ascii_runtime_measurements. */
export function imaLine(path: string, content: string): string {
  const digest = sha256(content).toString('hex');
  const draft = parseImaAscii(`10 ${'00'.repeat(20)} ima-ng sha256:${digest} ${path}`)[0];
  if (draft === undefined) throw new Error('ima-ng entry');
  const th = createHash('sha1').update(draft.hashInput).digest('hex');
  return `10 ${th} ima-ng sha256:${digest} ${path}`;
}

/** A runtime's measured boot: the log it booted with and the IMA list its kernel keeps. */
export class MeasuredRuntime {
  readonly #tpm: TpmPort;
  readonly #ima: string[] = [];
  readonly log: Buffer;

  private constructor(tpm: TpmPort, log: Buffer) {
    this.#tpm = tpm;
    this.log = log;
  }

  /** Firmware and kernel: extend every event, then every boot-time IMA file. */
  static async boot(tpm: TpmPort): Promise<MeasuredRuntime> {
    const pcrs = await tpm.pcrRead([{ bank: 'sha256', pcrs: [2, 4, 8, 10] }]);
    if (pcrs.values.some((v) => v.digest.some((b) => b !== 0)))
      throw new Error('the runtime TPM has booted already (PCRs 2, 4, 8, 10 not zero): restart it');
    const events = bootEvents();
    for (const e of events) {
      const digest = e.digests?.sha256 ?? sha256(e.data);
      await tpm.pcrExtend(e.pcr, [{ hash: 'sha256', digest }]);
    }
    const rt = new MeasuredRuntime(tpm, eventLog(events));
    for (const [path, content] of IMA_FILES) await rt.measure(path, content);
    return rt;
  }

  /** IMA measures a file: extend PCR 10 and append the entry to the list. */
  async measure(path: string, content: string): Promise<string> {
    const line = imaLine(path, content);
    const e = parseImaAscii(line)[0];
    if (e === undefined) throw new Error('ima-ng entry');
    await this.#tpm.pcrExtend(10, [
      { hash: 'sha1', digest: e.templateHash },
      { hash: 'sha256', digest: sha256(e.hashInput) },
    ]);
    this.#ima.push(line);
    return sha256(content).toString('hex');
  }

  get imaEntries(): number {
    return this.#ima.length;
  }

  /** What the attester reads: this log (or another, to show a tampered one refused). */
  source(log: Buffer = this.log): MeasuredBootSource {
    return {
      eventLog: () => Promise.resolve(log),
      imaAscii: () => Promise.resolve(Buffer.from(this.#ima.map((l) => `${l}\n`).join(''))),
    };
  }
}

/** The measuredBoot member of reference-policies/swtpm-demo-measured.json. */
export function demoMeasuredBootPolicy(): Record<string, unknown> {
  return {
    pcrs: { sha256: [2, 4, 8] },
    bootApplications: BOOT_APPLICATIONS.map((c) => sha256(c).toString('hex')),
    kernelCmdline: { require: ['lockdown=integrity'], forbid: ['init=', 'rd.break'] },
    ima: {
      pcr: 10,
      allow: Object.fromEntries(IMA_FILES.map(([p, c]) => [p, [sha256(c).toString('hex')]])),
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href)
  process.stdout.write(`${JSON.stringify(demoMeasuredBootPolicy(), null, 2)}\n`);
