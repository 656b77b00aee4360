import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../shared/errors.js';
import { marshalTpm2bPublic } from '../tpm/marshal/public.js';
import { AK_TEMPLATE_ECC_P256 } from '../tpm/templates.js';
import type { PinnedAnchor } from './anchor-pin.js';
import { formatAnchorPin, parseAnchorPin, readAnchorPin, writeAnchorPin } from './anchor-pin.js';

// Any TPM2B_PUBLIC that parses (the AK template itself).
const AK_PUBLIC = marshalTpm2bPublic(AK_TEMPLATE_ECC_P256);
const pin: PinnedAnchor = {
  counterIndex: 0x01500020,
  extendIndex: 0x01500021,
  names: { counter: `000b${'ab'.repeat(32)}`, extend: `000b${'cd'.repeat(32)}` },
  genesisCounter: 42n,
  akPublic: AK_PUBLIC,
  writeKey: { name: `000b${'ef'.repeat(32)}`, policy: '12'.repeat(32) },
};

const KEY = 'GRANTOR_AUDIT_ANCHOR_PIN';
const invalid = (text: string): unknown => {
  try {
    parseAnchorPin(text, KEY);
  } catch (err) {
    return err;
  }
  throw new Error('expected a ConfigError');
};

describe('the anchor pin file', () => {
  it('round-trips', () => {
    expect(parseAnchorPin(formatAnchorPin(pin), KEY)).toEqual(pin);
  });

  it('still parses a format-1 pin (owner-written indices), which has no write key', () => {
    const { writeKey: _, ...old } = pin;
    expect(formatAnchorPin(old)).toContain('grantor-anchor-pin/1');
    expect(parseAnchorPin(formatAnchorPin(old), KEY)).toEqual(old);
  });

  it.each([
    ['not JSON', '{'],
    ['another format', JSON.stringify({ format: 'x' })],
    ['a bad index', formatAnchorPin(pin).replace('0x01500020', '0x1500020')],
    ['an uppercase name', formatAnchorPin(pin).replace('000babab', '000bABAB')],
    ['a name of another hash', formatAnchorPin(pin).replace('000babab', '000cabab')],
    ['a negative genesis', formatAnchorPin(pin).replace('"42"', '"-1"')],
    ['a numeric genesis', formatAnchorPin(pin).replace('"42"', '42')],
    ['a genesis past 64 bits', formatAnchorPin(pin).replace('"42"', `"${2n ** 64n}"`)],
    ['no write key', formatAnchorPin(pin).replace(/"writeKey": \{[^}]*\}/, '"writeKey": {}')],
    [
      'a format-1 pin with a write key',
      formatAnchorPin(pin).replace('grantor-anchor-pin/2', 'grantor-anchor-pin/1'),
    ],
    ['a short write policy', formatAnchorPin(pin).replace('12'.repeat(32), '12'.repeat(31))],
    ['no AK', formatAnchorPin(pin).replace(/"akPublic": "[^"]*"/, '"akPublic": ""')],
    [
      'an AK that is not a TPM2B_PUBLIC',
      formatAnchorPin(pin).replace(/"akPublic": "[^"]*"/, '"akPublic": "AAEC"'),
    ],
  ])('refuses %s with a ConfigError naming the key', (_what, text) => {
    expect(invalid(text)).toBeInstanceOf(ConfigError);
    expect(invalid(text)).toMatchObject({ code: 'config_invalid', key: KEY });
  });

  it('parses arbitrary text to a pin or a ConfigError, never anything else', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc
            .record({
              format: fc.constantFrom('grantor-anchor-pin/1', 'grantor-anchor-pin/2'),
              counterIndex: fc.oneof(fc.string(), fc.integer()),
              extendIndex: fc.string(),
              names: fc.anything(),
              writeKey: fc.anything(),
              genesisCounter: fc.oneof(fc.bigInt().map(String), fc.string()),
            })
            .map((o) => JSON.stringify(o)),
        ),
        (text) => {
          try {
            parseAnchorPin(text, KEY);
          } catch (err) {
            expect(err).toBeInstanceOf(ConfigError);
          }
        },
      ),
    );
  });

  it('is written read-only, read back, absent is undefined, and never replaced', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-pin-'));
    try {
      const file = join(dir, 'sub', 'anchor-pin.json');
      expect(await readAnchorPin(file, KEY)).toBeUndefined();
      await writeAnchorPin(file, pin);
      expect((await stat(file)).mode & 0o777).toBe(0o444);
      expect(await readAnchorPin(file, KEY)).toEqual(pin);
      await expect(writeAnchorPin(file, { ...pin, genesisCounter: 7n })).rejects.toMatchObject({
        code: 'EEXIST',
      });
      expect(await readFile(file, 'utf8')).toBe(formatAnchorPin(pin));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
