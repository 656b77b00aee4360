/** Shared helpers for the TPM structure tests (unit tests in src/tpm/marshal use them too). */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { expect } from 'vitest';
import { TpmParseError } from '../../src/tpm/errors.js';
import {
  marshalTpm2bPublic,
  objectName,
  unmarshalTpm2bPublic,
  type TpmtPublic,
} from '../../src/tpm/marshal/public.js';

export const PARSE_CODES = new Set([
  'tpm_parse_truncated',
  'tpm_parse_oversized',
  'tpm_parse_trailing',
  'tpm_parse_invalid',
]);

/** A committed fixture from test/fixtures/tpm. */
export function fixture(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/tpm/${name}`, import.meta.url));
}

/**
 * A TPM2B_PUBLIC and its name as tpm2-tools wrote them: the area re-marshals byte for byte,
 * the name we compute is the TPM's, and, given a `template`, the area is that template but for
 * `unique`. `label` names the object in a failure.
 */
export function checkPublic(
  bytes: Buffer,
  name: Buffer,
  template?: TpmtPublic,
  label = 'public',
): TpmtPublic {
  const pub = unmarshalTpm2bPublic(bytes);
  expect(marshalTpm2bPublic(pub).equals(bytes), label).toBe(true);
  expect(objectName(pub).equals(name), label).toBe(true);
  const withoutUnique = (p: TpmtPublic): unknown => ({ ...p, unique: undefined });
  if (template !== undefined) expect(withoutUnique(pub), label).toEqual(withoutUnique(template));
  return pub;
}

/** The TpmParseError code `fn` throws ('no error' if it returns); any other throw fails. */
export function parseCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof TpmParseError) return e.code;
    throw e;
  }
  return 'no error';
}

/** The `code` of whatever `fn` throws ('no error' if it returns). */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string')
      return e.code;
    throw e;
  }
  return 'no error';
}

/** Every strict prefix of `bytes` is refused as truncated, and one byte more as trailing. */
export function expectExactLength(parse: (b: Uint8Array) => unknown, bytes: Uint8Array): void {
  for (let n = 0; n < bytes.length; n++) {
    expect(
      parseCode(() => parse(bytes.subarray(0, n))),
      `prefix of ${n} bytes`,
    ).toBe('tpm_parse_truncated');
  }
  expect(parseCode(() => parse(Buffer.concat([bytes, Buffer.of(0)])))).toBe('tpm_parse_trailing');
}

/**
 * What every parser owes on a valid `sample` (docs: STYLE "Parsing binary structures"): it
 * takes exactly the sample's length (expectExactLength) and gives only its own errors
 * (expectOnlyOwnErrors).
 */
export function expectParserContract<T>(
  parse: (b: Uint8Array) => T,
  remarshal: (v: T) => Uint8Array,
  sample: Uint8Array,
): void {
  expectExactLength(parse, sample);
  expectOnlyOwnErrors(parse, remarshal, sample);
}

/**
 * Property: arbitrary bytes, and single-byte mutations of a valid sample, give either a value
 * (which then re-marshals to the same bytes) or one of the parser's own errors.
 */
export function expectOnlyOwnErrors<T>(
  parse: (b: Uint8Array) => T,
  remarshal: (v: T) => Uint8Array,
  sample: Uint8Array,
): void {
  const check = (bytes: Uint8Array): void => {
    let value: T;
    try {
      value = parse(bytes);
    } catch (e) {
      expect(e).toBeInstanceOf(TpmParseError);
      expect(PARSE_CODES.has((e as TpmParseError).code)).toBe(true);
      return;
    }
    expect(Buffer.from(remarshal(value)).equals(Buffer.from(bytes))).toBe(true);
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), check), { numRuns: 300 });
  fc.assert(
    fc.property(
      fc.nat(Math.max(0, sample.length - 1)),
      fc.integer({ min: 0, max: 255 }),
      (i, v) => {
        const m = Buffer.from(sample);
        m[i] = v;
        check(m);
      },
    ),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.nat(sample.length), fc.uint8Array({ maxLength: 8 }), (cut, tail) => {
      check(Buffer.concat([sample.subarray(0, cut), tail]));
    }),
    { numRuns: 200 },
  );
}
