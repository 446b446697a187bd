// The default connection limits never get in the way of the SDK's legitimate use: it pools
// keep-alive connections and holds one per open stream, so many concurrent commands, watchers
// and file transfers from one client address must all go through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHutch, skipReason, Sandbox } from './lib.mjs';

let h, sbx;
const opts = { skip: skipReason };

before(async () => {
  if (skipReason) return;
  h = await startHutch();
  sbx = await Sandbox.create('base');
});

after(async () => {
  if (!h) return;
  await sbx?.kill().catch(() => {});
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, []);
});

test('120 concurrent commands, 20 watchers and 40 file transfers from one client', opts, async () => {
  const watchers = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    sbx.files.makeDir(`/tmp/w${i}`).then(() => sbx.files.watchDir(`/tmp/w${i}`, () => {}))));
  const t = Date.now();
  const [cmds, files] = await Promise.all([
    Promise.all(Array.from({ length: 120 }, (_, i) => sbx.commands.run(`sleep 1; echo ${i}`))),
    Promise.all(Array.from({ length: 40 }, (_, i) => sbx.files.write(`/tmp/f${i}`, 'x'.repeat(64 << 10)).then(() => sbx.files.read(`/tmp/f${i}`)))),
  ]);
  cmds.forEach((r, i) => assert.equal(r.stdout, `${i}\n`));
  files.forEach((f) => assert.equal(f.length, 64 << 10));
  await Promise.all(watchers.map((w) => w.stop()));
  console.log(`measured sdk-load: 120 commands + 40 transfers + 20 watchers concurrently in ${Date.now() - t} ms`);
  // The API too: a burst of concurrent calls.
  const infos = await Promise.all(Array.from({ length: 50 }, () => Sandbox.getInfo(sbx.sandboxId)));
  infos.forEach((i) => assert.equal(i.sandboxId, sbx.sandboxId));
});
