import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GrantorError } from '../shared/errors.js';
import { RouteTable, type RouteRequest } from './route-table.js';
import { TICKET_READ_ROUTE } from './testing/routes.js';

const table = RouteTable.parse([
  TICKET_READ_ROUTE,
  {
    method: 'POST',
    path: '/accounts/:acct/transfer',
    action: 'payments.transfer',
    resource: 'acct:{acct}',
    parameters: 'body',
  },
  { method: 'POST', path: '/ping', action: 'ping', resource: 'ping', parameters: 'none' },
  { method: 'GET', path: '/', action: 'root', resource: 'root', parameters: 'query' },
]);

const absent: RouteRequest['body'] = { kind: 'absent' };
const bytes = (text: string): RouteRequest['body'] => ({ kind: 'bytes', bytes: Buffer.from(text) });

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    if (err instanceof GrantorError) return err.code;
    throw err;
  }
}

describe('RouteTable.parse names the bad field', () => {
  const route = {
    method: 'GET',
    path: '/a/:x',
    action: 'a',
    resource: 'r:{x}',
    parameters: 'path',
  };
  const cases: [unknown, string][] = [
    [[], 'routes'],
    [{}, 'routes'],
    [[{ ...route, method: 'TRACE' }], 'routes[0].method'],
    [[{ ...route, path: 'a' }], 'routes[0].path'],
    [[{ ...route, path: '/a/../b' }], 'routes[0].path'],
    [[{ ...route, path: '/a/:x/:x' }], 'routes[0].path'],
    [[{ ...route, path: '/a//b' }], 'routes[0].path'],
    [[{ ...route, resource: 'r:{y}' }], 'routes[0].resource'],
    [[{ ...route, resource: 'r:{x' }], 'routes[0].resource'],
    [[{ ...route, action: '' }], 'routes[0].action'],
    [[{ ...route, parameters: 'headers' }], 'routes[0].parameters'],
    [[{ ...route, parameters: ['body', 'body'] }], 'routes[0].parameters'],
    [[{ ...route, path: '/a', resource: 'r', parameters: 'path' }], 'routes[0].parameters'],
    [[{ ...route, extra: 1 }], 'routes[0].extra'],
    [[route, { ...route, path: '/a/b', resource: 'r', parameters: 'none' }], 'routes[1].path'],
  ];
  it.each(cases)('%j → %s', (value, key) => {
    let err: unknown;
    try {
      RouteTable.parse(value);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'config_invalid', details: { key } });
  });

  it('accepts the same pattern for two methods', () => {
    expect(RouteTable.parse([route, { ...route, method: 'POST' }]).routes).toHaveLength(2);
  });
});

describe('RouteTable.executionOf', () => {
  it('maps path and query to the execution', () => {
    expect(
      table.executionOf({ method: 'GET', target: '/tickets/T%2D42?full=1', body: absent }),
    ).toMatchObject({
      action: 'tickets.read',
      resource: 'ticket:T-42',
      parameters: { path: { id: 'T-42' }, query: { full: '1' } },
    });
    expect(
      table.executionOf({
        method: 'POST',
        target: '/accounts/1234/transfer',
        body: bytes('{"a":1}'),
      }),
    ).toMatchObject({
      resource: 'acct:1234',
      parameters: { a: 1 },
    });
    expect(table.executionOf({ method: 'POST', target: '/ping', body: absent }).parameters).toEqual(
      {},
    );
    expect(table.executionOf({ method: 'GET', target: '/?q=1', body: absent }).parameters).toEqual({
      q: '1',
    });
  });

  // Targets that are no canonical path: a trailing slash, dot segments, an encoded dot,
  // backslash or NUL, a broken escape, no leading slash, a fragment.
  it.each([
    '/tickets/1/',
    '/tickets/./1',
    '/tickets/%2e%2E',
    '/tickets/a%5Cb',
    '/tickets/a%00',
    '/tickets/a\\b',
    '/tickets/%E0%A4%A',
    'tickets/1',
    '/tickets/1#x',
  ])('GET %s → request_path_invalid', (target) => {
    expect(codeOf(() => table.executionOf({ method: 'GET', target, body: absent }))).toBe(
      'request_path_invalid',
    );
  });

  it.each([
    ['PUT', '/tickets/1', absent, 'route_not_found'],
    ['GET', '/tickets', absent, 'route_not_found'],
    ['GET', '/tickets/1?a=1&a=2', absent, 'request_query_invalid'],
    ['POST', '/ping?x', absent, 'request_query_invalid'],
    ['POST', '/ping', bytes('{}'), 'request_body_invalid'],
    ['GET', '/tickets/1', { kind: 'unknown', present: true } as const, 'request_body_invalid'],
    ['POST', '/accounts/1/transfer', absent, 'request_body_invalid'],
    ['POST', '/accounts/1/transfer', bytes('{"a":1,"a":2}'), 'request_body_invalid'],
    [
      'POST',
      '/accounts/1/transfer',
      { kind: 'bytes', bytes: Buffer.from([0xff, 0x7b]) } as const,
      'request_body_invalid',
    ],
    [
      'POST',
      '/accounts/1/transfer',
      { kind: 'unknown', present: true } as const,
      'route_body_unavailable',
    ],
  ] as const)('%s %s (%o) → %s', (method, target, body, code) => {
    expect(codeOf(() => table.executionOf({ method, target, body }))).toBe(code);
  });

  it('refuses a target past MAX_TARGET', () => {
    const target = `/tickets/${'a'.repeat(9000)}`;
    expect(codeOf(() => table.executionOf({ method: 'GET', target, body: absent }))).toBe(
      'request_path_invalid',
    );
  });

  it('any target and body give an execution or one of its own errors, never a crash', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('GET', 'POST', 'PUT'),
        fc.oneof(
          fc.string(),
          fc.webPath(),
          fc.webUrl().map((u) => new URL(u).pathname + new URL(u).search),
        ),
        fc.option(fc.uint8Array({ maxLength: 64 })),
        (method, target, raw) => {
          const body: RouteRequest['body'] = raw === null ? absent : { kind: 'bytes', bytes: raw };
          try {
            const e = table.executionOf({ method, target, body });
            expect(typeof e.resource).toBe('string');
          } catch (err) {
            expect(err).toBeInstanceOf(GrantorError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
