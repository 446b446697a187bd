// The official SDK (e2b 2.51, v2 paths) against `hutch serve` with real jail sandboxes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Sandbox, CommandExitError } from 'e2b';
import { startHutch, skipReason, api } from './hutch-helpers.mjs';
import { sleep } from './helpers.mjs';

let h;
const opts = { skip: skipReason };

before(async () => { if (!skipReason) h = await startHutch(); });
after(async () => {
  if (!h) return;
  const res = await h.stop();
  assert.equal(res.code, 0, `hutch serve exit ${JSON.stringify({ code: res.code, signal: res.signal })}\n${res.log.slice(-2000)}`);
  assert.deepEqual(res.left, [], 'nothing is left behind after SIGTERM');
});

test('create, run commands as the default user, files, getInfo, kill twice', opts, async () => {
  const sbx = await Sandbox.create('base', { metadata: { suite: 'serve', n: '1' } });
  try {
    assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/);
    const who = await sbx.commands.run('id -un; pwd; echo $HOME; hostname');
    assert.deepEqual(who.stdout.trim().split('\n'), ['user', '/home/user', '/home/user', sbx.sandboxId]);
    const py = await sbx.commands.run('python3 -c "print(6*7)"');
    assert.equal(py.stdout, '42\n');
    await assert.rejects(sbx.commands.run('exit 3'), (e) => e instanceof CommandExitError && e.exitCode === 3);
    const root = await sbx.commands.run('id -u; whoami', { user: 'root' });
    assert.equal(root.stdout, '0\nroot\n');

    const data = randomBytes(3 * 1024 * 1024);
    await sbx.files.write('/home/user/blob.bin', data);
    const back = await sbx.files.read('/home/user/blob.bin', { format: 'bytes' });
    assert.ok(Buffer.from(back).equals(data), 'binary round trip');
    await sbx.files.write('hello.txt', 'hi there');
    assert.equal(await sbx.files.read('/home/user/hello.txt'), 'hi there');
    const info = await sbx.files.getInfo('hello.txt');
    assert.equal(info.owner, 'user');
    const ls = await sbx.files.list('/home/user');
    assert.ok(ls.some((e) => e.name === 'hello.txt'));

    const detail = await sbx.getInfo();
    assert.equal(detail.sandboxId, sbx.sandboxId);
    assert.equal(detail.templateId, 'base');
    assert.equal(detail.state, 'running');
    assert.deepEqual(detail.metadata, { suite: 'serve', n: '1' });
    assert.ok(detail.endAt > detail.startedAt);

    assert.equal(await sbx.isRunning(), true);
  } finally {
    await sbx.kill();
  }
  assert.equal(await Sandbox.kill(sbx.sandboxId), false, 'the second kill returns false');
  assert.equal(await sbx.isRunning(), false);
});

test('base: what E2B\'s base promises (user, sudo, tools, locale, per-sandbox identity files)', opts, async () => {
  const sbx = await Sandbox.create('base');
  try {
    const run = async (cmd, o) => (await sbx.commands.run(cmd, o)).stdout.trim();
    assert.equal(await run('id -u; id -g; id -gn; getent passwd user | cut -d: -f6,7'), '1000\n1000\nuser\n/home/user:/bin/bash');
    assert.equal(await run('sudo -n id -u; sudo -n -u user -i pwd'), '0\n/home/user', 'passwordless sudo');
    assert.equal(await run('python3 -c "print(6*7)"; node -e "console.log(6*7)"'), '42\n42');
    assert.match(await run('git --version; curl --version | head -n1; ip -V; ps --version'),
      /^git version [\d.]+\ncurl [\d.]+.*\nip utility, iproute2-[\w.]+.*\nps from procps-ng [\d.]+$/);
    assert.equal(await run('echo "$LANG"; cat /etc/default/locale'), 'C.UTF-8\nLANG=C.UTF-8');
    assert.equal(await run('cat /etc/hostname; hostname'), `${sbx.sandboxId}\n${sbx.sandboxId}`);
    const hosts = await run('cat /etc/hosts');
    assert.match(hosts, /^127\.0\.0\.1\s+localhost$/m);
    assert.match(hosts, new RegExp(`^127\\.0\\.1\\.1\\s+${sbx.sandboxId}$`, 'm'));
    assert.match(await run('cat /etc/resolv.conf'), /^nameserver \d+\.\d+\.\d+\.\d+$/m, 'a resolver of its own');
    assert.equal(await run('ls /var/lib/apt/lists | grep -v -e "^lock$" -e "^partial$" | wc -l'), '0', 'no apt lists in the template');
    assert.equal(await run('pwd; cd && pwd', { user: 'root' }), '/home/user\n/root', 'root starts in the workdir, its home is /root');
  } finally {
    await sbx.kill();
  }
});

test('base: built from templates/base/e2b.Dockerfile by the builder, its build recorded and logged', opts, async () => {
  const t = await api(h, 'GET', '/templates/base');
  assert.equal(t.status, 200, t.text);
  assert.equal(t.json.templateID, 'base');
  assert.equal(t.json.public, true);
  assert.deepEqual(t.json.aliases, ['base']);
  assert.equal(t.json.buildStatus, 'ready');
  assert.equal(t.json.builds.length, 1, 'one build per Dockerfile, not one per start');
  const id = t.json.buildID;
  assert.match(id, /^[0-9a-f]{20}$/);
  const st = await api(h, 'GET', `/templates/base/builds/${id}/status`);
  assert.equal(st.status, 200, st.text);
  assert.equal(st.json.status, 'ready');
  const lines = st.json.logEntries.map((e) => e.message);
  assert.ok(lines.some((l) => /FROM debian:bookworm/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /^Build finished in/.test(l)), lines.join('\n'));
  // The same lines in the daemon's log.
  assert.match(h.log(), new RegExp(`Template base build ${id}: \\[base\\] FROM debian:bookworm`));
  const ready = h.log().match(/The base template is ready \(([\d.]+) s\)/);
  assert.ok(ready, h.log().slice(-3000));
  // From the shared layer cache (another data dir built it before): a start within seconds.
  if (/Build finished in [\d.]+ s \(0 layers built/.test(h.log())) assert.ok(Number(ready[1]) < 5, `base took ${ready[1]} s from the cache`);
  assert.equal((await api(h, 'DELETE', '/templates/base')).status, 403);
  assert.equal((await api(h, 'GET', '/templates/aliases/base')).json?.templateID, 'base');
});

test('PTY: create, input, resize, kill', opts, async () => {
  const sbx = await Sandbox.create('base');
  try {
    let out = '';
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { out += Buffer.from(d).toString(); } });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('stty size; echo mark-$((20+22))\n'));
    for (let i = 0; i < 100 && !out.includes('mark-42'); i++) await sleep(50);
    assert.match(out, /24 80/);
    assert.match(out, /mark-42/);
    await sbx.pty.resize(pty.pid, { cols: 100, rows: 30 });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('stty size\n'));
    for (let i = 0; i < 100 && !out.includes('30 100'); i++) await sleep(50);
    assert.match(out, /30 100/);
    assert.equal(await sbx.pty.kill(pty.pid), true);
  } finally {
    await sbx.kill();
  }
});

test('list: metadata and state filters, paging with X-Next-Token', opts, async () => {
  const tag = randomBytes(4).toString('hex');
  const made = [];
  try {
    for (let i = 0; i < 3; i++) made.push(await Sandbox.create('base', { metadata: { tag, i: String(i), 'k y': 'v&1' } }));
    const all = [];
    const pager = Sandbox.list({ query: { metadata: { tag, 'k y': 'v&1' }, state: ['running'] }, limit: 2 });
    while (pager.hasNext) all.push(...(await pager.nextItems()));
    assert.deepEqual(all.map((s) => s.sandboxId).sort(), made.map((s) => s.sandboxId).sort());
    const one = Sandbox.list({ query: { metadata: { tag, i: '1' } } });
    const items = await one.nextItems();
    assert.deepEqual(items.map((s) => s.sandboxId), [made[1].sandboxId]);
    const paused = await Sandbox.list({ query: { metadata: { tag }, state: ['paused'] } }).nextItems();
    assert.deepEqual(paused, []);
    const raw = await api(h, 'GET', `/v2/sandboxes?limit=1&metadata=${encodeURIComponent(`tag=${tag}`)}`);
    assert.equal(raw.status, 200);
    assert.equal(raw.json.length, 1);
    assert.ok(raw.headers.get('x-next-token'), 'a next token on a partial page');
  } finally {
    for (const s of made) await s.kill();
  }
});

test('connect from a second client; setTimeout shortens, and the sandbox then stops', opts, async () => {
  const sbx = await Sandbox.create('base', { timeoutMs: 120000 });
  const other = await Sandbox.connect(sbx.sandboxId);
  const r = await other.commands.run('echo from-second');
  assert.equal(r.stdout, 'from-second\n');
  const before = (await sbx.getInfo()).endAt;
  await Sandbox.connect(sbx.sandboxId, { timeoutMs: 10000 }); // connect never shortens
  assert.ok((await sbx.getInfo()).endAt >= before);
  await sbx.setTimeout(1000);
  await sleep(2500);
  assert.equal(await sbx.isRunning(), false);
  await assert.rejects(sbx.commands.run('true'));
});

test('metrics', opts, async () => {
  const sbx = await Sandbox.create('base');
  try {
    await sbx.commands.run('head -c 20000000 /dev/urandom > /tmp/x; sleep 1');
    const m = await sbx.getMetrics();
    assert.ok(m.length >= 1);
    assert.ok(m[0].memTotal > 0 && m[0].memUsed > 0, JSON.stringify(m[0]));
    assert.ok(m[0].diskUsed >= 20000000, JSON.stringify(m[0]));
    assert.ok(m[0].cpuCount >= 1);
  } finally {
    await sbx.kill();
  }
});

test('signed URLs reach the right sandbox without its id', opts, async () => {
  const a = await Sandbox.create('base');
  const b = await Sandbox.create('base');
  try {
    await a.files.write('/home/user/who.txt', 'a');
    await b.files.write('/home/user/who.txt', 'b');
    const ua = await a.downloadUrl('/home/user/who.txt', { useSignatureExpiration: 60000 });
    const ub = await b.downloadUrl('/home/user/who.txt');
    assert.equal(await (await fetch(ua)).text(), 'a');
    assert.equal(await (await fetch(ub)).text(), 'b');
    const up = await a.uploadUrl('/home/user/up.txt');
    const form = new FormData();
    form.append('file', new Blob(['uploaded']), 'up.txt');
    const res = await fetch(up, { method: 'POST', body: form });
    assert.equal(res.status, 200, await res.text());
    assert.equal(await a.files.read('/home/user/up.txt'), 'uploaded');
    const bad = new URL(ua);
    bad.searchParams.set('signature', 'v1_nope');
    assert.equal((await fetch(bad)).status, 400);
  } finally {
    await a.kill();
    await b.kill();
  }
});

test('two sandboxes are isolated from each other', opts, async () => {
  const a = await Sandbox.create('base');
  const b = await Sandbox.create('base');
  try {
    await a.files.write('/tmp/secret', 'only-a');
    assert.equal(await b.files.exists('/tmp/secret'), false);
    const pa = await a.commands.run('sleep 300', { background: true });
    const ps = await b.commands.run('ps -eo pid,comm');
    assert.doesNotMatch(ps.stdout, /sleep/);
    const ipA = (await a.commands.run("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
    assert.match(ipA, /^\d+\.\d+\.\d+\.\d+$/);
    const ping = await b.commands.run(`timeout 3 bash -c 'echo > /dev/tcp/${ipA}/49983' && echo reached || echo blocked`);
    assert.equal(ping.stdout.trim(), 'blocked');
    await pa.kill();
  } finally {
    await a.kill();
    await b.kill();
  }
});

test('logs: the sandbox agent\'s output, v1 and v2 shapes', opts, async () => {
  const sbx = await Sandbox.create('base');
  try {
    const v1 = await api(h, 'GET', `/sandboxes/${sbx.sandboxId}/logs`);
    assert.equal(v1.status, 200);
    assert.ok(v1.json.logs.some((l) => /envd .* listening/.test(l.line)), JSON.stringify(v1.json).slice(0, 500));
    assert.ok(v1.json.logs.every((l) => !Number.isNaN(Date.parse(l.timestamp))));
    const v2 = await api(h, 'GET', `/v2/sandboxes/${sbx.sandboxId}/logs`);
    assert.equal(v2.status, 200);
    assert.ok(v2.json.logs.some((l) => /envd .* listening/.test(l.message)));
  } finally {
    await sbx.kill();
  }
  assert.equal((await api(h, 'GET', `/sandboxes/${sbx.sandboxId}/logs`)).status, 404);
});

test('user ports through the front door: header and Host routing, closed ports, private traffic', opts, async () => {
  const raw = await api(h, 'POST', '/v2/sandboxes', { templateID: 'base', network: { allowPublicTraffic: false } });
  assert.equal(raw.status, 201, raw.text);
  const { sandboxID: id, trafficAccessToken: traffic, envdAccessToken } = raw.json;
  assert.match(traffic, /^[0-9a-f]{64}$/);
  const sbx = await Sandbox.connect(id);
  try {
    await sbx.commands.run('mkdir -p /tmp/www && echo served > /tmp/www/index.html && cd /tmp/www && python3 -m http.server 8000 --bind 127.0.0.1', { background: true });
    const url = `${h.sandboxUrl}/index.html`;
    let res;
    for (let i = 0; i < 50; i++) {
      res = await fetch(url, { headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': '8000', 'e2b-traffic-access-token': traffic } });
      if (res.status === 200) break;
      await res.arrayBuffer();
      await sleep(100);
    }
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.equal(body, 'served\n');
    const noToken = await fetch(url, { headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': '8000' } });
    assert.equal(noToken.status, 403);
    assert.equal((await noToken.json()).code, 403);
    // envd's own port needs its access token, not the traffic token.
    const health = await fetch(`${h.sandboxUrl}/health`, { headers: { 'e2b-sandbox-id': id } });
    assert.equal(health.status, 204);
    // Host-based routing: <port>-<id>.<domain>.
    // (fetch may not set Host, so node:http does it.)
    const byHost = await new Promise((resolve, reject) => {
      const u = new URL(url);
      http.get({ host: u.hostname, port: u.port, path: u.pathname, headers: { host: `8000-${id}.localhost`, 'e2b-traffic-access-token': traffic } }, (r) => {
        let b = '';
        r.on('data', (d) => { b += d; });
        r.on('end', () => resolve({ status: r.statusCode, body: b }));
      }).on('error', reject);
    });
    assert.equal(byHost.status, 200, byHost.body);
    assert.equal(byHost.body, 'served\n');
    const closed = await fetch(url, { headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': '8001', 'e2b-traffic-access-token': traffic } });
    assert.equal(closed.status, 502);
    assert.deepEqual(await closed.json(), { sandboxId: id, message: 'The sandbox is running but port is not open', port: 8001, code: 502 });
    assert.ok(envdAccessToken);
  } finally {
    await sbx.kill();
  }
});

test('killing a sandbox cuts its open streams at once', opts, async () => {
  const sbx = await Sandbox.create('base');
  const t0 = Date.now();
  const run = sbx.commands.run('sleep 60').then(() => null, (e) => e);
  await sleep(500);
  await Sandbox.kill(sbx.sandboxId);
  const err = await run;
  assert.ok(err, 'the command fails');
  assert.match(String(err.message), /killed or reached its end of life/, String(err));
  assert.ok(Date.now() - t0 < 10000, `the stream ended ${Date.now() - t0} ms after start`);
  assert.equal(await sbx.isRunning(), false);
});

test('bad input gets JSON errors', opts, async () => {
  assert.equal((await api(h, 'POST', '/v2/sandboxes', { templateID: 'nope' })).status, 404);
  assert.equal((await api(h, 'POST', '/v2/sandboxes', {})).status, 400);
  assert.equal((await api(h, 'POST', '/v2/sandboxes', { templateID: 'base', timeout: 'x' })).status, 400);
  const e = await api(h, 'GET', '/sandboxes/doesnotexist');
  assert.equal(e.status, 404);
  assert.equal(e.json.code, 404);
  const noKey = await fetch(`${h.apiUrl}/v2/sandboxes`);
  assert.equal(noKey.status, 401);
  assert.equal((await noKey.json()).code, 401);
  const gone = await fetch(`${h.sandboxUrl}/health`, { headers: { 'e2b-sandbox-id': 'doesnotexist' } });
  assert.equal(gone.status, 502);
  assert.deepEqual(await gone.json(), { sandboxId: 'doesnotexist', message: 'The sandbox was not found', code: 502 });
});
