/**
 * Regenerates the committed fixtures live (test/fixtures/tpm/make-fixtures.sh on a fresh
 * swtpm) and runs the same checks on both sets, so the committed captures and the script
 * that made them cannot drift apart.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { freePortPair, repoRoot } from '../rig/sim.js';
import { checkFixtureSet } from './fixture-checks.js';
import { toolEnv } from './tools.js';

const run = promisify(execFile);
let out: string;

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'grantor-fixtures-'));
  const env = toolEnv({ FIXTURE_TPM_PORT: String(await freePortPair()) });
  if (process.env.GRANTOR_TEST_TPM_TEMPLATE !== undefined) {
    env.FIXTURE_TPM_TEMPLATE = process.env.GRANTOR_TEST_TPM_TEMPLATE;
  }
  await run(join(repoRoot, 'test/fixtures/tpm/make-fixtures.sh'), [out], { env });
});

afterAll(async () => {
  await rm(out, { recursive: true, force: true });
});

describe('TPM fixtures', () => {
  it('a freshly generated set passes every check', () => {
    checkFixtureSet(out);
  });

  it('the committed set passes the same checks', () => {
    checkFixtureSet(fileURLToPath(new URL('../fixtures/tpm/', import.meta.url)));
  });
});
