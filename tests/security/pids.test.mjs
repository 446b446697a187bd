// A fork bomb that holds every pid of a sandbox: envd must keep accepting new connections and
// answering (read a file, list processes, kill the bomb) through a client that has none open yet,
// and the sandbox recovers once the bomb is killed. Each operation runs in a fresh node process
// with its own SDK: the SDK pools connections per process (one undici agent per origin), so only
// a new process is sure to open a new connection to the front door, and the front door a new one
// to envd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHutch, skipReason, Sandbox, run, sleep } from './lib.mjs';

const PIDS_MAX = 256;
const SDK = path.join(path.dirname(fileURLToPath(import.meta.url)), '../integration/sdk.mjs');
let h, sbx, neighbour;
const opts = { skip: skipReason };

before(async () => {
  if (skipReason) return;
  h = await startHutch({ args: ['--pids-max', String(PIDS_MAX), '--default-memory', '512'] });
  [sbx, neighbour] = await Promise.all([Sandbox.create('base'), Sandbox.create('base')]);
});

after(async () => {
  if (!h) return;
  await sbx?.kill().catch(() => {});
  await neighbour?.kill().catch(() => {});
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, []);
});

// One SDK operation on sandbox `id` from a new node process: { ok, ms, value } or { ok: false,
// error }. ms is the operation alone (connect and the process start are not counted).
const CLIENT = `
import { Sandbox } from ${JSON.stringify(SDK)};
const [id, op, arg] = process.argv.slice(1);
const s = await Sandbox.connect(id, { requestTimeoutMs: 20000 });
const t = performance.now();
try {
  let value;
  if (op === 'read') value = await s.files.read(arg);
  else if (op === 'list') value = (await s.commands.list()).map((p) => p.pid);
  else if (op === 'kill') value = await s.commands.kill(Number(arg));
  else if (op === 'write') value = (await s.files.write(arg, 'written during the bomb')).path;
  else if (op === 'start') value = (await s.commands.run(arg, { user: 'root', background: true, timeoutMs: 0 })).pid;
  console.log(JSON.stringify({ ok: true, ms: Math.round(performance.now() - t), value }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, ms: Math.round(performance.now() - t), error: String(e.message ?? e) }));
}`;

function fresh(op, arg = '') {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', CLIENT, sbx.sandboxId, op, String(arg)],
      { env: process.env, timeout: 60000 }, (err, stdout, stderr) => {
        try { resolve(JSON.parse(stdout.trim().split('\n').pop())); } catch { resolve({ ok: false, error: `${err?.message ?? ''} ${stderr.slice(-500)}` }); }
      });
  });
}

// Forks until the kernel refuses and keeps retaking every freed pid within milliseconds; the
// children exec sleep (small). /tmp/bomb.state: "children refused-forks time" every 50 ms.
const BOMB = `python3 -c "
import os, time
n = fails = 0; last = 0.0
while True:
    try:
        pid = os.fork()
    except OSError:
        fails += 1
        now = time.time()
        if now - last > 0.05:
            with open('/tmp/bomb.state.tmp', 'w') as f: f.write('%d %d %f' % (n, fails, now))
            os.rename('/tmp/bomb.state.tmp', '/tmp/bomb.state')
            last = now
        time.sleep(0.002)
        continue
    if pid == 0:
        os.execv('/bin/sleep', ['sleep', '600'])
    n += 1
"`;

const state = (text) => {
  const [n, fails, at] = text.trim().split(' ').map(Number);
  return { n, fails, at };
};

test('a fork bomb holding every pid: envd answers new connections, and the bomb can be killed', opts, async () => {
  // Baseline: the same operations on new connections before the bomb.
  await sbx.files.write('/tmp/note', 'hello');
  const base = { read: await fresh('read', '/tmp/note'), list: await fresh('list') };
  assert.ok(base.read.ok && base.list.ok, JSON.stringify(base));

  const bomb = await sbx.commands.run(BOMB, { user: 'root', background: true, timeoutMs: 0 });
  // Wait until it is refused forks (every pid held), through the client that already exists.
  let s;
  for (const until = Date.now() + 60000; ;) {
    try { s = state(await sbx.files.read('/tmp/bomb.state')); if (s.fails > 50) break; } catch {}
    assert.ok(Date.now() < until, 'the bomb never filled the pids limit');
    await sleep(200);
  }
  assert.ok(s.n > PIDS_MAX / 2 && s.n < PIDS_MAX, `bomb forked ${s.n} children within pids-max ${PIDS_MAX}`);
  await sleep(2000); // held for a while

  const read = await fresh('read', '/tmp/bomb.state');
  assert.ok(read.ok, `file read on a new connection during the bomb: ${read.error} (after ${read.ms} ms)`);
  const during = state(read.value);
  assert.ok(during.fails > s.fails && Date.now() / 1000 - during.at < 2, `the bomb was still refused forks: ${read.value}`);
  const write = await fresh('write', '/tmp/during');
  assert.ok(write.ok, `file write on a new connection during the bomb: ${write.error}`);
  const list = await fresh('list');
  assert.ok(list.ok, `process list on a new connection during the bomb: ${list.error}`);
  assert.ok(list.value.includes(bomb.pid), `the bomb (${bomb.pid}) is listed: ${JSON.stringify(list.value)}`);
  const still = state((await fresh('read', '/tmp/bomb.state')).value ?? '0 0 0');
  assert.ok(still.fails > during.fails, 'the bomb held every pid throughout');
  // A process starts (forked from envd's reserve, then moved to the full user cgroup); what it
  // forks itself waits for the bomb to end (bash -l forks while reading the profile).
  const start = await fresh('start', 'echo started > /tmp/started');
  assert.ok(start.ok && start.value > 0, `process start on a new connection during the bomb: ${start.error}`);
  const neighbourOk = (await neighbour.commands.run('echo n')).stdout === 'n\n';
  assert.ok(neighbourOk, 'the neighbour answers');

  const kill = await fresh('kill', bomb.pid);
  assert.ok(kill.ok && kill.value === true, `kill on a new connection during the bomb: ${kill.error ?? kill.value}`);
  const t = Date.now();
  let recovered;
  for (const until = Date.now() + 30000; Date.now() < until;) {
    const r = await run(sbx, 'echo ok', { timeoutMs: 10000 });
    if (r.out === 'ok\n') { recovered = Date.now() - t; break; }
    await sleep(100);
  }
  assert.ok(recovered !== undefined, 'the sandbox runs commands again after the kill');
  const left = await run(sbx, 'pgrep -c -x sleep || true');
  assert.equal(left.out.trim(), '0', 'every child of the bomb is gone');
  await sbx.commands.kill(start.value).catch(() => {});
  console.log(`measured pids: bomb held ${during.n + 1} of ${PIDS_MAX} pids; new connection before/during: ` +
    `read ${base.read.ms}/${read.ms} ms, write -/${write.ms} ms, list ${base.list.ms}/${list.ms} ms, ` +
    `start -/${start.ms} ms, kill ${kill.ms} ms; ` +
    `commands run again ${recovered} ms after the kill`);
});
