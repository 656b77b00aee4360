import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalPolicySet, policySetHash, type PolicySource } from './policy-set.js';

/** Hashes computed by the code before the set's hash was defined on its canonical text. */
const PINNED: readonly [PolicySource, string][] = [
  [
    {
      schema: 'entity Runtime;',
      files: [
        { name: 'b.cedar', text: 'permit(principal, action, resource);' },
        { name: '__proto__', text: 'forbid(principal, action, resource);' },
        { name: 'a.cedar', text: '// é ✓\n' },
      ],
    },
    'd77cddff2619285c2012cab11ab0ecd5a7fcf76f96aca637fecd04d4c58361ca',
  ],
];

/**
 * The old computation, restated by hand: the JSON text with the top-level members and the
 * file names in code-unit order (RFC 8785 for string-only objects), then SHA-256.
 */
function oldHash(source: PolicySource): string {
  const order = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const files = [...source.files].sort((a, b) => order(a.name, b.name));
  const members = files.map((f) => `${JSON.stringify(f.name)}:${JSON.stringify(f.text)}`);
  const text = `{"policies":{${members.join(',')}},"schema":${JSON.stringify(source.schema)}}`;
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

describe('the hash of a policy set', () => {
  it('is the hash every existing set already has', () => {
    for (const [source, hash] of PINNED) expect(policySetHash(source)).toBe(hash);
  });

  it('is the SHA-256 of the canonical text, as the old computation gave it', () => {
    const text = fc.string({ unit: 'grapheme' });
    fc.assert(
      fc.property(text, fc.uniqueArray(text), fc.array(text), (schema, names, texts) => {
        const files = names.map((name, i) => ({ name, text: texts[i] ?? '' }));
        const source = { schema, files };
        const canonical = canonicalPolicySet(source);
        const hash = createHash('sha256').update(canonical, 'utf8').digest('hex');
        expect(policySetHash(source)).toBe(hash);
        expect(hash).toBe(oldHash(source));
      }),
    );
  });
});
