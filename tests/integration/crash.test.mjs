// Crash safety: `kill -9` of hutch serve during bursts of concurrent creates, kills, uploads and
// commands, then a restart on the same data dir and network prefix. Every sandbox the restarted
// daemon lists must work (commands, a file written before the crash) and be killable; every other
// one must be gone without a trace; a crash with no restart leaves sandboxes that the next start
// and stop remove completely. Also: one daemon per data dir, sandboxes that die on their own, and
// timeouts that keep running across a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Sandbox } from 'e2b';
import { startHutch, skipReason, leftovers, listIds, shims, cgroups, runDirs, links, mounts, HUTCH } from './hutch-helpers.mjs';
import { sleep, waitFor } from './helpers.mjs';

const opts = { skip: skipReason };
let h;

// No warm pool here: these checks count every supervisor, run dir and slot as the test's own.
// pool-crash.test.mjs covers a crash with a pool.
const NO_POOL = ['--warm-sandboxes', '0'];
before(async () => { if (!skipReason) h = await startHutch({ keepDataDir: true, args: NO_POOL }); });
after(async () => {
  if (!h) return;
  const res = await h.stop();
  fs.rmSync(h.dataDir, { recursive: true, force: true });
  assert.equal(res.code, 0, `hutch serve exit ${JSON.stringify({ code: res.code, signal: res.signal })}\n${res.log.slice(-2000)}`);
  assert.deepEqual(res.left, [], 'nothing is left behind after SIGTERM');
});

async function restart() {
  h = await startHutch({ reuse: h, keepDataDir: true });
}

/** What is left of one sandbox on the host (nothing, for a removed one). */
function tracesOf(id) {
  const found = [];
  if (runDirs(h.dataDir).includes(id)) found.push('run dir');
  if (shims(h.dataDir).some((s) => s.id === id)) found.push('shim');
  if (cgroups(h.prefix).children.some((c) => path.basename(c) === id)) found.push('cgroup');
  return found;
}

/**
 * Concurrent clients: each creates sandboxes, writes a marker file, uploads, runs commands and
 * kills some, until stopped. Returns what each sandbox got to before the crash.
 */
function burst(clients) {
  const known = new Map(); // id → { marker: bool, killed: bool }
  let stop = false;
  const worker = async (w) => {
    for (let i = 0; !stop; i++) {
      let sbx;
      try {
        sbx = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { suite: 'crash', w: String(w) } });
      } catch { continue; }
      const st = { marker: false, killed: false };
      known.set(sbx.sandboxId, st);
      try {
        await sbx.files.write('/home/user/marker', sbx.sandboxId);
        st.marker = true;
        await sbx.files.write('/home/user/upload.bin', randomBytes(256 * 1024));
        await sbx.commands.run('sha256sum /home/user/upload.bin && ls /home/user');
        if (i % 2 === 1) {
          await sbx.kill();
          st.killed = true;
        }
      } catch { /* the daemon died under us */ }
    }
  };
  const done = Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
  return { known, async end() { stop = true; await done; } };
}

/** The store as the daemon left it: integrity, and each row's state (sqlite3 from deps.sh). */
function storeRows() {
  const r = spawnSync('sqlite3', ['-readonly', path.join(h.dataDir, 'hutch.db'),
    'PRAGMA integrity_check; SELECT id || \' \' || state FROM sandboxes;'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [integrity, ...rows] = r.stdout.trim().split('\n');
  assert.equal(integrity, 'ok', 'the store is intact');
  return rows.filter(Boolean).map((l) => l.split(' '));
}

async function checkAfterRestart(known) {
  const listed = await listIds(h);
  // Consistent: only running sandboxes, exactly those the API lists.
  const rows = storeRows();
  assert.deepEqual(rows.filter(([, st]) => st !== 'running'), [], 'no row in another state');
  assert.deepEqual(rows.map(([id]) => id).sort(), [...listed].sort());
  for (const id of listed) {
    // A create the daemon finished but could not answer may be listed without a client knowing.
    const st = known.get(id) ?? { marker: false, killed: false };
    assert.ok(!st.killed, `${id} was killed before the crash but is listed`);
    const info = await Sandbox.getInfo(id);
    assert.equal(info.state, 'running', `${id} is listed as ${info.state}`);
    const sbx = await Sandbox.connect(id);
    const out = await sbx.commands.run('echo alive');
    assert.equal(out.stdout, 'alive\n', `${id} runs commands`);
    if (st.marker) assert.equal(await sbx.files.read('/home/user/marker'), id, `${id} kept its file`);
  }
  // Everything else is gone: no API record, no run dir, supervisor or cgroup.
  for (const [id, st] of known) {
    if (listed.includes(id)) continue;
    await assert.rejects(Sandbox.connect(id), `${id} is not listed but can be connected (killed=${st.killed})`);
    assert.deepEqual(tracesOf(id), [], `traces of removed sandbox ${id}`);
  }
  return listed;
}

test('kill -9 during bursts: after each restart every listed sandbox works, the rest is gone', { ...opts, timeout: 600_000 }, async (t) => {
  let reattached = 0, removed = 0;
  // Different moments: during the first creates, mid-burst, late.
  for (const delay of [250, 700, 1500, 2600]) {
    const b = burst(4);
    await sleep(delay);
    await h.crash();
    await b.end();
    await restart();
    const listed = await checkAfterRestart(b.known);
    reattached += listed.length;
    removed += b.known.size - listed.length;
    t.diagnostic(`crash after ${delay} ms: ${b.known.size} created, ${listed.length} taken back`);
    // Killable, and then nothing is left of them.
    await Promise.all(listed.map((id) => Sandbox.kill(id).then((r) => assert.equal(r, true, `kill ${id}`))));
    assert.deepEqual(await listIds(h), []);
    assert.deepEqual(shims(h.dataDir), [], 'no supervisor after the kills');
    assert.deepEqual(runDirs(h.dataDir), [], 'no run dir after the kills');
    assert.deepEqual(cgroups(h.prefix).children, [], 'no sandbox cgroup after the kills');
    await waitFor(() => links(h.prefix).length <= h.warm && mounts(h.dataDir).length <= h.warm,
      { timeout: 5000, what: `only the ${h.warm} warm slots (links ${links(h.prefix)}, mounts ${mounts(h.dataDir)})` });
    assert.deepEqual(await h.fdCheck(), [], 'the restarted daemon leaks no fds');
  }
  assert.ok(reattached > 0, 'some sandboxes were taken back across the rounds');
  assert.ok(removed > 0, 'some sandboxes were removed across the rounds');
});

test('kill -9 with no restart leaves sandboxes; the next start and SIGTERM remove everything', { ...opts, timeout: 300_000 }, async () => {
  const b = burst(3);
  await sleep(1200);
  await h.crash();
  await b.end();
  assert.ok(leftovers(h.dataDir, h.prefix).length > 0, 'a crashed daemon leaves its sandboxes running');
  await restart();
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, [], 'nothing is left after restart + SIGTERM');
  await restart();
});

test('a second daemon on the same data dir is refused, and the first one is unharmed', opts, async () => {
  const sbx = await Sandbox.create('base');
  const r = spawnSync(HUTCH, ['serve', '--data-dir', h.dataDir, '--listen', '127.0.0.1:1', '--sandbox-listen', '127.0.0.1:1',
    '--net-prefix', 'zz9', '--net-subnet', '10.213.0.0'], { encoding: 'utf8', env: { ...process.env, HUTCH_API_KEY: h.apiKey } });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /Another hutch serve \(pid \d+\) is using the data dir/);
  const q = spawnSync(HUTCH, ['serve', '--data-dir', `${h.dataDir}-other`, '--listen', '127.0.0.1:1', '--sandbox-listen', '127.0.0.1:1',
    '--net-prefix', h.prefix, '--net-subnet', '10.213.0.0'], { encoding: 'utf8', env: { ...process.env, HUTCH_API_KEY: h.apiKey } });
  fs.rmSync(`${h.dataDir}-other`, { recursive: true, force: true });
  assert.equal(q.status, 1, q.stderr);
  assert.match(q.stderr, /Another hutch serve is using the network prefix/);
  assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');
  await sbx.kill();
});

test('a sandbox whose init dies, or whose supervisor is told to stop, is removed', opts, async () => {
  const a = await Sandbox.create('base');
  const b = await Sandbox.create('base');
  const initPid = Number(fs.readFileSync(path.join(h.dataDir, 'sandboxes', a.sandboxId, 'init.pid'), 'utf8').split(' ')[0]);
  process.kill(initPid, 'SIGKILL');
  // A kill that a daemon began (SIGTERM to the shim) and did not finish.
  const shim = shims(h.dataDir).find((s) => s.id === b.sandboxId);
  process.kill(shim.pid, 'SIGTERM');
  await waitFor(async () => (await listIds(h)).length === 0, { timeout: 10000, what: 'both sandboxes to be removed' });
  for (const id of [a.sandboxId, b.sandboxId]) {
    await assert.rejects(Sandbox.connect(id));
    await waitFor(() => tracesOf(id).length === 0, { timeout: 5000, what: `traces of ${id} gone: ${tracesOf(id)}` });
  }
});

test('a restart keeps ids, files, timeouts and metadata', { ...opts, timeout: 120_000 }, async () => {
  const short = await Sandbox.create('base', { timeoutMs: 8000 });
  const long = await Sandbox.create('base', { timeoutMs: 300_000, metadata: { keep: 'yes' } });
  await long.files.write('/home/user/note.txt', 'from before');
  const before = await long.getInfo();
  await h.crash();
  await restart();
  const info = await long.getInfo();
  assert.deepEqual(info.metadata, { keep: 'yes' });
  assert.equal(info.endAt.getTime(), before.endAt.getTime(), 'the end time is kept');
  // The same SDK object works (same front door, same token).
  assert.equal(await long.files.read('/home/user/note.txt'), 'from before');
  await long.setTimeout(200_000);
  // The short one still dies at its end, counted from before the crash.
  await waitFor(async () => !(await listIds(h)).includes(short.sandboxId), { timeout: 15000, what: 'the short sandbox to time out' });
  assert.deepEqual(tracesOf(short.sandboxId), []);
  assert.equal((await long.commands.run('cat /home/user/note.txt')).stdout, 'from before');
  await long.kill();
  assert.deepEqual(await listIds(h), []);
});

test('a restart with fewer slots removes the sandboxes and network slots beyond them', { ...opts, timeout: 120_000 }, async () => {
  const sbxs = [];
  for (let i = 0; i < 3; i++) sbxs.push(await Sandbox.create('base'));
  await h.crash();
  h = await startHutch({ reuse: h, keepDataDir: true, args: [...NO_POOL, '--max-sandboxes', '2'] });
  const listed = await listIds(h);
  assert.ok(listed.length <= 2, `listed ${listed}`);
  for (const id of listed) assert.equal((await (await Sandbox.connect(id)).commands.run('echo ok')).stdout, 'ok\n');
  for (const s of sbxs) if (!listed.includes(s.sandboxId)) assert.deepEqual(tracesOf(s.sandboxId), []);
  await waitFor(() => links(h.prefix).every((l) => Number(l.slice(h.prefix.length)) < 2),
    { timeout: 5000, what: `no link beyond slot 1 (${links(h.prefix)})` });
  await h.crash();
  h = await startHutch({ reuse: h, keepDataDir: true, args: NO_POOL });
  assert.deepEqual((await listIds(h)).sort(), [...listed].sort(), 'taken back again');
  await Promise.all(listed.map((id) => Sandbox.kill(id)));
});
