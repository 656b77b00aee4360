/**
 * docs/deploy.md's troubleshooting table names every error code of the one table
 * (src/shared/error-codes.ts) and no code that does not exist; its glossary has the terms
 * the issue asked for.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_STATUS } from '../../src/http/error-status.js';
import { repoRoot } from '../rig/sim.js';

async function section(title: string): Promise<string> {
  const text = await readFile(join(repoRoot, 'docs/deploy.md'), 'utf8');
  const start = text.indexOf(`## ${title}`);
  expect(start, title).toBeGreaterThanOrEqual(0);
  const end = text.indexOf('\n## ', start + 1);
  return text.slice(start, end === -1 ? undefined : end);
}

describe('docs/deploy.md', () => {
  it('has a troubleshooting row for every error code, and only real codes', async () => {
    const table = await section('Troubleshooting: error codes');
    const named = new Set(
      table
        .split('\n')
        .filter((l) => l.startsWith('| `'))
        .flatMap((l) =>
          [...(l.split(' | ')[0] ?? '').matchAll(/`([a-z0-9_]+)`/g)].map((m) => m[1]),
        ),
    );
    const codes = Object.keys(ERROR_STATUS);
    expect(codes.filter((c) => !named.has(c))).toEqual([]);
    expect([...named].filter((c) => c === undefined || !(c in ERROR_STATUS))).toEqual([]);
  });

  it('has the glossary terms', async () => {
    const glossary = await section('Glossary');
    for (const term of ['JCS', 'C2SP', 'NV', 'PCR', 'EK', 'AK', 'cnf']) {
      expect(glossary).toContain(`| ${term} |`);
    }
  });
});
