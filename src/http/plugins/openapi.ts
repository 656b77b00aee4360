/**
 * GET /openapi.json: an OpenAPI 3.1 document generated from the route schemas. An onRoute
 * hook collects every route registered after this plugin (so register it first); TypeBox
 * schemas are JSON Schema 2020-12, which OpenAPI 3.1 takes as is. Routes declaring
 * `config.role` are marked as needing an operator credential (bearer or mutual TLS) and
 * list the roles in `x-grantor-roles`.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { ERROR_STATUS } from '../error-status.js';
import { SUMMARIES, TAGS, tagOf } from './openapi.catalog.js';
import { namedGlobalPlugin } from './plugin.js';

export interface OpenApiOptions {
  readonly title?: string;
  readonly version?: string;
  readonly description?: string;
  /** Default: the server that answers (relative URL `/`). */
  readonly servers?: readonly { readonly url: string; readonly description?: string }[];
}

type Json = Record<string, unknown>;

interface CollectedRoute {
  readonly method: string;
  readonly url: string;
  readonly schema: Json;
  readonly roles: readonly string[] | undefined;
  readonly runtime: boolean;
  /** A route of enrolled gateways (bearer `ggw_...`). */
  readonly gateway?: boolean;
  /** Declared `config.public`: open to anyone on purpose. */
  readonly public: boolean;
  /** Declared `config.rateLimit`: may answer 429. */
  readonly rateLimited: boolean;
}

const ERROR_RESPONSE = { $ref: '#/components/responses/Error' };

/** A response schema of the contract's error shape (src/http/schemas.ts ErrorSchema). */
function isErrorSchema(schema: unknown): boolean {
  if (typeof schema !== 'object' || schema === null || !('properties' in schema)) return false;
  const error = (schema.properties as Json | undefined)?.error;
  return (
    typeof error === 'object' &&
    error !== null &&
    'properties' in error &&
    typeof (error.properties as Json | undefined)?.code === 'object'
  );
}

/**
 * Statuses every route of a kind can answer whatever its schema declares: the validation
 * and body parser errors, the operator guard, the rate limiter, and a failure of the
 * appliance (500; 503 from a dependency or a start-up lockdown, /healthz excepted).
 */
function impliedStatuses(route: CollectedRoute): string[] {
  const s = route.schema;
  const hasBody = route.method === 'post' || route.method === 'put' || route.method === 'patch';
  const out: string[] = [];
  if (hasBody || s.params !== undefined || s.querystring !== undefined || s.headers !== undefined)
    out.push('400');
  if (route.roles !== undefined) out.push('401', '403');
  if (route.runtime) out.push('403');
  if (s.params !== undefined) out.push('404');
  if (hasBody) out.push('413', '415');
  if (route.rateLimited) out.push('429');
  out.push('500');
  if (route.url !== '/healthz') out.push('503');
  return out;
}

export const OPENAPI_PLUGIN = 'grantor-openapi';
const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

/** A plain JSON copy: drops TypeBox's symbol and non-enumerable bookkeeping. */
function plain(value: unknown): Json | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  return JSON.parse(JSON.stringify(value)) as Json;
}

/** `/v1/runtimes/:runtimeId` -> `/v1/runtimes/{runtimeId}`; a trailing `*` -> `{path}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
}

function parameters(schema: Json | undefined, where: 'path' | 'query' | 'header'): Json[] {
  const props = schema?.properties;
  if (typeof props !== 'object' || props === null) return [];
  const required = Array.isArray(schema?.required) ? (schema.required as unknown[]) : [];
  return Object.entries(props as Json).map(([name, s]) => ({
    // A wildcard's parameter (fastify names it `*`) is `{path}` in the document.
    name: name === '*' ? 'path' : name,
    in: where,
    required: where === 'path' || required.includes(name),
    schema: s,
  }));
}

function responses(route: CollectedRoute, produces: readonly string[]): Json {
  const out: Json = {};
  for (const [status, s] of Object.entries(plain(route.schema.response) ?? {})) {
    const type = produces[0] ?? 'application/json';
    out[status] = isErrorSchema(s)
      ? ERROR_RESPONSE
      : { description: STATUS_CODES[Number(status)] ?? status, content: { [type]: { schema: s } } };
  }
  if (!Object.keys(out).some((status) => status.startsWith('2'))) {
    out['200'] = { description: 'OK (see docs/protocol.md)' };
  }
  for (const status of impliedStatuses(route)) out[status] ??= ERROR_RESPONSE;
  return out;
}

function operation(route: CollectedRoute): Json {
  const s = route.schema;
  const produces = Array.isArray(s.produces)
    ? s.produces.filter((x): x is string => typeof x === 'string')
    : [];
  const op: Json = {
    operationId: `${route.method.toLowerCase()}${route.url.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase())}`,
    parameters: [
      ...parameters(plain(s.params), 'path'),
      ...parameters(plain(s.querystring), 'query'),
      ...parameters(plain(s.headers), 'header'),
    ],
    responses: responses(route, produces),
  };
  const summary = SUMMARIES[`${route.method.toUpperCase()} ${openApiPath(route.url)}`];
  if (summary !== undefined) op.summary = summary;
  op.tags = [tagOf(route.url)];
  if (typeof s.description === 'string') op.description = s.description;
  const body = plain(s.body);
  if (body !== undefined) {
    op.requestBody = { required: true, content: { 'application/json': { schema: body } } };
  }
  if (route.roles !== undefined) {
    op.security = [{ bearerAuth: [] }, { mutualTLS: [] }];
    op['x-grantor-roles'] = [...route.roles];
  } else {
    op.security = [];
  }
  if (route.runtime) op['x-grantor-actor'] = 'runtime';
  if (route.gateway === true) {
    op.security = [{ bearerAuth: [] }];
    op['x-grantor-actor'] = 'gateway';
  }
  if (route.public) op['x-grantor-public'] = true;
  return op;
}

export function openApiDocument(routes: readonly CollectedRoute[], options: OpenApiOptions): Json {
  const paths: Record<string, Json> = {};
  for (const route of routes) {
    const path = openApiPath(route.url);
    const item = (paths[path] ??= {});
    item[route.method.toLowerCase()] = operation(route);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: options.title ?? 'grantor',
      version: options.version ?? '1',
      ...(options.description === undefined ? {} : { description: options.description }),
    },
    servers: (
      options.servers ?? [{ url: '/', description: 'the appliance serving this document' }]
    ).map((s) => ({ ...s })),
    tags: TAGS.map((t) => ({ ...t })),
    paths,
    components: {
      schemas: {
        Error: {
          type: 'object',
          description: 'Every non-2xx answer (docs/protocol.md, "Errors")',
          required: ['error'],
          additionalProperties: false,
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              additionalProperties: false,
              properties: {
                code: { type: 'string', enum: Object.keys(ERROR_STATUS).sort() },
                message: { type: 'string' },
                details: { type: 'object', additionalProperties: true },
              },
            },
          },
        },
      },
      responses: {
        Error: {
          description: 'An error: its code says which (the status follows from the code)',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'operator token (gop_...)' },
        mutualTLS: { type: 'mutualTLS', description: 'client certificate from the operator CA' },
      },
    },
  };
}

function collect(route: RouteOptions): CollectedRoute[] {
  const schema = plain(route.schema) ?? {};
  if (schema.hide === true) return [];
  const methods = (Array.isArray(route.method) ? route.method : [route.method])
    .map((m) => m.toLowerCase())
    .filter((m) => METHODS.has(m) && m !== 'head');
  const role = route.config?.role;
  const roles = role === undefined ? undefined : typeof role === 'string' ? [role] : [...role];
  return methods.map((method) => ({
    method,
    url: route.url,
    schema,
    roles,
    runtime: route.config?.actor === 'runtime',
    gateway: route.config?.actor === 'gateway',
    public: route.config?.public === true,
    rateLimited: route.config?.rateLimit !== undefined,
  }));
}

async function openApiPlugin(app: FastifyInstance, opts: OpenApiOptions): Promise<void> {
  const routes: CollectedRoute[] = [];
  let document: Json | undefined;
  app.addHook('onRoute', (route) => {
    routes.push(...collect(route));
    document = undefined;
  });
  app.get(
    '/openapi.json',
    {
      config: { public: true },
      schema: {
        response: { 200: { type: 'object' } },
      },
    },
    (_request, reply) => {
      document ??= openApiDocument(routes, opts);
      // Serialized here: a response schema would strip the document's members.
      return reply.type('application/json').send(JSON.stringify(document));
    },
  );
  await Promise.resolve();
}

/** `await app.register(openApi, {title, version})`, first, before every route plugin. */
export const openApi = namedGlobalPlugin(OPENAPI_PLUGIN, openApiPlugin);
