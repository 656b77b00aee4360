/**
 * `grantor reference-policies learn --event-log FILE [--ima FILE] [--ima-format ascii|binary]
 * --name NAME [--selector k=v ...] [--bank sha256] [--out FILE]`: write a reference policy
 * learned from a known-good machine (learn.ts). Offline: opens no TPM, HSM or database.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseImaAscii, parseImaBinary } from './ima.js';
import { learnReferencePolicy } from './learn.js';
import { parseEventLog } from './tcg-log.js';

export const LEARN_USAGE =
  'usage: grantor reference-policies learn --event-log FILE [--ima FILE] [--ima-format ascii|binary] --name NAME [--selector k=v ...] [--bank sha256] [--out FILE]';

export async function runReferencePoliciesCli(
  argv: readonly string[],
  io: { out: (line: string) => void; err: (line: string) => void },
): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'learn') {
    io.err(LEARN_USAGE);
    return 2;
  }
  const { values } = parseArgs({
    args: [...rest],
    options: {
      'event-log': { type: 'string' },
      ima: { type: 'string' },
      'ima-format': { type: 'string' },
      name: { type: 'string' },
      selector: { type: 'string', multiple: true },
      bank: { type: 'string' },
      out: { type: 'string' },
    },
    strict: true,
  });
  const eventLog = values['event-log'];
  const name = values.name;
  const format =
    values['ima-format'] ?? (values.ima?.endsWith('.bin') === true ? 'binary' : 'ascii');
  if (eventLog === undefined || name === undefined || (format !== 'ascii' && format !== 'binary')) {
    io.err(LEARN_USAGE);
    return 2;
  }
  const selector: Record<string, string> = {};
  for (const s of values.selector ?? []) {
    const eq = s.indexOf('=');
    if (eq < 1) {
      io.err(`--selector ${s}: expected key=value`);
      return 2;
    }
    selector[s.slice(0, eq)] = s.slice(eq + 1);
  }
  const log = parseEventLog(await readFile(eventLog));
  const imaBytes = values.ima === undefined ? undefined : await readFile(values.ima);
  const ima =
    imaBytes === undefined
      ? undefined
      : format === 'binary'
        ? parseImaBinary(imaBytes)
        : parseImaAscii(imaBytes);
  const { json } = learnReferencePolicy(log, ima, {
    name,
    selector,
    ...(values.bank === undefined ? {} : { bank: values.bank }),
  });
  const text = `${JSON.stringify(json, null, 2)}\n`;
  if (values.out === undefined) io.out(text.trimEnd());
  else await writeFile(values.out, text, { flag: 'wx' });
  return 0;
}
