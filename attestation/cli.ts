/**
 * grantor-attest: the attester as a command.
 *   grantor-attest enroll --url URL --tcti TCTI --state FILE --name NAME [--label k=v ...]
 *   grantor-attest attest --url URL --tcti TCTI --state FILE [--pcrs sha256:0,1,2,3,7]
 * The state file keeps the runtime id and the TPM-wrapped AK (no secrets). Prints JSON.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { openTpm } from '../src/tpm/tpm.native.js';
import type { HashAlgName, PcrBankSelection } from '../src/tpm/tpm.port.js';
import { Attester, type AttesterState } from './attester.js';

const BANKS: readonly string[] = ['sha1', 'sha256', 'sha384', 'sha512'];

export function parsePcrs(spec: string): PcrBankSelection[] {
  return spec.split('+').map((part) => {
    const [bank, list] = part.split(':');
    if (bank === undefined || list === undefined || !BANKS.includes(bank))
      throw new Error(`bad PCR selection ${part}`);
    const pcrs = list.split(',').map(Number);
    if (pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23))
      throw new Error(`bad PCR index in ${part}`);
    return { hash: bank as HashAlgName, pcrs };
  });
}

async function loadState(path: string): Promise<AttesterState> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as AttesterState;
  } catch {
    return {};
  }
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
    },
  });
  const command = positionals[0];
  if (
    (command !== 'enroll' && command !== 'attest') ||
    values.url === undefined ||
    values.tcti === undefined
  ) {
    process.stderr.write(
      'usage: grantor-attest enroll|attest --url URL --tcti TCTI [--state FILE] ...\n',
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
    } else {
      out = await attester.attest(parsePcrs(values.pcrs));
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
