/**
 * The load generator of bench/grants.ts, run as its own process (forked by it) so that the
 * appliance's event loop is measured rather than the clients'. It signs each request with
 * the session key, as a runtime would (test/grants/rig.ts: grantBody, signed), and posts it
 * over keep-alive HTTP/1.1 connections, one per client in flight. It reports its own CPU,
 * since on a 2-core box the clients' cost comes out of the appliance's budget.
 *
 * Protocol (IPC): the parent sends a Setup, then one Level per concurrency; the child
 * answers each Level with a Result.
 */
import { createPrivateKey } from 'node:crypto';
import { Agent, request } from 'node:http';
import { grantBody, signed, type Runtime } from '../test/grants/rig.js';

export interface Setup {
  readonly kind: 'setup';
  readonly url: string;
  readonly runtime: Runtime;
  readonly attestationId: string;
  /** The session's private key, PKCS#8 PEM. */
  readonly privateKeyPem: string;
}

export interface Level {
  readonly kind: 'level';
  readonly concurrency: number;
  readonly seconds: number;
}

export interface Result {
  readonly kind: 'result';
  readonly concurrency: number;
  /** Latencies of the 201 answers, ms, in completion order. */
  readonly latencies: number[];
  /** Answers other than 201, by status. */
  readonly failures: Record<string, number>;
  /** This process's CPU (user + system, ms) over the level: signing requests and HTTP. */
  readonly cpuMs: number;
}

let setup: Setup | undefined;

function post(agent: Agent, url: URL, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          resolve(res.statusCode ?? 0);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function runLevel(s: Setup, level: Level): Promise<Result> {
  const key = createPrivateKey(s.privateKeyPem);
  const url = new URL(s.url);
  const agent = new Agent({ keepAlive: true, maxSockets: level.concurrency });
  const latencies: number[] = [];
  const failures: Record<string, number> = {};
  const end = Date.now() + level.seconds * 1000;
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: level.concurrency }, async () => {
      while (Date.now() < end) {
        const body = JSON.stringify(signed(grantBody(s.runtime), s.attestationId, key));
        const t0 = performance.now();
        let status: number;
        try {
          status = await post(agent, url, body);
        } catch {
          status = 0;
        }
        const ms = performance.now() - t0;
        if (status === 201) latencies.push(ms);
        else failures[String(status)] = (failures[String(status)] ?? 0) + 1;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return { kind: 'result', concurrency: level.concurrency, latencies, failures, cpuMs };
}

process.on('message', (msg: Setup | Level) => {
  if (msg.kind === 'setup') {
    setup = msg;
    return;
  }
  if (setup === undefined) throw new Error('level before setup');
  void runLevel(setup, msg).then((result) => {
    process.send?.(result);
  });
});
