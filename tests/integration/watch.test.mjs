// files.watchDir through the official SDK in debug mode (mirrors js-sdk tests/sandbox/files/watch.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { FileNotFoundError, FilesystemEventType, SandboxError } from 'e2b';

import { debugSandbox, sleep, startEnvd, waitFor, stopChecked } from './helpers.mjs';

const T = { timeout: 30_000 };
let envd;
let sbx;
let W;

before(async () => {
  envd = await startEnvd({ config: { defaultWorkdir: true } });
  W = envd.workdir;
  sbx = await debugSandbox();
});

after(() => stopChecked(envd));

function collector() {
  const events = [];
  return {
    events,
    onEvent: (e) => events.push(e),
    has: (type, name) => events.some((e) => e.type === type && e.name === name),
  };
}

test('watch a directory: create and write events', T, async () => {
  const dir = path.join(W, 'watched');
  await sbx.files.makeDir(dir);
  const c = collector();
  const handle = await sbx.files.watchDir(dir, c.onEvent);
  try {
    await sbx.files.write(path.join(dir, 'test_watch.txt'), 'first');
    await waitFor(() => c.has(FilesystemEventType.CREATE, 'test_watch.txt'), { what: 'CREATE test_watch.txt' });
    await sbx.files.write(path.join(dir, 'test_watch.txt'), 'second');
    await waitFor(() => c.has(FilesystemEventType.WRITE, 'test_watch.txt'), { what: 'WRITE test_watch.txt' });
    await sbx.files.remove(path.join(dir, 'test_watch.txt'));
    await waitFor(() => c.has(FilesystemEventType.REMOVE, 'test_watch.txt'), { what: 'REMOVE test_watch.txt' });
    for (const e of c.events) assert.equal(e.entry, undefined, 'entry sent without includeEntry');
  } finally {
    await handle.stop();
  }
});

test('non-recursive watch ignores nested changes', T, async () => {
  const dir = path.join(W, 'flat');
  await sbx.files.makeDir(path.join(dir, 'nested'));
  const c = collector();
  const handle = await sbx.files.watchDir(dir, c.onEvent);
  try {
    await sbx.files.write(path.join(dir, 'nested', 'deep.txt'), 'x');
    await sbx.files.write(path.join(dir, 'top.txt'), 'x');
    await waitFor(() => c.has(FilesystemEventType.CREATE, 'top.txt'), { what: 'CREATE top.txt' });
    await sleep(200);
    assert.ok(!c.events.some((e) => e.name.includes('deep.txt')), JSON.stringify(c.events));
  } finally {
    await handle.stop();
  }
});

test('recursive watch: nested write, and a directory created after the watch started', T, async () => {
  const dir = path.join(W, 'rec');
  await sbx.files.makeDir(path.join(dir, 'test_nested_watch_dir'));
  const c = collector();
  const handle = await sbx.files.watchDir(dir, c.onEvent, { recursive: true });
  try {
    await sbx.files.write(path.join(dir, 'test_nested_watch_dir', 'test_watch.txt'), 'a');
    await sbx.files.write(path.join(dir, 'test_nested_watch_dir', 'test_watch.txt'), 'b');
    await waitFor(() => c.has(FilesystemEventType.WRITE, 'test_nested_watch_dir/test_watch.txt'), {
      what: 'WRITE test_nested_watch_dir/test_watch.txt',
    });
    await sbx.files.makeDir(path.join(dir, 'later'));
    await waitFor(() => c.has(FilesystemEventType.CREATE, 'later'), { what: 'CREATE later' });
    await sbx.files.write(path.join(dir, 'later', 'test_watch.txt'), 'c');
    await waitFor(() => c.has(FilesystemEventType.WRITE, 'later/test_watch.txt'), { what: 'WRITE later/test_watch.txt' });
  } finally {
    await handle.stop();
  }
});

test('includeEntry attaches the entry to create/write events', T, async () => {
  const dir = path.join(W, 'entries');
  await sbx.files.makeDir(dir);
  const c = collector();
  const handle = await sbx.files.watchDir(dir, c.onEvent, { includeEntry: true });
  try {
    await sbx.files.write(path.join(dir, 'e.txt'), 'entry');
    const ev = await waitFor(() => c.events.find((e) => e.type === FilesystemEventType.WRITE && e.name === 'e.txt'), {
      what: 'WRITE e.txt',
    });
    assert.ok(ev.entry, 'no entry on the event');
    assert.equal(ev.entry.name, 'e.txt');
    assert.equal(ev.entry.path, path.join(dir, 'e.txt'));
    assert.equal(ev.entry.type, 'file');
  } finally {
    await handle.stop();
  }
});

test('rename produces RENAME and CREATE events', T, async () => {
  const dir = path.join(W, 'ren');
  await sbx.files.makeDir(dir);
  await sbx.files.write(path.join(dir, 'a.txt'), 'x');
  const c = collector();
  const handle = await sbx.files.watchDir(dir, c.onEvent);
  try {
    await sbx.files.rename(path.join(dir, 'a.txt'), path.join(dir, 'b.txt'));
    await waitFor(() => c.has(FilesystemEventType.RENAME, 'a.txt') && c.has(FilesystemEventType.CREATE, 'b.txt'), {
      what: 'RENAME a.txt + CREATE b.txt',
    });
  } finally {
    await handle.stop();
  }
});

test('allowNetworkMounts on a local directory works', T, async () => {
  const handle = await sbx.files.watchDir(W, () => {}, { allowNetworkMounts: true });
  await handle.stop();
});

test('watching a missing directory → FileNotFoundError; a file → SandboxError', T, async () => {
  await assert.rejects(sbx.files.watchDir(path.join(W, 'missing'), () => {}), FileNotFoundError);
  await sbx.files.write(path.join(W, 'plain.txt'), 'x');
  await assert.rejects(sbx.files.watchDir(path.join(W, 'plain.txt'), () => {}), (e) => {
    assert.ok(e instanceof SandboxError, `got ${e}`);
    assert.ok(!(e instanceof FileNotFoundError));
    return true;
  });
});

/** The kernel's encoding of a stat dev (what /proc/PID/fdinfo prints as sdev). */
function kernelDev(dev) {
  const major = Number((BigInt(dev) >> 8n) & 0xfffn);
  const minor = Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & 0xfff00n));
  return ((major << 20) | minor).toString(16);
}

/** sdev of every inotify watch envd holds. */
function envdWatchDevs() {
  const devs = [];
  const dir = `/proc/${envd.pid}/fdinfo`;
  for (const fd of fs.readdirSync(dir)) {
    let text;
    try {
      text = fs.readFileSync(path.join(dir, fd), 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^inotify wd:\S+ ino:\S+ sdev:(\S+)/gm)) devs.push(m[1]);
  }
  return devs;
}

test('a recursive watch of / skips /proc and /sys', T, async () => {
  const t0 = Date.now();
  let handle;
  try {
    handle = await sbx.files.watchDir('/', () => {}, { recursive: true });
  } catch (e) {
    // Too many directories for the watch budget is an honest answer too.
    assert.ok(e instanceof SandboxError, `got ${e?.name}: ${e?.message}`);
  }
  const ms = Date.now() - t0;
  try {
    if (handle) {
      const devs = envdWatchDevs();
      assert.ok(devs.length > 10, `only ${devs.length} watches`);
      for (const p of ['/proc', '/sys']) {
        const dev = kernelDev(fs.statSync(p).dev);
        if (fs.statSync(p).dev === fs.statSync('/').dev) continue; // not a separate mount here
        assert.equal(devs.filter((d) => d === dev).length, 0, `${p} is watched`);
      }
    }
  } finally {
    await handle?.stop();
  }
  assert.ok(ms < 15000, `watchDir('/', recursive) took ${ms} ms`);
});

test('the watch budget is shared by all watchers: over it → RateLimitError, freed on stop', { timeout: 60_000 }, async () => {
  const a = path.join(W, 'budget-a');
  const b = path.join(W, 'budget-b');
  // 2 × 40,000 directories: each fits the per-watcher limit, both do not fit the budget.
  await sbx.commands.run(`mkdir -p ${a} ${b} && cd ${a} && mkdir $(seq 40000) && cd ${b} && mkdir $(seq 40000)`);
  try {
    const ha = await sbx.files.watchDir(a, () => {}, { recursive: true });
    try {
      await assert.rejects(sbx.files.watchDir(b, () => {}, { recursive: true }), (e) => {
        assert.equal(e?.name, 'RateLimitError', `got ${e?.name}: ${e?.message}`);
        return true;
      });
    } finally {
      await ha.stop();
    }
    // Stopping the first watcher gives its watches back.
    await waitFor(
      async () => {
        try {
          const hb = await sbx.files.watchDir(b, () => {}, { recursive: true });
          await hb.stop();
          return true;
        } catch {
          return false;
        }
      },
      { timeout: 10_000, what: 'the budget to be freed' },
    );
  } finally {
    await sbx.commands.run(`rm -rf ${a} ${b}`);
  }
});

test('onExit is called when the watch is stopped or times out', T, async () => {
  let exited;
  const done = new Promise((r) => (exited = r));
  const handle = await sbx.files.watchDir(W, () => {}, { timeoutMs: 800, onExit: (err) => exited(err ?? null) });
  const err = await Promise.race([done, sleep(5000).then(() => 'no onExit')]);
  assert.notEqual(err, 'no onExit');
  await handle.stop();
});
