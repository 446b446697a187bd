// Hostile code running as root inside a sandbox stays inside it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { Sandbox } from 'e2b';
import { startHutch, skipReason } from './hutch-helpers.mjs';

let h, sbx, neighbour, hostServer, hostPort, marker;
const opts = { skip: skipReason };
const root = { user: 'root' };
const run = async (cmd, o = {}) => {
  try {
    const r = await sbx.commands.run(cmd, { ...root, ...o });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    return { code: e.exitCode ?? -999, out: e.stdout ?? '', err: (e.stderr ?? '') + String(e.message) };
  }
};

before(async () => {
  if (skipReason) return;
  h = await startHutch({ args: ['--pids-max', '256', '--default-memory', '256'] });
  sbx = await Sandbox.create('base');
  neighbour = await Sandbox.create('base');
  marker = `/tmp/hutch-host-marker-${process.pid}`;
  fs.writeFileSync(marker, 'host secret');
  // A host service on every address, to prove the sandbox cannot reach the host at all.
  hostServer = net.createServer((s) => s.end('host-service\n'));
  await new Promise((r) => hostServer.listen(0, '0.0.0.0', r));
  hostPort = hostServer.address().port;
});

after(async () => {
  if (!h) return;
  hostServer?.close();
  fs.rmSync(marker, { force: true });
  await sbx?.kill().catch(() => {});
  await neighbour?.kill().catch(() => {});
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, []);
});

test('root inside is not root outside, and sees only the sandbox', opts, async () => {
  assert.equal((await run('id -u')).out.trim(), '0');
  const mine = await run(`cat ${marker}`);
  assert.notEqual(mine.code, 0, 'a host file is invisible');
  const ps = await run('ps -eo comm --no-headers');
  assert.doesNotMatch(ps.out, /hutch|node|sshd|systemd/);
  assert.ok(ps.out.trim().split('\n').length < 10, ps.out);
  const uid = (await run('cat /proc/self/uid_map')).out.trim().split(/\s+/);
  assert.equal(uid[0], '0');
  assert.notEqual(uid[1], '0', 'root inside maps to an unprivileged host uid');
});

test('kernel knobs, modules, devices, namespaces and mounts are refused', opts, async () => {
  assert.notEqual((await run('echo 1 > /proc/sys/kernel/sysrq')).code, 0);
  assert.notEqual((await run('echo x > /proc/sys/kernel/hostname')).code, 0);
  assert.notEqual((await run('mknod /tmp/sda b 8 0')).code, 0);
  assert.notEqual((await run('mount -t tmpfs none /mnt')).code, 0);
  assert.notEqual((await run('unshare -U true')).code, 0);
  const mod = await run(`python3 -c "import ctypes,sys; r=ctypes.CDLL(None,use_errno=True).syscall(175,0,0,0); sys.exit(0 if r==0 else 1)"`);
  assert.notEqual(mod.code, 0, 'init_module');
  const kcore = await run('head -c 16 /proc/kcore 2>/dev/null | wc -c');
  assert.equal(kcore.out.trim(), '0', '/proc/kcore is masked (or absent)');
  const kallsyms = await run("awk '$1 != \"0000000000000000\"' /proc/kallsyms 2>/dev/null | wc -l");
  assert.equal(kallsyms.out.trim(), '0', 'no kernel addresses');
});

test('the host and its services are unreachable', opts, async () => {
  const gw = (await run("ip route | awk '/default/ {print $3}'")).out.trim();
  assert.match(gw, /^\d+\.\d+\.\d+\.\d+$/);
  const apiPort = new URL(h.apiUrl).port;
  const sbPort = new URL(h.sandboxUrl).port;
  for (const [host, port] of [[gw, hostPort], [gw, apiPort], [gw, sbPort], ['127.0.0.1', apiPort], ['127.0.0.1', hostPort]]) {
    const r = await run(`timeout 3 bash -c 'echo > /dev/tcp/${host}/${port}' 2>/dev/null && echo reached || echo blocked`);
    assert.equal(r.out.trim(), 'blocked', `${host}:${port}`);
  }
  const meta = await run("timeout 3 bash -c 'echo > /dev/tcp/169.254.169.254/80' 2>/dev/null && echo reached || echo blocked");
  assert.equal(meta.out.trim(), 'blocked');
});

test('a process flood and a memory hog stay inside their limits', opts, async () => {
  // Fork until the kernel refuses; the children live 5 s.
  const flood = sbx.commands.run(`python3 -c "
import os, time
n = 0
try:
    while n < 5000:
        if os.fork() == 0:
            time.sleep(5); os._exit(0)
        n += 1
except OSError:
    pass
print(n)"`, { ...root, timeoutMs: 60000 });
  const n = Number((await flood).stdout.trim());
  assert.ok(n > 10 && n < 256, `forks stopped at ${n}, within pids-max`);
  const ok = await neighbour.commands.run('echo alive');
  assert.equal(ok.stdout, 'alive\n');
  await new Promise((r) => setTimeout(r, 5500));
  const hog = await run(`python3 -c "b=[]\nwhile True: b.append(bytearray(64<<20))"`, { timeoutMs: 60000 });
  assert.notEqual(hog.code, 0, 'the hog dies');
  assert.equal((await sbx.commands.run('echo still-here')).stdout, 'still-here\n', 'envd survives');
});
