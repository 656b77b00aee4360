/**
 * The body of a policy worker thread (workers.ts starts it): holds preparsed copies of the
 * policy sets the engine hands it and answers `statefulIsAuthorized` from exactly the set
 * the engine names, slot and hash, or fails the call. It decides nothing else.
 */
import { parentPort } from 'node:worker_threads';
import type { CheckParseAnswer } from './cedar.port.js';
import { cedarWasm as cedar } from './cedar.wasm.js';
import type { DecisionCall, DecisionOutcome, FromWorker, ToWorker } from './workers.js';

const port = parentPort;
if (port === null) throw new TypeError('policy.worker.ts runs on a worker thread only');

// Slot id -> hash of the set it holds. A failed load forgets the slot: cedar keeps the
// previous content under that id, which must never decide in the new set's name.
const loaded = new Map<string, string>();

const failures = (answer: CheckParseAnswer): string | undefined =>
  answer.type === 'failure' ? answer.errors.map((e) => e.message).join('; ') : undefined;

const post = (m: FromWorker): void => {
  port.postMessage(m);
};

port.on('message', (m: ToWorker) => {
  if (m.kind === 'load') {
    let error: string | undefined;
    try {
      error =
        failures(cedar.preparseSchema(m.slot.schemaName, m.slot.schema)) ??
        failures(cedar.preparsePolicySet(m.slot.slotId, m.slot.policies));
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    if (error === undefined) loaded.set(m.slot.slotId, m.slot.hash);
    else loaded.delete(m.slot.slotId);
    post({ kind: 'loaded', slotId: m.slot.slotId, ...(error === undefined ? {} : { error }) });
    return;
  }
  // One message answers the whole batch, in its order.
  post({ kind: 'decided', outcomes: m.calls.map(decide) });
});

function decide({ id, call, hash }: DecisionCall): DecisionOutcome {
  if (loaded.get(call.preparsedPolicySetId) !== hash) {
    return { id, error: 'this worker does not hold that policy set' };
  }
  try {
    return { id, answer: cedar.statefulIsAuthorized(call) };
  } catch (e) {
    return { id, error: e instanceof Error ? e.message : String(e) };
  }
}

// Messages queued while the worker started are delivered now; deadlines run from here.
post({ kind: 'ready' });
