// files.watchDir through the official SDK in debug mode (mirrors js-sdk tests/sandbox/files/watch.test.ts).
import assert from 'node:assert/strict';
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

test('onExit is called when the watch is stopped or times out', T, async () => {
  let exited;
  const done = new Promise((r) => (exited = r));
  const handle = await sbx.files.watchDir(W, () => {}, { timeoutMs: 800, onExit: (err) => exited(err ?? null) });
  const err = await Promise.race([done, sleep(5000).then(() => 'no onExit')]);
  assert.notEqual(err, 'no onExit');
  await handle.stop();
});
