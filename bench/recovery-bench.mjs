// Restart after a crash, through the official SDK against `hutch serve` (needs root):
//   node bench/recovery-bench.mjs [--sandboxes N] [--hung H] [--runs R]
// (or scripts/recovery-bench.sh / `make bench-recovery`, which hold the integration-test lock).
// Each run: N sandboxes, H of them with envd stopped (SIGSTOP: it accepts nothing), kill -9 of
// the daemon, then a new daemon on the same data dir. Prints the median time from its start to
// /health (the recovery runs before the API serves) and how many sandboxes came back.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { e2b, hutch } from './lib.mjs';

const { Sandbox } = e2b;
const { startHutch } = hutch;

const { values } = parseArgs({
  options: {
    sandboxes: { type: 'string', default: '40' },
    hung: { type: 'string', default: '4' },
    runs: { type: 'string', default: '3' },
  },
});
const N = Number(values.sandboxes), HUNG = Number(values.hung), RUNS = Number(values.runs);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

/** Host pids of the envd processes of a sandbox (its cgroup path carries its id). */
function envdPids(id) {
  const pids = [];
  for (const p of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      if (fs.readFileSync(`/proc/${p}/cgroup`, 'utf8').includes(id) &&
          fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').some((a) => a.endsWith('/envd'))) pids.push(Number(p));
    } catch {}
  }
  return pids;
}

const times = [];
let failed = false;
for (let run = 0; run < RUNS && !failed; run++) {
  let h = await startHutch({ keepDataDir: true, args: ['--warm-sandboxes', '0', '--max-sandboxes', String(N + 8)] });
  const stopped = [];
  try {
    const ids = [];
    for (let i = 0; i < N; i += 8) {
      const batch = await Promise.all(Array.from({ length: Math.min(8, N - i) }, () => Sandbox.create('base', { timeoutMs: 600000 })));
      ids.push(...batch.map((s) => s.sandboxId));
    }
    for (const id of ids.slice(0, HUNG)) for (const p of envdPids(id)) { process.kill(p, 'SIGSTOP'); stopped.push(p); }
    await h.crash();
    const t0 = performance.now();
    h = await startHutch({ reuse: h, keepDataDir: true });
    const ms = performance.now() - t0;
    const back = (await Sandbox.list({ limit: 100 }).nextItems()).length;
    times.push(ms);
    console.log(`run ${run + 1}: ready after ${ms.toFixed(0)} ms; ${back} of ${N} sandboxes taken back (${HUNG} with envd stopped)`);
    if (back !== N - HUNG) failed = true;
  } finally {
    for (const p of stopped) try { process.kill(p, 'SIGCONT'); } catch {}
    const res = await h.stop();
    fs.rmSync(h.dataDir, { recursive: true, force: true });
    if (res.code !== 0 || res.left.length) { console.log(`stop: exit ${res.code}, left ${res.left.join(', ')}`); failed = true; }
  }
}
if (times.length) console.log(`restart with ${N} sandboxes (${HUNG} hung envds): median ${median(times).toFixed(0)} ms to /health over ${times.length} runs`);
process.exit(failed ? 1 : 0);
