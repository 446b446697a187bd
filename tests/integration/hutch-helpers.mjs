// Starts `build/hutch serve` for the control-plane tests: a fresh data dir, free loopback ports,
// a seeded API key, its own network prefix; stop() sends SIGTERM and returns what is left behind
// (mounts, namespaces, links, nftables tables, cgroups, processes) so tests can assert on leaks.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUILD, freePort, sleep } from './helpers.mjs';

export const HUTCH = path.join(BUILD, 'hutch');
export const isRoot = process.getuid?.() === 0;
export const skipReason = !isRoot ? 'hutch serve needs root' : !fs.existsSync(HUTCH) ? `${HUTCH} not built` : false;

function sh(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }); } catch { return ''; }
}

/** What a daemon with this data dir and prefix could have left behind. */
export function leftovers(dataDir, prefix) {
  const found = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n'))
    if (line.includes(dataDir)) found.push(`mount: ${line.split(' ')[4]}`);
  for (const l of sh('ip', ['-o', 'link', 'show']).split('\n')) {
    const name = l.split(':')[1]?.trim().split('@')[0];
    if (name && name.startsWith(prefix)) found.push(`link: ${name}`);
  }
  if (sh('nft', ['list', 'tables']).includes(`hutch_${prefix}`)) found.push(`nft table hutch_${prefix}`);
  for (const root of ['/sys/fs/cgroup', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/unified']) {
    const dir = path.join(root, `hutch-${prefix}`);
    if (!fs.existsSync(dir)) continue;
    found.push(`cgroup dir: ${dir}`);
    for (const e of fs.readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) found.push(`cgroup: ${path.join(dir, e.name)}`);
  }
  for (const p of sh('pgrep', ['-f', `shim ${dataDir}`]).split('\n').filter(Boolean)) found.push(`shim pid ${p}`);
  const sbx = path.join(dataDir, 'sandboxes');
  // .hutch-disk-<size>.img is the runtime's formatted disk template, kept on purpose.
  if (fs.existsSync(sbx)) for (const e of fs.readdirSync(sbx)) if (!/^\.hutch-disk-\d+M\.img$/.test(e)) found.push(`run dir: ${e}`);
  return found;
}

/**
 * Starts hutch serve. Sets E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY for the SDK in this
 * process. Returns { apiUrl, sandboxUrl, apiKey, dataDir, prefix, proc, stop() }.
 */
export async function startHutch(opts = {}) {
  // opts.dataDir, opts.apiKey: those of an earlier daemon of this test (restart and crash tests).
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-it-'));
  const apiPort = await freePort();
  const sbPort = await freePort();
  const apiKey = opts.apiKey ?? 'e2b_' + randomBytes(20).toString('hex');
  const prefix = 't' + (process.pid % 1000).toString(36);
  const args = ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${apiPort}`,
    '--sandbox-listen', `127.0.0.1:${sbPort}`, '--net-prefix', prefix,
    '--net-subnet', opts.subnet ?? '10.213.0.0', '--net-warm', String(opts.warm ?? 2),
    ...(opts.args ?? [])];
  const proc = spawn(HUTCH, args, {
    env: { ...process.env, HUTCH_API_KEY: apiKey },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; if (log.length > 1e6) log = log.slice(-5e5); });
  const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const sandboxUrl = `http://127.0.0.1:${sbPort}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 600000); // the first start may build the base template
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`hutch serve exited early: ${log.slice(-3000)}`);
    try { if ((await fetch(`${apiUrl}/health`)).status === 200) break; } catch {}
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`hutch serve did not become ready: ${log.slice(-3000)}`); }
    await sleep(100);
  }
  process.env.E2B_API_URL = apiUrl;
  process.env.E2B_SANDBOX_URL = sandboxUrl;
  process.env.E2B_API_KEY = apiKey;
  delete process.env.E2B_DEBUG;
  return {
    apiUrl, sandboxUrl, apiKey, dataDir, prefix, proc,
    log: () => log,
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 30000);
      const res = await exited;
      clearTimeout(t);
      const left = leftovers(dataDir, prefix);
      fs.rmSync(dataDir, { recursive: true, force: true });
      return { ...res, left, log };
    },
  };
}

/** A raw API call with the test's key. */
export async function api(h, method, p, body) {
  const res = await fetch(`${h.apiUrl}${p}`, {
    method, headers: { 'x-api-key': h.apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, json, text, headers: res.headers };
}
