// Sandbox lifecycle benchmark through the official SDK against `hutch serve` (needs root):
//   node bench/sandbox-bench.mjs [--runs N] [--idle M] [--warm-sandboxes W]
// (or scripts/sandbox-bench.sh / `make bench-sandbox`, which hold the integration-test lock).
// --warm-sandboxes sets the daemon's warm pool (default: the daemon's own, 2; 0 measures the
// cold path). Prints Sandbox.create() p50/p99, create → first command p50, the same command under a bare
// bubblewrap sandbox on the same base root filesystem (the floor; base's layers under one overlay),
// their ratio, and host memory per idle sandbox with M sandboxes alive at once.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { e2b, hutch } from './lib.mjs';

const { Sandbox } = e2b;
const { startHutch } = hutch;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '50' },
    idle: { type: 'string', default: '100' },
    'warm-sandboxes': { type: 'string' },
  },
});
const RUNS = Number(values.runs);
const IDLE = Number(values.idle);
const q = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const fmt = (x) => x.toFixed(1);

function memAvailableKiB() {
  const m = fs.readFileSync('/proc/meminfo', 'utf8').match(/MemAvailable:\s+(\d+)/);
  return Number(m[1]);
}

const args = ['--max-sandboxes', String(Math.max(IDLE + 10, 64))];
if (values['warm-sandboxes'] !== undefined) args.push('--warm-sandboxes', values['warm-sandboxes']);
const h = await startHutch({ warm: 8, args });
console.log(`warm pool: ${values['warm-sandboxes'] ?? 'default (2)'} sandboxes per template`);
let failed = false;
let floorMount = null;
function unmountFloor() {
  if (!floorMount) return;
  execFileSync('umount', [floorMount]);
  fs.rmdirSync(floorMount);
  floorMount = null;
}
try {
  // Sandbox.create() alone.
  const create = [], first = [];
  for (let i = 0; i < 3; i++) await (await Sandbox.create('base')).kill();
  for (let i = 0; i < RUNS; i++) {
    let t0 = process.hrtime.bigint();
    const sbx = await Sandbox.create('base');
    create.push(ms(t0));
    await sbx.kill();
    t0 = process.hrtime.bigint();
    const s2 = await Sandbox.create('base');
    await s2.commands.run('true');
    first.push(ms(t0));
    await s2.kill();
  }
  console.log(`Sandbox.create() p50 ${fmt(q(create, 0.5))} ms p99 ${fmt(q(create, 0.99))} ms over ${RUNS} (targets: p50 <= 15 ms, p99 <= 50 ms)`);
  console.log(`create -> first commands.run('true') p50 ${fmt(q(first, 0.5))} ms`);

  // The floor: the same command in a bare bubblewrap sandbox on the same root filesystem: base's
  // layers (from the daemon's store), stacked read-only by an overlay mount when there are several.
  const layers = JSON.parse(execFileSync('sqlite3', ['-readonly', path.join(h.dataDir, 'hutch.db'),
    "SELECT layers FROM templates WHERE id = 'base'"], { encoding: 'utf8' }));
  let rootfs = layers[0];
  if (layers.length > 1) {
    floorMount = fs.mkdtempSync('/tmp/hutch-bench-root-');
    // overlay's lowerdir lists the top-most first; the layers keep user.overlay.* xattrs.
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o',
      `ro,userxattr,lowerdir=${[...layers].reverse().join(':')}`, floorMount]);
    rootfs = floorMount;
  }
  const bw = [];
  const bwArgs = ['--unshare-all', '--die-with-parent', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--uid', '1000', '--gid', '1000', '/bin/bash', '-l', '-c', 'true'];
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('bwrap', bwArgs);
    if (r.status !== 0) throw new Error(`bwrap: ${r.stderr}`);
    bw.push(ms(t0));
  }
  unmountFloor();
  const ratio = q(first, 0.5) / q(bw, 0.5);
  console.log(`bare bwrap + bash -l -c true p50 ${fmt(q(bw, 0.5))} ms; create+first command is ${ratio.toFixed(2)}x that (target <= 3x)`);

  // Idle sandboxes: host memory per sandbox.
  const before = memAvailableKiB();
  const idle = [];
  for (let i = 0; i < IDLE; i++) idle.push(await Sandbox.create('base'));
  await new Promise((r) => setTimeout(r, 2000));
  const after = memAvailableKiB();
  const per = (before - after) / IDLE / 1024;
  console.log(`${IDLE} idle sandboxes alive: ${fmt(per)} MiB host memory each (MemAvailable drop; target <= 4 MiB)`);
  for (const s of idle) await s.kill();
} catch (e) {
  failed = true;
  console.error(`bench failed: ${e?.stack ?? e}`);
} finally {
  try { unmountFloor(); } catch (e) { console.error(`unmount ${floorMount}: ${e.message}`); }
  const res = await h.stop();
  if (res.left.length) console.error(`left behind: ${res.left.join(', ')}`);
}
process.exit(failed ? 1 : 0);
