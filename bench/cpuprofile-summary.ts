/**
 * Where a CPU profile's time goes: self time by area (our domains, Fastify, Node's HTTP,
 * LevelDB, GC, ...) and the heaviest functions, as shares of the busy (non-idle) time.
 * For profiles of the appliance taken with `node --cpu-prof --import tsx bench/grants.ts`
 * or `GRANTOR_BENCH_CPU_PROFILE` (bench/grants.ts).
 *
 * Shares count samples, not the time between them: on a loaded machine a thread that was
 * descheduled charges the whole gap to the one sample taken when it ran again (one
 * `Profiler.stop` or one `Map.set` showed up as 100 ms). A native frame (a binding's
 * function, reported by V8 with no script and sometimes under another binding's class
 * name) is charged to the area of the nearest script frame above it and listed with that
 * caller, so a LevelDB iterator step is LevelDB's and names who iterated.
 *
 *   npx tsx bench/cpuprofile-summary.ts FILE.cpuprofile [top, default 25]
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  readonly id: number;
  readonly children?: readonly number[];
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** The first matching pattern names the area of a frame. */
const AREAS: readonly (readonly [string, RegExp])[] = [
  ['(idle)', /^\(idle\)$/],
  ['(garbage collector)', /^\(garbage collector\)$/],
  ['(program: native, not attributed)', /^\(program\)$/],
  ['grantor src/grants', /\/src\/grants\//],
  ['grantor src/keys', /\/src\/keys\//],
  ['grantor src/audit', /\/src\/audit\//],
  ['grantor src/attestation', /\/src\/attestation\//],
  ['grantor src/policy', /\/src\/policy\//],
  ['grantor src/gateway (batch format)', /\/src\/gateway\//],
  ['grantor src/http', /\/src\/http\//],
  ['grantor src/tpm', /\/src\/tpm\//],
  ['grantor src/shared', /\/src\/shared\//],
  [
    'Fastify and its plugins',
    /node_modules\/(fastify|@fastify|find-my-way|avvio|light-my-request|fast-json-stringify|ajv|@sinclair)/,
  ],
  ['pino (logging)', /node_modules\/(pino|sonic-boom|thread-stream)/],
  [
    'LevelDB (level, classic-level)',
    /node_modules\/(level|classic-level|abstract-level|level-transcoder|module-error|maybe-combine-errors)/,
  ],
  ['jose', /node_modules\/jose\//],
  ['pkcs11js', /node_modules\/pkcs11js\//],
  ['prom-client (metrics)', /node_modules\/prom-client\//],
  ['other node_modules', /node_modules\//],
  [
    'Node HTTP and net',
    /^node:(_http|http|net|internal\/http|internal\/stream_base_commons|internal\/js_stream)|^node:internal\/streams/,
  ],
  ['Node crypto', /^node:(crypto|internal\/crypto)/],
  ['Node worker messaging', /^node:internal\/(worker|per_context\/messageport)/],
  ['Node timers and promises', /^node:internal\/(timers|process\/task_queues|async_hooks)/],
  ['other Node internals', /^node:/],
];

function areaOf(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  for (const [name, re] of AREAS) if (re.test(url) || re.test(functionName)) return name;
  return url === '' ? '(native or builtin)' : 'other';
}

const short = (url: string): string => url.replace(/^.*\/(src|node_modules)\//, '$1/');
const nameOf = (node: ProfileNode): string => node.callFrame.functionName || '(anonymous)';

const file = process.argv[2];
if (file === undefined) throw new Error('usage: cpuprofile-summary FILE.cpuprofile [top]');
const top = Number(process.argv[3] ?? '25');
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parentOf = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
const samples = new Map<number, number>();
for (const id of profile.samples) samples.set(id, (samples.get(id) ?? 0) + 1);
const wallUs = profile.timeDeltas.reduce((a, b) => a + b, 0);

/** A native frame's nearest caller with a script (undefined at the root). */
function scriptCaller(node: ProfileNode): ProfileNode | undefined {
  let id = parentOf.get(node.id);
  while (id !== undefined) {
    const n = byId.get(id);
    if (n === undefined) return undefined;
    if (n.callFrame.url !== '') return n;
    id = parentOf.get(id);
  }
  return undefined;
}

const areas = new Map<string, number>();
const functions = new Map<string, number>();
let total = 0;
let idle = 0;
for (const [id, count] of samples) {
  const node = byId.get(id);
  if (node === undefined) continue;
  total += count;
  let area = areaOf(node);
  if (area === '(idle)') {
    idle += count;
    continue;
  }
  let key: string;
  if (area === '(native or builtin)') {
    const caller = scriptCaller(node);
    if (caller !== undefined) area = areaOf(caller);
    key =
      caller === undefined
        ? `${nameOf(node)} (native)`
        : `${nameOf(node)} (native) < ${nameOf(caller)} ${short(caller.callFrame.url)}`;
  } else {
    const { url, lineNumber } = node.callFrame;
    key = url === '' ? nameOf(node) : `${nameOf(node)} ${short(url)}:${String(lineNumber + 1)}`;
  }
  areas.set(area, (areas.get(area) ?? 0) + count);
  functions.set(key, (functions.get(key) ?? 0) + count);
}
const busy = total - idle;
const pct = (n: number): string => `${((100 * n) / busy).toFixed(1).padStart(5)}%`;
console.log(
  `${file}: ${(wallUs / 1e6).toFixed(1)} s profiled, ${String(total)} samples, busy ${String(busy)} (${((100 * busy) / total).toFixed(0)}%)`,
);
console.log('self samples by area (share of busy samples; native frames by their caller):');
for (const [area, n] of [...areas].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(n)}  ${area}`);
console.log(`heaviest ${String(top)} functions (self samples):`);
for (const [fn, n] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`  ${pct(n)}  ${fn}`);
