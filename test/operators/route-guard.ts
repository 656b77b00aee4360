/**
 * Checks, for every route of an app, what issue 7 demands: a route declaring roles refuses
 * a missing credential (401), every other role (403) and a runtime's credential (401); a
 * runtime route refuses an operator credential (403). The route inventory is the app's own
 * GET /openapi.json (so the openApi plugin must be registered first). Routes under /v1/
 * that declare neither a role, `actor: 'runtime'`, `actor: 'gateway'` nor `public: true` are listed as
 * undeclared: public by omission.
 */
import type { FastifyInstance } from 'fastify';
import { ROLES, type Role } from '../../src/operators/roles.js';

export interface GuardReport {
  readonly checked: string[];
  readonly failures: string[];
  readonly undeclared: string[];
}

interface Operation {
  'x-grantor-roles'?: Role[];
  'x-grantor-actor'?: string;
  'x-grantor-public'?: boolean;
}

/** A runtime-side bearer: a grant JWS. Never an operator credential. */
const RUNTIME_BEARER = 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImdyYW50K2p3dCJ9.eyJzdWIiOiJydF8xIn0.c2ln';

export async function checkRouteGuards(
  app: FastifyInstance,
  tokens: Readonly<Record<Role, string>>,
): Promise<GuardReport> {
  const doc = (await app.inject({ url: '/openapi.json' })).json<{
    paths: Record<string, Record<string, Operation>>;
  }>();
  const report: GuardReport = { checked: [], failures: [], undeclared: [] };
  for (const [path, item] of Object.entries(doc.paths)) {
    const url = path.replace(/\{[^}]+\}/g, 'rt_guard');
    for (const [method, op] of Object.entries(item)) {
      const name = `${method.toUpperCase()} ${path}`;
      const send = async (authorization?: string) => {
        const res = await app.inject({
          method: method.toUpperCase() as 'GET',
          url,
          ...(authorization === undefined ? {} : { headers: { authorization } }),
        });
        const body = res.json<{ error?: { code?: string } }>();
        return { status: res.statusCode, code: body.error?.code };
      };
      const expect = (
        what: string,
        got: { status: number; code: string | undefined },
        status: number,
        code: string,
      ) => {
        if (got.status !== status || got.code !== code) {
          report.failures.push(
            `${name}: ${what}: ${got.status} ${got.code ?? ''}, want ${status} ${code}`,
          );
        }
      };
      const roles = op['x-grantor-roles'];
      if (roles !== undefined) {
        report.checked.push(name);
        expect('no credential', await send(), 401, 'unauthenticated');
        expect(
          'runtime credential',
          await send(`Bearer ${RUNTIME_BEARER}`),
          401,
          'unauthenticated',
        );
        for (const role of ROLES.filter((r) => !roles.includes(r))) {
          expect(`role ${role}`, await send(`Bearer ${tokens[role]}`), 403, 'forbidden');
        }
      } else if (op['x-grantor-actor'] === 'runtime') {
        report.checked.push(name);
        expect('operator credential', await send(`Bearer ${tokens.operator}`), 403, 'forbidden');
      } else if (op['x-grantor-actor'] === 'gateway') {
        // Enrolled gateways only (issue 18): operators refused, nobody else authenticated.
        report.checked.push(name);
        expect('operator credential', await send(`Bearer ${tokens.operator}`), 403, 'forbidden');
        expect('no credential', await send(), 401, 'gateway_unauthenticated');
        expect(
          'runtime credential',
          await send(`Bearer ${RUNTIME_BEARER}`),
          401,
          'gateway_unauthenticated',
        );
      } else if (op['x-grantor-public'] === true) {
        // Declared public on purpose (config.public): nothing to refuse.
      } else if (path.startsWith('/v1/')) {
        report.undeclared.push(name);
      }
    }
  }
  return report;
}
