// Shared helpers for the envd integration tests: start/stop build/envd and hand out SDK
// sandboxes pointed at it. Every test file starts its own envd; the suite runs files one at
// a time (node --test --test-concurrency=1) because debug mode always talks to
// localhost:49983.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Sandbox } from 'e2b';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD = path.resolve(process.env.HUTCH_BUILD || path.join(REPO, 'build'));
export const ENVD = path.join(BUILD, 'envd');
export const DEBUG_PORT = 49983;

// The SDK must reach envd only through what the tests choose.
delete process.env.E2B_SANDBOX_URL;
delete process.env.E2B_API_URL;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

/** A port nobody listens on right now (tiny race, fine for sequential tests). */
export async function freePort() {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Home directory of a user according to /etc/passwd (what envd uses), or undefined. */
export function passwdEntry(name) {
  for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] };
  }
  return undefined;
}

/** The name of the user running the tests (envd's default user when it has none configured). */
export function currentUser() {
  return os.userInfo().username;
}

async function waitHealthy(url, proc, deadlineMs) {
  const end = Date.now() + deadlineMs;
  let lastErr;
  while (Date.now() < end) {
    if (proc.exitCode !== null || proc.signalCode !== null)
      throw new Error(`envd exited early (code ${proc.exitCode}, signal ${proc.signalCode})`);
    try {
      const res = await fetch(`${url}/health`);
      await res.arrayBuffer();
      if (res.status === 204) return;
      lastErr = new Error(`GET /health returned ${res.status}`);
    } catch (err) {
      lastErr = err;
    }
    await sleep(25);
  }
  throw new Error(`envd did not become healthy in ${deadlineMs} ms: ${lastErr}`);
}

/**
 * Starts build/envd.
 * opts.port (default 49983), opts.host (127.0.0.1), opts.config (object written as --config
 * JSON; `defaultWorkdir: true` means "the temp workdir"), opts.args (extra CLI args).
 * Returns { proc, pid, port, url, workdir, log(), stop() }.
 */
export async function startEnvd(opts = {}) {
  const port = opts.port ?? DEBUG_PORT;
  const host = opts.host ?? '127.0.0.1';
  const workdir = await fsp.mkdtemp(path.join(os.tmpdir(), 'hutch-it-'));
  await fsp.chmod(workdir, 0o755);
  const args = ['--listen', `${host}:${port}`, ...(opts.args ?? [])];
  let configFile;
  if (opts.config) {
    const config = { ...opts.config };
    if (config.defaultWorkdir === true) config.defaultWorkdir = workdir;
    configFile = `${workdir}.config.json`;
    await fsp.writeFile(configFile, JSON.stringify(config), { mode: 0o600 });
    args.push('--config', configFile);
  }
  if (!fs.existsSync(ENVD)) throw new Error(`${ENVD} does not exist (build it with ninja -C build)`);
  const proc = spawn(ENVD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (d) => {
    output += d.toString();
    if (output.length > 1 << 20) output = output.slice(-(1 << 19));
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://${host}:${port}`;
  try {
    await waitHealthy(url, proc, 10_000);
  } catch (err) {
    proc.kill('SIGKILL');
    await fsp.rm(workdir, { recursive: true, force: true }).catch(() => {});
    if (configFile) await fsp.rm(configFile, { force: true }).catch(() => {});
    err.message += `\n--- envd output ---\n${output}`;
    throw err;
  }
  let stopped;
  return {
    proc,
    pid: proc.pid,
    port,
    url,
    workdir,
    log: () => output,
    /** SIGTERM, then wait (5 s) for a clean exit; returns {code, signal}. */
    async stop({ keepWorkdir = false } = {}) {
      if (stopped) return stopped;
      stopped = (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
        const timer = sleep(5000).then(() => 'timeout');
        let res = await Promise.race([exited, timer]);
        if (res === 'timeout') {
          proc.kill('SIGKILL');
          res = await exited;
          res.timedOut = true;
        }
        if (configFile) await fsp.rm(configFile, { force: true }).catch(() => {});
        if (!keepWorkdir) await fsp.rm(workdir, { recursive: true, force: true }).catch(() => {});
        return res;
      })();
      return stopped;
    },
  };
}

/** An SDK sandbox in debug mode (no API call; envd at http://localhost:49983, no token). */
export async function debugSandbox(opts = {}) {
  process.env.E2B_DEBUG = 'true';
  return await Sandbox.create({ debug: true, requestTimeoutMs: 20_000, ...opts });
}

/**
 * An SDK sandbox for an envd that has an access token, built with the SDK's own constructor
 * (what Sandbox.create/connect do with the control plane's answer), pointed at envd through
 * the sandboxUrl option (= E2B_SANDBOX_URL). No control plane is involved.
 */
export function tokenSandbox({ url, accessToken, envdVersion = '0.6.4', ...rest }) {
  return new Sandbox({
    sandboxId: 'hutch_it_sandbox',
    envdVersion,
    envdAccessToken: accessToken,
    sandboxUrl: url,
    debug: false,
    apiKey: 'e2b_0000000000000000000000000000000000000000',
    requestTimeoutMs: 20_000,
    ...rest,
  });
}

/** Raw Connect unary call: returns { status, headers, body (parsed JSON or text) }. */
export async function connectUnary(url, method, body, headers = {}) {
  const res = await fetch(`${url}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Polls fn() until it returns truthy or the deadline passes. */
export async function waitFor(fn, { timeout = 5000, interval = 25, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(interval);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
}

/** Stops an envd from startEnvd() and asserts it exited cleanly (code 0 within 5 s of SIGTERM). */
export async function stopChecked(envd) {
  const res = await envd?.stop();
  assert.equal(res?.timedOut, undefined, 'envd did not exit within 5 s of SIGTERM');
  assert.equal(res?.code, 0, `envd exit: ${JSON.stringify(res)}`);
}
