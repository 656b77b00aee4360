import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LogMalformedError, LogTooLargeError } from './errors.js';
import { parseImaAscii, parseImaBinary } from './ima.js';
import { EMPTY_IMA_STATE, replayIma } from './ima-replay.js';
import { FIXTURES, failure, fixture } from './testing.js';

type Shipped = Record<
  string,
  {
    templates: Record<string, number>;
    violations: number;
    replayed_pcrs_sha1: Record<string, string>;
  }
>;
const pcr10 = (entries: ReturnType<typeof parseImaAscii>) =>
  Object.fromEntries(
    [...(replayIma(entries, ['sha1']).pcrs.get('sha1') ?? [])].map(([k, v]) => [
      String(k),
      v.toString('hex'),
    ]),
  );

describe('IMA ASCII list', () => {
  const shipped = JSON.parse(
    readFileSync(`${FIXTURES}keylime/ima/replayed_pcr10.json`, 'utf8'),
  ) as Shipped;

  it.each([
    'ascii_runtime_measurements_ima-ng',
    'ascii_runtime_measurements_ima',
    'ima-sig_measurements.txt',
    'ima-buf_keyring.txt',
  ])('%s: templates, violations and replayed PCR 10 as shipped', (f) => {
    const entries = parseImaAscii(fixture(`keylime/ima/${f}`));
    const want = shipped[f];
    const counts: Record<string, number> = {};
    for (const e of entries) counts[e.template] = (counts[e.template] ?? 0) + 1;
    expect(counts).toEqual(want?.templates);
    expect(entries.filter((e) => e.violation)).toHaveLength(want?.violations ?? -1);
    expect(pcr10(entries)).toEqual(want?.replayed_pcrs_sha1);
  });

  it('reads ima-sig signatures, empty ones, and ima-buf buffers', () => {
    const sig = parseImaAscii(fixture('keylime/ima/ima-sig_measurements.txt'));
    expect(sig[0]?.name).toBe('boot_aggregate');
    expect(sig[0]?.signature?.length).toBe(0);
    const dd = sig.find((e) => e.name === '/usr/bin/dd');
    expect(dd?.signature?.subarray(0, 2).toString('hex')).toBe('0302');
    expect(dd?.digestAlg).toBe('sha256');
    const buf = parseImaAscii(fixture('keylime/ima/ima-buf_keyring.txt'))[0];
    expect(buf?.name).toBe('.ima');
    expect(buf?.buf?.[0]).toBe(0x30);
  });

  it('checks template hashes: the bad-signature list is refused (ima_log_mismatch)', () => {
    const entries = parseImaAscii(fixture('keylime/ima/ima-sig_bad_signature.txt'));
    expect(failure(() => replayIma(entries, ['sha1']))).toEqual({ code: 'ima_log_mismatch' });
  });

  it('reads every digest algorithm of the create-runtime-policy lists; refuses `unknown`', () => {
    for (const alg of ['sha1', 'sha256', 'sha384', 'sha512']) {
      const e = parseImaAscii(fixture(`keylime/ima/create-runtime-policy/ima-log-${alg}`));
      expect(e[1]?.digestAlg).toBe(alg);
    }
    // Its template-hash column is SM3 (32 bytes), not SHA-1.
    const sm3 = parseImaAscii(fixture('keylime/ima/create-runtime-policy/ima-log-sm3_256'), {
      templateHashSize: 32,
    });
    expect(() => replayIma(sm3, ['sha256'], EMPTY_IMA_STATE, 'sm3_256')).not.toThrow();
    expect(
      failure(() =>
        parseImaAscii(fixture('keylime/ima/create-runtime-policy/ima-log-unknown'), {
          templateHashSize: 32,
        }),
      ),
    ).toMatchObject({
      code: 'ima_log_malformed',
      field: 'digest',
    });
  });

  it('refuses malformed lines with the field', () => {
    const ok =
      '10 1d8d532d463c9f8c205d0df7787669a85f93e260 ima-ng sha1:0000000000000000000000000000000000000000 boot_aggregate';
    expect(parseImaAscii(ok)).toHaveLength(1);
    for (const [line, field] of [
      [ok.replace(/^10/, '24'), 'pcr'],
      [ok.replace('1d8d', '1d8'), 'templateHash'],
      [ok.replace('ima-ng', 'ima-xx'), 'templateName'],
      [ok.replace('sha1:', 'sha1'), 'digest'],
      [ok.replace('sha1:00', 'sha1:0'), 'digest'],
      [ok.replace('sha1:', 'md4:'), 'digest'],
      ['10 1d8d532d463c9f8c205d0df7787669a85f93e260', 'templateHash'],
    ] as const)
      expect(failure(() => parseImaAscii(line))).toMatchObject({
        code: 'ima_log_malformed',
        field,
      });
  });

  it('turns arbitrary text into entries or its own error', () => {
    const alphabet = fc.constantFrom(...'0123456789abcdef :\nimang-sgbuf/'.split(''));
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 200 }), (chars) => {
        try {
          parseImaAscii(chars.join(''));
        } catch (e) {
          expect(e).toBeInstanceOf(LogMalformedError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('IMA binary list', () => {
  const shipped = JSON.parse(
    readFileSync(`${FIXTURES}tpm2-tss/ima/replayed_pcrs.json`, 'utf8'),
  ) as Shipped;

  it.each([
    ['sml-ima-ng-sha1.bin', 'truncated', 'pcr', 1],
    ['sml-ima-sha1.bin', 'truncated', 'pcr', 1],
    ['sml-ima-sig-sha256.bin', 'truncated', 'templateHash', 6],
    ['sml-ima-ng-sha1-invalidated.bin', 'truncated', 'templateData', undefined],
  ] as const)(
    '%s: refused (%s %s); its complete records replay as shipped',
    (f, reason, field, cut) => {
      const bytes = fixture(`tpm2-tss/ima/${f}`);
      expect(failure(() => parseImaBinary(bytes))).toMatchObject({
        code: 'ima_log_malformed',
        reason,
        field,
      });
      if (cut === undefined) return;
      const entries = parseImaBinary(bytes.subarray(0, bytes.length - cut));
      expect(pcr10(entries)).toEqual(shipped[f]?.replayed_pcrs_sha1);
      expect(entries.filter((e) => e.violation)).toHaveLength(shipped[f]?.violations ?? -1);
    },
  );

  it.each(['sml-ima-sha1-invalidated.bin', 'sml-ima-sig-sha256-invalidated.bin'])(
    '%s: violations replay as shipped',
    (f) => {
      const entries = parseImaBinary(fixture(`tpm2-tss/ima/${f}`));
      expect(entries.filter((e) => e.violation)).toHaveLength(1);
      expect(pcr10(entries)).toEqual(shipped[f]?.replayed_pcrs_sha1);
    },
  );

  it('binary and ASCII forms of one entry have the same hash input', () => {
    const bin = parseImaBinary(fixture('tpm2-tss/ima/sml-ima-sig-sha256.bin').subarray(0, -6));
    const e = bin[1];
    if (e === undefined) throw new Error('no entry');
    const line = `10 ${e.templateHash.toString('hex')} ima-sig ${e.digestAlg}:${e.digest.toString('hex')} ${e.name} `;
    expect(parseImaAscii(line)[0]?.hashInput).toEqual(e.hashInput);
  });

  it('refuses an oversized template data length, an unknown template, trailing fields', () => {
    const bytes = Buffer.from(fixture('tpm2-tss/ima/sml-ima-ng-sha1.bin').subarray(0, -1));
    const first = parseImaBinary(bytes)[0];
    if (first === undefined) throw new Error('no entry');
    const dataLenAt = 4 + 20 + 4 + 6;
    const big = Buffer.from(bytes);
    big.writeUInt32LE(0x7fffffff, dataLenAt);
    expect(failure(() => parseImaBinary(big))).toMatchObject({
      reason: 'oversized',
      field: 'templateData.size',
    });
    const unknown = Buffer.from(bytes);
    unknown.write('ima-xx', 28, 'latin1');
    expect(failure(() => parseImaBinary(unknown))).toMatchObject({
      reason: 'invalid',
      field: 'templateName',
    });
    const extra = Buffer.from(bytes);
    extra.writeUInt32LE(extra.readUInt32LE(dataLenAt) - 1, dataLenAt);
    expect(failure(() => parseImaBinary(extra)).code).toBe('ima_log_malformed');
  });

  it('enforces the byte and entry limits', () => {
    const bytes = fixture('tpm2-tss/ima/sml-ima-ng-sha1.bin').subarray(0, -1);
    expect(
      failure(() => parseImaBinary(bytes, { limits: { maxBytes: 10, maxEntries: 100 } })),
    ).toEqual({ code: 'ima_log_too_large' });
    expect(
      failure(() => parseImaBinary(bytes, { limits: { maxBytes: 1 << 20, maxEntries: 5 } })),
    ).toEqual({ code: 'ima_log_too_large' });
    expect(() => new LogTooLargeError('ima_log_too_large', 'bytes', 2, 1)).not.toThrow();
  });

  it('turns arbitrary bytes into entries or its own error', () => {
    const valid = fixture('tpm2-tss/ima/sml-ima-ng-sha1.bin').subarray(0, 80);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(80), (bytes, keep) => {
        try {
          parseImaBinary(Buffer.concat([valid.subarray(0, keep), bytes]));
        } catch (e) {
          expect(e).toBeInstanceOf(LogMalformedError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('incremental IMA replay', () => {
  const all = parseImaAscii(fixture('keylime/ima/ascii_runtime_measurements_ima-ng'));

  it('replaying in slices equals replaying at once, in every bank', () => {
    const whole = replayIma(all, ['sha1', 'sha256']);
    let state = EMPTY_IMA_STATE;
    for (const [a, b] of [
      [0, 100],
      [100, 101],
      [101, 826],
    ] as const)
      state = replayIma(all.slice(a, b), ['sha1', 'sha256'], state);
    expect(state).toEqual(whole);
    expect(state.count).toBe(826);
  });

  it('refuses entries that do not start where the verified state ends', () => {
    const state = replayIma(all.slice(0, 100), ['sha1']);
    expect(failure(() => replayIma(all.slice(99), ['sha1'], state))).toEqual({
      code: 'ima_log_offset_invalid',
    });
    const text = readFileSync(`${FIXTURES}keylime/ima/ascii_runtime_measurements_ima-ng`, 'latin1');
    const tail = parseImaAscii(text.split('\n').slice(100).join('\n'), { offset: 100 });
    expect(replayIma(tail, ['sha1'], state)).toEqual(replayIma(all, ['sha1']));
  });
});
