// envd process lifecycle: SIGTERM must stop envd promptly even with open streams.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import { CommandExitError } from 'e2b';

import { debugSandbox, startEnvd, sleep, waitFor } from './helpers.mjs';

test('SIGTERM with a running command and an open watch: clean exit within 5 s', { timeout: 30_000 }, async () => {
  const envd = await startEnvd({ config: { defaultWorkdir: true } });
  let res;
  let childPid;
  try {
    const sbx = await debugSandbox();
    const h = await sbx.commands.run('sleep 60', { background: true });
    childPid = h.pid;
    await sbx.files.watchDir(envd.workdir, () => {});
    const stopped = await sbx.files.watchDir(path.join(envd.workdir), () => {});
    await stopped.stop();
    await sleep(100);
  } finally {
    const t0 = Date.now();
    res = await envd.stop();
    res.ms = Date.now() - t0;
  }
  assert.equal(res.timedOut, undefined, `envd still running 5 s after SIGTERM (${JSON.stringify(res)})`);
  assert.equal(res.code, 0, JSON.stringify(res));
  // The command it started is gone too.
  await waitFor(
    () => {
      try {
        process.kill(childPid, 0);
        return false;
      } catch {
        return true;
      }
    },
    { timeout: 3000, what: `pid ${childPid} to be gone after envd stopped` },
  );
});

test('SIGTERM when idle: exit 0', { timeout: 15_000 }, async () => {
  const envd = await startEnvd();
  const sbx = await debugSandbox();
  await assert.rejects(sbx.commands.run('exit 1'), CommandExitError);
  const res = await envd.stop();
  assert.deepEqual({ code: res.code, timedOut: res.timedOut }, { code: 0, timedOut: undefined });
});
