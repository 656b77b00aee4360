/**
 * Vitest global setup of both projects: every log line the run writes through
 * createLogger (src/shared/logger.ts), in the test workers and in the processes they
 * spawn, at every level, goes to one capture file (GRANTOR_TEST_LOG_FILE, inherited), and
 * the secrets the run makes are registered next to it (GRANTOR_TEST_SECRETS_FILE, see
 * secrets.ts). The teardown scans the capture (log-scan.ts) and fails the run, naming each
 * file and line but never the secret, if one is found; the folder is then kept for
 * reading. Listed first, so that secrets made by the other global setups are registered.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeFindings, scanLogs } from './log-scan.js';
import { loadSecrets } from './secrets.js';

// Both projects list this setup; the first to start creates the files, the last to end scans.
const REFS = 'GRANTOR_TEST_LOG_REFS';

export default async function setup(): Promise<() => Promise<void>> {
  const refs = Number(process.env[REFS] ?? '0');
  if (refs === 0) {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-test-logs-'));
    process.env.GRANTOR_TEST_LOG_FILE = join(dir, 'suite.log');
    process.env.GRANTOR_TEST_SECRETS_FILE = join(dir, 'secrets.jsonl');
    await writeFile(process.env.GRANTOR_TEST_LOG_FILE, '');
    await writeFile(process.env.GRANTOR_TEST_SECRETS_FILE, '', { mode: 0o600 });
  }
  process.env[REFS] = String(refs + 1);
  const logFile = process.env.GRANTOR_TEST_LOG_FILE ?? '';
  const secretsFile = process.env.GRANTOR_TEST_SECRETS_FILE ?? '';
  return async () => {
    const left = Number(process.env[REFS] ?? '1') - 1;
    process.env[REFS] = String(left);
    if (left > 0) return;
    const dir = join(logFile, '..');
    const secrets = await loadSecrets(secretsFile);
    const findings = await scanLogs([logFile], secrets);
    const { size } = await stat(logFile);
    // One line in the run's output, so that a reader of CI sees the scan ran, and on what.
    console.log(
      `secrets scan: ${size} bytes of captured log lines, ${secrets.length} registered secrets plus token and key formats, ${findings.length} found`,
    );
    if (findings.length > 0) {
      // Vitest reports an error thrown here but keeps its exit code: set it too.
      process.exitCode = 1;
      throw new Error(`${describeFindings(findings)}\n(kept for reading: ${dir})`);
    }
    if (process.env.GRANTOR_KEEP_RIG !== '1') await rm(dir, { recursive: true, force: true });
  };
}
