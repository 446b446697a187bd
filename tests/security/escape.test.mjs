// Hostile root inside a sandbox, beyond tests/integration/containment.test.mjs: every dangerous
// system call, kernel addresses, every host address and a neighbour's open port, resource
// exhaustion (disk, open files, tmpfs memory) with envd and a neighbour answering throughout,
// and symlink and path tricks through envd's file API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { startHutch, skipReason, Sandbox, run, python, sleep } from './lib.mjs';

const DISK_MB = 512;
const MEMORY_MB = 256;
let h, sbx, neighbour, hostServer, hostPort, marker;
const opts = { skip: skipReason };
const R = { user: 'root' };

before(async () => {
  if (skipReason) return;
  h = await startHutch({ args: ['--pids-max', '256', '--default-memory', String(MEMORY_MB), '--default-disk', String(DISK_MB)] });
  [sbx, neighbour] = await Promise.all([Sandbox.create('base'), Sandbox.create('base')]);
  marker = `/tmp/hutch-sec-marker-${process.pid}`;
  fs.writeFileSync(marker, 'host secret');
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

async function responsive(what) {
  const t = Date.now();
  assert.equal((await neighbour.commands.run('echo n')).stdout, 'n\n', `${what}: the neighbour answers`);
  assert.equal(await sbx.files.read('/etc/hostname').then((s) => s.length > 0), true, `${what}: envd answers`);
  return Date.now() - t;
}

const SYSCALLS = `
import ctypes, os, json
libc = ctypes.CDLL(None, use_errno=True)
calls = {
  'bpf': (321, 0, 0, 0), 'perf_event_open': (298, 0, 0, -1, -1, 0), 'keyctl': (250, 0, 0, 0),
  'add_key': (248, 0, 0, 0, 0, 0), 'request_key': (249, 0, 0, 0, 0), 'kexec_load': (246, 0, 0, 0, 0),
  'kexec_file_load': (320, 0, 0, 0, 0, 0), 'open_by_handle_at': (304, 0, 0, 0),
  'name_to_handle_at': (303, 0, 0, 0, 0, 0), 'init_module': (175, 0, 0, 0), 'finit_module': (313, 0, 0, 0),
  'delete_module': (176, 0, 0), 'unshare(CLONE_NEWUSER)': (272, 0x10000000), 'unshare(CLONE_NEWNS)': (272, 0x20000),
  'unshare(CLONE_NEWNET)': (272, 0x40000000), 'setns': (308, 0, 0), 'userfaultfd': (323, 0),
  'io_uring_setup': (425, 1, 0), 'mount': (165, 0, 0, 0, 0, 0), 'syslog': (103, 3, 0, 0), 'reboot': (169, 0, 0, 0, 0),
  'swapon': (167, 0, 0), 'iopl': (172, 3), 'ioperm': (173, 0, 1, 1), 'settimeofday': (164, 0, 0),
  'clock_settime': (227, 0, 0), 'pivot_root': (155, 0, 0), 'acct': (163, 0), 'fsopen': (430, 0, 0),
  'open_tree': (428, 0, 0, 0), 'move_mount': (429, 0, 0, 0, 0, 0), 'pidfd_getfd': (438, 0, 0, 0),
  'quotactl': (179, 0, 0, 0, 0), 'lookup_dcookie': (212, 0, 0, 0), 'vhangup': (153,),
}
out = {}
for name, a in calls.items():
    r = libc.syscall(*[ctypes.c_long(x) for x in a])
    out[name] = 'allowed' if r >= 0 else os.strerror(ctypes.get_errno())
for name, dev in (('mknod block 8:0', os.makedev(8, 0)), ('mknod char 1:1 (/dev/mem)', os.makedev(1, 1))):
    try:
        os.mknod('/tmp/dev-probe', 0o600 | (0o060000 if 'block' in name else 0o020000), dev)
        out[name] = 'allowed'
        os.unlink('/tmp/dev-probe')
    except OSError as e:
        out[name] = e.strerror
print(json.dumps(out))
`;

test('dangerous system calls fail with EPERM for root inside', opts, async () => {
  const res = await python(sbx, SYSCALLS);
  assert.ok(Object.keys(res).length >= 37, JSON.stringify(res));
  for (const [name, r] of Object.entries(res)) assert.equal(r, 'Operation not permitted', `${name}: ${r}`);
  // Positive control: the probe does reach the kernel (getpid works, ptrace of itself too).
  const ok = await python(sbx, `import ctypes, json; print(json.dumps(ctypes.CDLL(None).syscall(39) > 0))`);
  assert.equal(ok, true);
});

test('kernel knobs are read-only and kernel addresses hidden', opts, async () => {
  for (const knob of ['/proc/sys/kernel/core_pattern', '/proc/sys/kernel/kptr_restrict', '/proc/sys/vm/drop_caches',
    '/proc/sys/kernel/modprobe', '/proc/sys/net/ipv4/ip_forward', '/sys/kernel/uevent_helper', '/sys/kernel/mm/transparent_hugepage/enabled']) {
    const r = await run(sbx, `echo 1 > ${knob}`);
    assert.notEqual(r.code, 0, `${knob} is not writable`);
  }
  const leak = await run(sbx, String.raw`
    for f in /proc/kallsyms /proc/kcore /sys/kernel/vmcoreinfo /proc/timer_list /proc/keys /proc/sched_debug /sys/kernel/boot_params/data /proc/1/stack /proc/self/stack /proc/modules /proc/vmallocinfo /proc/slabinfo; do
      [ -e $f ] || continue
      n=$(head -c 1048576 $f 2>/dev/null | tr -d '0 \n\t' | wc -c)
      echo "$f $n"
    done`);
  for (const line of leak.out.trim().split('\n').filter(Boolean)) {
    const [f, n] = line.split(' ');
    // kallsyms may list names only with zero addresses; everything else must read as nothing.
    if (f === '/proc/kallsyms') continue;
    assert.equal(n, '0', `${f} shows ${n} non-zero bytes`);
  }
  const ks = await run(sbx, "awk '$1 !~ /^0+$/' /proc/kallsyms 2>/dev/null | wc -l");
  assert.equal(ks.out.trim(), '0', 'no kernel addresses in kallsyms');
  assert.notEqual((await run(sbx, 'dmesg')).code, 0, 'the kernel log is closed');
});

test('no host address, host service, API, front door, link-local range or neighbour port is reachable', opts, async () => {
  const hostIps = Object.values(os.networkInterfaces()).flat().filter((a) => a.family === 'IPv4').map((a) => a.address);
  const apiPort = new URL(h.apiUrl).port;
  const sbPort = new URL(h.sandboxUrl).port;
  const gw = (await run(sbx, "ip route | awk '/default/ {print $3}'")).out.trim();
  const server = await neighbour.commands.run('python3 -m http.server 8000 --bind 0.0.0.0', { background: true });
  try {
    const nip = (await neighbour.commands.run("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
    // Control: the neighbour's server is up and reachable the legitimate way (the front door).
    let fromHost;
    for (let i = 0; i < 50 && fromHost !== 200; i++) {
      fromHost = await fetch(`${h.sandboxUrl}/`, { headers: { 'e2b-sandbox-id': neighbour.sandboxId, 'e2b-sandbox-port': '8000' } }).then((r) => r.status, () => 0);
      if (fromHost !== 200) await sleep(100);
    }
    assert.equal(fromHost, 200, 'the neighbour serves port 8000');
    const targets = [...new Set([gw, ...hostIps])].flatMap((ip) => [[ip, hostPort], [ip, apiPort], [ip, sbPort], [ip, 22]]);
    targets.push(['127.0.0.1', apiPort], ['127.0.0.1', hostPort], [nip, 8000], [nip, 49983],
      ['169.254.169.254', 80], ['169.254.0.1', 80], ['169.254.170.2', 80], ['100.100.100.200', 80]);
    const probe = targets.map(([ip, port]) => `timeout 2 bash -c 'echo > /dev/tcp/${ip}/${port}' 2>/dev/null && echo "reached ${ip}:${port}" || true`).join('\n');
    const r = await run(sbx, probe, { timeoutMs: 300000 });
    assert.equal(r.out.trim(), '', `reached from inside:\n${r.out}`);
    // Control: the probe can succeed (envd inside the sandbox itself).
    const self = await run(sbx, "timeout 2 bash -c 'echo > /dev/tcp/127.0.0.1/49983' && echo reached");
    assert.equal(self.out.trim(), 'reached');
  } finally {
    await server.kill();
  }
});

test('files API: symlinks to /proc/1/root, .. traversal and planted symlinks stay inside', opts, async () => {
  const hostName = fs.readFileSync('/etc/hostname', 'utf8');
  const inside = (await run(sbx, 'cat /etc/hostname')).out;
  assert.notEqual(inside, hostName, 'control: the sandbox has its own /etc/hostname');
  // Before the exhaustion tests below: this one is about paths, on a sandbox in good health.
  const ln = await run(sbx, 'ln -sfn /proc/1/root /tmp/p1root && ln -sfn /proc/self/root /tmp/selfroot && ln -sfn / /tmp/root && ls /tmp/p1root/etc/hostname');
  assert.equal(ln.code, 0, `links planted: ${ln.out} ${ln.err}`);
  // As root inside, the strongest user there; the unprivileged user cannot even follow
  // /proc/1/root (init is root's): the kernel says EACCES. Either way nothing is read.
  await assert.rejects(sbx.files.read('/tmp/p1root/etc/hostname', { user: 'user' }), /permission|does not exist/i);
  for (const link of ['/tmp/p1root', '/tmp/selfroot', '/tmp/root']) {
    assert.equal(await sbx.files.read(`${link}/etc/hostname`, R), inside, `${link} resolves inside`);
    assert.equal(await sbx.files.exists(`${link}${marker}`, R), false, `${link}: the host marker is invisible`);
  }
  for (const p of [`/../../../../..${marker}`, `/tmp/../../..${marker}`, `../../../../../..${marker}`])
    await assert.rejects(sbx.files.read(p, R), `${p} is not the host's file`);
  const name = `hutch-sec-${process.pid}`;
  await sbx.files.write(`/../../../../tmp/${name}`, 'inside', R);
  await sbx.files.write(`/tmp/p1root/tmp/${name}-2`, 'inside', R);
  assert.equal(fs.existsSync(`/tmp/${name}`) || fs.existsSync(`/tmp/${name}-2`), false, 'nothing written on the host');
  assert.equal((await run(sbx, `cat /tmp/${name} /tmp/${name}-2`)).out, 'insideinside');
  // Listing through the links shows the sandbox's root, not the host's.
  const names = (await sbx.files.list('/tmp/p1root/', R)).map((e) => e.name);
  assert.ok(names.includes('.hutch') && !names.includes('work'), names.join(' '));

  // A link planted by the unprivileged user: envd acts with that user's rights.
  await run(sbx, 'ln -sfn /etc/shadow /home/user/shadow; ln -sfn /.hutch/envd.json /home/user/token; ln -sfn /etc /home/user/etc', { user: 'user' });
  const shadow = (await run(sbx, 'sha256sum /etc/shadow')).out;
  await assert.rejects(sbx.files.write('/home/user/shadow', 'root::0:0:::::\n', { user: 'user' }), 'user cannot write /etc/shadow through a link');
  await assert.rejects(sbx.files.read('/home/user/shadow', { user: 'user' }));
  await assert.rejects(sbx.files.read('/home/user/token', { user: 'user' }), "the envd token is root's");
  await assert.rejects(sbx.files.read('/.hutch/envd.json', { user: 'user' }));
  await assert.rejects(sbx.files.write('/home/user/etc/passwd', 'x', { user: 'user' }));
  await assert.rejects(sbx.files.rename('/home/user/etc/hostname', '/home/user/h', { user: 'user' }));
  await assert.rejects(sbx.files.makeDir('/home/user/etc/planted', { user: 'user' }));
  await assert.rejects(sbx.files.rename('/home/user/shadow', '/home/user/etc/shadow2', { user: 'user' }));
  assert.equal((await run(sbx, 'sha256sum /etc/shadow')).out, shadow, '/etc/shadow unchanged');
  // Removing a link removes the link, never its target.
  await sbx.files.remove('/home/user/etc', { user: 'user' });
  await sbx.files.remove('/tmp/p1root', R);
  assert.equal((await run(sbx, 'test -f /etc/passwd && test -d /proc/1/root/etc && echo intact')).out.trim(), 'intact');
  // The token file stays out of the user's reach from a shell too.
  assert.notEqual((await run(sbx, 'cat /.hutch/envd.json', { user: 'user' })).code, 0);
});

test(`disk fill stops at the sandbox's ${DISK_MB} MiB disk; envd and the neighbour keep answering`, opts, async () => {
  const fill = run(sbx, `dd if=/dev/zero of=/var/fill bs=1M count=${DISK_MB * 2} 2>&1 | tail -1; df -m / | tail -1`, { timeoutMs: 300000 });
  await sleep(500);
  const during = await responsive('during the disk fill');
  const r = await fill;
  assert.match(r.out, /No space left|copied/);
  const written = Number(/^(\d+) bytes/m.exec(r.out)?.[1]);
  assert.ok(written > (DISK_MB / 2) << 20 && written <= DISK_MB << 20, `wrote ${written} bytes on a ${DISK_MB} MiB disk`);
  await assert.rejects(sbx.files.write('/var/more', 'x'.repeat(1 << 20), R), /space/i, 'uploads fail on a full disk');
  await responsive('disk full');
  await run(sbx, 'rm -f /var/fill');
  await sbx.files.write('/var/more', 'ok', R);
  console.log(`measured disk: ${written} bytes written before ENOSPC (limit ${DISK_MB} MiB); envd answered in ${during} ms meanwhile`);
});

const FDS = `
import os, sys, time, json
kids, per = 60, 19990
r, w = os.pipe()
for i in range(kids):
    if os.fork() == 0:
        c = 0
        try:
            for _ in range(per):
                os.open('/dev/null', os.O_RDONLY); c += 1
        except OSError as e:
            pass
        os.write(w, b'%d\\n' % c)
        time.sleep(12); os._exit(0)
os.close(w)
total = n = 0
for line in os.fdopen(r, 'rb'):
    total += int(line); n += 1
print(json.dumps({'procs': n, 'fds': total}))
`;

test('open-file exhaustion stays inside the sandbox: bounded by RLIMIT_NOFILE, pids and memory', opts, async () => {
  const limit = await run(sbx, 'ulimit -Hn; python3 -c "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1<<20, 1<<20))" 2>&1 | tail -1');
  const hard = Number(limit.out.split('\n')[0]);
  assert.ok(hard > 1000 && hard <= 65536, `hard RLIMIT_NOFILE ${hard}`);
  assert.match(limit.out, /not allowed|Operation not permitted|ValueError/, 'root inside cannot raise it');
  const fileMax = BigInt(fs.readFileSync('/proc/sys/fs/file-max', 'utf8').trim());
  const hold = run(sbx, `echo ${Buffer.from(FDS).toString('base64')} | base64 -d > /tmp/fds.py; python3 /tmp/fds.py`, { timeoutMs: 120000 });
  let peak = 0n;
  let hostOk = true;
  for (let i = 0; i < 30; i++) {
    await sleep(300);
    const nr = BigInt(fs.readFileSync('/proc/sys/fs/file-nr', 'utf8').split(/\s+/)[0]);
    if (nr > peak) peak = nr;
  }
  // An unprivileged host program can still open files while the sandbox holds its maximum.
  try { execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', '/etc/hostname'], { stdio: 'ignore' }); } catch { hostOk = false; }
  const during = await responsive('holding open files');
  const r = await hold;
  // The probe's children (holding their files for 12 s) may outlive a probe the OOM killer took.
  // ("fd[s]": the pattern must not match this shell's own command line.)
  await run(sbx, "pkill -9 -f 'python3 /tmp/fd[s].py'; while pgrep -f 'python3 /tmp/fd[s].py' >/dev/null; do sleep 0.1; done", { timeoutMs: 30000 });
  assert.ok(hostOk, 'the host can open files');
  // Open files are bounded per sandbox by its memory cgroup; the host-wide table must hold many
  // such sandboxes (hutch serve raises fs.file-max as systemd does; the kernel's RAM-sized
  // default held barely two).
  assert.ok(peak * 8n < fileMax, `host files in use ${peak} of ${fileMax}`);
  await responsive('after the open-file flood');
  console.log(`measured fds: hard limit ${hard} per process; host files in use peaked at ${peak} (file-max ${fileMax}); sandbox probe ${r.out.trim() || 'killed (memory limit)'}; envd answered in ${during} ms`);
});

test(`/dev/shm (tmpfs) is half the ${MEMORY_MB} MiB memory: full, the sandbox still runs processes`, opts, async () => {
  const r = await run(sbx, `dd if=/dev/zero of=/dev/shm/fill bs=1M count=${MEMORY_MB * 4} 2>&1 | tail -4`, { timeoutMs: 120000 });
  assert.match(r.out, /No space left/, `the writer meets ENOSPC, not the OOM killer: ${r.out}`);
  const size = (await sbx.files.getInfo('/dev/shm/fill', R)).size;
  assert.ok(size > 0 && size <= (MEMORY_MB / 2) << 20, `tmpfs held ${size} bytes with a ${MEMORY_MB} MiB limit`);
  // Pages there are memory nothing can reclaim; the other half is left for processes.
  assert.equal((await run(sbx, 'python3 -c "print(len(bytearray(32 << 20)))"')).out, `${32 << 20}\n`, 'a process still gets memory');
  const during = await responsive('with /dev/shm full');
  await sbx.files.remove('/dev/shm/fill', R);
  console.log(`measured shm: ${size} bytes in /dev/shm before ENOSPC (memory ${MEMORY_MB} MiB); envd answered in ${during} ms`);
});

