// `hutch template build` benchmark against `hutch serve` (needs root; run under the integration
// lock: flock /tmp/hutch-integration.lock node bench/template-cli-bench.mjs [--runs N]).
// Builds one Dockerfile (FROM base, ENV, WORKDIR, a RUN writing 32 MiB, COPY of 200 files,
// a RUN over them, a start and a ready command) with the CLI, wall time of the whole command:
//   cold     --no-cache: every step runs
//   cached   the same build again: every layer from the cache
//   changed  one copied file changed: the COPY and the RUN after it run again
// and prints medians and the ratios cold/cached and cold/changed.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hutch } from './lib.mjs';

const { startHutch, HUTCH } = hutch;

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const RUNS = Number(values.runs);
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

function run(args) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(HUTCH, args, { env: { ...process.env, TERM: 'dumb' } });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`hutch ${args.join(' ')} exited ${code}:\n${out}`));
      else resolve({ ms, out });
    });
  });
}

const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-tpl-bench-'));
fs.mkdirSync(path.join(ctx, 'app'));
for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(ctx, 'app', `f${i}.bin`), randomBytes(16384));
fs.writeFileSync(path.join(ctx, 'e2b.Dockerfile'), [
  'FROM base',
  'ENV APP=/srv/app',
  'WORKDIR /srv/app',
  'RUN dd if=/dev/urandom of=/opt/blob bs=1M count=32 2>/dev/null && sha256sum /opt/blob > /opt/blob.sum',
  'COPY app/ ./',
  'RUN find /srv/app -type f | wc -l > /srv/app/count',
  'CMD python3 -m http.server 8000',
  'HEALTHCHECK CMD curl -sf http://127.0.0.1:8000/',
  '',
].join('\n'));

const h = await startHutch();
let failed = false;
try {
  const name = `bench-${process.pid}`;
  const build = (...extra) => run(['template', 'build', '--name', name, ...extra, ctx]);
  await build(); // warm-up: the base layer and the page cache
  const cold = [], cached = [], changed = [];
  for (let i = 0; i < RUNS; i++) {
    cold.push((await build('--no-cache')).ms);
    const c = await build();
    if (!/(\d+) of (\d+) steps cached/.test(c.out)) throw new Error(`no cache report:\n${c.out}`);
    cached.push(c.ms);
    fs.writeFileSync(path.join(ctx, 'app', 'f0.bin'), randomBytes(16384));
    changed.push((await build()).ms);
  }
  const [mc, mk, mx] = [median(cold), median(cached), median(changed)];
  console.log(`template build via the CLI, ${RUNS} runs each (median wall time of the command):`);
  console.log(`  cold (--no-cache)        ${mc.toFixed(0)} ms`);
  console.log(`  cached (unchanged)       ${mk.toFixed(0)} ms   cold/cached  ${(mc / mk).toFixed(1)}x`);
  console.log(`  last COPY input changed ${mx.toFixed(0)} ms   cold/changed ${(mc / mx).toFixed(1)}x`);
  await run(['template', 'delete', name]);
} catch (e) {
  console.error(e.message);
  failed = true;
} finally {
  const res = await h.stop();
  fs.rmSync(ctx, { recursive: true, force: true });
  if (res.code !== 0 || res.left.length) { console.error('daemon exit', res.code, res.left); failed = true; }
}
process.exit(failed ? 1 : 0);
