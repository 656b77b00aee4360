/**
 * The alert rules and the Grafana dashboard shipped in deploy/: the rules are valid and
 * behave as their unit tests say (`promtool test rules`), and both name only metrics
 * (checked against the real appliance in observability.test.ts).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  alertExpressions,
  dashboardExpressions,
  deployDir,
  metricNamesIn,
  promtool,
} from './prometheus.js';

describe('deploy/prometheus/alerts.yml', () => {
  it('is valid for promtool', async () => {
    const out = await promtool(['check', 'rules', 'alerts.yml'], {
      cwd: join(deployDir, 'prometheus'),
    });
    expect(out).toContain('SUCCESS');
  });

  it('passes its rule unit tests (promtool test rules)', async () => {
    const out = await promtool(['test', 'rules', 'alerts.test.yml'], {
      cwd: join(deployDir, 'prometheus'),
    });
    expect(out).toContain('SUCCESS');
  });

  it('names grantor metrics in every rule', async () => {
    const exprs = await alertExpressions();
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    for (const e of exprs.filter((x) => !x.startsWith('up{'))) {
      expect(metricNamesIn(e).length, e).toBeGreaterThan(0);
    }
  });
});

describe('deploy/grafana/grantor.json', () => {
  it('is a dashboard whose every panel queries grantor metrics', async () => {
    const exprs = await dashboardExpressions();
    expect(exprs.length).toBeGreaterThanOrEqual(20);
    for (const e of exprs) expect(metricNamesIn(e).length, e).toBeGreaterThan(0);
  });
});
