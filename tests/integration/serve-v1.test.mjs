// The older SDK generation (e2b 2.45.0: v1 create/connect paths, always sends timeout/secure).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox } from 'e2b-v1';
import { startHutch, skipReason } from './hutch-helpers.mjs';

let h;
const opts = { skip: skipReason };

before(async () => { if (!skipReason) h = await startHutch(); });
after(async () => {
  if (!h) return;
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, []);
});

test('e2b 2.45 (v1 paths): create, run, files, connect, list, kill', opts, async () => {
  const sbx = await Sandbox.create('base', { metadata: { gen: 'v1' } });
  try {
    const r = await sbx.commands.run('echo v1 && id -un');
    assert.equal(r.stdout, 'v1\nuser\n');
    await sbx.files.write('/home/user/a.txt', 'A');
    const again = await Sandbox.connect(sbx.sandboxId);
    assert.equal(await again.files.read('/home/user/a.txt'), 'A');
    const listed = await Sandbox.list({ query: { metadata: { gen: 'v1' } } }).nextItems();
    assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId]);
  } finally {
    await sbx.kill();
  }
  assert.equal(await Sandbox.kill(sbx.sandboxId), false);
});
