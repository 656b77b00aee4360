/**
 * TPM throughput: our addon in-process versus tpm2-tools spawned per operation, on the same
 * freshly provisioned swtpm in the same run. Run with `npx tsx bench/tpm.ts [seconds]`.
 * Prints rates only; nothing here asserts on timing.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { NativeTpm } from '../src/tpm/tpm.native.js';
import type { PcrBankSelection } from '../src/tpm/tpm.port.js';
import { provisionTpmTemplate, startSimTpm } from '../test/rig/sim.js';
import { AK_ECC_P256, SRK_ECC_P256 } from '../test/tpm/helpers.js';

const run = promisify(execFile);
const seconds = Number(process.argv[2] ?? '2');
const SRK = 0x81000001;
const AK = 0x81000010;
const COUNTER = 0x01500001;
const EXTEND = 0x01500002;
const selection: PcrBankSelection[] = [{ bank: 'sha256', pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];

/** Runs `op` repeatedly for about `budget` seconds; returns operations per second. */
async function rate(
  budget: number,
  op: () => Promise<unknown>,
): Promise<{ perSecond: number; n: number }> {
  await op(); // warm-up
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < budget * 1000) {
    await op();
    n++;
  }
  return { perSecond: (n * 1000) / (performance.now() - start), n };
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'grantor-bench-'));
  const template = join(root, 'template');
  await provisionTpmTemplate(template);
  const sim = await startSimTpm(template);
  const env = { ...process.env, TPM2TOOLS_TCTI: sim.tcti, TSS2_LOG: 'all+none' };
  const tool = async (cmd: string, args: string[]): Promise<void> => {
    await run(cmd, args, { env });
  };
  try {
    // Setup: a persistent SRK and ECC AK, a counter and an extend index.
    let tpm = await NativeTpm.open(sim.tcti);
    const srk = await tpm.createPrimary('owner', SRK_ECC_P256);
    const ak = await tpm.create(srk.handle, AK_ECC_P256);
    await tpm.makePersistent(srk.handle, SRK);
    await tpm.flush(srk.handle);
    await tpm.withLoaded(
      () => tpm.load(SRK, ak),
      (loaded) => tpm.makePersistent(loaded.handle, AK),
    );
    const nvAttrs = 0x2 | 0x4 | 0x20000 | 0x40000 | 0x2000000; // owner/auth read+write, noDA
    await tpm.nvDefine({
      index: COUNTER,
      nameAlg: 'sha256',
      attributes: nvAttrs | (1 << 4),
      dataSize: 8,
    });
    await tpm.nvDefine({
      index: EXTEND,
      nameAlg: 'sha256',
      attributes: nvAttrs | (4 << 4),
      dataSize: 32,
    });
    const nonce = createHash('sha256').update('bench').digest();
    const extendData = join(root, 'extend.bin');
    await writeFile(extendData, Buffer.from('audit-batch-root'));

    const ops: {
      name: string;
      native: () => Promise<unknown>;
      tool: [string, string[]];
    }[] = [
      {
        name: 'GetRandom(32)',
        native: () => tpm.getRandom(32),
        tool: ['tpm2_getrandom', ['32', '-o', join(root, 'rnd')]],
      },
      {
        name: 'Quote ECC P-256 (8 PCRs)',
        native: () => tpm.quote(AK, selection, nonce),
        tool: [
          'tpm2_quote',
          [
            '-c',
            `0x${AK.toString(16)}`,
            '-l',
            'sha256:0,1,2,3,4,5,6,7',
            '-q',
            nonce.toString('hex'),
            '-m',
            join(root, 'q.msg'),
            '-s',
            join(root, 'q.sig'),
          ],
        ],
      },
      {
        name: 'NV_Increment',
        native: () => tpm.nvIncrement(COUNTER),
        tool: [
          'tpm2_nvincrement',
          ['-C', `0x${COUNTER.toString(16)}`, `0x${COUNTER.toString(16)}`],
        ],
      },
      {
        name: 'NV_Extend',
        native: () => tpm.nvExtend(EXTEND, Buffer.from('audit-batch-root')),
        tool: [
          'tpm2_nvextend',
          ['-C', `0x${EXTEND.toString(16)}`, '-i', extendData, `0x${EXTEND.toString(16)}`],
        ],
      },
    ];

    const rows: string[][] = [];
    for (const op of ops) {
      const native = await rate(seconds, op.native);
      await tpm.close(); // swtpm serves one connection at a time
      const [cmd, args] = op.tool;
      const tools = await rate(seconds, () => tool(cmd, args));
      tpm = await NativeTpm.open(sim.tcti);
      rows.push([
        op.name,
        `${native.perSecond.toFixed(0)} (${native.n})`,
        `${tools.perSecond.toFixed(1)} (${tools.n})`,
        `${(native.perSecond / tools.perSecond).toFixed(1)}x`,
      ]);
    }
    await tpm.close();

    const header = ['operation', 'addon ops/s (n)', 'tpm2-tools ops/s (n)', 'ratio'];
    const widths = header.map((h, i) =>
      Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)),
    );
    const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
    console.log(`swtpm ${sim.tcti}, ~${seconds}s per measurement`);
    console.log(line(header));
    for (const r of rows) console.log(line(r));
  } finally {
    await sim.destroy();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
