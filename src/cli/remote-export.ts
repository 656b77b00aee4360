/**
 * `grantor audit export FILE --url ...|--profile ...`: downloads a live evidence bundle
 * (GET /v1/audit/export, auditor) over HTTPS with the operator credential of remote.ts,
 * straight to FILE (never held in memory, never overwriting), with a progress bar on
 * stderr. The nonce is the caller's (or a fresh random one, printed for `audit verify`).
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { stringOption, flag, type Parsed } from './args.js';
import type { Io } from './io.js';
import { errorOf, RemoteConfigError, unreachable, type Connection } from './remote.js';

const IDLE_TIMEOUT_MS = 60_000;

function get(conn: Connection, path: string): Promise<IncomingMessage> {
  const url = new URL(path, conn.url);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: 'GET',
        headers: {
          accept: 'application/x-ndjson, application/json',
          ...(conn.token === undefined ? {} : { authorization: `Bearer ${conn.token}` }),
        },
        ...(conn.ca === undefined ? {} : { ca: conn.ca }),
        ...(conn.cert === undefined ? {} : { cert: conn.cert }),
        ...(conn.key === undefined ? {} : { key: conn.key }),
        timeout: IDLE_TIMEOUT_MS,
      },
      resolve,
    );
    req.on('timeout', () => {
      req.destroy(new Error(`no data from ${conn.url.origin} within ${IDLE_TIMEOUT_MS} ms`));
    });
    req.on('error', (e: Error & { code?: string }) => {
      reject(unreachable(conn, e));
    });
    req.end();
  });
}

async function errorBody(res: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return null;
  }
}

/** A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise. */
function progressBar(io: Io, tty: boolean): (done: number, total: number) => void {
  let lastTenth = -1;
  let lastDraw = 0;
  return (done, total) => {
    const ratio = total === 0 ? 1 : Math.min(1, done / total);
    const bar = `[${'#'.repeat(Math.round(ratio * 30)).padEnd(30, '.')}] ${Math.floor(ratio * 100)}% ${done}/${total} entries`;
    if (tty) {
      const now = Date.now();
      if (now - lastDraw < 100 && done < total) return;
      lastDraw = now;
      process.stderr.write(`\r${bar}${done >= total ? '\n' : ''}`);
      return;
    }
    const tenth = Math.floor(ratio * 10);
    if (tenth === lastTenth) return;
    lastTenth = tenth;
    io.err(bar);
  };
}

export async function remoteExport(conn: Connection, parsed: Parsed, io: Io): Promise<number> {
  const file = parsed.positionals[0];
  if (file === undefined) throw new RemoteConfigError('audit export: FILE is missing');
  if (flag(parsed, 'legacy')) {
    throw new RemoteConfigError('audit export: --legacy is for the local (stopped) appliance');
  }
  const nonce = stringOption(parsed, 'nonce') ?? randomBytes(32).toString('hex');
  const q = new URLSearchParams();
  for (const name of ['from', 'to', 'since', 'period'] as const) {
    const v = stringOption(parsed, name);
    if (v !== undefined) q.set(name, v);
  }
  q.set('nonce', nonce);
  const res = await get(conn, `/v1/audit/export?${q.toString()}`);
  if (res.statusCode !== 200) {
    throw errorOf({ status: res.statusCode ?? 0, body: await errorBody(res) });
  }
  const handle = await open(file, 'wx', 0o600);
  const draw = progressBar(io, process.stderr.isTTY);
  let total: number | undefined;
  let done = 0;
  let ended = false;
  let pending = '';
  try {
    for await (const chunk of res) {
      const buf = chunk as Buffer;
      await handle.write(buf);
      // Count records by their line starts; the header gives the total.
      const text = pending + buf.toString('utf8');
      const lines = text.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) {
        if (total === undefined && l.startsWith('{"type":"header"')) {
          const h = JSON.parse(l) as { from?: number; to?: number };
          total = (h.to ?? 0) - (h.from ?? 0);
        } else if (l.startsWith('{"type":"entry"')) {
          done += 1;
        } else if (l.startsWith('{"type":"end"')) {
          ended = true;
        }
      }
      if (total !== undefined) draw(done, total);
    }
  } finally {
    await handle.close();
  }
  if (!ended) {
    io.err(
      `audit export: the stream ended early; ${file} is incomplete (verify calls it truncated)`,
    );
    return 1;
  }
  io.out(`exported an evidence bundle of ${done} entries to ${file}`);
  io.out(`nonce ${nonce.toLowerCase()}: pass it to grantor audit verify --nonce`);
  return 0;
}
