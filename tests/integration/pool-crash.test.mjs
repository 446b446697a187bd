// A daemon killed with SIGKILL leaves its warm pool's sandboxes running with no store row; the
// next daemon on the same data dir must find and destroy them (and the assigned one), and then
// leave nothing behind at SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sandbox } from 'e2b';
import { startHutch, skipReason } from './hutch-helpers.mjs';
import { sleep } from './helpers.mjs';

function pgrep(pattern) {
  try {
    return execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8' });
  } catch (e) {
    if (e.status === 1) return ''; // none
    throw e;
  }
}

const runDirs = (dataDir) => fs.readdirSync(path.join(dataDir, 'sandboxes')).filter((e) => !e.startsWith('.'));

test('after a SIGKILL, the next daemon destroys the pool\'s unassigned sandboxes and takes back the assigned one', { skip: skipReason, timeout: 120_000 }, async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-it-'));
  const args = ['--warm-sandboxes', '2', '--log-level', 'debug'];
  const first = await startHutch({ dataDir, args });
  let assigned;
  try {
    for (let i = 0; i < 300 && (first.log().match(/Warm sandbox of template base ready/g) ?? []).length < 2; i++) await sleep(50);
    assigned = (await Sandbox.create('base')).sandboxId;
    for (let i = 0; i < 300 && runDirs(dataDir).length < 3; i++) await sleep(50);
  } finally {
    first.proc.kill('SIGKILL');
    await new Promise((r) => (first.proc.exitCode !== null || first.proc.signalCode ? r() : first.proc.once('exit', r)));
  }
  const left = runDirs(dataDir);
  const pooled = left.filter((id) => id !== assigned);
  assert.ok(left.includes(assigned), 'the assigned sandbox outlived the daemon');
  assert.ok(pooled.length >= 1, `pool members outlived the daemon: ${left}`);
  for (const id of pooled) assert.notEqual(pgrep(`shim ${dataDir}/sandboxes/${id}`), '', `${id} still runs`);

  const second = await startHutch({ dataDir, apiKey: first.apiKey, args });
  let res;
  try {
    for (const id of pooled) {
      assert.ok(second.log().includes(`Removing sandbox ${id} left by a previous run`), second.log().slice(-3000));
      assert.equal(pgrep(`shim ${dataDir}/sandboxes/${id}`), '', `${id}: its shim is gone`);
    }
    // The assigned one has a record: it is taken back, and works.
    const back = await Sandbox.connect(assigned);
    assert.equal((await back.commands.run('hostname')).stdout.trim(), assigned);
    await back.kill();
    assert.deepEqual(runDirs(dataDir).filter((id) => left.includes(id)), [], 'no run dir of the first daemon is left');
    // The new daemon's pool works.
    const sbx = await Sandbox.create('base');
    assert.equal((await sbx.commands.run('hostname')).stdout.trim(), sbx.sandboxId);
    await sbx.kill();
  } finally {
    res = await second.stop();
  }
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, [], 'nothing is left behind');
});
