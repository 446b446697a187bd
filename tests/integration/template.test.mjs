// The official SDK's Template builder (e2b 2.51, build system v2) against `hutch serve`: builds,
// the layer cache, start/ready commands in every sandbox, failing steps, aliases, tags, delete.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Sandbox, Template, BuildError, waitForPort } from 'e2b';
import { startHutch, skipReason, api } from './hutch-helpers.mjs';

let h;
let ctx;
const opts = { skip: skipReason };
// A nonce in the first RUN so the first build of this run never hits layers a previous run
// left in the shared cache.
const nonce = randomBytes(6).toString('hex');
const name = `it-app-${nonce}`;

before(async () => {
  if (skipReason) return;
  h = await startHutch();
  ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-tpl-ctx-'));
  fs.writeFileSync(path.join(ctx, 'hello.txt'), `hello from the build context ${nonce}\n`);
  fs.mkdirSync(path.join(ctx, 'site'));
  fs.writeFileSync(path.join(ctx, 'site', 'index.html'), `<p>${nonce}</p>\n`);
});
after(async () => {
  if (ctx) fs.rmSync(ctx, { recursive: true, force: true });
  if (!h) return;
  const res = await h.stop();
  assert.equal(res.code, 0, `hutch serve exit ${JSON.stringify({ code: res.code, signal: res.signal })}\n${res.log.slice(-2000)}`);
  assert.deepEqual(res.left, [], 'nothing is left behind after SIGTERM');
});

function appTemplate() {
  return Template({ fileContextPath: ctx })
    .fromTemplate('base')
    .runCmd(`mkdir -p /opt/app && echo ${nonce} > /opt/app/nonce && python3 -m venv --without-pip /opt/venv`)
    // A deleted file (a whiteout) and a replaced directory (opaque) must survive as a layer.
    .runCmd('rm /etc/debian_version && rm -rf /usr/share/doc && mkdir /usr/share/doc && touch /usr/share/doc/only')
    .setEnvs({ GREETING: 'hello', APP_MODE: 'test', APP_PATH: '/opt/venv/bin:$PATH', PRICE: '\\$5' })
    .copy('hello.txt', '/home/user/hello.txt', { user: 'user' })
    .copy('site', '/opt/app/site/')
    .setWorkdir('/opt/app')
    .setStartCmd('cd /opt/app/site && python3 -m http.server 8000', waitForPort(8000));
}

/** GET through the front door with Host routing (node:http sets the Host header). */
function viaFrontDoor(host, p) {
  const u = new URL(h.sandboxUrl);
  return new Promise((resolve, reject) => {
    http.get({ host: u.hostname, port: u.port, path: p, headers: { host } }, (r) => {
      let b = '';
      r.on('data', (d) => { b += d; });
      r.on('end', () => resolve({ status: r.statusCode, body: b }));
    }).on('error', reject);
  });
}

test('Template.build from base: RUN, ENV, COPY, WORKDIR, start + ready command; sandboxes from it, cold and warm', opts, async (t) => {
  const logs = [];
  const t0 = performance.now();
  const info = await Template.build(appTemplate(), name, { cpuCount: 1, memoryMB: 768, onBuildLogs: (e) => logs.push(e) });
  const first = performance.now() - t0;
  assert.equal(info.name, name);
  assert.match(info.templateId, /^[a-z0-9]{20}$/);
  const text = logs.map((e) => e.message).join('\n');
  assert.match(text, /\[builder 1\/6\] RUN mkdir -p \/opt\/app/);
  assert.match(text, /Build finished .*\(4 layers built, 0 from the cache\)/, text);

  const sbx = await Sandbox.create(name);
  try {
    // The start command's server answers as soon as create returns.
    const inside = await sbx.commands.run('curl -s localhost:8000/index.html');
    assert.equal(inside.stdout, `<p>${nonce}</p>\n`);
    const out = await sbx.commands.run('cat /home/user/hello.txt; echo "$GREETING $APP_MODE"; pwd; id -un; cat /opt/app/nonce; stat -c %U /home/user/hello.txt; test -x /opt/venv/bin/python3 && echo venv; echo "$APP_PATH $PRICE"');
    // ENV values are expanded against the build's environment (PATH: envd's default), `\$` is a `$`.
    assert.deepEqual(out.stdout.trim().split('\n'), [
      `hello from the build context ${nonce}`, 'hello test', '/opt/app', 'user', nonce, 'user', 'venv',
      '/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin $5']);
    const del = await sbx.commands.run('test -e /etc/debian_version || echo gone; ls -A /usr/share/doc');
    assert.equal(del.stdout, 'gone\nonly\n');
    // The layers' owners came back unshifted: root inside is root, user is 1000.
    const owners = await sbx.commands.run('stat -c "%U %u" /opt/app/nonce /opt/app/site/index.html /home/user');
    assert.equal(owners.stdout, 'root 0\nroot 0\nuser 1000\n');
    const fd = await viaFrontDoor(sbx.getHost(8000), '/index.html');
    assert.equal(fd.status, 200, fd.body);
    assert.equal(fd.body, `<p>${nonce}</p>\n`);
    const detail = await sbx.getInfo();
    assert.equal(detail.templateId, info.templateId);
    assert.equal(detail.cpuCount, 1);
    assert.equal(detail.memoryMB, 768);
  } finally {
    await sbx.kill();
  }

  // The same template again: every layer and the ready check come from the cache.
  const logs2 = [];
  const t1 = performance.now();
  const info2 = await Template.build(appTemplate(), name, { cpuCount: 1, memoryMB: 768, onBuildLogs: (e) => logs2.push(e) });
  const second = performance.now() - t1;
  assert.equal(info2.templateId, info.templateId, 'a rebuild keeps the template id');
  assert.notEqual(info2.buildId, info.buildId);
  const text2 = logs2.map((e) => e.message).join('\n');
  assert.match(text2, /\(0 layers built, 4 from the cache\)/, text2);
  assert.match(text2, /CACHED \[builder 1\/6\]/);
  t.diagnostic(`first build ${first.toFixed(0)} ms, cached rebuild ${second.toFixed(0)} ms (${(first / second).toFixed(1)}x)`);

  // The warm pool keeps sandboxes of this template with the start command already answering.
  let warm = null;
  for (let i = 0; i < 60 && !warm; i++) {
    const s = await Sandbox.create(name, { envs: { FROM_CREATE: 'yes' } });
    if (h.log().includes(`Sandbox ${s.sandboxId} started from template ${info.templateId} (warm`)) warm = s;
    else { await s.kill(); await new Promise((r) => setTimeout(r, 500)); }
  }
  assert.ok(warm, 'a create of the template was served by the warm pool');
  try {
    const r = await warm.commands.run('curl -s localhost:8000/index.html; echo "$GREETING $FROM_CREATE"; pwd');
    assert.equal(r.stdout, `<p>${nonce}</p>\nhello yes\n/opt/app\n`);
  } finally {
    await warm.kill();
  }
});

test('a failing step fails the build with its step, exit code and output', opts, async () => {
  const tpl = Template({ fileContextPath: ctx })
    .fromTemplate('base')
    .runCmd(`echo step one ${nonce}`)
    .runCmd('echo about to fail; echo on stderr >&2; exit 7');
  let err;
  await assert.rejects(Template.build(tpl, `it-fail-${nonce}`), (e) => { err = e; return e instanceof BuildError; });
  assert.match(err.message, /Step 2\/2 \(RUN echo about to fail.*\) failed: exit code 7/);
  const id = (await api(h, 'GET', `/templates/aliases/it-fail-${nonce}`)).json.templateID;
  const list = await api(h, 'GET', `/templates/${id}`);
  assert.equal(list.status, 200);
  const build = list.json.builds.at(-1);
  assert.equal(build.status, 'error');
  const st = await api(h, 'GET', `/templates/${id}/builds/${build.buildID}/status`);
  assert.equal(st.json.status, 'error');
  assert.equal(st.json.reason.step, '2');
  const tail = st.json.reason.logEntries.map((e) => e.message).join('\n');
  assert.match(tail, /about to fail/);
  assert.match(tail, /on stderr/);
  const logs = await api(h, 'GET', `/templates/${id}/builds/${build.buildID}/logs`);
  assert.equal(logs.status, 200);
  assert.deepEqual(logs.json.logs, st.json.logEntries);
  assert.equal((await api(h, 'GET', `/templates/${id}/builds/nosuchbuild/status`)).status, 404);
  // logsOffset skips what was read already.
  const all = st.json.logEntries.length;
  const rest = await api(h, 'GET', `/templates/${id}/builds/${build.buildID}/status?logsOffset=${all - 1}`);
  assert.equal(rest.json.logEntries.length, 1);
  // A template with no ready build cannot start sandboxes.
  await assert.rejects(Sandbox.create(`it-fail-${nonce}`), /no ready build/);
  // No partial layer of this build is left in the cache.
  assert.deepEqual(fs.readdirSync('/var/cache/hutch/layers').filter((n) => n.startsWith(`.tmp-${build.buildID}`)), []);
});

test("a build's own sandbox is invisible to clients: not listed, 404 by id", opts, async () => {
  const build = Template.build(Template().fromTemplate('base').runCmd(`echo ${nonce}-hidden; sleep 4`), `it-hidden-${nonce}`);
  // The build sandbox's id, from the store (sqlite3 from deps.sh): the only row without a key.
  let id = '';
  for (let i = 0; i < 100 && !id; i++) {
    const r = spawnSync('sqlite3', ['-readonly', path.join(h.dataDir, 'hutch.db'),
      "SELECT id FROM sandboxes WHERE key_id = '' AND state = 'running'"], { encoding: 'utf8' });
    id = r.stdout.trim().split('\n')[0];
    if (!id) await new Promise((res) => setTimeout(res, 100));
  }
  assert.ok(id, 'the build sandbox is running');
  const listed = (await api(h, 'GET', '/v2/sandboxes?limit=100')).json.map((s) => s.sandboxID);
  assert.ok(!listed.includes(id), `listed: ${listed}`);
  assert.ok(!(await api(h, 'GET', '/sandboxes')).json.some((s) => s.sandboxID === id));
  for (const [method, p, body] of [['GET', `/sandboxes/${id}`], ['DELETE', `/sandboxes/${id}`],
    ['POST', `/sandboxes/${id}/timeout`, { timeout: 1 }], ['POST', `/sandboxes/${id}/connect`, { timeout: 10 }],
    ['GET', `/sandboxes/${id}/metrics`], ['GET', `/v2/sandboxes/${id}/logs`]]) {
    const r = await api(h, method, p, body);
    assert.equal(r.status, 404, `${method} ${p}: ${r.status}`);
  }
  assert.deepEqual((await api(h, 'GET', `/sandboxes/metrics?sandbox_ids=${id}`)).json, { sandboxes: {} });
  // The attempts changed nothing: the build finishes.
  await build;
  assert.equal((await api(h, 'DELETE', `/templates/it-hidden-${nonce}`)).status, 204);
});

test('file capabilities set by a RUN work in sandboxes from the template', opts, async () => {
  // setcap cap_net_raw+ep by hand (base has no libcap2-bin): a v2 security.capability value.
  const v2 = '01000002' + '00200000' + '00000000' + '00000000' + '00000000';
  const tpl = Template().fromTemplate('base').runCmd(
    `cp /bin/sleep /opt/capsleep-${nonce} && python3 -c "import os; os.setxattr('/opt/capsleep-${nonce}', 'security.capability', bytes.fromhex('${v2}'))"`);
  await Template.build(tpl, `it-caps-${nonce}`);
  const sbx = await Sandbox.create(`it-caps-${nonce}`);
  try {
    // As `user`: the file's capability is what raises the process's effective set.
    const r = await sbx.commands.run(`/opt/capsleep-${nonce} 5 & sleep 0.5; grep CapEff /proc/$!/status; grep CapEff /proc/self/status`);
    const [file, self] = r.stdout.trim().split('\n').map((l) => l.split(/\s+/)[1]);
    assert.equal(file, '0000000000002000', `cap_net_raw from the file: ${r.stdout}`);
    assert.equal(self, '0000000000000000', 'the shell itself has none');
  } finally {
    await sbx.kill();
  }
  assert.equal((await api(h, 'DELETE', `/templates/it-caps-${nonce}`)).status, 204);
});

test('bad recipes and uploads get clear errors', opts, async () => {
  const req = await api(h, 'POST', '/v3/templates', { name: `it-bad-${nonce}` });
  assert.equal(req.status, 202);
  const { templateID, buildID } = req.json;
  const bad = await api(h, 'POST', `/v2/templates/${templateID}/builds/${buildID}`, { fromTemplate: 'base', steps: [{ type: 'FROB', args: [] }] });
  assert.equal(bad.status, 400);
  assert.match(bad.json.message, /unknown step type 'FROB'/);
  const both = await api(h, 'POST', `/v2/templates/${templateID}/builds/${buildID}`, { fromTemplate: 'base', fromImage: 'x' });
  assert.equal(both.status, 400);
  const copyAbs = await api(h, 'POST', `/v2/templates/${templateID}/builds/${buildID}`, {
    fromTemplate: 'base', steps: [{ type: 'COPY', args: ['../etc/passwd', '/x'], filesHash: 'a'.repeat(64) }] });
  assert.equal(copyAbs.status, 400);
  assert.match(copyAbs.json.message, /relative path/);
  assert.equal((await api(h, 'POST', '/v3/templates', { name: 'Bad Name!' })).status, 400);
  assert.equal((await api(h, 'POST', '/v3/templates', { name: 'base' })).status, 409);
  assert.equal((await api(h, 'GET', `/templates/${templateID}/files/nothex`)).status, 400);
  const link = await api(h, 'GET', `/templates/${templateID}/files/${'b'.repeat(64)}`);
  assert.equal(link.status, 201);
  assert.equal(link.json.present, false);
  const forged = link.json.url.replace(/sig=[0-9a-f]+/, `sig=${'0'.repeat(64)}`);
  assert.equal((await fetch(forged, { method: 'PUT', body: 'x' })).status, 403);
  assert.equal((await fetch(link.json.url, { method: 'PUT', body: 'data' })).status, 200);
  assert.equal((await api(h, 'GET', `/templates/${templateID}/files/${'b'.repeat(64)}`)).json.present, true);
  assert.equal((await api(h, 'DELETE', `/templates/${templateID}`)).status, 204);
});

/** A build through the raw API, as the CLI does: request, upload, start, poll until it ends. */
async function rawBuild(tname, recipe, uploads = {}) {
  const req = await api(h, 'POST', '/v3/templates', { name: tname });
  assert.equal(req.status, 202, req.text);
  const { templateID, buildID } = req.json;
  for (const [hash, file] of Object.entries(uploads)) {
    const link = await api(h, 'GET', `/templates/${templateID}/files/${hash}`);
    assert.equal(link.status, 201);
    if (link.json.present) continue;
    const put = await fetch(link.json.url, { method: 'PUT', body: fs.readFileSync(file) });
    assert.equal(put.status, 200);
  }
  const start = await api(h, 'POST', `/v2/templates/${templateID}/builds/${buildID}`, recipe);
  assert.equal(start.status, 202, start.text);
  for (;;) {
    const st = await api(h, 'GET', `/templates/${templateID}/builds/${buildID}/status`);
    if (st.json.status === 'ready' || st.json.status === 'error') return st.json;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('ADD unpacks a local tar archive; two templates build at once', opts, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-tpl-add-'));
  try {
    fs.mkdirSync(path.join(dir, 'inner'));
    fs.writeFileSync(path.join(dir, 'inner', 'a.txt'), `inside the archive ${nonce}\n`);
    execFileSync('tar', ['-cf', path.join(dir, 'pkg.tar'), '-C', path.join(dir, 'inner'), 'a.txt']);
    execFileSync('tar', ['-czf', path.join(dir, 'up.tgz'), '-C', dir, 'pkg.tar']);
    const hash = randomBytes(32).toString('hex');
    const [add, other] = await Promise.all([
      rawBuild(`it-add-${nonce}`, { fromTemplate: 'base', steps: [
        { type: 'ADD', args: ['pkg.tar', '/opt/pkg/', '', ''], filesHash: hash },
        { type: 'COPY', args: ['pkg.tar', '/opt/raw.tar', '', '0600'], filesHash: hash }] }, { [hash]: path.join(dir, 'up.tgz') }),
      rawBuild(`it-other-${nonce}`, { fromTemplate: 'base', steps: [{ type: 'RUN', args: [`sleep 1; echo ${nonce} > /other`] }] }),
    ]);
    assert.equal(add.status, 'ready', JSON.stringify(add.reason));
    assert.equal(other.status, 'ready', JSON.stringify(other.reason));
    const sbx = await Sandbox.create(`it-add-${nonce}`);
    try {
      const out = await sbx.commands.run('cat /opt/pkg/a.txt; stat -c "%a %U" /opt/raw.tar; tar -tf /opt/raw.tar', { user: 'root' });
      assert.equal(out.stdout, `inside the archive ${nonce}\n600 root\na.txt\n`);
    } finally {
      await sbx.kill();
    }
    const sbx2 = await Sandbox.create(`it-other-${nonce}`);
    try {
      assert.equal((await sbx2.commands.run('cat /other; test -e /opt/pkg || echo separate')).stdout, `${nonce}\nseparate\n`);
    } finally {
      await sbx2.kill();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('aliases, tags, list and delete', opts, async () => {
  assert.equal(await Template.exists(name), true);
  assert.equal(await Template.exists(`no-such-${nonce}`), false);
  const tagged = await Template.assignTags(`${name}:default`, ['v1', 'stable']);
  assert.deepEqual(tagged.tags, ['v1', 'stable']);
  const id = (await api(h, 'GET', `/templates/aliases/${name}`)).json.templateID;
  const tags = await Template.getTags(id);
  assert.deepEqual(tags.map((x) => x.tag).sort(), ['default', 'stable', 'v1']);
  const sbx = await Sandbox.create(`${name}:v1`);
  try {
    assert.equal((await sbx.commands.run('cat /opt/app/nonce')).stdout, `${nonce}\n`);
  } finally {
    await sbx.kill();
  }
  await Template.removeTags(name, 'stable');
  assert.deepEqual((await Template.getTags(id)).map((x) => x.tag).sort(), ['default', 'v1']);
  await assert.rejects(Sandbox.create(`${name}:stable`), /no tag 'stable'/);

  const list = await api(h, 'GET', '/templates');
  assert.equal(list.status, 200);
  const mine = list.json.find((x) => x.templateID === id);
  assert.deepEqual(mine.aliases, [name]);
  assert.equal(mine.buildStatus, 'ready');
  assert.ok(list.json.some((x) => x.templateID === 'base'));

  assert.equal((await api(h, 'DELETE', '/templates/base')).status, 403);
  assert.equal((await api(h, 'DELETE', `/templates/${id}`)).status, 204);
  assert.equal(await Template.exists(name), false);
  assert.equal((await api(h, 'DELETE', `/templates/${id}`)).status, 404);
  await assert.rejects(Sandbox.create(name), /not found/);
});

test('fromDebianImage(bookworm) + aptInstall(jq): debootstrap from the machine mirror, apt in a build sandbox', opts, async () => {
  const logs = [];
  const tpl = Template().fromDebianImage('bookworm').aptInstall(['jq']).runCmd(`echo ${nonce} > /etc/hutch-nonce`);
  await Template.build(tpl, `it-deb-${nonce}`, { onBuildLogs: (e) => logs.push(e.message) });
  assert.ok(logs.some((l) => /FROM debian:bookworm/.test(l)), logs.join('\n'));
  const sbx = await Sandbox.create(`it-deb-${nonce}`);
  try {
    const out = await sbx.commands.run('echo \'{"a":42}\' | jq .a; id -un; cut -d. -f1 /etc/debian_version; cat /etc/hutch-nonce');
    assert.deepEqual(out.stdout.trim().split('\n'), ['42', 'user', '12', nonce]);
  } finally {
    await sbx.kill();
  }
  assert.equal((await api(h, 'DELETE', `/templates/it-deb-${nonce}`)).status, 204);
});
