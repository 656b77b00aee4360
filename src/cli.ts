#!/usr/bin/env node
/**
 * `grantor`, the command line (`grantor --help`): ceremonies on the appliance itself with
 * the same service code as the server (provision, keys, audit export, the operator
 * registry), offline tools (audit verify, reference-policies learn), `doctor`, and a
 * client of a running appliance (status, runtimes, keys, approvals, policy, audit) over its
 * HTTP API. The commands and their help live in src/cli/commands.ts.
 */
import { processIo } from './cli/io.js';
import { run } from './cli/main.js';

void run(process.argv.slice(2), processIo).then((code) => {
  process.exitCode = code;
});
