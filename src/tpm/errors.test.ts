import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { GrantorError } from '../shared/errors.js';
import * as errors from './errors.js';
import {
  TPM_RC,
  TpmArgumentError,
  TpmClosedError,
  TpmError,
  TpmResponseError,
  TpmUnavailableError,
  fromNative,
  tpmBaseRc,
} from './errors.js';
import * as marshal from './marshal/index.js';

const nativeRc = (rc: number, layer: string, command = 'NV_Read'): Error =>
  Object.assign(new Error('x'), {
    code: 'ERR_TPM_RC',
    rc,
    layer,
    decoded: 'decoded text',
    command,
  });

describe('tpmBaseRc', () => {
  it('strips handle/parameter/session numbers from format-one codes', () => {
    expect(tpmBaseRc(0x18b)).toBe(TPM_RC.HANDLE); // handle 1
    expect(tpmBaseRc(0x9a2)).toBe(TPM_RC.BAD_AUTH); // session 1
    expect(tpmBaseRc(0x1c4)).toBe(TPM_RC.VALUE); // parameter 1
  });
  it('keeps format-zero codes and non-TPM layers as they are', () => {
    expect(tpmBaseRc(TPM_RC.NV_RATE)).toBe(TPM_RC.NV_RATE);
    expect(tpmBaseRc(TPM_RC.INITIALIZE)).toBe(TPM_RC.INITIALIZE);
    expect(tpmBaseRc(0xa000a)).toBe(0xa000a);
  });
});

describe('fromNative', () => {
  it('maps a TPM-layer rejection to TpmError with rc, layer, decoded and command', () => {
    const e = fromNative(nativeRc(0x18b, 'tpm'), 'fallback');
    expect(e).toBeInstanceOf(TpmError);
    expect(e).toMatchObject({
      code: 'tpm_error',
      rc: 0x18b,
      layer: 'tpm',
      decoded: 'decoded text',
      command: 'NV_Read',
    });
    if (!(e instanceof TpmError)) throw new Error('not a TpmError');
    expect(e.is(TPM_RC.HANDLE)).toBe(true);
    expect(e.is(TPM_RC.VALUE)).toBe(false);
  });

  it('maps a TCTI-layer rejection to tpm_unavailable', () => {
    const e = fromNative(nativeRc(0xa000a, 'tcti', 'open'), 'open');
    expect(e).toBeInstanceOf(TpmUnavailableError);
    expect(e).toMatchObject({ code: 'tpm_unavailable', rc: 0xa000a, layer: 'tcti' });
  });

  it('maps an unknown layer name to "unknown" but keeps the rc', () => {
    expect(fromNative(nativeRc(0x70001, 'martian'), 'x')).toMatchObject({
      code: 'tpm_error',
      layer: 'unknown',
      rc: 0x70001,
    });
  });

  it('maps a closed context to TpmClosedError (tpm_unavailable)', () => {
    const e = fromNative(
      Object.assign(new Error('closed'), { code: 'ERR_TPM_CLOSED' }),
      'GetRandom',
    );
    expect(e).toBeInstanceOf(TpmClosedError);
    expect(e.code).toBe('tpm_unavailable');
  });

  it('maps an argument type error to bad_request', () => {
    const e = fromNative(
      Object.assign(new TypeError('bytes must be a number'), { code: 'ERR_INVALID_ARG_TYPE' }),
      'GetRandom',
    );
    expect(e).toBeInstanceOf(TpmArgumentError);
    expect(e.code).toBe('bad_request');
  });

  it('passes GrantorErrors through and wraps anything else as tpm_error', () => {
    const g = new GrantorError('tpm_unavailable', 'm');
    expect(fromNative(g, 'x')).toBe(g);
    const e = fromNative('weird', 'Quote');
    expect(e).toBeInstanceOf(TpmResponseError);
    expect(e.code).toBe('tpm_error');
  });
});

describe('the one home of the TPM error classes', () => {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const sources = readdirSync(here, { recursive: true, encoding: 'utf8' }).filter(
    (f) => f.endsWith('.ts') && !f.endsWith('.test.ts'),
  );

  it('is this file: no other source under src/tpm declares an error class', () => {
    const elsewhere = sources.filter(
      (f) =>
        f !== 'errors.ts' &&
        /\bclass\s+\w+\s+extends\s+\w*Error\b/.test(readFileSync(join(here, f), 'utf8')),
    );
    expect(sources).toContain(join('marshal', 'verify.ts'));
    expect(elsewhere).toEqual([]);
  });

  it("re-exports the TPM structures' errors from ./marshal, where callers found them before", () => {
    const adapter = ['TpmError', 'TpmUnavailableError', 'TpmClosedError', 'TpmResponseError'];
    const structureErrors = Object.entries(errors).filter(
      ([name, value]) =>
        typeof value === 'function' &&
        value.prototype instanceof Error &&
        ![...adapter, 'TpmArgumentError'].includes(name),
    );
    expect(structureErrors.map(([name]) => name).sort()).toEqual([
      'PcrValuesError',
      'TpmKeyInvalidError',
      'TpmKeyUnsupportedError',
      'TpmMarshalError',
      'TpmParseError',
      'TpmParseInvalidError',
      'TpmParseOversizedError',
      'TpmParseTrailingError',
      'TpmParseTruncatedError',
      'TpmSignatureHashMismatchError',
      'TpmSignatureInvalidError',
      'TpmSignatureOutOfRangeError',
      'TpmSignatureSchemeMismatchError',
    ]);
    const reexported = marshal as Record<string, unknown>;
    for (const [name, value] of structureErrors) expect(reexported[name], name).toBe(value);
  });
});
