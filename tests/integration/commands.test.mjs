// commands.* through the official SDK in debug mode (mirrors js-sdk tests/sandbox/commands/*).
import assert from 'node:assert/strict';
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

test('envd is still healthy after the workload', T, async () => {
  const res = await fetch(`${envd.url}/health`);
  assert.equal(res.status, 204);
  await sleep(10);
});
