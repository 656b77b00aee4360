/**
 * A real nginx (the Debian package) in front of an upstream, gated by `grantor-gateway`'s
 * auth_request endpoint: run without root privileges needed, from a temporary prefix
 * (`-p DIR -c nginx.conf`, `daemon off`), on a free port. The configuration is the one
 * docs/gateway.md shows operators (deploy/nginx/grantor-gateway.conf).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../rig/sim.js';

export const NGINX = process.env.GRANTOR_TEST_NGINX ?? '/usr/sbin/nginx';

export interface Nginx {
  readonly url: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      s.close(() => {
        resolve(port);
      });
    });
  });
}

/**
 * Starts nginx on a free port: `location /` goes to `upstream` after the auth_request to
 * `gateway` when `gateway` is given, and straight through without it (the bench's baseline).
 */
export async function startNginx(upstream: string, gateway: string | undefined): Promise<Nginx> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-nginx-'));
  const port = await freePort();
  const template = await readFile(join(repoRoot, 'deploy/nginx/grantor-gateway.conf'), 'utf8');
  const site = template
    .replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`)
    .replaceAll('http://127.0.0.1:9000', upstream)
    .replaceAll('http://127.0.0.1:9080', gateway ?? 'http://127.0.0.1:1');
  const gated = gateway === undefined ? site.replace(/^\s*auth_request .*$/gm, '') : site;
  await mkdir(join(dir, 'logs'));
  await writeFile(
    join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'logs/error.log')} warn;`,
      'events { worker_connections 256; }',
      'http {',
      `  access_log off;`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
        (t) => `  ${t}_temp_path ${join(dir, t)};`,
      ),
      gated,
      '}',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(
    NGINX,
    ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'logs/error.log')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      const log = await readFile(join(dir, 'logs/error.log'), 'utf8').catch(() => '');
      throw new Error(`nginx exited ${child.exitCode}: ${stderr} ${log}`);
    }
    const up = await fetch(`${url}/nginx-health`).then(
      () => true,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGQUIT');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
