/**
 * Where an audit anchor write's time goes, command by command: a TCP proxy between the
 * addon and swtpm times each TPM command (request out to response in: swtpm's own time plus
 * loopback), and the anchor write key's signatures are timed apart. The rest of the wall
 * time is outside swtpm: ESYS's own work in the addon, libuv's threadpool, the TPM queue,
 * the event loop (docs/grants.md, "The audit anchor's round trips").
 *
 *   npx tsx bench/anchor-profile.ts [batches] [threadpool-load] [direct]
 *
 * `direct`: no proxy (the wall time without its hop; no per-command times then).
 * `threadpool-load` (default 0) keeps that many async pbkdf2 calls in flight on libuv's
 * threadpool meanwhile (as LevelDB reads, pkcs11js calls and crypto do in the appliance).
 * Prints times only; nothing here asserts on timing.
 */
import { pbkdf2 } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { TpmAuditAnchor, provisionTpmAnchor } from '../src/audit/anchor.tpm.js';
import { Pkcs11AnchorKey } from '../src/audit/anchor-key.pkcs11.js';
import type { AnchorWriteKey } from '../src/audit/anchor-key.port.js';
import { NativeTpm } from '../src/tpm/tpm.native.js';
import {
  freePortPair,
  provisionSimHsm,
  provisionTpmTemplate,
  startSimTpm,
} from '../test/rig/sim.js';

const batches = Number(process.argv[2] ?? '50');
const poolLoad = Number(process.argv[3] ?? '0');
const direct = process.argv[4] === 'direct';

const CC: Record<number, string> = {
  0x131: 'CreatePrimary',
  0x136: 'NV_Extend',
  0x134: 'NV_Increment',
  0x14e: 'NV_Read',
  0x169: 'NV_ReadPublic',
  0x165: 'FlushContext',
  0x176: 'StartAuthSession',
  0x167: 'LoadExternal',
  0x160: 'PolicySigned',
  0x184: 'NV_Certify',
  0x17a: 'GetCapability',
  0x162: 'ContextSave',
  0x161: 'ContextLoad',
  0x173: 'ReadPublic',
};

interface Row {
  n: number;
  ms: number;
}
const perCommand = new Map<string, Row>();
let tpmMs = 0;
let commands = 0;

async function timingProxy(upstream: number): Promise<{ tcti: string; close: () => void }> {
  const port = await freePortPair();
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (down) => {
    const up = connect({ port: upstream, host: '127.0.0.1', noDelay: true });
    sockets.add(down).add(up);
    const sent: { cc: number; at: number }[] = [];
    let pendingDown = Buffer.alloc(0);
    let pendingUp = Buffer.alloc(0);
    down.on('data', (chunk: Buffer) => {
      pendingDown = Buffer.concat([pendingDown, chunk]);
      while (pendingDown.length >= 10 && pendingDown.length >= pendingDown.readUInt32BE(2)) {
        const size = pendingDown.readUInt32BE(2);
        sent.push({ cc: pendingDown.readUInt32BE(6), at: performance.now() });
        up.write(pendingDown.subarray(0, size));
        pendingDown = pendingDown.subarray(size);
      }
    });
    up.on('data', (chunk: Buffer) => {
      pendingUp = Buffer.concat([pendingUp, chunk]);
      while (pendingUp.length >= 10 && pendingUp.length >= pendingUp.readUInt32BE(2)) {
        const size = pendingUp.readUInt32BE(2);
        const c = sent.shift();
        if (c !== undefined) {
          const ms = performance.now() - c.at;
          const name = CC[c.cc] ?? `0x${c.cc.toString(16)}`;
          const row = perCommand.get(name) ?? { n: 0, ms: 0 };
          row.n += 1;
          row.ms += ms;
          perCommand.set(name, row);
          tpmMs += ms;
          commands += 1;
        }
        down.write(pendingUp.subarray(0, size));
        pendingUp = pendingUp.subarray(size);
      }
    });
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('error', () => down.destroy());
    up.on('error', () => up.destroy());
  });
  const control = createServer((down) => {
    const up = connect(upstream + 1, '127.0.0.1');
    sockets.add(down).add(up);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((r) =>
    server.listen(port, '127.0.0.1', () => {
      r();
    }),
  );
  await new Promise<void>((r) =>
    control.listen(port + 1, '127.0.0.1', () => {
      r();
    }),
  );
  return {
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
      control.close();
    },
  };
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'grantor-bench-anchor-'));
  await provisionTpmTemplate(join(root, 'tpm-template'));
  const sim = await startSimTpm(join(root, 'tpm-template'));
  const proxy = await timingProxy(Number(/port=(\d+)/.exec(sim.tcti)?.[1]));
  const tpm = await NativeTpm.open(direct ? sim.tcti : proxy.tcti);
  const hsm = await provisionSimHsm(join(root, 'hsm'), 'grantor-bench');
  process.env.SOFTHSM2_CONF = hsm.conf;
  const key = new Pkcs11AnchorKey(
    { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin },
    { create: true },
  );
  let signMs = 0;
  const writeKey: AnchorWriteKey = {
    publicPoint: () => key.publicPoint(),
    signDigests: async (d) => {
      const t0 = performance.now();
      try {
        return await key.signDigests(d);
      } finally {
        signMs += performance.now() - t0;
      }
    },
    close: () => key.close(),
  };
  let running = true;
  const loads = Array.from({ length: poolLoad }, async () => {
    while (running) {
      await new Promise((r) => {
        pbkdf2('x', 'y', 2000, 32, 'sha256', r);
      });
    }
  });
  try {
    const indices = { counterIndex: 0x01500120, extendIndex: 0x01500121 };
    const pin = await provisionTpmAnchor(tpm, indices, { writeKey });
    const anchor = new TpmAuditAnchor(tpm, { ...indices, pinnedNames: pin.names, writeKey });
    await anchor.extend(Buffer.alloc(32));
    await anchor.increment();
    await anchor.readAfterWrite();
    perCommand.clear();
    tpmMs = 0;
    commands = 0;
    signMs = 0;
    const steps = { extend: 0, increment: 0, readAfterWrite: 0 };
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    for (let k = 0; k < batches; k++) {
      let t = performance.now();
      await anchor.extend(Buffer.alloc(32, k));
      steps.extend += performance.now() - t;
      t = performance.now();
      await anchor.increment();
      steps.increment += performance.now() - t;
      t = performance.now();
      await anchor.readAfterWrite();
      steps.readAfterWrite += performance.now() - t;
    }
    const wall = (performance.now() - t0) / batches;
    const cpu = process.cpuUsage(cpu0);
    const f = (x: number): string => x.toFixed(2);
    console.log(
      `threadpool load ${poolLoad}, UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}, ${batches} anchor writes`,
    );
    console.log(
      `per anchor write: wall ${f(wall)} ms; TPM commands ${f(commands / batches)} taking ${f(tpmMs / batches)} ms at the bus; key signs ${f(signMs / batches)} ms; rest (waiting, hops) ${f(wall - tpmMs / batches - signMs / batches)} ms`,
    );
    console.log(
      `  this process's CPU (every thread: ESYS/SAPI, the key's signs, the event loop; not swtpm's): ${f((cpu.user + cpu.system) / 1000 / batches)} ms`,
    );
    console.log(
      `  steps: extend ${f(steps.extend / batches)} ms, increment ${f(steps.increment / batches)} ms, readAfterWrite ${f(steps.readAfterWrite / batches)} ms`,
    );
    for (const [name, row] of [...perCommand.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
      console.log(
        `  ${name.padEnd(16)} ${f(row.n / batches).padStart(5)} per write, ${f(row.ms / row.n).padStart(6)} ms each`,
      );
    }
  } finally {
    running = false;
    await Promise.all(loads);
    await key.close();
    await tpm.close();
    proxy.close();
    await sim.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
