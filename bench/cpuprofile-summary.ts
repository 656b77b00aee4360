/**
 * Where a CPU profile's time goes: self time by area (our domains, Fastify, Node's HTTP,
 * LevelDB, GC, ...) and the heaviest functions, as shares of the busy (non-idle) time.
 * For profiles of the appliance taken with `node --cpu-prof --import tsx bench/grants.ts`.
 *
 *   npx tsx bench/cpuprofile-summary.ts FILE.cpuprofile [top, default 25]
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  readonly id: number;
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

const file = process.argv[2];
if (file === undefined) throw new Error('usage: cpuprofile-summary FILE.cpuprofile [top]');
const top = Number(process.argv[3] ?? '25');
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => {
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});

const areas = new Map<string, number>();
const functions = new Map<string, number>();
let total = 0;
let idle = 0;
for (const [id, us] of selfUs) {
  const node = byId.get(id);
  if (node === undefined) continue;
  const area = areaOf(node);
  total += us;
  if (area === '(idle)') {
    idle += us;
    continue;
  }
  areas.set(area, (areas.get(area) ?? 0) + us);
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^.*\/(src|node_modules)\//, '$1/');
  const key = `${functionName || '(anonymous)'} ${where}:${String(lineNumber + 1)}`;
  functions.set(key, (functions.get(key) ?? 0) + us);
}
const busy = total - idle;
const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
console.log(
  `${file}: ${(total / 1e6).toFixed(1)} s profiled, busy ${(busy / 1e6).toFixed(1)} s (${((100 * busy) / total).toFixed(0)}%)`,
);
console.log('self time by area (share of busy time):');
for (const [area, us] of [...areas].sort((a, b) => b[1] - a[1]))
  console.log(`  ${pct(us)}  ${area}`);
console.log(`heaviest ${String(top)} functions (self time):`);
for (const [fn, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`  ${pct(us)}  ${fn}`);
