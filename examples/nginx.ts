/**
 * A real nginx (the Debian package) in front of `grantor-gateway`, run with no root
 * privileges from a prefix of its own (`-p DIR -c nginx.conf`, `daemon off`; a temporary
 * one unless `dir` is given, e.g. the demo's folder), never the system's configuration, on
 * a free port. The site is one of the files docs/gateway.md shows operators:
 * deploy/nginx/grantor-gateway.conf (auth_request: nginx forwards to the upstream itself)
 * or deploy/nginx/grantor-gateway-proxy.conf (nginx forwards to the gateway in proxy mode,
 * which forwards to the upstream and reports the outcome). Used by the demo, the tests in
 * test/gateway-proxy and bench/gateway.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

export const NGINX =
  process.env.GRANTOR_NGINX ?? process.env.GRANTOR_TEST_NGINX ?? '/usr/sbin/nginx';

export interface NginxOptions {
  /** The site file in deploy/nginx/. Default grantor-gateway.conf (auth_request). */
  readonly site?: 'grantor-gateway.conf' | 'grantor-gateway-proxy.conf';
  /** The prefix folder (its configuration, logs, temporary files); kept after stop. */
  readonly dir?: string;
}

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
 * Starts nginx on a free port. With the auth_request site, `location /` goes to `upstream`
 * after the auth_request to `gateway` when `gateway` is given, and straight through without
 * it (the bench's baseline); with the proxy site, everything goes to `gateway`.
 */
export async function startNginx(
  upstream: string,
  gateway: string | undefined,
  options: NginxOptions = {},
): Promise<Nginx> {
  const own = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'grantor-nginx-')));
  const port = await freePort();
  const template = await readFile(
    join(repoRoot, 'deploy/nginx', options.site ?? 'grantor-gateway.conf'),
    'utf8',
  );
  const site = template
    .replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`)
    .replaceAll('http://127.0.0.1:9000', upstream)
    .replaceAll('http://127.0.0.1:9080', gateway ?? 'http://127.0.0.1:1');
  const gated = gateway === undefined ? site.replace(/^\s*auth_request .*$/gm, '') : site;
  await mkdir(join(dir, 'logs'), { recursive: true });
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
      if (own) await rm(dir, { recursive: true, force: true });
    },
  };
}
