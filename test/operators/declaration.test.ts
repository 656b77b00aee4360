/**
 * buildApp refuses to start when a route declares neither an operator role, `actor:
 * 'runtime'` nor `public: true` (REQUIRE_DECLARATION): a route is never public by omission.
 * The health routes are replaced here by a plugin that also registers an undeclared route.
 */
import type { FastifyPluginAsync } from 'fastify';
import type * as Health from '../../src/http/routes/health.js';
import { describe, expect, it, vi } from 'vitest';

const mode = vi.hoisted(() => ({ undeclared: false }));

vi.mock('../../src/http/routes/health.js', async (importOriginal) => {
  const real = await importOriginal<typeof Health>();
  const healthRoutes: FastifyPluginAsync<{ probes: [] }> = async (app, opts) => {
    await real.healthRoutes(app, opts);
    if (mode.undeclared) app.get('/v1/forgotten', () => ({ open: true }));
    else app.get('/v1/declared', { config: { public: true } }, () => ({ open: true }));
  };
  return { healthRoutes };
});

const { buildApp } = await import('../../src/http/app.js');

describe('route declarations', () => {
  it('starts when every route declares its access', async () => {
    mode.undeclared = false;
    const app = await buildApp({ probes: [] });
    expect((await app.inject({ url: '/v1/declared' })).statusCode).toBe(200);
    await app.close();
  });

  it('refuses to build an app with a route that declares nothing', async () => {
    mode.undeclared = true;
    await expect(buildApp({ probes: [] })).rejects.toThrow(
      /GET \/v1\/forgotten: declare config.role, config.actor or config.public/,
    );
  });
});
