/**
 * grantor-attest: the attester as a command.
 *   grantor-attest enroll --url URL --tcti TCTI --state FILE --name NAME [--label k=v ...]
 *   grantor-attest attest --url URL --tcti TCTI --state FILE [--pcrs sha256:0,1,2,3,7]
 *                         [--event-log FILE] [--ima FILE]
 *   grantor-attest grant  --url URL --tcti TCTI --state FILE --action A --resource R
 *                         --parameters-digest HEX --audience AUD [--parent GRANT_ID]
 *                         [--ttl SECONDS] [--quote] [--event-log FILE] [--ima FILE]
 *     --event-log: the TCG event log (/sys/kernel/security/tpm0/binary_bios_measurements),
 *     --ima: the IMA list in ASCII (/sys/kernel/security/ima/ascii_runtime_measurements),
 *     both read after each quote and sent with it (measured boot, also in quote mode).
 *     attests (a fresh session key: the private key never leaves this process), then asks
 *     for the grant in session mode, or with --quote in quote mode (a quote over this very
 *     request). Prints the grant answer as JSON.
 * The state file keeps the runtime id and the TPM-wrapped AK (no secrets). Prints JSON.
 */
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { openTpm } from '../src/tpm/tpm.native.js';
import { isHashAlgName } from '../src/tpm/marshal/index.js';
import type { PcrBankSelection } from '../src/tpm/tpm.port.js';
import { Attester, type AttesterState, type MeasuredBootSource } from './attester.js';

export function parsePcrs(spec: string): PcrBankSelection[] {
  return spec.split('+').map((part) => {
    const [bank, list] = part.split(':');
    if (bank === undefined || list === undefined || !isHashAlgName(bank))
      throw new Error(`bad PCR selection ${part}`);
    const pcrs = list.split(',').map(Number);
    if (pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23))
      throw new Error(`bad PCR index in ${part}`);
    return { bank, pcrs };
  });
}

/** The measured-boot files to send, read when each quote is made. */
function measuredSource(flags: {
  readonly 'event-log'?: string | undefined;
  readonly ima?: string | undefined;
}): MeasuredBootSource | undefined {
  const eventLog = flags['event-log'];
  const ima = flags.ima;
  if (eventLog === undefined && ima === undefined) return undefined;
  return {
    ...(eventLog === undefined ? {} : { eventLog: () => readFile(eventLog) }),
    ...(ima === undefined ? {} : { imaAscii: () => readFile(ima) }),
  };
}

async function loadState(path: string): Promise<AttesterState> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as AttesterState;
  } catch {
    return {};
  }
}

interface GrantFlags {
  readonly pcrs: string;
  readonly action?: string | undefined;
  readonly resource?: string | undefined;
  readonly 'parameters-digest'?: string | undefined;
  readonly audience?: string | undefined;
  readonly parent?: string | undefined;
  readonly ttl: string;
  readonly quote: boolean;
  readonly 'event-log'?: string | undefined;
  readonly ima?: string | undefined;
}

async function grant(attester: Attester, flags: GrantFlags): Promise<unknown> {
  const { action, resource, audience } = flags;
  const digest = flags['parameters-digest'];
  if (
    action === undefined ||
    resource === undefined ||
    audience === undefined ||
    digest === undefined
  )
    throw new Error('--action, --resource, --parameters-digest and --audience are required');
  const ttlSeconds = Number(flags.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
    throw new Error('--ttl must be a positive integer');
  const runtimeId = attester.state.runtimeId;
  if (runtimeId === undefined) throw new Error('not enrolled (run enroll first)');
  const selection = parsePcrs(flags.pcrs);
  const measured = measuredSource(flags);
  const attested = await attester.attest(selection, measured);
  if (attested.verdict !== 'trusted')
    throw new Error(`attestation untrusted: ${attested.reasons.join(', ')}`);
  return attester.requestGrant(
    {
      runtimeId,
      requestId: `attest-cli-${randomUUID()}`,
      issuedAt: new Date().toISOString(),
      action,
      resource,
      parametersDigest: digest,
      audience,
      parentGrantId: flags.parent ?? null,
      ttlSeconds,
    },
    flags.quote ? 'quote' : 'session',
    { selection, ...(measured === undefined ? {} : { measured }) },
  );
}

export async function main(argv: readonly string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      tcti: { type: 'string' },
      state: { type: 'string', default: 'grantor-attest.json' },
      name: { type: 'string' },
      label: { type: 'string', multiple: true, default: [] },
      pcrs: { type: 'string', default: 'sha256:0,1,2,3,7' },
      action: { type: 'string' },
      resource: { type: 'string' },
      'parameters-digest': { type: 'string' },
      audience: { type: 'string' },
      parent: { type: 'string' },
      ttl: { type: 'string', default: '60' },
      quote: { type: 'boolean', default: false },
      'event-log': { type: 'string' },
      ima: { type: 'string' },
    },
  });
  const command = positionals[0];
  if (
    (command !== 'enroll' && command !== 'attest' && command !== 'grant') ||
    values.url === undefined ||
    values.tcti === undefined
  ) {
    process.stderr.write(
      'usage: grantor-attest enroll|attest|grant --url URL --tcti TCTI [--state FILE] ...\n',
    );
    return 2;
  }
  const tpm = await openTpm({ tcti: values.tcti });
  try {
    const attester = new Attester(tpm, { url: values.url }, await loadState(values.state));
    let out: unknown;
    if (command === 'enroll') {
      if (values.name === undefined) throw new Error('--name is required');
      const labels = Object.fromEntries(
        values.label.map((l) => {
          const i = l.indexOf('=');
          return [l.slice(0, i), l.slice(i + 1)];
        }),
      );
      const state = await attester.enroll(values.name, labels);
      out = { runtimeId: attester.state.runtimeId, state };
    } else if (command === 'attest') {
      out = await attester.attest(parsePcrs(values.pcrs), measuredSource(values));
    } else {
      out = await grant(attester, values);
    }
    await writeFile(values.state, JSON.stringify(attester.state, null, 2));
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return 0;
  } finally {
    await tpm.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`grantor-attest: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
