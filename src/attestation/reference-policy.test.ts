import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  loadReferencePolicies,
  parseReferencePolicy,
  policyForLabels,
} from './reference-policy.js';
import { tempDirs } from '../shared/testing/temp-dirs.js';

const tmp = tempDirs('grantor-refpol-');
afterAll(() => tmp.removeAll());

const zero32 = '00'.repeat(32);
const valid = {
  name: 'dev',
  selector: {},
  pcrs: { sha256: { '0': [zero32], '7': [zero32, 'AB'.repeat(32)] } },
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'ok';
}

describe('reference policies', () => {
  it('parses a valid policy with lower-cased values and defaults', () => {
    const p = parseReferencePolicy(valid, 't');
    expect(p.allowReset).toBe(true);
    expect([...(p.pcrs.get('sha256')?.get(7) ?? [])]).toEqual([zero32, 'ab'.repeat(32)]);
  });

  it.each([
    ['not an object', 7],
    ['bad name', { ...valid, name: 'a b' }],
    ['unknown member', { ...valid, extra: 1 }],
    ['no banks', { ...valid, pcrs: {} }],
    ['unknown bank', { ...valid, pcrs: { md5: { '0': [zero32] } } }],
    ['sha1 without allowSha1', { ...valid, pcrs: { sha1: { '0': ['00'.repeat(20)] } } }],
    ['PCR index out of range', { ...valid, pcrs: { sha256: { '24': [zero32] } } }],
    ['empty values', { ...valid, pcrs: { sha256: { '0': [] } } }],
    ['wrong value length', { ...valid, pcrs: { sha256: { '0': ['00'] } } }],
    ['selector not strings', { ...valid, selector: { a: 1 } }],
  ])('refuses %s at load (config_invalid)', (_what, raw) => {
    expect(codeOf(() => parseReferencePolicy(raw, 't'))).toBe('config_invalid');
  });

  it('allows the sha1 bank only when the policy says so', () => {
    const p = parseReferencePolicy(
      { ...valid, allowSha1: true, pcrs: { sha1: { '0': ['00'.repeat(20)] } } },
      't',
    );
    expect(p.pcrs.has('sha1')).toBe(true);
  });

  it('assigns by label selector, the most specific first', () => {
    const base = parseReferencePolicy(valid, 'a');
    const team = parseReferencePolicy(
      { ...valid, name: 'team', selector: { team: 'payments' } },
      'b',
    );
    expect(policyForLabels([base, team], { team: 'payments' })?.name).toBe('team');
    expect(policyForLabels([base, team], { team: 'other' })?.name).toBe('dev');
    expect(policyForLabels([team], {})).toBeUndefined();
  });

  it('loads files (one policy or an array) and refuses duplicate names or bad JSON', async () => {
    const dir = await tmp.make();
    await writeFile(join(dir, 'a.json'), JSON.stringify(valid));
    await writeFile(join(dir, 'b.json'), JSON.stringify([{ ...valid, name: 'other' }]));
    await writeFile(join(dir, 'bad.json'), '{');
    expect(
      (await loadReferencePolicies([join(dir, 'a.json'), join(dir, 'b.json')])).map((p) => p.name),
    ).toEqual(['dev', 'other']);
    await expect(
      loadReferencePolicies([join(dir, 'a.json'), join(dir, 'a.json')]),
    ).rejects.toMatchObject({
      code: 'config_invalid',
    });
    await expect(loadReferencePolicies([join(dir, 'bad.json')])).rejects.toMatchObject({
      code: 'config_invalid',
    });
  });
});
