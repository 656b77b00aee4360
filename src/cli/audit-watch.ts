/**
 * `grantor audit watch`: the log monitor (src/audit/watch.ts) against a running appliance.
 * The keys come from the auditor (`--verifier`, `--verifier-file`), never from the appliance; the
 * state file is the auditor's. One line per visit; an alarm is one line on stderr naming
 * its class, the evidence (both signed notes, the proof) kept in a file beside the state,
 * and its own exit code (WATCH_ALARMS).
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseVerifierKey, type VerifierKey } from '../audit/checkpoint.js';
import {
  readState,
  visit,
  WATCH_ALARMS,
  WATCH_EXIT,
  writeState,
  type WatchSource,
  type WatchState,
} from '../audit/watch.js';
import { GrantorError } from '../shared/errors.js';
import { writeFileOnce } from '../shared/write-once.js';
import { flag, stringOption, type Parsed } from './args.js';
import type { Io } from './io.js';
import { call, errorOf, type Connection } from './remote.js';
import { VerifierKeyError, WatchAlarmError, WatchStateError } from '../audit/errors.js';

const DEFAULT_INTERVAL_S = 300;

/** The pinned keys: every `--verifier` and every line of `--verifier-file` (`#` starts a comment). */
async function pinnedKeys(parsed: Parsed): Promise<VerifierKey[]> {
  const given = parsed.values.verifier;
  const texts = Array.isArray(given) ? [...given] : typeof given === 'string' ? [given] : [];
  const file = stringOption(parsed, 'verifier-file');
  if (file !== undefined) {
    const text = await readFile(file, 'utf8');
    for (const line of text.split('\n')) {
      const t = line.replace(/#.*$/, '').trim();
      if (t !== '') texts.push(t);
    }
  }
  return texts.map((t) => parseVerifierKey(t));
}

function source(conn: Connection): WatchSource {
  const get = async (path: string): Promise<unknown> => {
    const answer = await call(conn, 'GET', path);
    if (answer.status !== 200) throw errorOf(answer);
    return answer.body;
  };
  const inPeriod = (period: number | undefined): string =>
    period === undefined ? '' : `&period=${period}`;
  return {
    checkpoint: (period) =>
      get(`/v1/audit/checkpoint${period === undefined ? '' : `?period=${period}`}`),
    consistency: (from, to, period) =>
      get(`/v1/audit/proof/consistency?from=${from}&to=${to}${inPeriod(period)}`),
    inclusion: (period, seq, size) =>
      get(`/v1/audit/proof/inclusion?seq=${seq}&size=${size}${inPeriod(period)}`),
    link: (period) => get(`/v1/audit/periods/${period}/link`),
  };
}

function describeOk(r: Awaited<ReturnType<typeof visit>>): string {
  const cp = r.state.checkpoint;
  switch (r.kind) {
    case 'first':
      return `ok ${cp.origin} size ${cp.size}: first visit, checkpoint verified and kept`;
    case 'unchanged':
      return `ok ${cp.origin} size ${cp.size}: unchanged`;
    case 'grew':
      return `ok ${cp.origin} size ${r.from} -> ${cp.size}: consistency proof verified`;
    case 'switched':
      return `ok ${cp.origin} size ${cp.size}: followed a log period switch from ${r.fromOrigin} (ended at size ${r.end.size}, consistent with the verified checkpoint; its link proved as leaf 0)`;
  }
}

/** Keeps what contradicts the state, for whoever answers the alarm; never overwrites. */
async function keepEvidence(
  statePath: string,
  previous: WatchState | undefined,
  alarm: WatchAlarmError,
  conn: Connection,
  at: Date,
): Promise<string | undefined> {
  if (alarm.evidence === undefined) return undefined;
  const file = `${statePath}.alarm-${at.toISOString().replace(/[:.]/g, '-')}.json`;
  const body = {
    format: 'grantor-audit-watch-alarm/1',
    alarm: alarm.alarm,
    message: alarm.message,
    url: conn.url.origin,
    at: at.toISOString(),
    verifiedNote: previous?.note ?? null,
    note: alarm.evidence.note ?? null,
    proof: alarm.evidence.proof ?? null,
  };
  try {
    await writeFileOnce(file, `${JSON.stringify(body, null, 1)}\n`, 0o600);
    return file;
  } catch {
    return undefined;
  }
}

export async function runAuditWatch(conn: Connection, parsed: Parsed, io: Io): Promise<number> {
  const statePath = stringOption(parsed, 'state');
  const once = flag(parsed, 'once');
  const intervalText = stringOption(parsed, 'interval');
  if (statePath === undefined) {
    io.err('grantor audit watch: --state FILE is required (see --help)');
    return WATCH_EXIT.usage;
  }
  const interval = intervalText === undefined ? DEFAULT_INTERVAL_S : Number(intervalText);
  if (!Number.isSafeInteger(interval) || interval < 1 || interval > 86_400) {
    io.err('grantor audit watch: --interval takes whole seconds, 1 to 86400');
    return WATCH_EXIT.usage;
  }
  let keys: VerifierKey[];
  try {
    keys = await pinnedKeys(parsed);
  } catch (e) {
    const why =
      e instanceof VerifierKeyError ? e.message : `cannot read --verifier-file (${String(e)})`;
    io.err(`grantor audit watch: ${why}`);
    return WATCH_EXIT.usage;
  }
  if (keys.length === 0) {
    io.err(
      'grantor audit watch: pin the checkpoint key with --verifier or --verifier-file (see --help)',
    );
    return WATCH_EXIT.usage;
  }
  const from = source(conn);
  const stop = new AbortController();
  const onSignal = (): void => {
    stop.abort();
  };
  if (!once) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  const line = (text: string): string => `${new Date().toISOString()} audit watch: ${text}`;
  try {
    for (;;) {
      let previous: WatchState | undefined;
      try {
        // Read at every visit: the file is the only memory, so a restart changes nothing.
        previous = await readState(statePath, keys);
      } catch (e) {
        if (!(e instanceof WatchStateError)) throw e;
        io.err(line(`state refused (exit ${WATCH_EXIT.state_invalid}): ${e.message}`));
        return WATCH_EXIT.state_invalid;
      }
      try {
        const result = await visit(previous, keys, from, Date.now);
        await writeState(statePath, result.state);
        io.out(line(describeOk(result)));
      } catch (e) {
        if (e instanceof WatchAlarmError) {
          const code = WATCH_ALARMS[e.alarm];
          const kept = await keepEvidence(statePath, previous, e, conn, new Date());
          io.err(
            line(
              `ALARM ${e.alarm} (exit ${code}): ${e.message}${kept === undefined ? '' : `; evidence in ${kept}`}`,
            ),
          );
          return code;
        }
        if (!(e instanceof GrantorError)) throw e;
        io.err(line(`visit failed: ${e.code}: ${e.message}`));
        if (once) return WATCH_EXIT.visit_failed;
      }
      if (once) return WATCH_EXIT.ok;
      try {
        await sleep(interval * 1000, undefined, { signal: stop.signal });
      } catch {
        return WATCH_EXIT.ok; // stopped by a signal between visits
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
