/**
 * The secrets a test run uses (HSM PINs, activation secrets, session private keys),
 * registered as they are made so that the run's teardown (log-capture.ts) can look for
 * them in every captured log line. One JSON line per secret, appended to the file named
 * by GRANTOR_TEST_SECRETS_FILE (one write each: several processes may share the file);
 * without it (a bench, a script) registering does nothing. Operator tokens need no
 * registration: their format is matched wherever they come from (log-scan.ts).
 */
import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export interface Secret {
  /** What it is, shown in a finding instead of the value. */
  readonly label: string;
  readonly value: string;
}

export function registerSecret(label: string, value: string): void {
  const file = process.env.GRANTOR_TEST_SECRETS_FILE;
  if (file === undefined || file === '' || value === '') return;
  appendFileSync(file, `${JSON.stringify({ label, value })}\n`);
}

/** The registered secrets, each value once (a token provisioned twice registers twice). */
export async function loadSecrets(file: string): Promise<Secret[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const byValue = new Map<string, Secret>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const s = JSON.parse(line) as Secret;
    if (!byValue.has(s.value)) byValue.set(s.value, s);
  }
  return [...byValue.values()];
}
