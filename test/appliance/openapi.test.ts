/**
 * GET /openapi.json of the real appliance (startApplianceServer on a real swtpm and
 * SoftHSM2 token): `redocly lint` clean with redocly.yaml, every operation summarised and
 * tagged, and every answer the real app gives, to a sweep of every route with each
 * credential and to the runtime protocol's real flow, has a declared status and a body
 * that matches the declared schema. The summaries table and docs/protocol.md §7 name
 * exactly the document's operations.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_STATUS } from '../../src/http/error-status.js';
import { SUMMARIES, TAGS } from '../../src/http/plugins/openapi.catalog.js';
import { ROLES, type Role } from '../../src/operators/roles.js';
import { createEccAk } from '../attestation/tools.js';
import { attest, enroll, grantBody, signed } from '../grants/rig.js';
import { repoRoot } from '../rig/sim.js';
import { startRealAppliance, type RealAppliance } from './real.js';

const run = promisify(execFile);
const addFormats = addFormatsPlugin as unknown as (ajv: Ajv2020) => Ajv2020;

type Json = Record<string, unknown>;
interface Operation {
  summary?: string;
  tags?: string[];
  responses: Record<string, Json>;
  requestBody?: Json;
}
interface Document {
  servers?: unknown[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json>; responses: Record<string, Json> };
}
interface Answer {
  readonly method: string;
  readonly url: string;
  readonly status: number;
  readonly type: string;
  readonly body: string;
}

let real: RealAppliance;
let doc: Document;
let dir: string;
const tokens = {} as Record<Role, string>;
const answers: Answer[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-openapi-'));
  real = await startRealAppliance('openapi');
  const operators = real.server.appliance?.operators;
  if (operators === undefined) throw new Error('the appliance did not start');
  for (const role of ROLES) {
    tokens[role] = (await operators.tokens.create({ role, actor: `openapi-${role}` })).token;
  }
  doc = (await real.server.app.inject({ url: '/openapi.json' })).json<Document>();
}, 180_000);

afterAll(async () => {
  await real.close();
  await rm(dir, { recursive: true, force: true });
});

/** Sends a request to the real app and keeps its answer for the conformance check. */
async function send(
  method: string,
  url: string,
  options: { token?: string; payload?: unknown; headers?: Record<string, string> } = {},
) {
  const res = await real.server.app.inject({
    method: method as 'GET',
    url,
    headers: {
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
      ...options.headers,
    },
    ...(options.payload === undefined ? {} : { payload: options.payload as string }),
  });
  answers.push({
    method: method.toLowerCase(),
    url,
    status: res.statusCode,
    type: String(res.headers['content-type'] ?? ''),
    body: res.body,
  });
  return res;
}

/** The document's path template that `url` matches (literal segments win). */
function templateOf(url: string, method: string): string | undefined {
  const path = url.split('?')[0] ?? '';
  const candidates = Object.keys(doc.paths).filter((t) => {
    if (doc.paths[t]?.[method] === undefined) return false;
    const re = new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+').replace(/\./g, '\\.')}$`);
    return re.test(path);
  });
  return candidates.sort((a, b) => a.split('{').length - b.split('{').length)[0];
}

/** `GET /v1/runtimes/{}`: method in capitals, parameters unnamed. */
function route(method: string, path: string): string {
  return `${method.toUpperCase()} ${path.replace(/\{[^}]+\}/g, '{}')}`;
}

function split(key: string): [string, string] {
  const [method = '', path = ''] = key.split(' ');
  return [method, path];
}

/**
 * The routes of docs/protocol.md §7's table. A row's first cell holds `METHOD /path`
 * parts, a bare `METHOD` for the next path too, and `/x` for a sibling of the path before
 * (`/revoke` after `/v1/runtimes/{id}/approve`) or, when it is a whole path, itself.
 */
async function protocolRouteIndex(): Promise<Set<string>> {
  const text = await readFile(join(repoRoot, 'docs/protocol.md'), 'utf8');
  const start = text.indexOf('## 7. Every route');
  const section = text.slice(start, text.indexOf('\n## ', start + 1));
  const out = new Set<string>();
  for (const line of section.split('\n').filter((l) => l.startsWith('| `'))) {
    const methods: string[] = [];
    let base = '';
    for (const [, part = ''] of (line.split(' | ')[0] ?? '').matchAll(/`([^`]+)`/g)) {
      if (/^[A-Z]+$/.test(part)) {
        methods.push(part);
        continue;
      }
      const [method, path] = part.includes(' ') ? split(part) : ['', part];
      if (method !== '') methods.push(method);
      const sibling = method === '' && base.startsWith('/v1/') && !path.startsWith('/v1/');
      const full = sibling ? base.replace(/\/[^/]+$/, path) : path;
      for (const m of methods) out.add(route(m, full));
      if (method !== '') base = path;
    }
  }
  return out;
}

describe('GET /openapi.json of the real appliance', () => {
  it('is redocly lint clean', async () => {
    const file = join(dir, 'openapi.json');
    await writeFile(file, JSON.stringify(doc));
    const lint = await run(
      join(repoRoot, 'node_modules/.bin/redocly'),
      ['lint', file, '--config', join(repoRoot, 'redocly.yaml'), '--format', 'stylish'],
      { cwd: repoRoot, env: { ...process.env, REDOCLY_TELEMETRY: 'off', NO_COLOR: '1' } },
    ).catch((e: unknown) => {
      const out = e as { stdout?: string; stderr?: string };
      throw new Error(`redocly lint failed:\n${out.stdout ?? ''}${out.stderr ?? ''}`);
    });
    expect(`${lint.stdout}${lint.stderr}`).not.toMatch(/\berror\b.*\(/);
  }, 120_000);

  it('has servers, and a summary and a defined tag on every operation', () => {
    expect(doc.servers?.length).toBeGreaterThan(0);
    const tags = new Set(TAGS.map((t) => t.name));
    const missing: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if (op.summary === undefined || op.tags?.length !== 1 || !tags.has(op.tags[0] ?? ''))
          missing.push(`${method} ${path}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('has a summary table and a docs/protocol.md §7 row for exactly its operations', async () => {
    const operations = new Set(
      Object.entries(doc.paths).flatMap(([path, item]) =>
        Object.keys(item).map((method) => route(method, path)),
      ),
    );
    const summarised = new Set(Object.keys(SUMMARIES).map((k) => route(...split(k))));
    expect([...summarised].filter((r) => !operations.has(r))).toEqual([]);
    const listed = await protocolRouteIndex();
    expect([...operations].filter((r) => !listed.has(r)).sort()).toEqual([]);
    expect([...listed].filter((r) => !operations.has(r)).sort()).toEqual([]);
  });

  it('declares error.code as the enum of every real code', () => {
    const error = doc.components.schemas.Error as {
      properties: { error: { properties: { code: { enum: string[] } } } };
    };
    expect(error.properties.error.properties.code.enum).toEqual(Object.keys(ERROR_STATUS).sort());
  });

  it("matches every real answer of every route: a declared status and the status's schema", async () => {
    // The runtime protocol's real flow: enroll, attest, a granted and a denied grant.
    await createEccAk(real.tools);
    const runtime = await enroll(
      real.rig,
      'openapi-agent',
      { team: 'support' },
      { ctx: 'ak.ctx', pub: 'ak.pub' },
      'rsa',
    );
    const session = await attest(real.rig, runtime);
    for (const over of [{}, { action: 'audit.delete', resource: 'audit:1' }]) {
      await send('POST', '/v1/grants', {
        payload: signed(grantBody(runtime, over), session.attestationId, session.key.privateKey),
      });
    }
    await send('GET', `/v1/runtimes/${runtime.runtimeId}`, { token: tokens.operator });
    await send('GET', '/v1/audit/entries?from=0&limit=5', { token: tokens.auditor });
    await send('GET', '/v1/audit/proof/inclusion?seq=0&treeSize=1');
    await send('GET', '/v1/audit/proof/consistency?from=1&to=2');
    await send('GET', `/v1/audit/checkpoint?nonce=${'ab'.repeat(16)}`);
    // A body over the limit and one of the wrong type.
    await send('POST', '/v1/grants', { payload: { pad: 'x'.repeat(200_000) } });
    await send('POST', '/v1/grants', {
      payload: 'hello',
      headers: { 'content-type': 'text/plain' },
    });
    // Every operation with no credential and with each role's; bodies empty.
    for (const [path, item] of Object.entries(doc.paths)) {
      const url = path.replace(/\{[^}]+\}/g, 'x_openapi');
      for (const method of Object.keys(item)) {
        if (method === 'delete' || path.endsWith('/destroy') || path.endsWith('/revoke')) {
          // Acts with lasting effect are sent unauthenticated and as an auditor only.
          await send(method, url, { payload: {} });
          await send(method, url, { token: tokens.auditor, payload: {} });
          continue;
        }
        const payload = method === 'get' ? undefined : {};
        await send(method, url, payload === undefined ? {} : { payload });
        for (const role of ROLES) {
          await send(method, url, {
            token: tokens[role],
            ...(payload === undefined ? {} : { payload }),
          });
        }
      }
    }

    const ajv = addFormats(new Ajv2020({ strict: false, allErrors: true }));
    const validators = new Map<string, ValidateFunction>();
    const errorSchema = doc.components.schemas.Error ?? {};
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const a of answers) {
      const template = templateOf(a.url, a.method);
      const where = `${a.method.toUpperCase()} ${a.url} -> ${a.status}`;
      if (template === undefined) {
        problems.push(`${where}: no such operation`);
        continue;
      }
      seen.add(`${a.method} ${template}`);
      const response = doc.paths[template]?.[a.method]?.responses[String(a.status)];
      if (response === undefined) {
        problems.push(`${where}: status not declared`);
        continue;
      }
      const content = ('$ref' in response ? doc.components.responses.Error : response)?.content as
        Record<string, { schema?: Json }> | undefined;
      if (content === undefined) continue; // declared without a body schema
      const [type, media] = Object.entries(content)[0] ?? [];
      if (type === 'application/json' && !a.type.startsWith('application/json')) {
        problems.push(`${where}: answered ${a.type}, declared ${type}`);
        continue;
      }
      if (type !== 'application/json' || media?.schema === undefined) continue;
      const schema = '$ref' in media.schema ? errorSchema : media.schema;
      const key = `${template} ${a.method} ${a.status}`;
      let validate = validators.get(key);
      if (validate === undefined) {
        validate = ajv.compile(schema);
        validators.set(key, validate);
      }
      if (!validate(JSON.parse(a.body))) {
        problems.push(`${where}: ${ajv.errorsText(validate.errors)} in ${a.body.slice(0, 200)}`);
      }
    }
    expect(problems).toEqual([]);
    // Every documented operation was called at least once.
    const operations = Object.entries(doc.paths).flatMap(([p, item]) =>
      Object.keys(item).map((m) => `${m} ${p}`),
    );
    expect(operations.filter((o) => !seen.has(o))).toEqual([]);
    // The sweep reached the success answers too, not only refusals.
    expect(answers.filter((a) => a.status < 300).length).toBeGreaterThan(20);
  }, 300_000);
});
