/**
 * Worker threads from real source files, so that every line they run is seen by the type
 * checker and the linter (never a string run with `eval`). Compiled, a worker is its `.js`
 * file beside the caller's; run from TypeScript sources (vitest, tsx), where Node cannot
 * load `.ts` itself, it starts through `ts-worker.mjs`, which imports it with tsx.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * The worker file `name` (no extension) beside the module at `callerUrl`, in the same form
 * as the caller: `.ts` beside a `.ts`, `.js` beside a compiled `.js`.
 */
export function workerEntry(name: string, callerUrl: string): URL {
  const ext = new URL(callerUrl).pathname.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./${name}.${ext}`, callerUrl);
}

/** Start `entry` on a worker thread; `workerData` must be an object (or absent). */
export function startWorker(
  entry: URL,
  options: Omit<WorkerOptions, 'workerData'> & { workerData?: Record<string, unknown> },
): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, options);
  const workerData: Record<string, unknown> = { ...options.workerData, [TS_ENTRY]: entry.href };
  return new Worker(new URL('./ts-worker.mjs', import.meta.url), { ...options, workerData });
}

/** The workerData member that names the TypeScript entry for ts-worker.mjs. */
const TS_ENTRY = '__grantorTsEntry';
