import { describe, expect, it } from 'vitest';
import { ATTESTATION_CODES } from '../attestation/errors.js';
import { MEASURED_BOOT_CODES } from '../attestation/measured-boot/errors.js';
import type { ErrorCode } from '../shared/error-codes.js';
import { ERROR_STATUS, publicMessage, statusForCode } from './error-status.js';

/** docs/protocol.md, read as the contract: its status table and the codes its prose names. */
async function protocolErrors(): Promise<{ rows: Map<string, number>; named: string[] }> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const rows = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^\| (\d{3}) \| (.*) \|$/.exec(line);
    if (m === null) continue;
    for (const code of (m[2] ?? '').matchAll(/`([a-z0-9_]+)`/g))
      rows.set(code[1] ?? '', Number(m[1]));
  }
  const prose = /Codes are part of the contract \(e\.g\. ([^)]*)\)/.exec(text)?.[1] ?? '';
  const named = [...prose.matchAll(/`([a-z0-9_]+)`/g)].map((m) => m[1] ?? '');
  return { rows, named };
}

describe('the code -> status table', () => {
  it('maps each code the protocol names in prose to the status of its row there', async () => {
    const { rows, named } = await protocolErrors();
    expect(named.length).toBeGreaterThan(10);
    for (const code of named) {
      expect([code, statusForCode(code as ErrorCode)]).toEqual([code, rows.get(code)]);
    }
  });

  it('maps every attestation code to a 4xx status', () => {
    const unmapped = ATTESTATION_CODES.filter((c) => !Object.hasOwn(ERROR_STATUS, c));
    expect(unmapped).toEqual([]);
    for (const c of ATTESTATION_CODES) expect(statusForCode(c)).toBeLessThan(500);
  });

  it('maps every measured-boot code to a 4xx status', () => {
    for (const c of MEASURED_BOOT_CODES) expect([c, statusForCode(c) < 500]).toEqual([c, true]);
  });

  it('answers a code no route answers with (LOCAL) as 500 and hides 5xx messages', () => {
    expect(statusForCode('tpm_parse_truncated')).toBe(500);
    expect(publicMessage('hsm_unavailable', 503, 'C_Sign: CKR_DEVICE_ERROR slot 3')).toBe(
      'the HSM is unavailable',
    );
    expect(publicMessage('tpm_parse_truncated', 500, '/etc/secret')).toBe('internal error');
    expect(publicMessage('policy_denied', 403, 'not allowed')).toBe('not allowed');
  });
});

describe('the wire contract (docs/protocol.md)', () => {
  it('lists every code the appliance answers with, under its status', async () => {
    const { rows } = await protocolErrors();
    const table = new Map<string, number>(Object.entries(ERROR_STATUS));
    const missing = [...table].filter(([c, status]) => rows.get(c) !== status);
    expect(missing).toEqual([]);
    const unknown = [...rows.keys()].filter((c) => !table.has(c));
    expect(unknown).toEqual([]);
  });
});
