import { describe, expect, it } from 'vitest';
import { RefusalAudit, type RefusalEntry, type RefusedAttempt } from './refusals.js';

const attempt = (over: Partial<RefusedAttempt> = {}): RefusedAttempt => ({
  method: 'GET',
  route: '/v1/keys',
  reason: 'credential_missing',
  code: 'unauthenticated',
  address: '10.0.0.1',
  time: '2026-01-01T00:00:00.000Z',
  ...over,
});

function setup(maxEntriesPerWindow = 100, maxKeys = 1000) {
  const clock = { t: 0 };
  const written: RefusalEntry[] = [];
  const audit = new RefusalAudit({
    windowSeconds: 60,
    maxEntriesPerWindow,
    maxKeys,
    now: () => clock.t,
    write: (e) => {
      written.push(e);
      return Promise.resolve();
    },
  });
  return { clock, written, audit };
}

describe('RefusalAudit', () => {
  it('writes the first refusal of a key and counts its repeats into the next window', async () => {
    const { clock, written, audit } = setup();
    for (let i = 0; i < 50; i++) await audit.refused(attempt());
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({ reason: 'credential_missing', repeats: 0, dropped: 0 });
    clock.t = 61_000;
    await audit.refused(attempt());
    expect(written).toHaveLength(2);
    expect(written[1]?.repeats).toBe(49);
  });

  it('writes distinct keys (address, route, reason, identity) separately', async () => {
    const { written, audit } = setup();
    await audit.refused(attempt());
    await audit.refused(attempt({ address: '10.0.0.2' }));
    await audit.refused(attempt({ route: '/v1/approvals' }));
    await audit.refused(attempt({ reason: 'role_forbidden', identity: 'tok_0123456789abcdef' }));
    expect(written).toHaveLength(4);
  });

  it('writes at most maxEntriesPerWindow entries per window, and reports the rest as dropped', async () => {
    const { clock, written, audit } = setup(10);
    for (let i = 0; i < 1000; i++)
      await audit.refused(attempt({ address: `10.1.${i >> 8}.${i & 255}` }));
    expect(written).toHaveLength(10);
    clock.t = 60_000;
    await audit.refused(attempt({ address: '192.0.2.1' }));
    expect(written).toHaveLength(11);
    expect(written[10]?.dropped).toBe(990);
    // Reported once, not again.
    await audit.refused(attempt({ address: '192.0.2.2' }));
    expect(written[11]?.dropped).toBe(0);
  });

  it('keeps at most maxKeys keys; evicted repeats are reported as dropped', async () => {
    const { written, audit } = setup(100_000, 50);
    await audit.refused(attempt({ address: 'first' }));
    await audit.refused(attempt({ address: 'first' }));
    for (let i = 0; i < 500; i++) await audit.refused(attempt({ address: `a${i}` }));
    expect(audit.size).toBe(50);
    const last = written.at(-1);
    // `first` (one unreported repeat) was evicted; the next entry after that carried it.
    expect(written.some((e) => e.dropped === 1)).toBe(true);
    expect(last?.address).toBe('a499');
  });

  it('refuses a nonsensical configuration', () => {
    expect(
      () =>
        new RefusalAudit({
          windowSeconds: 0,
          maxEntriesPerWindow: 1,
          write: () => Promise.resolve(),
        }),
    ).toThrow(TypeError);
  });
});

describe('RefusalAudit budgets (issue 14)', () => {
  it('always writes a valid credential refused after a junk flood filled the window', async () => {
    const { written, audit } = setup(100);
    // 100 junk tokens from 100 addresses spend the junk budget of the window...
    for (let i = 0; i < 100; i++) {
      await audit.refused(
        attempt({ address: `10.3.0.${i}`, reason: 'credential_invalid', identity: `tok_${i}` }),
      );
    }
    expect(written).toHaveLength(100);
    await audit.refused(attempt({ address: '10.3.1.1', reason: 'credential_invalid' }));
    expect(written).toHaveLength(100);
    // ...and a stolen auditor token trying to rotate keys is still written, with its id.
    await audit.refused(
      attempt({
        method: 'POST',
        route: '/v1/keys/rotate',
        reason: 'role_forbidden',
        code: 'forbidden',
        identity: 'tok_stolenauditor00',
        credentialed: true,
      }),
    );
    expect(written).toHaveLength(101);
    expect(written[100]).toMatchObject({ identity: 'tok_stolenauditor00', dropped: 0 });
  });

  it('budgets junk per address (IPv6 per /64), so one address cannot spend the window', async () => {
    const clock = { t: 0 };
    const written: RefusalEntry[] = [];
    const audit = new RefusalAudit({
      windowSeconds: 60,
      maxEntriesPerWindow: 100,
      maxPerAddress: 5,
      now: () => clock.t,
      write: (e) => {
        written.push(e);
        return Promise.resolve();
      },
    });
    for (let i = 0; i < 1000; i++) {
      await audit.refused(
        attempt({ address: `2001:db8:0:1::${i.toString(16)}`, identity: `tok_${i}` }),
      );
    }
    expect(written).toHaveLength(5);
    await audit.refused(attempt({ address: '192.0.2.9' }));
    expect(written).toHaveLength(6);
    expect(written[5]?.dropped).toBe(995);
  });

  it("budgets credentialed refusals per identity: one credential's flood hides no other", async () => {
    const { written, audit } = setup();
    for (let i = 0; i < 200; i++) {
      await audit.refused(
        attempt({
          route: `/v1/r${i}`,
          reason: 'role_forbidden',
          identity: 'tok_a',
          credentialed: true,
        }),
      );
    }
    expect(written).toHaveLength(20);
    await audit.refused(
      attempt({ reason: 'role_forbidden', identity: 'tok_b', credentialed: true }),
    );
    expect(written.at(-1)?.identity).toBe('tok_b');
  });
});
