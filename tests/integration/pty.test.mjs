// pty.* through the official SDK in debug mode (mirrors js-sdk tests/sandbox/pty/*).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CommandExitError, SandboxError } from 'e2b';

import { debugSandbox, startEnvd, waitFor, stopChecked } from './helpers.mjs';

const T = { timeout: 30_000 };
const enc = new TextEncoder();
let envd;
let sbx;

before(async () => {
  envd = await startEnvd({ config: { defaultWorkdir: true } });
  sbx = await debugSandbox();
});

after(() => stopChecked(envd));

/** Creates a PTY that collects its output as text. */
async function createPty(opts = {}) {
  const dec = new TextDecoder();
  const state = { out: '' };
  const handle = await sbx.pty.create({
    cols: 80,
    rows: 24,
    ...opts,
    onData: (d) => {
      state.out += dec.decode(d, { stream: true });
    },
  });
  return { handle, state };
}

test('create, sendInput "echo hi", read it back, exit 0', T, async () => {
  const { handle, state } = await createPty({ envs: { ABC: '123' } });
  assert.ok(handle.pid > 0);
  await sbx.pty.sendInput(handle.pid, enc.encode('echo hi-$ABC\n'));
  await waitFor(() => state.out.includes('hi-123'), { what: 'pty output "hi-123"' });
  await sbx.pty.sendInput(handle.pid, enc.encode('exit\n'));
  const res = await handle.wait();
  assert.equal(res.exitCode, 0);
});

test('the PTY is a terminal with TERM and the requested size', T, async () => {
  const { handle, state } = await createPty({ cols: 91, rows: 17 });
  await sbx.pty.sendInput(handle.pid, enc.encode('[ -t 0 ] && echo "tty=yes $TERM $(stty size)"; exit\n'));
  await handle.wait();
  assert.match(state.out, /tty=yes xterm-256color 17 91/);
});

test('resize changes what tput cols reports', T, async () => {
  const { handle, state } = await createPty();
  await sbx.pty.sendInput(handle.pid, enc.encode('echo "c=$(tput cols)"\n'));
  await waitFor(() => state.out.includes('c=80'), { what: 'c=80' });
  await sbx.pty.resize(handle.pid, { cols: 100, rows: 24 });
  await sbx.pty.sendInput(handle.pid, enc.encode('echo "c=$(tput cols)"\n'));
  await waitFor(() => state.out.includes('c=100'), { what: 'c=100 after resize' });
  await sbx.pty.sendInput(handle.pid, enc.encode('exit\n'));
  await handle.wait();
});

test('disconnect and connect again to a running PTY', T, async () => {
  const { handle, state } = await createPty();
  await sbx.pty.sendInput(handle.pid, enc.encode('echo foo-one\n'));
  await waitFor(() => state.out.includes('foo-one'), { what: 'first output' });
  await handle.disconnect();

  const dec = new TextDecoder();
  let out2 = '';
  const h2 = await sbx.pty.connect(handle.pid, { onData: (d) => (out2 += dec.decode(d, { stream: true })) });
  assert.equal(h2.pid, handle.pid);
  await sbx.pty.sendInput(handle.pid, enc.encode('echo bar-two\n'));
  await waitFor(() => out2.includes('bar-two'), { what: 'output after reconnect' });
  await sbx.pty.sendInput(handle.pid, enc.encode('exit\n'));
  const res = await h2.wait();
  assert.equal(res.exitCode, 0);
  assert.equal(res.pid ?? h2.pid, handle.pid);
});

test('kill → true, process gone; unknown pid → false', T, async () => {
  const { handle } = await createPty();
  assert.equal(await sbx.pty.kill(handle.pid), true);
  await assert.rejects(handle.wait(), (e) => {
    assert.ok(e instanceof CommandExitError, `got ${e}`);
    assert.equal(e.exitCode, -1);
    return true;
  });
  await assert.rejects(sbx.commands.run(`kill -0 ${handle.pid}`), CommandExitError);
  assert.equal(await sbx.pty.kill(999999), false);
});

test('PTY shows up in commands.list; stdin/closeStdin on a PTY are rejected', T, async () => {
  const { handle } = await createPty();
  try {
    const procs = await sbx.commands.list();
    const p = procs.find((x) => x.pid === handle.pid);
    assert.ok(p, 'pty not listed');
    assert.deepEqual(p.args, ['-i', '-l']);
    assert.equal(p.envs.TERM, 'xterm-256color');
    await assert.rejects(sbx.commands.sendStdin(handle.pid, 'x'), (e) => {
      assert.ok(e instanceof SandboxError);
      assert.match(e.message, /tty assigned to process/);
      return true;
    });
    await assert.rejects(sbx.commands.closeStdin(handle.pid), /cannot close stdin for PTY process/);
  } finally {
    await sbx.pty.kill(handle.pid);
  }
});

test('resize of a non-PTY process is an error', T, async () => {
  const h = await sbx.commands.run('sleep 10', { background: true });
  try {
    await assert.rejects(sbx.pty.resize(h.pid, { cols: 10, rows: 10 }), /tty not assigned to process/);
  } finally {
    await h.kill();
  }
});

test('large PTY output arrives complete', T, async () => {
  const { handle, state } = await createPty({ cols: 200 });
  // 20000 numbered lines between markers that only appear in the output (not in the echoed
  // input); the PTY translates \n to \r\n.
  await sbx.pty.sendInput(handle.pid, enc.encode('echo BEGIN-$((6*7)); seq 1 20000; echo END-$((6*7)); exit\n'));
  await handle.wait();
  const text = state.out.replace(/\r/g, '');
  const from = text.indexOf('BEGIN-42\n');
  const to = text.indexOf('END-42\n');
  assert.ok(from >= 0 && to > from, 'markers not found');
  const lines = text.slice(from + 'BEGIN-42\n'.length, to).split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 20000);
  lines.forEach((l, i) => assert.equal(l, String(i + 1)));
});
