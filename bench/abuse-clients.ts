/**
 * The abusive clients of bench/abuse.ts, run in a child process (fork, IPC) so that their
 * loops do not starve the legitimate client's event loop (the bench would then measure
 * itself): a
 * challenge flood for one runtime, forged grant signatures for the honest runtime's id,
 * oversized bodies, malformed JSON, slow bodies, junk operator tokens and half-open
 * connections, each from its own loopback address.
 * The process (GRANTOR_ABUSE_DATA set) runs until it is sent 'stop', then sends each
 * client's status counts and exits.
 * `flood` is also used by the bench itself (the /readyz probe).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';

export type Tally = Map<string, number>;
const bump = (t: Tally, key: string): void => {
  t.set(key, (t.get(key) ?? 0) + 1);
};
/** `concurrency` loops of one request each until `stop()` says so; statuses tallied. */
export async function flood(
  base: URL,
  localAddress: string,
  concurrency: number,
  make: () => {
    path: string;
    body?: string | Buffer;
    method?: 'GET' | 'POST';
    headers?: Record<string, string>;
  },
  stop: () => boolean,
  pauseMs = 0,
): Promise<Tally> {
  const tally: Tally = new Map();
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, localAddress });
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const r = make();
      const req = httpRequest(
        {
          host: base.hostname,
          port: base.port,
          method: r.method ?? 'POST',
          path: r.path,
          agent,
          headers: {
            ...(r.body === undefined ? {} : { 'content-type': 'application/json' }),
            ...r.headers,
          },
        },
        (res) => {
          bump(tally, String(res.statusCode));
          res.resume();
          res.on('end', resolve);
          res.on('error', () => {
            resolve();
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        // The server may answer an oversized body early and close before reading it all.
        bump(tally, e.code ?? 'error');
        resolve();
      });
      req.end(r.body);
    });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!stop()) {
        await one();
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
    }),
  );
  agent.destroy();
  return tally;
}

/** `count` connections to `base` from `localAddress`, until `stop()`. */
export interface ConnectionFlood {
  readonly base: URL;
  readonly localAddress: string;
  readonly count: number;
  readonly stop: () => boolean;
}

function floodSocket({ base, localAddress }: ConnectionFlood): Socket {
  return connect({ host: base.hostname, port: Number(base.port), localAddress });
}

/** Connections that send a request body a byte every 500 ms; what each one ends with. */
export async function slowBodies(flood: ConnectionFlood): Promise<Tally> {
  const { count, stop } = flood;
  const tally: Tally = new Map();
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve) => {
          const socket = floodSocket(flood);
          let answered = false;
          let timer: NodeJS.Timeout | undefined;
          const done = (outcome: string): void => {
            if (answered) return;
            answered = true;
            clearInterval(timer);
            bump(tally, outcome);
            socket.destroy();
            resolve();
          };
          socket.on('connect', () => {
            socket.write(
              'POST /v1/grants HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
                'Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{',
            );
            timer = setInterval(() => {
              if (stop()) done('still-open');
              else socket.write(' ');
            }, 500);
          });
          socket.on('data', (d: Buffer) => {
            done(/^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'))?.[1] ?? 'garbage');
          });
          socket.on('close', () => {
            done('closed');
          });
          socket.on('error', (e: NodeJS.ErrnoException) => {
            done(e.code ?? 'error');
          });
        }),
    ),
  );
  return tally;
}

/**
 * Bare TCP connections that never send a byte, kept at `count` (each one the listener
 * closes is opened again): a half-open flood against the connection caps and timeouts.
 * Tallies how each ended (`closed` by the server, `still-open` at the stop).
 */
export async function halfOpen(flood: ConnectionFlood): Promise<Tally> {
  const { count, stop } = flood;
  const tally: Tally = new Map();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = floodSocket(flood);
      const timer = setInterval(() => {
        if (stop()) {
          bump(tally, 'still-open');
          clearInterval(timer);
          socket.destroy();
          resolve();
        }
      }, 200);
      socket.on('close', () => {
        clearInterval(timer);
        if (!stop()) bump(tally, 'closed');
        resolve();
      });
      socket.on('error', () => undefined);
    });
  await Promise.all(
    Array.from({ length: count }, async () => {
      while (!stop()) {
        await one();
        // Reconnecting at once after a refusal would only spin this process.
        if (!stop()) await new Promise((r) => setTimeout(r, 100));
      }
    }),
  );
  return tally;
}

export const ABUSERS = [
  'challenges',
  'forged',
  'oversized',
  'malformed',
  'slow',
  'junk-tokens',
  'half-open',
] as const;

/** The flood cases of issue 14 (operator plane and connections), run in their own phase. */
export const OPERATOR_PLANE_ABUSERS: readonly AbuserName[] = ['junk-tokens', 'half-open'];
export type AbuserName = (typeof ABUSERS)[number];

export interface AbuseClientsData {
  readonly base: string;
  readonly runtimeId: string;
  readonly attestationId: string;
  readonly enabled: readonly AbuserName[];
}

/** Each enabled client's status counts (as plain entries, to cross the process boundary). */
export type AbuseReport = Partial<Record<AbuserName, [string, number][]>>;

async function runAbusers(data: AbuseClientsData, stopped: () => boolean): Promise<AbuseReport> {
  const { grantBody, signed } = await import('../test/grants/rig.js');
  const base = new URL(data.base);
  const rt = { runtimeId: data.runtimeId, ak: '' };
  const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const oversized = JSON.stringify({ ...grantBody(rt), resource: 'x'.repeat(256 * 1024) });
  const clients: Record<AbuserName, () => Promise<Tally>> = {
    challenges: () =>
      flood(base, '127.0.0.2', 16, () => ({ path: '/v1/runtimes/rt_flooder/challenges' }), stopped),
    forged: () =>
      flood(
        base,
        '127.0.0.3',
        4,
        () => ({
          path: '/v1/grants',
          body: JSON.stringify(signed(grantBody(rt), data.attestationId, forger)),
        }),
        stopped,
      ),
    oversized: () =>
      flood(base, '127.0.0.4', 4, () => ({ path: '/v1/grants', body: oversized }), stopped),
    malformed: () =>
      flood(
        base,
        '127.0.0.4',
        4,
        () => ({ path: '/v1/grants', body: '{"runtimeId":"rt_x","requestId":' }),
        stopped,
      ),
    slow: () => slowBodies({ base, localAddress: '127.0.0.5', count: 32, stop: stopped }),
    // Invalid operator tokens (each its own id) on an operator route: 401, their audit
    // entries budgeted per address.
    'junk-tokens': () =>
      flood(
        base,
        '127.0.0.7',
        4,
        () => ({
          method: 'GET',
          path: '/v1/audit/entries?from=0',
          headers: {
            authorization: `Bearer gop_${randomBytes(8).toString('hex')}${'J'.repeat(43)}`,
          },
        }),
        stopped,
      ),
    // More bare connections than one address may hold (GRANTOR_MAX_CONNECTIONS_PER_ADDRESS).
    'half-open': () => halfOpen({ base, localAddress: '127.0.0.8', count: 300, stop: stopped }),
  };
  const results = await Promise.all(
    data.enabled.map(async (name) => [name, [...(await clients[name]())]] as const),
  );
  return Object.fromEntries(results);
}

const data = process.env.GRANTOR_ABUSE_DATA;
const send = process.send?.bind(process);
if (data !== undefined && send !== undefined) {
  let stop = false;
  process.once('message', () => {
    stop = true;
  });
  void runAbusers(JSON.parse(data) as AbuseClientsData, () => stop).then((report) => {
    send(report, () => {
      process.exit(0);
    });
  });
}
