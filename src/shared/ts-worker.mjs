// Starts a TypeScript worker file under tsx: only for runs from the sources (vitest, tsx);
// the compiled build starts the worker's .js directly. See src/shared/worker.ts.
import { workerData } from 'node:worker_threads';
import { tsImport } from 'tsx/esm/api';

await tsImport(workerData.__grantorTsEntry, import.meta.url);
