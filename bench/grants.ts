/**
 * End-to-end grants per second in session mode over HTTP (real swtpm for the runtime and
 * for the audit anchor, SoftHSM2, Cedar, LevelDB, audit on) at concurrency 1, 16 and 64,
 * with p50/p99 latency, next to the raw SoftHSM ES256 sign rate measured in the same run.
 *
 *   npx tsx bench/grants.ts [seconds-per-level]
 *
 * Server and clients share this process (and the machine's 2 cores); the clients sign
 * each request with the session key, as a runtime would.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { provisionSimHsm, provisionTpmTemplate } from '../test/rig/sim.js';
import { createEccAk } from '../test/attestation/tools.js';

const seconds = Number(process.argv[2] ?? '5');
const root = await mkdtemp(join(tmpdir(), 'grantor-bench-grants-'));
await provisionTpmTemplate(join(root, 'tpm-template'));
const hsm = await provisionSimHsm(join(root, 'hsm'));
process.env.GRANTOR_TEST_TPM_TEMPLATE = join(root, 'tpm-template');
process.env.GRANTOR_TEST_HSM_DIR = hsm.dir;
process.env.SOFTHSM2_CONF = hsm.conf;

// Imported after the environment is set: the PKCS#11 module reads SOFTHSM2_CONF at init.
const { attest, enroll, grantBody, signed, startRig } = await import('../test/grants/rig.js');

const rig = await startRig();
const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

try {
  await createEccAk(rig.tools);
  await rig.tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', '0x81010003']);
  const rt = await enroll(
    rig,
    'bench-agent',
    { team: 'support' },
    { ctx: '0x81010003', pub: 'ak.pub' },
    'rsa',
  );
  const session = await attest(rig, rt);

  // Raw HSM rate: the key service's signJws (the same call the pipeline makes), 16 in flight.
  const rawEnd = Date.now() + seconds * 1000;
  let raw = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (Date.now() < rawEnd) {
        const exp = Math.floor(Date.now() / 1000) + 60;
        await rig.keys.signJws({ typ: 'grant+jwt' }, Buffer.from(JSON.stringify({ exp })));
        raw += 1;
      }
    }),
  );
  const rawRate = raw / seconds;

  await rig.app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(rig.app.server.address() as AddressInfo).port}/v1/grants`;

  const rows: string[] = [];
  for (const concurrency of [1, 16, 64]) {
    const latencies: number[] = [];
    let failures = 0;
    const end = Date.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < end) {
          const body = JSON.stringify(
            signed(grantBody(rt), session.attestationId, session.key.privateKey),
          );
          const t0 = performance.now();
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
          });
          await res.arrayBuffer();
          const ms = performance.now() - t0;
          if (res.status === 201) latencies.push(ms);
          else failures += 1;
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    const rate = latencies.length / seconds;
    rows.push(
      [
        String(concurrency).padStart(11),
        rate.toFixed(0).padStart(9),
        percentile(latencies, 50).toFixed(1).padStart(8),
        percentile(latencies, 99).toFixed(1).padStart(8),
        String(failures).padStart(8),
        `${((100 * rate) / rawRate).toFixed(0)}%`.padStart(9),
      ].join(' '),
    );
  }
  console.log(`raw SoftHSM ES256 signJws: ${rawRate.toFixed(0)}/s (16 in flight, ${seconds} s)`);
  console.log('concurrency  grants/s  p50 ms  p99 ms  failures  % of raw');
  for (const r of rows) console.log(r);
} finally {
  await rig.close();
  await rm(root, { recursive: true, force: true });
}
