/**
 * Child process for the fault tests: runs with its own SoftHSM2 token (SOFTHSM2_CONF set
 * by the parent) so moving the token's files away cannot disturb other tests. Prints one
 * JSON line with what happened; the parent (fault.test.ts) asserts on it.
 *
 *   fault-child.ts fault HSM_DIR TOKEN_LABEL PIN_FILE DB_DIR
 *   fault-child.ts wrong-pin HSM_DIR TOKEN_LABEL PIN_FILE DB_DIR
 */
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createKeys, type KeysConfig } from '../../src/keys/index.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { SOFTHSM_MODULE } from '../rig/sim.js';

/** One signing attempt, as the child reports it on stdout (fault.test.ts reads it). */
export interface Outcome {
  phase: 'before' | 'away' | 'back';
  startedPhase: 'before' | 'away' | 'back';
  ok: boolean;
  jws?: string;
  code?: string;
}

const [mode, hsmDir, tokenLabel, pinFile, dbDir] = process.argv.slice(2);
if (
  mode === undefined ||
  hsmDir === undefined ||
  tokenLabel === undefined ||
  pinFile === undefined ||
  dbDir === undefined
) {
  throw new Error('usage: fault-child.ts MODE HSM_DIR TOKEN_LABEL PIN_FILE DB_DIR');
}

const pin = (await readFile(pinFile, 'utf8')).trim();
const db = await openDatabase(dbDir);
const config = (p: string): KeysConfig => ({
  modulePath: SOFTHSM_MODULE,
  tokenLabel,
  pin: p,
  rotationPeriodSeconds: 0,
  grantMaxTtlSeconds: 300,
  signDeadlineMs: 5000,
  sessionPoolSize: 4,
  recoveryBackoffMs: 50,
  maintenanceIntervalMs: 0,
});
const codeOf = (e: unknown): string => String((e as { code?: unknown }).code);
const claims = (): { sub: string; exp: number } => ({
  sub: 'rt',
  exp: Math.floor(Date.now() / 1000) + 120,
});

if (mode === 'wrong-pin') {
  const attempts: string[] = [];
  try {
    await createKeys(config(`${pin}x`), { db });
    attempts.push('opened');
  } catch (e) {
    attempts.push(codeOf(e));
  }
  // The PIN that is never logged must not appear in any message either.
  let leaked = false;
  try {
    await createKeys(config(`${pin}y`), { db });
  } catch (e) {
    leaked = JSON.stringify({ m: (e as Error).message, s: (e as Error).stack }).includes(pin);
    attempts.push(codeOf(e));
  }
  process.stdout.write(`${JSON.stringify({ attempts, leaked })}\n`);
} else {
  const keys = await createKeys(config(pin), { db });
  let phase: Outcome['phase'] = 'before';
  const outcomes: Outcome[] = [];
  let stop = false;
  const loops = Array.from({ length: 6 }, async () => {
    while (!stop) {
      const startedPhase = phase;
      try {
        const jws = await keys.signJws({ typ: 'grant+jwt' }, claims());
        outcomes.push({ phase, startedPhase, ok: true, jws });
      } catch (e) {
        outcomes.push({ phase, startedPhase, ok: false, code: codeOf(e) });
        await sleep(5);
      }
    }
  });
  const waitFor = async (pred: () => boolean): Promise<void> => {
    for (let i = 0; i < 3000 && !pred(); i++) await sleep(10);
  };
  await waitFor(() => outcomes.filter((o) => o.ok).length >= 20);
  const tokens = join(hsmDir, 'tokens');
  await rename(tokens, `${tokens}.away`);
  phase = 'away';
  await waitFor(() => outcomes.filter((o) => o.startedPhase === 'away' && !o.ok).length >= 10);
  const readyAway = await keys.ready();
  await rename(`${tokens}.away`, tokens);
  phase = 'back';
  await waitFor(() => outcomes.filter((o) => o.startedPhase === 'back' && o.ok).length >= 20);
  stop = true;
  await Promise.all(loops);
  const readyBack = await keys.ready();
  process.stdout.write(
    `${JSON.stringify({ outcomes, jwks: keys.jwks(), readyAway, readyBack })}\n`,
  );
  await keys.close();
}
await db.close();
