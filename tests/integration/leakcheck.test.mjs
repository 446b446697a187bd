// The leak checker of hutch-helpers.mjs on known inputs (no daemon): what live sandboxes and the
// pools explain is not a leak, anything else that grew is, and leftovers() sees a supervisor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fdAccount, fdGrowth, fdTargets, leftovers, shims } from './hutch-helpers.mjs';
import { waitFor } from './helpers.mjs';

const dataDir = '/tmp/hutch-it-fake';
const base = ['/dev/null', '/dev/null', `${dataDir}/hutch.db`, 'socket:[11]', 'socket:[12]', 'net:[1]', 'net:[2]', 'net:[3]', 'anon_inode:[eventfd]'];
const perSandbox = (id) => [`${dataDir}/sandboxes/${id}`, 'anon_inode:[pidfd]', 'anon_inode:[pidfd]', `net:[9${id.length}]`];

test('live sandboxes, warm slots and made-ahead disks are explained; the rest is counted', () => {
  const start = fdAccount(base, { dataDir, warm: 2 });
  const busy = [...base, ...perSandbox('aaa'), ...perSandbox('bbbb'), '/', '/', '/', '/'];
  assert.deepEqual(fdGrowth(start, fdAccount(busy, { dataDir, live: ['aaa', 'bbbb'], warm: 2 })), []);
  // Socket inode numbers differ between samples: only the kind counts.
  assert.deepEqual(fdGrowth(start, fdAccount(base.map((t) => t.replace('[11]', '[99]')), { dataDir, warm: 2 })), []);
});

test('a sandbox that is gone but kept its fds, a fifth disk, a pipe: each is a leak', () => {
  const start = fdAccount(base, { dataDir, warm: 2 });
  const leaked = [...base, ...perSandbox('aaa'), '/', '/', '/', '/', '/', 'pipe:[5]'];
  assert.deepEqual(fdGrowth(start, fdAccount(leaked, { dataDir, live: [], warm: 2 })).sort(), [
    'fd leak: / (disk made ahead) 0 -> 1',
    `fd leak: ${dataDir}/sandboxes/aaa 0 -> 1`,
    'fd leak: anon_inode:[pidfd] 0 -> 2',
    'fd leak: net: 0 -> 1',
    'fd leak: pipe: 0 -> 1',
  ]);
});

test('fdTargets reads a live process; leftovers() and shims() see a process posing as a supervisor', async () => {
  assert.ok(fdTargets(process.pid).length >= 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-it-'));
  // argv: EXE shim DATA/sandboxes/ID, as the daemon spawns supervisors.
  const p = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'shim', `${dir}/sandboxes/x1`], { stdio: 'ignore', argv0: 'fake' });
  try {
    // node puts its own options first: find it by its arguments instead of argv[1].
    await waitFor(() => fs.existsSync(`/proc/${p.pid}/cmdline`), { what: 'the child' });
    const argv = fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(argv.includes(`${dir}/sandboxes/x1`));
    assert.ok(leftovers(dir, 'zz').some((l) => l.startsWith(`process ${p.pid}`)), 'a process naming the data dir is a leftover');
    assert.deepEqual(shims(dir), [], 'not a supervisor: argv[1] is not "shim"');
  } finally {
    p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
