// `hutch template build|list|delete`: the recipe the CLI makes from a Dockerfile is the one the
// official SDK's fromDockerfile makes (same steps, same files hashes); argument and Dockerfile
// errors; and, against a daemon with the template API, a real build whose sandboxes behave as
// the Dockerfile says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sandbox, Template } from 'e2b';
import { startHutch, skipReason, HUTCH, api } from './hutch-helpers.mjs';

const built = fs.existsSync(HUTCH) ? false : `${HUTCH} not built`;
const cli = (args, opts = {}) => {
  const r = spawnSync(HUTCH, args, {
    encoding: 'utf8', cwd: opts.cwd, timeout: opts.timeout ?? 60000,
    env: { ...process.env, TERM: 'dumb', ...(opts.env ?? {}) },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
// The CLI as a child process without blocking the event loop (the daemon runs in this process).
const cliAsync = (args, opts = {}) => new Promise((resolve) => {
  const p = spawn(HUTCH, args, { cwd: opts.cwd, env: { ...process.env, TERM: 'dumb' } });
  let out = '', err = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { err += d; });
  p.on('exit', (code) => resolve({ code, out, err }));
});

function context(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-tpl-ctx-'));
  for (const [name, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), body);
  }
  return dir;
}

test('the dry-run recipe equals the SDK fromDockerfile recipe, files hashes included', { skip: built }, async () => {
  const dir = context({
    'e2b.Dockerfile': [
      'FROM e2bdev/base',
      'RUN apt-get update && apt-get install -y jq',
      'ENV A=1 B=two',
      'WORKDIR /app',
      'COPY hello.txt /app/',
      'COPY data /app/data/',
      'USER root',
      '',
    ].join('\n'),
    'hello.txt': 'hello\n',
    'data/a.json': '{"a":1}\n',
    'data/sub/b.txt': 'b\n',
  });
  fs.chmodSync(path.join(dir, 'data/a.json'), 0o600);
  const r = cli(['template', 'build', '--dry-run', dir]);
  assert.equal(r.code, 0, r.err);
  const ours = JSON.parse(r.out);
  const sdk = JSON.parse(await Template({ fileContextPath: dir })
    .fromDockerfile(path.join(dir, 'e2b.Dockerfile')).toJSON(true));
  assert.equal(ours.fromImage, sdk.fromImage);
  assert.deepEqual(ours.steps, sdk.steps);
  assert.equal(ours.steps.filter((s) => s.filesHash).length, 2);
  fs.rmSync(dir, { recursive: true });
});

test('ARG, --build-arg, .dockerignore and overrides in the recipe', { skip: built }, () => {
  const dir = context({
    'Dockerfile': 'ARG V=1\nFROM base\nARG V\nCOPY . /src/\nRUN make V=$V\nCMD ["run"]\n',
    'a.txt': 'a', 'secret.env': 'x', '.dockerignore': '*.env\n',
  });
  const base = JSON.parse(cli(['template', 'build', '--dry-run', dir]).out);
  const r = cli(['template', 'build', '--dry-run', '--build-arg', 'V=2', '--start-cmd', 'serve',
    '--ready-cmd', 'true', '--no-cache', dir]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.startCmd, 'serve');
  assert.equal(j.readyCmd, 'true');
  assert.equal(j.force, true);
  assert.ok(j.steps.some((s) => s.type === 'RUN' && s.args[0] === 'export V=2; make V=$V'));
  assert.ok(base.steps.some((s) => s.type === 'RUN' && s.args[0] === 'export V=1; make V=$V'));
  // The ignored file is not part of the hash: changing it changes nothing.
  fs.writeFileSync(path.join(dir, 'secret.env'), 'changed');
  const again = JSON.parse(cli(['template', 'build', '--dry-run', dir]).out);
  const hash = (x) => x.steps.find((s) => s.type === 'COPY').filesHash;
  assert.equal(hash(again), hash(base));
  fs.writeFileSync(path.join(dir, 'a.txt'), 'changed');
  assert.notEqual(hash(JSON.parse(cli(['template', 'build', '--dry-run', dir]).out)), hash(base));
  fs.rmSync(dir, { recursive: true });
});

test('clear errors: no Dockerfile, bad Dockerfile (with its line), missing COPY source, bad args, no API', { skip: built }, () => {
  const empty = context({});
  let r = cli(['template', 'build', empty]);
  assert.equal(r.code, 1);
  assert.match(r.err, /no Dockerfile/);

  const bad = context({ 'e2b.Dockerfile': 'FROM base\nRUN true\nCOPY --from=x /a /b\n' });
  r = cli(['template', 'build', bad]);
  assert.equal(r.code, 1);
  assert.match(r.err, /e2b\.Dockerfile:3: COPY --from/);

  const missing = context({ 'e2b.Dockerfile': 'FROM base\n\nCOPY nothere.txt /x\n' });
  r = cli(['template', 'build', '--dry-run', missing]);
  assert.equal(r.code, 1);
  assert.match(r.err, /e2b\.Dockerfile:3: COPY source 'nothere\.txt' matches no file/);

  assert.equal(cli(['template', 'build', '--memory', '100', missing]).code, 2);
  assert.equal(cli(['template', 'build', '--cpu', 'x', missing]).code, 2);
  assert.equal(cli(['template', 'frobnicate']).code, 2);
  assert.equal(cli(['template', 'delete']).code, 2);

  const ok = context({ 'e2b.Dockerfile': 'FROM base\nRUN true\n' });
  r = cli(['template', 'build', ok], { env: { E2B_API_URL: 'http://127.0.0.1:9', E2B_API_KEY: 'e2b_x' } });
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot reach the API at http:\/\/127\.0\.0\.1:9/);
  for (const d of [empty, bad, missing, ok]) fs.rmSync(d, { recursive: true });
});

// ---- against the daemon ----

let h;
let noTemplateApi = false;
before(async () => {
  if (skipReason || built) return;
  h = await startHutch();
  noTemplateApi = (await api(h, 'GET', '/templates')).status === 404
    ? 'the daemon has no template API (GET /templates → 404)' : false;
});
after(async () => {
  if (!h) return;
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, []);
});

const daemon = { skip: skipReason || built, timeout: 900000 };

test('hutch template build: FROM/ARG/ENV/WORKDIR/COPY/RUN/USER/CMD; a sandbox from it behaves accordingly', daemon, async (t) => {
  if (noTemplateApi) return t.skip(noTemplateApi);
  const dir = context({
    'e2b.Dockerfile': [
      'ARG GREETING=hello',
      'FROM base',
      'ARG GREETING',
      'ARG PORT=8123',
      'ENV APP_HOME=/srv/app GREETING_ENV=${GREETING}',
      'WORKDIR $APP_HOME',
      'COPY --chown=user:user app/ ./',
      'COPY --chmod=0755 tool.sh /usr/local/bin/tool',
      'ADD bundle.tar.gz notes.txt /opt/bundle/',
      'RUN echo "$GREETING $PORT from $(id -un)" > /srv/app/built.txt',
      'USER user',
      'CMD python3 -m http.server 8123 --directory /srv/app',
      'HEALTHCHECK CMD curl -sf http://127.0.0.1:8123/',
      '',
    ].join('\n'),
    'app/index.html': '<h1>from the template</h1>\n',
    'app/lib/util.py': 'X = 1\n',
    'tool.sh': '#!/bin/sh\necho tool ran\n',
    'ignored.log': 'no',
    '.dockerignore': '*.log\n',
  });
  // ADD unpacks a local tar archive and copies other files as they are.
  fs.mkdirSync(path.join(dir, 'bundle/inner'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'bundle/inner/packed.txt'), 'packed\n');
  assert.equal(spawnSync('tar', ['-czf', path.join(dir, 'bundle.tar.gz'), '-C', path.join(dir, 'bundle'), 'inner']).status, 0);
  fs.rmSync(path.join(dir, 'bundle'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'notes\n');
  const name = `cli-tpl-${process.pid}`;
  const r = await cliAsync(['template', 'build', '--name', name, '--build-arg', 'GREETING=bonjour',
    '--cpu', '1', '--memory', '512', dir]);
  assert.equal(r.code, 0, `${r.out}\n${r.err}`);
  assert.match(r.out, new RegExp(`Built template ${name} `));
  assert.match(r.out, /Uploaded 'app'/);

  const sbx = await Sandbox.create(name);
  try {
    const run = async (cmd) => (await sbx.commands.run(cmd)).stdout.trim();
    assert.equal(await run('whoami'), 'user', 'USER is the default user');
    assert.equal(await run('pwd'), '/srv/app', 'WORKDIR is the default cwd');
    assert.equal(await run('echo $GREETING_ENV $APP_HOME ${GREETING-unset}'), 'bonjour /srv/app unset',
      'ENV persists with the build arg substituted; the ARG itself does not');
    assert.equal(await run('cat /srv/app/built.txt'), 'bonjour 8123 from root', 'RUN got the ARGs, as root');
    assert.equal(await run('stat -c "%U %a" /srv/app/index.html /srv/app/lib/util.py'), 'user 644\nuser 644');
    assert.equal(await run('stat -c %a /usr/local/bin/tool && tool'), '755\ntool ran');
    assert.equal(await run('ls /srv/app'), 'built.txt\nindex.html\nlib');
    assert.equal(await run('cat /opt/bundle/inner/packed.txt /opt/bundle/notes.txt; ls /opt/bundle'),
      'packed\nnotes\ninner\nnotes.txt', 'ADD: the archive unpacked, the text file copied');
    // The start command was already serving when the template was finalised.
    assert.match(await run('curl -sf http://127.0.0.1:8123/index.html'), /from the template/);
  } finally {
    await sbx.kill();
  }

  const list = cli(['template', 'list'], { env: {} });
  assert.equal(list.code, 0, list.err);
  assert.match(list.out, new RegExp(name));
  const json = JSON.parse(cli(['template', 'list', '--json']).out);
  assert.ok(json.some((x) => JSON.stringify(x).includes(name)));

  // Unchanged: every layer from the cache. On a terminal (script(1) gives it a pty) the CLI
  // redraws a progress line; through a pipe (above) it printed plain lines only.
  assert.doesNotMatch(r.out, /\x1b\[/);
  const cmd = [HUTCH, 'template', 'build', '--name', name, '--build-arg', 'GREETING=bonjour', dir]
    .map((a) => `'${a}'`).join(' ');
  const again = await new Promise((resolve) => {
    const p = spawn('script', ['-qefc', cmd, '/dev/null'], { env: { ...process.env, TERM: 'xterm' } });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => resolve({ code, out }));
  });
  assert.equal(again.code, 0, again.out);
  assert.match(again.out, /\r\x1b\[K/, 'the progress line is redrawn in place');
  assert.match(again.out, /\[\d+\/\d+\] \d+ cached \d+\.\ds/, 'step i/n, cache hits, elapsed');
  const m = again.out.match(/(\d+) of (\d+) steps cached/);
  assert.ok(m && Number(m[1]) >= 3, again.out);

  const del = cli(['template', 'delete', name]);
  assert.equal(del.code, 0, del.err);
  assert.doesNotMatch(cli(['template', 'list']).out, new RegExp(name));
  const del2 = cli(['template', 'delete', name]);
  assert.equal(del2.code, 1);
  assert.match(del2.err, /no template/);
  fs.rmSync(dir, { recursive: true });
});

test('hutch template build: a failing step fails the build with its step and output', daemon, async (t) => {
  if (noTemplateApi) return t.skip(noTemplateApi);
  const dir = context({ 'e2b.Dockerfile': 'FROM base\nRUN echo fine\nRUN echo about to fail >&2; exit 3\n' });
  const r = await cliAsync(['template', 'build', '--name', `cli-fail-${process.pid}`, dir]);
  assert.equal(r.code, 1, r.out);
  assert.match(r.err, /failed at step 4\/\d+ \(RUN echo about to fail/);
  assert.match(r.out + r.err, /about to fail/);
  fs.rmSync(dir, { recursive: true });
});
