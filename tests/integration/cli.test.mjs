// The hutch command line: keys (local store) and sandbox list/kill/exec (through the API and
// the front door, like the SDK).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Sandbox } from 'e2b';
import { startHutch, skipReason, HUTCH } from './hutch-helpers.mjs';

let h;
const opts = { skip: skipReason };
const cli = (args, env = {}) => {
  const r = spawnSync(HUTCH, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

before(async () => { if (!skipReason) h = await startHutch(); });
after(async () => {
  if (!h) return;
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, []);
});

test('hutch keys create, list, delete; a created key works against the API', opts, async () => {
  const made = cli(['keys', 'create', '--name', 'ci-key', '--json', '--data-dir', h.dataDir]);
  assert.equal(made.code, 0, made.err);
  const { id, key } = JSON.parse(made.out);
  assert.match(key, /^e2b_[0-9a-f]{40}$/);
  const res = await fetch(`${h.apiUrl}/v2/sandboxes`, { headers: { 'x-api-key': key } });
  assert.equal(res.status, 200);
  const list = cli(['keys', 'list', '--data-dir', h.dataDir]);
  assert.equal(list.code, 0);
  assert.match(list.out, /ci-key/);
  assert.doesNotMatch(list.out, new RegExp(key), 'listings never show a whole key');
  assert.equal(cli(['keys', 'create', '--name', 'ci-key', '--data-dir', h.dataDir]).code, 1, 'names are unique');
  assert.equal(cli(['keys', 'delete', id, '--data-dir', h.dataDir]).code, 0);
  assert.equal((await fetch(`${h.apiUrl}/v2/sandboxes`, { headers: { 'x-api-key': key } })).status, 401);
  const bad = cli(['keys', 'delete', 'nope', '--data-dir', h.dataDir]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /no key 'nope'/);
  assert.equal(cli(['keys', 'frobnicate']).code, 2);
});

test('hutch sandbox list, exec (exit code, user, cwd), kill', opts, async () => {
  const sbx = await Sandbox.create('base', { metadata: { via: 'cli' } });
  const listed = cli(['sandbox', 'list']);
  assert.equal(listed.code, 0, listed.err);
  assert.match(listed.out, new RegExp(sbx.sandboxId));
  const json = JSON.parse(cli(['sandbox', 'list', '--json']).out);
  assert.ok(json.some((s) => s.sandboxID === sbx.sandboxId));
  const ex = cli(['sandbox', 'exec', sbx.sandboxId, '--', 'bash', '-c', 'echo out; echo err >&2; id -un; exit 7']);
  assert.equal(ex.code, 7);
  assert.equal(ex.out, 'out\nuser\n');
  assert.equal(ex.err, 'err\n');
  const asRoot = cli(['sandbox', 'exec', '--user', 'root', '--cwd', '/tmp', sbx.sandboxId, '--', 'sh', '-c', 'id -u; pwd']);
  assert.equal(asRoot.out, '0\n/tmp\n');
  assert.equal(cli(['sandbox', 'kill', sbx.sandboxId]).code, 0);
  const again = cli(['sandbox', 'kill', sbx.sandboxId]);
  assert.equal(again.code, 1);
  assert.match(again.err, /404/);
  const gone = cli(['sandbox', 'exec', sbx.sandboxId, '--', 'true']);
  assert.notEqual(gone.code, 0);
  assert.equal(cli(['sandbox']).code, 2);
});
