/**
 * A gateway's route table: which HTTP request is which execution. Each route maps a method
 * and a path pattern to the action, a resource built from the path's parameters, and the
 * request parts whose canonical JSON the grant's `parametersDigest` must name. The table is
 * checked whole when it is loaded (every problem names its place); a request that no route
 * names, or that carries a part its route's digest does not cover, is refused, never
 * forwarded on trust.
 *
 * Parameters (docs/gateway.md): one part is that part's value (`"body"`: the JSON body;
 * `"query"`: `{name: value}`; `"path"`: `{param: value}`); several parts are an object
 * keyed by part name (`["path", "query"]` → `{"path": {...}, "query": {...}}`); `"none"` is
 * `{}`. The digest is the SDK's: hex SHA-256 of JCS(parameters).
 */
import { ConfigError } from '../shared/errors.js';
import {
  RequestBodyInvalidError,
  RequestPathInvalidError,
  RequestQueryInvalidError,
  RouteBodyUnavailableError,
  RouteNotFoundError,
} from './errors.js';
import { parseStrictJson, type JsonValue } from './strict-json.js';

export type ParameterPart = 'path' | 'query' | 'body';

export interface GatewayRoute {
  readonly method: string;
  /** The pattern as written: literal segments and `:name` segments, e.g. `/accounts/:acct/transfer`. */
  readonly path: string;
  readonly action: string;
  /** The resource, `{name}` replaced by the path parameter `name`, e.g. `acct:{acct}`. */
  readonly resource: string;
  /** The parts the parameters digest covers, in the order written; empty is `"none"`. */
  readonly parameters: readonly ParameterPart[];
  /** The parameters are one part's value (`"body"`), not an object keyed by part. */
  readonly single: boolean;
}

/** The request as the gateway saw it, before any part is trusted. */
export interface RouteRequest {
  readonly method: string;
  /** The request target as sent: path and query, not decoded. */
  readonly target: string;
  /**
   * The body: `absent` (none sent), `unknown` (there may be one but it cannot be read, as
   * under nginx auth_request), its bytes, or its already strictly parsed JSON value.
   */
  readonly body:
    | { readonly kind: 'absent' }
    | { readonly kind: 'unknown'; readonly present: boolean }
    | { readonly kind: 'bytes'; readonly bytes: Uint8Array }
    | { readonly kind: 'json'; readonly value: JsonValue };
}

/** The execution a matched request asks for; the grant must name exactly this. */
export interface RouteExecution {
  readonly route: GatewayRoute;
  readonly pathParams: Readonly<Record<string, string>>;
  readonly action: string;
  readonly resource: string;
  readonly parameters: JsonValue;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const PARTS: readonly ParameterPart[] = ['path', 'query', 'body'];
const PARAM = /^:([A-Za-z_][A-Za-z0-9_]{0,63})$/;
// A literal segment: unreserved and sub-delims only, so it has one spelling.
const LITERAL = /^[A-Za-z0-9._~!$&'()*+,;=:@-]{1,128}$/;
const TEXT = /^[\x21-\x7e]{1,256}$/;
const PLACEHOLDER = /\{([^{}]*)\}/g;
/** Most routes a table may hold: the match is a scan. */
export const MAX_ROUTES = 256;
/** Longest request target matched, in characters. */
export const MAX_TARGET = 8192;

type Segment = { readonly literal: string } | { readonly param: string };

interface CompiledRoute {
  readonly route: GatewayRoute;
  readonly segments: readonly Segment[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function compile(value: unknown, at: string): CompiledRoute {
  const bad = (field: string, why: string): never => {
    throw new ConfigError(`${at}.${field}`, why);
  };
  if (!isRecord(value)) throw new ConfigError(at, 'must be an object');
  for (const key of Object.keys(value)) {
    if (!['method', 'path', 'action', 'resource', 'parameters'].includes(key)) {
      bad(key, 'is not a route field (method, path, action, resource, parameters)');
    }
  }
  const { method, path, action, resource, parameters } = value;
  if (typeof method !== 'string' || !METHODS.has(method)) {
    bad('method', `must be one of ${[...METHODS].join(', ')}`);
  }
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > 1024) {
    bad('path', 'must be a path pattern starting with /');
  }
  const segments: Segment[] = [];
  const names = new Set<string>();
  for (const raw of String(path).split('/').slice(1)) {
    const param = PARAM.exec(raw)?.[1];
    if (param !== undefined) {
      if (names.has(param)) bad('path', `repeats the parameter :${param}`);
      names.add(param);
      segments.push({ param });
    } else if (LITERAL.test(raw) && raw !== '.' && raw !== '..' && !raw.startsWith(':')) {
      segments.push({ literal: raw });
    } else if (!(raw === '' && segments.length === 0 && path === '/')) {
      bad('path', `segment "${raw}" is neither a literal nor :name`);
    }
  }
  if (typeof action !== 'string' || !TEXT.test(action)) bad('action', 'must be 1..256 printable');
  if (typeof resource !== 'string' || resource === '' || resource.length > 1024) {
    bad('resource', 'must be a template of 1..1024 characters');
  }
  for (const m of String(resource).matchAll(PLACEHOLDER)) {
    if (!names.has(m[1] ?? '')) bad('resource', `{${m[1] ?? ''}} is not a parameter of the path`);
  }
  if (String(resource).replace(PLACEHOLDER, '').match(/[{}]/) !== null) {
    bad('resource', 'has an unbalanced { or }');
  }
  let parts: ParameterPart[];
  let single = false;
  if (parameters === 'none') parts = [];
  else if (typeof parameters === 'string' && (PARTS as readonly string[]).includes(parameters)) {
    parts = [parameters as ParameterPart];
    single = true;
  } else if (Array.isArray(parameters) && parameters.length > 0) {
    parts = [];
    for (const p of parameters) {
      if (typeof p !== 'string' || !(PARTS as readonly string[]).includes(p)) {
        bad('parameters', `"${String(p)}" is not path, query or body`);
      }
      if (parts.includes(p as ParameterPart)) bad('parameters', `repeats ${String(p)}`);
      parts.push(p as ParameterPart);
    }
  } else {
    return bad('parameters', 'must be "none", "path", "query", "body" or a list of them');
  }
  if (parts.includes('path') && names.size === 0) bad('parameters', 'the path has no parameters');
  return {
    route: {
      method: String(method),
      path: String(path),
      action: String(action),
      resource: String(resource),
      parameters: parts,
      single,
    },
    segments,
  };
}

function sameShape(a: readonly Segment[], b: readonly Segment[]): boolean {
  return (
    a.length === b.length &&
    a.every((s, i) => {
      const t = b[i];
      if (t === undefined) return false;
      // Two routes overlap when each segment could match the same text.
      return 'param' in s || 'param' in t || s.literal === t.literal;
    })
  );
}

/**
 * Decodes a path into segments, or refuses it: one canonical spelling only, so the path the
 * upstream reads is the path that was matched.
 */
function pathSegments(pathname: string): string[] {
  if (!pathname.startsWith('/')) throw new RequestPathInvalidError('the path is not absolute');
  if (pathname === '/') return [];
  const out: string[] = [];
  for (const raw of pathname.slice(1).split('/')) {
    if (raw === '' || raw === '.' || raw === '..') {
      throw new RequestPathInvalidError('the path has an empty or dot segment');
    }
    if (raw.includes('\\')) throw new RequestPathInvalidError('the path has a backslash');
    let decoded: string;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      throw new RequestPathInvalidError('the path has a bad percent-encoding');
    }
    if (/[/\\\0]/.test(decoded) || decoded === '.' || decoded === '..') {
      throw new RequestPathInvalidError('the path encodes a slash, backslash, NUL or dot segment');
    }
    out.push(decoded);
  }
  return out;
}

/** Query text → `{name: value}`; a repeated name is ambiguous and refused. */
function queryObject(query: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(query)) {
    if (Object.hasOwn(out, name)) {
      throw new RequestQueryInvalidError(`the query repeats ${JSON.stringify(name)}`);
    }
    out[name] = value;
  }
  return out;
}

function bodyValue(body: RouteRequest['body']): JsonValue {
  switch (body.kind) {
    case 'json':
      return body.value;
    case 'bytes': {
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(body.bytes);
      } catch (cause) {
        throw new RequestBodyInvalidError('the body is not UTF-8', { cause });
      }
      try {
        return parseStrictJson(text);
      } catch (cause) {
        throw new RequestBodyInvalidError('the body is not strict JSON', { cause });
      }
    }
    case 'unknown':
      throw new RouteBodyUnavailableError('the route needs the body and it cannot be read here');
    default:
      throw new RequestBodyInvalidError('the route needs the body and there is none');
  }
}

function hasBody(body: RouteRequest['body']): boolean {
  if (body.kind === 'absent') return false;
  if (body.kind === 'unknown') return body.present;
  if (body.kind === 'bytes') return body.bytes.length > 0;
  return true;
}

export class RouteTable {
  readonly #routes: readonly CompiledRoute[];

  private constructor(routes: readonly CompiledRoute[]) {
    this.#routes = routes;
  }

  /**
   * Checks a parsed route table (`[{method, path, action, resource, parameters}, ...]`).
   * Throws ConfigError naming the first bad field (`routes[2].resource: ...`).
   */
  static parse(value: unknown, at = 'routes'): RouteTable {
    if (!Array.isArray(value) || value.length === 0) {
      throw new ConfigError(at, 'must be a non-empty list of routes');
    }
    if (value.length > MAX_ROUTES) throw new ConfigError(at, `holds more than ${MAX_ROUTES}`);
    const compiled: CompiledRoute[] = [];
    value.forEach((v, i) => {
      const route = compile(v, `${at}[${i}]`);
      const clash = compiled.findIndex(
        (c) => c.route.method === route.route.method && sameShape(c.segments, route.segments),
      );
      // Overlapping patterns would make the order of the file decide: refused.
      if (clash >= 0) {
        throw new ConfigError(
          `${at}[${i}].path`,
          `overlaps ${at}[${clash}] for ${route.route.method}`,
        );
      }
      compiled.push(route);
    });
    return new RouteTable(compiled);
  }

  get routes(): readonly GatewayRoute[] {
    return this.#routes.map((c) => c.route);
  }

  /**
   * The execution a request asks for. Throws RequestPathInvalidError, RouteNotFoundError,
   * RequestQueryInvalidError or RequestBodyInvalidError (a part that is present but not
   * covered by the digest, or not strict JSON).
   */
  executionOf(request: RouteRequest): RouteExecution {
    if (request.target.length > MAX_TARGET) {
      throw new RequestPathInvalidError('the request target is too long');
    }
    const at = request.target.indexOf('?');
    const pathname = at < 0 ? request.target : request.target.slice(0, at);
    const query = at < 0 ? undefined : request.target.slice(at + 1);
    if (query?.includes('#') === true || pathname.includes('#')) {
      throw new RequestPathInvalidError('the request target has a fragment');
    }
    const segments = pathSegments(pathname);
    let found: { compiled: CompiledRoute; params: Record<string, string> } | undefined;
    for (const compiled of this.#routes) {
      if (compiled.route.method !== request.method) continue;
      if (compiled.segments.length !== segments.length) continue;
      const params: Record<string, string> = {};
      const ok = compiled.segments.every((s, i) => {
        const text = segments[i] ?? '';
        if ('literal' in s) return s.literal === text;
        params[s.param] = text;
        return true;
      });
      if (ok) {
        found = { compiled, params };
        break;
      }
    }
    if (found === undefined) {
      throw new RouteNotFoundError(`no route for ${request.method} ${pathname}`);
    }
    const { route } = found.compiled;
    const params = found.params;
    // Parts the digest does not cover must be absent: the grant would not name them.
    if (!route.parameters.includes('query') && query !== undefined && query !== '') {
      throw new RequestQueryInvalidError('the route does not take a query');
    }
    if (!route.parameters.includes('body') && hasBody(request.body)) {
      throw new RequestBodyInvalidError('the route does not take a body');
    }
    const values: Record<string, JsonValue> = {};
    for (const part of route.parameters) {
      if (part === 'path') values.path = params;
      else if (part === 'query') values.query = queryObject(query ?? '');
      else values.body = bodyValue(request.body);
    }
    const first = route.parameters[0];
    const parameters: JsonValue =
      route.single && first !== undefined ? (values[first] ?? null) : values;
    const resource = route.resource.replace(PLACEHOLDER, (_m, name: string) => params[name] ?? '');
    return { route, pathParams: params, action: route.action, resource, parameters };
  }
}
