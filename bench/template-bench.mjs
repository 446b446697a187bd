// Template build benchmark through the official SDK against `hutch serve` (needs root):
//   node bench/template-bench.mjs [--runs N]
// Each run builds a fresh template (a nonce in its first RUN, so nothing comes from the cache),
// then the identical template again (every layer and the ready check cached), then the same
// template with only its last step changed (the unchanged prefix cached). Prints the medians
// and the ratios to the cold build, and Sandbox.create() of the template (its start command and
// ready check run in every sandbox) against Sandbox.create('base').
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { e2b, hutch } from './lib.mjs';

const { Sandbox, Template, waitForPort } = e2b;
const { startHutch } = hutch;

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const RUNS = Number(values.runs);
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-tpl-bench-'));
fs.writeFileSync(path.join(ctx, 'app.py'), 'print("hello")\n');

function template(nonce, last) {
  return Template({ fileContextPath: ctx })
    .fromTemplate('base')
    .runCmd(`echo ${nonce} > /etc/bench-nonce && python3 -m venv --without-pip /opt/venv`)
    .setEnvs({ MODE: 'bench' })
    .copy('app.py', '/opt/app/app.py')
    .runCmd(`echo ${last} > /opt/app/last`)
    .setStartCmd('cd /opt/app && python3 -m http.server 8000', waitForPort(8000));
}

const h = await startHutch();
let failed = false;
try {
  const cold = [], cached = [], suffix = [], createTpl = [], createBase = [];
  for (let i = 0; i < RUNS; i++) {
    const nonce = randomBytes(6).toString('hex');
    const name = `bench-${nonce}`;
    let t0 = process.hrtime.bigint();
    await Template.build(template(nonce, 'a'), name);
    cold.push(ms(t0));
    t0 = process.hrtime.bigint();
    await Template.build(template(nonce, 'a'), name);
    cached.push(ms(t0));
    t0 = process.hrtime.bigint();
    await Template.build(template(nonce, 'b'), name);
    suffix.push(ms(t0));
    t0 = process.hrtime.bigint();
    const sbx = await Sandbox.create(name);
    createTpl.push(ms(t0));
    await sbx.kill();
    t0 = process.hrtime.bigint();
    const base = await Sandbox.create('base');
    createBase.push(ms(t0));
    await base.kill();
  }
  const c = median(cold);
  console.log(`runs: ${RUNS}`);
  console.log(`cold build (3 layers + start/ready check)   p50 ${c.toFixed(0)} ms`);
  console.log(`identical rebuild (all cached)              p50 ${median(cached).toFixed(0)} ms  (${(c / median(cached)).toFixed(1)}x faster)`);
  console.log(`last step changed (prefix cached)           p50 ${median(suffix).toFixed(0)} ms  (${(c / median(suffix)).toFixed(1)}x faster)`);
  console.log(`Sandbox.create(template with start cmd)     p50 ${median(createTpl).toFixed(0)} ms`);
  console.log(`Sandbox.create('base')                      p50 ${median(createBase).toFixed(0)} ms`);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  const res = await h.stop();
  fs.rmSync(ctx, { recursive: true, force: true });
  if (res.left.length) { console.error('left behind:', res.left); failed = true; }
}
process.exit(failed ? 1 : 0);
