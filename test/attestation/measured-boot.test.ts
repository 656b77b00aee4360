/**
 * Measured boot end to end against swtpm: the rig writes a TCG event log the way firmware
 * would (a crypto-agile log, SHA-1 and SHA-256) and extends the runtime TPM's PCRs to match,
 * then an IMA list whose entries it extends into PCR 10. The attester (attester/) sends
 * them with its quote over HTTP to the real routes: trusted; IMA sent incrementally; every
 * edit of the log (event removed, reordered, digest changed, event added, wrong bank) is
 * refused with its code; a malformed log is a 400, never a 5xx.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Attester, AttesterError, type MeasuredBootSource } from '../../attester/attester.js';
import { createAttestation, parseEnrollmentRules } from '../../src/attestation/index.js';
import { EV } from '../../src/attestation/measured-boot/event-types.js';
import { parseImaAscii } from '../../src/attestation/measured-boot/ima.js';
import {
  event2,
  specIdEvent,
  type SyntheticEvent,
} from '../../src/attestation/measured-boot/testing.js';
import { createServer, type App } from '../../src/http/app.js';
import { runtimesRoutes } from '../../src/http/routes/runtimes.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import type { TpmPort } from '../../src/tpm/tpm.port.js';
import { rigEnrollmentRules, startSimTpm, type SimTpm } from '../rig/sim.js';
import { MemoryAudit } from './harness.js';

const BANKS = ['sha1', 'sha256'];
const hash = (alg: string, ...parts: Uint8Array[]) => {
  const h = createHash(alg);
  for (const p of parts) h.update(p);
  return h.digest();
};

const EVENTS: SyntheticEvent[] = [
  { pcr: 0, type: EV.S_CRTM_VERSION, data: Buffer.from('grantor-rig 1.0\0', 'utf16le') },
  { pcr: 0, type: EV.EFI_PLATFORM_FIRMWARE_BLOB, data: Buffer.alloc(16, 0x11) },
  { pcr: 7, type: EV.EFI_VARIABLE_DRIVER_CONFIG, data: Buffer.from('SecureBoot=1') },
  { pcr: 2, type: EV.EFI_BOOT_SERVICES_DRIVER, data: Buffer.from('option-rom') },
  { pcr: 4, type: EV.EFI_ACTION, data: Buffer.from('Calling EFI Application from Boot Option') },
  ...[0, 2, 4, 7].map((pcr) => ({ pcr, type: EV.SEPARATOR, data: Buffer.alloc(4) })),
  {
    pcr: 4,
    type: EV.EFI_BOOT_SERVICES_APPLICATION,
    data: Buffer.from('\\EFI\\BOOT\\BOOTX64.EFI'),
    digests: {
      sha1: hash('sha1', Buffer.from('shim')),
      sha256: hash('sha256', Buffer.from('shim')),
    },
  },
];
const logOf = (events: readonly SyntheticEvent[], banks = BANKS) =>
  Buffer.concat([specIdEvent(banks), ...events.map((e) => event2(banks, e))]);

/** One ima-ng line with a correct template hash. */
function imaLine(path: string, content: string): string {
  const digest = hash('sha256', Buffer.from(content)).toString('hex');
  const draft = parseImaAscii(`10 ${'00'.repeat(20)} ima-ng sha256:${digest} ${path}`)[0];
  if (draft === undefined) throw new Error('entry');
  return `10 ${hash('sha1', draft.hashInput).toString('hex')} ima-ng sha256:${digest} ${path}`;
}

let sim: SimTpm;
let tpm: TpmPort;
let db: Database;
let app: App;
let dir: string;
let url: string;
let attester: Attester;
const imaLines: string[] = [];
const sel = [{ bank: 'sha256' as const, pcrs: [0, 2, 4, 7, 10] }];

/** Firmware: extend every event's digests; the kernel: extend each IMA entry. */
async function extendLog(events: readonly SyntheticEvent[]): Promise<void> {
  for (const e of events)
    await tpm.pcrExtend(e.pcr, [
      { hash: 'sha1', digest: e.digests?.sha1 ?? hash('sha1', e.data) },
      { hash: 'sha256', digest: e.digests?.sha256 ?? hash('sha256', e.data) },
    ]);
}
async function measure(path: string, content: string): Promise<void> {
  const line = imaLine(path, content);
  const e = parseImaAscii(line)[0];
  if (e === undefined) throw new Error('entry');
  await tpm.pcrExtend(10, [
    { hash: 'sha1', digest: e.templateHash },
    { hash: 'sha256', digest: hash('sha256', e.hashInput) },
  ]);
  imaLines.push(line);
}

function source(eventLog: Buffer = logOf(EVENTS)): MeasuredBootSource {
  return {
    eventLog: () => Promise.resolve(eventLog),
    imaAscii: () => Promise.resolve(Buffer.from(imaLines.map((l) => `${l}\n`).join(''))),
  };
}

async function refusal(
  p: Promise<unknown>,
): Promise<{ status: number; code?: string | undefined; details?: unknown }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AttesterError) return { status: e.status, code: e.code, details: e.details };
    throw e;
  }
  return { status: 201 };
}

let audit: MemoryAudit;

/** The appliance's attestation routes over `db`, on `port` (0: any). */
async function serve(port: number): Promise<string> {
  audit = new MemoryAudit();
  const svc = await createAttestation(
    {
      ekCaBundlePem: sim.ekCaPem,
      referencePolicyFiles: [join(dir, 'policy.json')],
      enrollmentRules: parseEnrollmentRules(rigEnrollmentRules(), 'rig'),
    },
    { db, audit },
  );
  app = createServer();
  await app.register(runtimesRoutes, { attestation: svc });
  await app.listen({ host: '127.0.0.1', port });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

beforeAll(async () => {
  sim = await startSimTpm();
  tpm = await openTpm({ tcti: sim.tcti });
  dir = await mkdtemp(join(tmpdir(), 'grantor-mb-'));
  db = await openDatabase(join(dir, 'db'));
  const policyFile = join(dir, 'policy.json');
  await writeFile(
    policyFile,
    JSON.stringify({
      name: 'measured',
      catchAll: true,
      allowReset: true,
      measuredBoot: {
        pcrs: { sha256: [0, 2, 4, 7] },
        bootApplications: ['shim', 'option-rom'].map((c) =>
          hash('sha256', Buffer.from(c)).toString('hex'),
        ),
        ima: {
          allowDigests: ['aggregate', 'agent v1', 'tool v2'].map((c) =>
            hash('sha256', Buffer.from(c)).toString('hex'),
          ),
        },
      },
    }),
  );
  url = await serve(0);
  await extendLog(EVENTS);
  await measure('boot_aggregate', 'aggregate');
  await measure('/usr/bin/agent', 'agent v1');
  attester = new Attester(tpm, { url });
  expect(await attester.enroll('measured-runtime')).toBe('active');
}, 120_000);

afterAll(async () => {
  await app.close();
  await db.close();
  await tpm.close();
  await sim.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('measured boot against swtpm', () => {
  it('trusts the log and the IMA list that replay to the quote; then sends only new IMA entries', async () => {
    const first = await attester.attest(sel, source());
    expect(first.verdict).toBe('trusted');
    expect(first.measuredBoot).toEqual({ events: 10, imaEntries: 2 });
    await measure('/usr/bin/tool', 'tool v2');
    const second = await attester.attest(sel, source());
    expect(second.verdict).toBe('trusted');
    expect(second.measuredBoot?.imaEntries).toBe(3);
  });

  it('an unlisted file measured makes the runtime untrusted, naming its digest, until it reboots', async () => {
    await measure('/tmp/dropper', 'not on the list');
    const digest = hash('sha256', Buffer.from('not on the list')).toString('hex');
    const reason = `ima_digest_not_allowed pcr=10 entry=3 name="/tmp/dropper" sha256=${digest}`;
    const bad = await attester.attest(sel, source());
    expect(bad).toMatchObject({ verdict: 'untrusted', reasons: [reason], validUntil: null });
    // Sending only the entries after it does not wash it out.
    await measure('/usr/bin/agent', 'agent v1');
    const again = await attester.attest(sel, source());
    expect(again).toMatchObject({ verdict: 'untrusted', reasons: [reason] });
    expect(again.measuredBoot?.imaEntries).toBe(5);
  });

  it('keeps the verified IMA state across an appliance restart: only new entries are sent, the dropper still named', async () => {
    const before = await attester.attest(sel, source());
    // The dropper measured in the test before stays a reason until the TPM resets.
    expect(before.verdict).toBe('untrusted');
    const verified = before.measuredBoot?.imaEntries ?? 0;
    // The appliance stops and starts again on the same LevelDB and port.
    const port = Number(new URL(url).port);
    await app.close();
    await db.close();
    db = await openDatabase(join(dir, 'db'));
    expect(await serve(port)).toBe(url);
    await measure('/usr/bin/agent', 'agent v1');
    const after = await attester.attest(sel, source());
    expect(after).toMatchObject({
      verdict: 'untrusted',
      reasons: before.reasons,
      measuredBoot: { imaEntries: verified + 1 },
    });
    // Sent from where the attester left off and accepted at once: no offset was refused.
    expect(audit.events.map((e) => e.decision)).toEqual(['untrusted']);
  });

  const swap = <T>(a: readonly T[], i: number, j: number): T[] => {
    const out = [...a];
    [out[i], out[j]] = [a[j] as T, a[i] as T];
    return out;
  };

  it.each([
    ['an event removed', logOf(EVENTS.filter((_, i) => i !== 3)), 2],
    ['events reordered', logOf(swap(EVENTS, 4, 9)), 4],
    [
      'a digest changed',
      logOf(EVENTS.map((e, i) => (i === 2 ? { ...e, data: Buffer.from('SecureBoot=0') } : e))),
      7,
    ],
    [
      'an event added',
      logOf([...EVENTS, { pcr: 0, type: EV.POST_CODE, data: Buffer.from('x') }]),
      0,
    ],
    ['the wrong bank', logOf(EVENTS, ['sha1']), 0],
  ] as const)(
    'refuses the log with %s: 422 event_log_mismatch naming the PCR',
    async (_, log, pcr) => {
      expect(await refusal(attester.attest(sel, source(log)))).toEqual({
        status: 422,
        code: 'event_log_mismatch',
        details: { bank: 'sha256', pcr },
      });
    },
  );

  it('refuses a malformed log with 400 and its reason, an unreplayable IMA list with 422', async () => {
    expect(
      await refusal(attester.attest(sel, source(logOf(EVENTS).subarray(0, 200)))),
    ).toMatchObject({
      status: 400,
      code: 'event_log_malformed',
      details: { reason: 'truncated' },
    });
    // The kernel measured one file; the list the runtime sends names another.
    await measure('/usr/bin/evil', 'evil');
    imaLines[imaLines.length - 1] = imaLine('/usr/bin/good', 'good');
    expect(await refusal(attester.attest(sel, source()))).toMatchObject({
      status: 422,
      code: 'ima_log_mismatch',
    });
  });
});
