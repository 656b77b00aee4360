/**
 * Helpers for the Prometheus artefacts shipped in deploy/: the metric names an alert rule
 * or a Grafana panel uses, and promtool (Debian package `prometheus`, in APT_TEST_PACKAGES).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from '../rig/sim.js';

export const deployDir = join(repoRoot, 'deploy');

/** Metrics Prometheus makes itself (not the appliance's to export). */
const PROMETHEUS_OWN = new Set(['up']);

/** Every metric name in a PromQL expression (`grantor_*` and Prometheus' own `up`). */
export function metricNamesIn(expr: string): string[] {
  const names = [...expr.matchAll(/\b(grantor_[a-z0-9_]+|up)\b/g)].map((m) => m[1] ?? '');
  return names.filter((n) => n !== '' && !PROMETHEUS_OWN.has(n));
}

/** The expressions of deploy/prometheus/alerts.yml (its `expr:` lines). */
export async function alertExpressions(): Promise<string[]> {
  const text = await readFile(join(deployDir, 'prometheus/alerts.yml'), 'utf8');
  return [...text.matchAll(/^\s+expr:\s*(.+)$/gm)].map((m) => m[1] ?? '');
}

interface Dashboard {
  readonly uid?: unknown;
  readonly panels?: readonly { readonly targets?: readonly { readonly expr?: unknown }[] }[];
  readonly templating?: { readonly list?: readonly { readonly definition?: unknown }[] };
}

/** The PromQL of every panel target and template query of the Grafana dashboard. */
export async function dashboardExpressions(): Promise<string[]> {
  const text = await readFile(join(deployDir, 'grafana/grantor.json'), 'utf8');
  const dash = JSON.parse(text) as Dashboard;
  const exprs: string[] = [];
  for (const panel of dash.panels ?? []) {
    for (const t of panel.targets ?? []) if (typeof t.expr === 'string') exprs.push(t.expr);
  }
  for (const v of dash.templating?.list ?? []) {
    if (typeof v.definition === 'string') exprs.push(v.definition);
  }
  return exprs;
}

/** Runs promtool; resolves with its output, rejects with it on a non-zero exit. */
export function promtool(
  args: readonly string[],
  options: { cwd?: string; input?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'promtool',
      [...args],
      { cwd: options.cwd ?? deployDir, timeout: 30_000 },
      (error, stdout, stderr) => {
        const out = `${stdout}${stderr}`;
        if (error === null) resolve(out);
        else reject(new Error(`promtool ${args.join(' ')}: ${out || error.message}`));
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

/** The metric families a Prometheus text exposition declares (its `# TYPE` lines). */
export function exportedFamilies(text: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(m[1] ?? '', m[2] ?? '');
  return families;
}

/** Whether `name` is a series of an exported family (histograms: _bucket, _count, _sum). */
export function isExported(families: Map<string, string>, name: string): boolean {
  if (families.has(name)) return true;
  const base = name.replace(/_(bucket|count|sum)$/, '');
  return base !== name && families.get(base) === 'histogram';
}
