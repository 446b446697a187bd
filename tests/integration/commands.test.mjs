// commands.* through the official SDK in debug mode (mirrors js-sdk tests/sandbox/commands/*).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, test } from 'node:test';

import { AuthenticationError, CommandExitError, InvalidArgumentError, TimeoutError } from 'e2b';

import { currentUser, debugSandbox, passwdEntry, sha256, sleep, startEnvd, waitFor, stopChecked } from './helpers.mjs';

const T = { timeout: 30_000 };
let envd;
let sbx;
const me = currentUser();
const myHome = passwdEntry(me)?.home;

before(async () => {
  envd = await startEnvd({
    config: { defaultWorkdir: true, envVars: { HUTCH_GLOBAL: 'global-value' } },
  });
  sbx = await debugSandbox();
});

after(() => stopChecked(envd));

/** Asserts the pid no longer exists (killed and reaped). */
async function assertGone(pid) {
  await assert.rejects(sbx.commands.run(`kill -0 ${pid}`), CommandExitError);
}

test('run echo: stdout, empty stderr, exit code 0', T, async () => {
  const text = 'Hello, World!';
  const res = await sbx.commands.run(`echo "${text}"`);
  assert.equal(res.exitCode, 0);
  assert.equal(res.stdout, `${text}\n`);
  assert.equal(res.stderr, '');
  assert.equal(res.error, undefined);
});

test('run with special characters and multiline output', T, async () => {
  const special = '!@#$%^&*()_+';
  assert.equal((await sbx.commands.run(`echo '${special}'`)).stdout, `${special}\n`);
  const multi = 'Hello,\nWorld!';
  assert.equal((await sbx.commands.run(`echo "${multi}"`)).stdout, `${multi}\n`);
  const utf8 = 'žluťoučký kůň 🐴';
  assert.equal((await sbx.commands.run(`echo '${utf8}'`)).stdout, `${utf8}\n`);
});

test('stderr is separate from stdout; callbacks see the data', T, async () => {
  const out = [];
  const err = [];
  const res = await sbx.commands.run('echo to-out; echo to-err 1>&2', {
    onStdout: (d) => out.push(d),
    onStderr: (d) => err.push(d),
  });
  assert.equal(res.stdout, 'to-out\n');
  assert.equal(res.stderr, 'to-err\n');
  assert.equal(out.join(''), 'to-out\n');
  assert.equal(err.join(''), 'to-err\n');
});

test('non-zero exit → CommandExitError with exitCode and error', T, async () => {
  await assert.rejects(sbx.commands.run('echo partial; echo oops 1>&2; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, 3);
    assert.equal(e.error, 'exit status 3');
    assert.equal(e.stdout, 'partial\n');
    assert.equal(e.stderr, 'oops\n');
    return true;
  });
});

test('exit by signal → exitCode -1, error "signal: killed"', T, async () => {
  await assert.rejects(sbx.commands.run('kill -9 $$'), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, -1);
    assert.equal(e.error, 'signal: killed');
    return true;
  });
});

test('per-call envs are visible and do not leak into later commands', T, async () => {
  const res = await sbx.commands.run('echo "$FOO"; printenv BAR', { envs: { FOO: 'bar', BAR: 'baz qux' } });
  assert.equal(res.stdout, 'bar\nbaz qux\n');
  const later = await sbx.commands.run('echo "$FOO"');
  assert.equal(later.exitCode, 0);
  assert.equal(later.stdout, '\n');
});

test('global envVars from the config and the standard variables', T, async () => {
  const res = await sbx.commands.run('echo "$HUTCH_GLOBAL|$E2B_SANDBOX|$USER|$LOGNAME|$HOME"');
  assert.equal(res.stdout, `global-value|true|${me}|${me}|${myHome}\n`);
  // A per-call env overrides a global one.
  const over = await sbx.commands.run('echo "$HUTCH_GLOBAL"', { envs: { HUTCH_GLOBAL: 'mine' } });
  assert.equal(over.stdout, 'mine\n');
});

test('cwd: default workdir, explicit cwd, missing cwd', T, async () => {
  assert.equal((await sbx.commands.run('pwd')).stdout, `${envd.workdir}\n`);
  assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n');
  await assert.rejects(sbx.commands.run('pwd', { cwd: '/definitely/not/here' }), (e) => {
    assert.ok(e instanceof InvalidArgumentError, `got ${e?.name}: ${e?.message}`);
    assert.match(e.message, /cwd '\/definitely\/not\/here' does not exist/);
    return true;
  });
});

test('stdin: sendStdin (string and bytes) then closeStdin', T, async () => {
  const h = await sbx.commands.run('cat', { background: true, stdin: true });
  assert.ok(h.pid > 0);
  await sbx.commands.sendStdin(h.pid, 'hello ');
  await h.sendStdin(new TextEncoder().encode('world'));
  await sbx.commands.sendStdin(h.pid, ''); // empty input is fine
  await waitFor(() => h.stdout === 'hello world', { what: 'echoed stdin' });
  await sbx.commands.closeStdin(h.pid);
  const res = await h.wait();
  assert.equal(res.exitCode, 0);
  assert.equal(res.stdout, 'hello world');
});

test('stdin defaults to closed (/dev/null): cat exits at once', T, async () => {
  const res = await sbx.commands.run('cat; echo rc=$?');
  assert.equal(res.stdout, 'rc=0\n');
});

test('background run + wait', T, async () => {
  const h = await sbx.commands.run('sleep 0.3; echo done', { background: true });
  assert.equal(h.exitCode, undefined, 'background run returned only after the command finished');
  assert.ok(Number.isInteger(h.pid) && h.pid > 0);
  const res = await h.wait();
  assert.equal(res.stdout, 'done\n');
  assert.equal(h.exitCode, 0);
});

test('list shows running commands with their config', T, async () => {
  const a = await sbx.commands.run('sleep 10', { background: true });
  const b = await sbx.commands.run('sleep 11', { background: true, envs: { LISTED: '1' }, cwd: '/tmp' });
  try {
    const procs = await sbx.commands.list();
    assert.ok(procs.length >= 2);
    for (const p of procs) assert.ok(p.pid > 0);
    const pa = procs.find((p) => p.pid === a.pid);
    const pb = procs.find((p) => p.pid === b.pid);
    assert.ok(pa && pb, `pids ${a.pid}, ${b.pid} not in ${JSON.stringify(procs)}`);
    assert.equal(pa.cmd, '/bin/bash');
    assert.deepEqual(pa.args, ['-l', '-c', 'sleep 10']);
    assert.deepEqual(pb.envs, { LISTED: '1' });
    assert.equal(pb.cwd, '/tmp');
  } finally {
    await a.kill();
    await b.kill();
  }
});

test('connect to a running process by pid', T, async () => {
  const h = await sbx.commands.run('sleep 0.7; echo connected', { background: true });
  await h.disconnect();
  const c = await sbx.commands.connect(h.pid);
  assert.equal(c.pid, h.pid);
  const res = await c.wait();
  assert.equal(res.stdout, 'connected\n');
  await assert.rejects(sbx.commands.connect(999999));
});

test('kill → true and the process is gone; unknown pid → false', T, async () => {
  const h = await sbx.commands.run('sleep 30', { background: true });
  assert.equal(await sbx.commands.kill(h.pid), true);
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, -1);
    assert.equal(e.error, 'signal: killed');
    return true;
  });
  await assertGone(h.pid);
  assert.equal(await sbx.commands.kill(999999), false);
});

test('timeoutMs too short → TimeoutError (foreground and background), process killed', T, async () => {
  const t0 = Date.now();
  await assert.rejects(sbx.commands.run('sleep 10', { timeoutMs: 1000 }), (e) => {
    assert.ok(e instanceof TimeoutError, `got ${e?.name}: ${e?.message}`);
    return true;
  });
  assert.ok(Date.now() - t0 < 5000);
  const h = await sbx.commands.run('sleep 10', { background: true, timeoutMs: 1000 });
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof TimeoutError, `got ${e?.name}: ${e?.message}`);
    return true;
  });
  // envd kills the process when Connect-Timeout-Ms expires.
  await waitFor(
    async () => {
      try {
        await sbx.commands.run(`kill -0 ${h.pid}`);
        return false;
      } catch (e) {
        return e instanceof CommandExitError;
      }
    },
    { timeout: 3000, what: `pid ${h.pid} to be killed after its timeout` },
  );
});

test('4 MiB of output arrives intact', T, async () => {
  const res = await sbx.commands.run(
    'f=$(mktemp); head -c 4194304 /dev/urandom | base64 > "$f"; sha256sum < "$f" | cut -c1-64 >&2; cat "$f"; rm -f "$f"',
  );
  assert.equal(sha256(res.stdout), res.stderr.trim());
  assert.equal(Buffer.from(res.stdout, 'base64').length, 4194304);
});

test('many concurrent commands', T, async () => {
  const results = await Promise.all(
    Array.from({ length: 24 }, (_, i) => sbx.commands.run(`echo ${i}; sleep 0.0$((RANDOM % 5))`)),
  );
  results.forEach((r, i) => assert.equal(r.stdout, `${i}\n`));
});

test('user switching: root, another user, unknown user', T, async () => {
  const root = await sbx.commands.run('whoami; echo $HOME', { user: 'root' });
  assert.equal(root.stdout, 'root\n/root\n');
  const other = passwdEntry('nobody');
  if (other && me === 'root') {
    const res = await sbx.commands.run('id -u; id -g; echo $USER', { user: 'nobody', cwd: '/tmp' });
    assert.equal(res.stdout, `${other.uid}\n${other.gid}\nnobody\n`);
  }
  await assert.rejects(sbx.commands.run('true', { user: 'no-such-user-hutch' }), (e) => {
    assert.ok(e instanceof AuthenticationError, `got ${e?.name}: ${e?.message}`);
    return true;
  });
});

test('a child holding stdout keeps the stream open until it exits', T, async () => {
  const res = await sbx.commands.run('(sleep 0.3; echo late) & echo early');
  assert.equal(res.stdout, 'early\nlate\n');
});

/** pids of processes whose command line is exactly `cmdline` (e.g. 'sleep 301'). */
function pidsOf(cmdline) {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-x', '-f', cmdline], { encoding: 'utf8' });
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return out.split('\n').filter(Boolean);
}

test('kill a command whose leader exited while a background child holds its output', T, async () => {
  let out = '';
  const h = await sbx.commands.run('sleep 30 & echo hi', { background: true, onStdout: (d) => (out += d) });
  await waitFor(() => out === 'hi\n', { what: 'hi from the leader' });
  await sleep(200); // the leader (bash) has exited; sleep 30 still holds stdout
  const t0 = Date.now();
  assert.equal(await sbx.commands.kill(h.pid), true);
  await h.wait().catch(() => {}); // the leader itself exited 0 before the kill
  assert.ok(Date.now() - t0 < 3000, `the handle took ${Date.now() - t0} ms to finish`);
});

test('timeoutMs kills the whole command, background children included', T, async () => {
  assert.deepEqual(pidsOf('sleep 301'), [], 'stray sleep 301 before the test');
  await assert.rejects(sbx.commands.run('sleep 301 & sleep 301', { timeoutMs: 1000 }), (e) => {
    assert.ok(e instanceof TimeoutError, `got ${e?.name}: ${e?.message}`);
    return true;
  });
  await waitFor(() => pidsOf('sleep 301').length === 0, {
    timeout: 3000,
    what: 'no sleep 301 left after the timeout',
  });
});

test('finished commands do not keep envd fds open', T, async () => {
  // Sockets are the SDK's keep-alive connections; pipes, pidfds, eventfds would be a leak.
  const fds = () => {
    const dir = `/proc/${envd.pid}/fd`;
    return fs.readdirSync(dir).filter((fd) => {
      try {
        return !fs.readlinkSync(`${dir}/${fd}`).startsWith('socket:');
      } catch {
        return false;
      }
    }).length;
  };
  await sbx.commands.run('true');
  const before = fds();
  for (let i = 0; i < 40; i++) await sbx.commands.run('true');
  await Promise.all(Array.from({ length: 20 }, () => sbx.commands.run('true', { stdin: true })));
  await sleep(100);
  const grown = fds() - before;
  assert.ok(grown < 5, `envd holds ${grown} more non-socket fds after 60 finished commands`);
});

test('more than 64 subscribers: the Start stream still gets the output', T, async () => {
  const h = await sbx.commands.run('sleep 1.5; echo done', { background: true });
  const extra = await Promise.all(Array.from({ length: 70 }, () => sbx.commands.connect(h.pid)));
  const res = await h.wait();
  assert.equal(res.stdout, 'done\n');
  const last = await extra[extra.length - 1].wait();
  assert.equal(last.stdout, 'done\n');
});

/** Opens a Connect stream to pid over a raw socket and never reads from it. */
function stalledConnect(pid) {
  const json = Buffer.from(JSON.stringify({ process: { pid } }));
  const env = Buffer.alloc(5 + json.length);
  env.writeUInt32BE(json.length, 1);
  json.copy(env, 5);
  const sock = net.connect(envd.port, '127.0.0.1');
  sock.on('error', () => {});
  sock.write(
    `POST /process.Process/Connect HTTP/1.1\r\nHost: localhost\r\n` +
      `Content-Type: application/connect+json\r\nContent-Length: ${env.length}\r\n\r\n`,
  );
  sock.write(env);
  sock.pause(); // the kernel buffers fill, then envd's queue, then backpressure
  return sock;
}

test('30 s bounds: a subscriber that stops reading, a process that stops reading stdin', { timeout: 120_000 }, async () => {
  // 1. One stalled Connect subscriber must not stall the Start stream for good.
  const output = async () => {
    let got = 0;
    const h = await sbx.commands.run('sleep 1; head -c 40000000 /dev/zero', {
      background: true,
      onStdout: (d) => (got += d.length),
    });
    const sock = stalledConnect(h.pid);
    try {
      await h.wait();
      assert.equal(got, 40000000);
    } finally {
      sock.destroy();
    }
  };
  // 2. SendInput to a process that does not read stdin fails after the bound; kill still works.
  const input = async () => {
    const h = await sbx.commands.run('sleep 100', { background: true, stdin: true });
    const t0 = Date.now();
    await assert.rejects(
      sbx.commands.sendStdin(h.pid, 'x'.repeat(1 << 20), { requestTimeoutMs: 100_000 }),
      (e) => {
        assert.ok(e instanceof TimeoutError, `got ${e?.name}: ${e?.message}`);
        assert.match(e.message, /did not read its input/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 60_000);
    assert.equal(await sbx.commands.kill(h.pid), true);
  };
  await Promise.all([output(), input()]);
});

test('envd is still healthy after the workload', T, async () => {
  const res = await fetch(`${envd.url}/health`);
  assert.equal(res.status, 204);
  await sleep(10);
});
