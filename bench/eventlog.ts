/**
 * Measured-boot throughput, next to a raw SHA-256 loop over the same bytes in the same run:
 *  - TCG event logs: parse + replay every bank, MB/s, over the 14 go-tpm-tools logs;
 *  - IMA: parse (ASCII) + template-hash check + replay (SHA-1 and SHA-256), entries/s,
 *    over a synthetic 100,000-entry ima-ng list;
 *  - the per-attestation cost of verifying 10 new IMA entries for a runtime with 100,000
 *    entries already verified, next to one with none: incremental replay keeps it flat.
 *   npx tsx bench/eventlog.ts [seconds per measurement, default 3]
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseImaAscii } from '../src/attestation/measured-boot/ima.js';
import { replayIma } from '../src/attestation/measured-boot/ima-replay.js';
import { MeasuredBoot } from '../src/attestation/measured-boot/measured-boot.js';
import type { StoredImaState } from '../src/attestation/runtime-store.port.js';
import { replayEventLog } from '../src/attestation/measured-boot/replay.js';
import { parseEventLog } from '../src/attestation/measured-boot/tcg-log.js';
import { FIXTURES } from '../src/attestation/measured-boot/testing.js';

const seconds = Number(process.argv[2] ?? '3');

/** Runs `fn` for `seconds`; returns calls per second. */
function perSecond(fn: () => void): number {
  for (let i = 0; i < 3; i++) fn();
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    fn();
    n += 1;
  }
  return n / ((performance.now() - start) / 1000);
}

const line = (name: string, value: string) => {
  console.log(`${name.padEnd(58)} ${value.padStart(14)}`);
};
const sha256Loop = (chunks: readonly Buffer[]) => () => {
  for (const c of chunks) createHash('sha256').update(c).digest();
};

// TCG event logs.
const dir = `${FIXTURES}go-tpm-tools/eventlogs/`;
const logs = readdirSync(dir)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => readFileSync(dir + f));
const logBytes = logs.reduce((n, b) => n + b.length, 0);
const mb = (calls: number, bytes: number) => `${((calls * bytes) / 1e6).toFixed(1)} MB/s`;
line(
  `event logs: parse + replay (${logs.length} logs, ${logBytes} bytes)`,
  mb(
    perSecond(() => {
      for (const l of logs) replayEventLog(parseEventLog(l));
    }),
    logBytes,
  ),
);
line('event logs: raw SHA-256 over the same bytes', mb(perSecond(sha256Loop(logs)), logBytes));

// IMA: a synthetic list with valid template hashes.
function imaList(n: number, from = 0): string {
  const out: string[] = [];
  for (let i = from; i < from + n; i++) {
    const digest = createHash('sha256').update(`file ${i}`).digest('hex');
    const path = `/usr/lib/bench/file-${i}.so`;
    const dng = Buffer.concat([Buffer.from('sha256:\0'), Buffer.from(digest, 'hex')]);
    const nng = Buffer.from(`${path}\0`);
    const len = (b: Buffer) => {
      const x = Buffer.alloc(4);
      x.writeUInt32LE(b.length);
      return x;
    };
    const th = createHash('sha1')
      .update(Buffer.concat([len(dng), dng, len(nng), nng]))
      .digest('hex');
    out.push(`10 ${th} ima-ng sha256:${digest} ${path}`);
  }
  return out.join('\n');
}
const N = 100_000;
// The whole list at once, above the per-attestation default (docs/measured-boot.md).
const BENCH_LIMITS = { maxBytes: 1 << 26, maxEntries: 200_000 };
const big = imaList(N);
const bigBytes = Buffer.from(big, 'latin1');
const imaRate = perSecond(() => {
  replayIma(parseImaAscii(bigBytes, { limits: BENCH_LIMITS }), ['sha1', 'sha256']);
});
line(
  `IMA: parse + check + replay sha1,sha256 (${N} entries, ${bigBytes.length} bytes)`,
  `${((imaRate * N) / 1e3).toFixed(0)} k entries/s`,
);
line('IMA: same run, in MB/s', mb(imaRate, bigBytes.length));
line(
  'IMA: raw SHA-256 over the same bytes',
  mb(perSecond(sha256Loop([bigBytes])), bigBytes.length),
);

// Per attestation: 10 new entries on top of 100,000 verified ones vs on top of none.
function attestationCost(verified: number): number {
  const mbv = new MeasuredBoot();
  const earlier = parseImaAscii(imaList(verified), { offset: 0, limits: BENCH_LIMITS });
  const fresh = parseImaAscii(imaList(10, verified), { offset: verified });
  const quoted = (entries: typeof earlier) => ({
    sha256: { 10: replayIma(entries, ['sha256']).pcrs.get('sha256')?.get(10) ?? Buffer.alloc(32) },
  });
  const counters = { resetCount: 1, restartCount: 0 };
  // The state as the runtime store keeps it: JSON in the record, read back each time.
  const stored =
    verified > 0
      ? JSON.stringify(
          mbv.verify(
            { eventLog: undefined, ima: { offset: 0, entries: earlier } },
            quoted(earlier),
            counters,
            undefined,
            undefined,
          ).imaState,
        )
      : 'null';
  const after = quoted([...earlier, ...fresh]);
  const rate = perSecond(() => {
    const out = mbv.verify(
      { eventLog: undefined, ima: { offset: verified, entries: fresh } },
      after,
      counters,
      undefined,
      JSON.parse(stored) as StoredImaState | null,
    );
    JSON.stringify(out.imaState);
  });
  return 1000 / rate;
}
line(
  'per attestation, 10 new IMA entries, none verified before',
  `${attestationCost(0).toFixed(3)} ms`,
);
line(
  `per attestation, 10 new IMA entries, ${N} verified before`,
  `${attestationCost(N).toFixed(3)} ms`,
);
