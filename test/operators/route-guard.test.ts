import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAbuseApp, type AbuseApp } from '../abuse/app.js';
import { checkRouteGuards } from './route-guard.js';

let s: AbuseApp;
beforeAll(async () => {
  s = await buildAbuseApp({ logLevel: 'silent' });
});
afterAll(async () => {
  await s.app.close();
});

describe('every route guards its role', () => {
  it('refuses missing, wrong-role and runtime credentials on operator routes, operators on runtime routes', async () => {
    const token = async (role: 'auditor' | 'operator' | 'key_custodian') =>
      (await s.tokens.create({ role, actor: `${role}-guard` })).token;
    const report = await checkRouteGuards(s.app, {
      auditor: await token('auditor'),
      operator: await token('operator'),
      key_custodian: await token('key_custodian'),
    });
    expect(report.failures).toEqual([]);
    expect(report.undeclared).toEqual([]);
    expect(report.checked).toEqual(
      expect.arrayContaining([
        'POST /v1/approvals',
        'GET /v1/approvals',
        'POST /v1/approvals/{approvalId}/approve',
        'GET /v1/approvals/{approvalId}',
        'POST /v1/runtimes/{runtimeId}/challenges',
      ]),
    );
  });
});
