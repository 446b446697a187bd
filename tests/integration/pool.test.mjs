// The warm pool (src/hutch/orchestr/warmpool.c): sandboxes started ahead and handed out by
// Sandbox.create() must be exactly what a fresh create gives — their own id and hostname,
// environment, default user, metadata, token, internet setting and limits — and leave nothing
// behind. The daemon log says which path a create took ("(warm: ..." for a pooled sandbox).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Sandbox } from 'e2b';
import { startHutch, skipReason, api } from './hutch-helpers.mjs';
import { sleep } from './helpers.mjs';

const opts = { skip: skipReason };
const MEMORY_MB = 384;
let h;

const warmReady = () => (h.log().match(/Warm sandbox of template base ready/g) ?? []).length;
const startedWarm = (id) => h.log().includes(`Sandbox ${id} started from template base (warm:`);
const startedCold = (id) => h.log().includes(`Sandbox ${id} started from template base (net `);

/** Waits for the start line of each sandbox: the daemon logs it before answering the create, but
 * its stderr can reach this process after the HTTP response does. */
async function startLogged(...ids) {
  for (let i = 0; i < 150 && !ids.every((id) => startedWarm(id) || startedCold(id)); i++) await sleep(20);
}

/** Members waiting now: started by the pool and not handed out yet (nothing goes stale here). */
const poolSize = () => warmReady() - (h.log().match(/started from template base \(warm:/g) ?? []).length;

/** Waits until the pool holds `n` sandboxes. */
async function poolFilled(n) {
  for (let i = 0; i < 300 && poolSize() < n; i++) await sleep(50);
  assert.ok(poolSize() >= n, `the pool holds ${poolSize()} of ${n} sandboxes`);
}

/** Whether the sandbox's host-side interface may reach the internet (the nftables set the
 * firewall enforces egress with). The interface is the one holding the sandbox's gateway. */
async function internetAllowed(sbx) {
  const gw = (await sbx.commands.run("ip -4 route show default | awk '{print $3}'")).stdout.trim();
  assert.match(gw, /^\d+\.\d+\.\d+\.\d+$/);
  const links = JSON.parse(execFileSync('ip', ['-j', '-4', 'addr', 'show'], { encoding: 'utf8' }));
  // Only this daemon's links: another daemon on the machine may use the same subnet.
  const link = links.find((l) => l.ifname.startsWith(h.prefix) && l.addr_info.some((a) => a.local === gw));
  assert.ok(link, `one of this daemon's host interfaces holds ${gw}`);
  const set = JSON.parse(execFileSync('nft', ['-j', 'list', 'set', 'inet', `hutch_${h.prefix}`, 'internet_ifs'], { encoding: 'utf8' }));
  const elems = set.nftables.find((x) => x.set)?.set.elem ?? [];
  return elems.includes(link.ifname);
}

function pgrep(pattern) {
  try {
    return execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8' });
  } catch (e) {
    if (e.status === 1) return ''; // none
    throw e;
  }
}

/** envd's GET /envs through the front door with `token` (undefined: no token header). */
function envs(id, token) {
  const headers = { 'e2b-sandbox-id': id };
  if (token !== undefined) headers['x-access-token'] = token;
  return fetch(`${h.sandboxUrl}/envs`, { headers });
}

before(async () => {
  if (skipReason) return;
  h = await startHutch({ args: ['--warm-sandboxes', '2', '--default-memory', String(MEMORY_MB), '--log-level', 'debug'] });
});
after(async () => {
  if (!h) return;
  const res = await h.stop();
  assert.equal(res.code, 0, `hutch serve exit ${JSON.stringify({ code: res.code, signal: res.signal })}\n${res.log.slice(-2000)}`);
  assert.deepEqual(res.left, [], 'nothing is left behind after SIGTERM, pooled sandboxes included');
});

test('a pooled sandbox gets its own id, hostname, environment, user, metadata and limits', opts, async () => {
  await poolFilled(2);
  await sleep(1500); // the members are older than the create by more than clock slack
  const t0 = Date.now();
  const sbx = await Sandbox.create('base', {
    envs: { POOL_A: 'one', POOL_B: 'two words' },
    metadata: { suite: 'pool', n: '7' },
    timeoutMs: 120_000,
  });
  try {
    await startLogged(sbx.sandboxId);
    assert.ok(startedWarm(sbx.sandboxId), 'created from the warm pool');
    const r = await sbx.commands.run('echo "$POOL_A|$POOL_B|$E2B_SANDBOX|$E2B_SANDBOX_ID|$E2B_TEMPLATE_ID"; hostname; id -un; pwd');
    assert.deepEqual(r.stdout.trim().split('\n'), [`one|two words|true|${sbx.sandboxId}|base`, sbx.sandboxId, 'user', '/home/user']);
    const root = await sbx.commands.run('id -un; echo $POOL_A', { user: 'root' });
    assert.equal(root.stdout, 'root\none\n');
    // Per-command variables still win over the sandbox's.
    const over = await sbx.commands.run('echo $POOL_A', { envs: { POOL_A: 'cmd' } });
    assert.equal(over.stdout, 'cmd\n');

    const info = await sbx.getInfo();
    assert.equal(info.sandboxId, sbx.sandboxId);
    assert.deepEqual(info.metadata, { suite: 'pool', n: '7' });
    assert.equal(info.state, 'running');
    const life = new Date(info.endAt) - new Date(info.startedAt);
    assert.ok(life > 110_000 && life <= 121_000, `timeout counts from the create (${life} ms)`);
    assert.ok(new Date(info.startedAt) >= t0 - 500, `startedAt is the create, not the pool start (${info.startedAt}, create at ${new Date(t0).toISOString()})`);

    await sbx.commands.run('head -c 1000000 /dev/urandom > /tmp/x');
    const m = await sbx.getMetrics();
    assert.ok(m.length >= 1);
    assert.equal(m[0].memTotal, MEMORY_MB * 1024 * 1024, 'the template\'s memory limit, as a cold create sets it');
  } finally {
    await sbx.kill();
  }
});

test('a pooled sandbox accepts only its own token: none, an old or another sandbox\'s is refused', opts, async () => {
  await poolFilled(2);
  const a = await Sandbox.create('base', { envs: { WHO: 'a' } });
  const b = await Sandbox.create('base', { envs: { WHO: 'b' } });
  try {
    await startLogged(a.sandboxId, b.sandboxId);
    assert.ok(startedWarm(a.sandboxId) && startedWarm(b.sandboxId), 'both from the pool');
    const ta = (await api(h, 'GET', `/sandboxes/${a.sandboxId}`)).json.envdAccessToken;
    const tb = (await api(h, 'GET', `/sandboxes/${b.sandboxId}`)).json.envdAccessToken;
    assert.match(ta, /^[0-9a-f]{64}$/);
    assert.notEqual(ta, tb);
    const ok = await envs(a.sandboxId, ta);
    assert.equal(ok.status, 200);
    const env = await ok.json();
    assert.equal(env.WHO, 'a');
    assert.equal(env.E2B_SANDBOX_ID, a.sandboxId);
    for (const [what, token] of [['no token', undefined], ['an empty token', ''], ['b\'s token', tb], ['a made-up token', 'f'.repeat(64)]]) {
      const res = await envs(a.sandboxId, token);
      assert.equal(res.status, 401, `${what} is refused`);
      await res.arrayBuffer();
    }
    // A killed sandbox's token opens nothing, neither the old id nor the next sandbox.
    await a.kill();
    const c = await Sandbox.create('base');
    try {
      assert.notEqual(c.sandboxId, a.sandboxId);
      const old = await envs(c.sandboxId, ta);
      assert.equal(old.status, 401);
      await old.arrayBuffer();
      const gone = await envs(a.sandboxId, ta);
      assert.notEqual(gone.status, 200);
      await gone.arrayBuffer();
      assert.equal((await c.commands.run('echo $WHO')).stdout, '\n', 'nothing of an earlier create leaks in');
    } finally {
      await c.kill();
    }
  } finally {
    await a.kill();
    await b.kill();
  }
});

test('internet access is set per create on pooled sandboxes', opts, async () => {
  await poolFilled(2);
  const on = await Sandbox.create('base');
  const off = await Sandbox.create('base', { allowInternetAccess: false });
  try {
    await startLogged(on.sandboxId, off.sandboxId);
    assert.ok(startedWarm(on.sandboxId) && startedWarm(off.sandboxId), 'both from the pool');
    assert.equal(await internetAllowed(on), true, 'default: internet allowed');
    assert.equal(await internetAllowed(off), false, 'allowInternetAccess: false');
  } finally {
    await on.kill();
    await off.kill();
  }
});

test('sandboxes created back to back are distinct; killing a pooled sandbox is clean', opts, async () => {
  await poolFilled(2);
  const [a, b] = await Promise.all([Sandbox.create('base'), Sandbox.create('base')]);
  const ids = [a.sandboxId, b.sandboxId];
  try {
    assert.notEqual(a.sandboxId, b.sandboxId);
    const ha = (await a.commands.run('hostname')).stdout.trim();
    const hb = (await b.commands.run('hostname')).stdout.trim();
    assert.deepEqual([ha, hb], ids);
    await a.files.write('/tmp/mine', 'a');
    assert.equal(await b.files.exists('/tmp/mine'), false);
    const ipa = (await a.commands.run("ip -4 -o addr show eth0 | awk '{print $4}'")).stdout.trim();
    const ipb = (await b.commands.run("ip -4 -o addr show eth0 | awk '{print $4}'")).stdout.trim();
    assert.notEqual(ipa, ipb);
  } finally {
    await a.kill();
    await b.kill();
  }
  await startLogged(...ids);
  for (const id of ids) {
    assert.ok(startedWarm(id) || startedCold(id), `${id} started`);
    assert.equal(fs.existsSync(path.join(h.dataDir, 'sandboxes', id)), false, `${id}: run dir removed`);
    assert.equal(pgrep(`shim ${h.dataDir}/sandboxes/${id}`), '', `${id}: no shim`);
    assert.equal((await api(h, 'GET', `/sandboxes/${id}`)).status, 404);
  }
  assert.ok(ids.some(startedWarm), 'at least one came from the pool');
});

test('an empty pool falls back to a cold start, and refills', opts, async () => {
  await poolFilled(2);
  const made = [];
  try {
    // More creates at once than the pool holds: the rest start cold.
    made.push(...await Promise.all([0, 1, 2, 3, 4, 5].map(() => Sandbox.create('base'))));
    await startLogged(...made.map((s) => s.sandboxId));
    const warm = made.filter((s) => startedWarm(s.sandboxId)).length;
    const cold = made.filter((s) => startedCold(s.sandboxId)).length;
    assert.equal(warm + cold, 6);
    assert.ok(cold >= 1, `${cold} cold starts`);
    for (const s of made) assert.equal((await s.commands.run('hostname')).stdout.trim(), s.sandboxId);
  } finally {
    for (const s of made) await s.kill();
  }
  await poolFilled(1);
  const again = await Sandbox.create('base');
  try {
    await startLogged(again.sandboxId);
    assert.ok(startedWarm(again.sandboxId), 'from the refilled pool');
  } finally {
    await again.kill();
  }
});

test('envVars envd would refuse get a 400 and spend no pooled sandbox', opts, async () => {
  await poolFilled(2);
  for (const envVars of [{ 'A=B': 'x' }, { '': 'x' }]) {
    const res = await api(h, 'POST', '/v2/sandboxes', { templateID: 'base', envVars });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.code, 400);
    assert.match(res.json.message, /envVars/);
  }
  assert.equal(poolSize(), 2, 'the pool still holds its sandboxes');
});
