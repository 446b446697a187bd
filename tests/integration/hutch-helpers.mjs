// Starts `build/hutch serve` for the control-plane tests: a fresh data dir, free loopback ports,
// a seeded API key, its own network prefix; stop() sends SIGTERM and returns what is left behind
// (mounts, namespaces, links, nftables tables, cgroups, supervisors, loop devices, processes,
// and file descriptors the daemon leaked) so tests can assert on leaks. crash() is kill -9, and
// startHutch({ reuse }) starts again on the same data dir, prefix and ports.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { BUILD, freePort, sleep } from './helpers.mjs';

export const HUTCH = path.join(BUILD, 'hutch');
export const isRoot = process.getuid?.() === 0;
export const skipReason = !isRoot ? 'hutch serve needs root' : !fs.existsSync(HUTCH) ? `${HUTCH} not built` : false;
// Upper-layer disks the daemon keeps made ahead (ORCHESTR_DISK_POOL): each an fd shown as "/".
const DISK_POOL = 4;

function sh(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }); } catch { return ''; }
}

function readArgv(pid) {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean); } catch { return null; }
}

/** Pids of the supervisors (`hutch shim DATA/sandboxes/ID`) running on this data dir. */
export function shims(dataDir) {
  const root = path.join(dataDir, 'sandboxes') + '/';
  const found = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const argv = readArgv(e);
    if (argv && argv[1] === 'shim' && argv[2]?.startsWith(root)) found.push({ pid: Number(e), id: argv[2].slice(root.length) });
  }
  return found;
}

/** The daemon's cgroup directories (one per hierarchy) and the sandbox cgroups in them. */
export function cgroups(prefix) {
  const dirs = [], children = [];
  for (const root of ['/sys/fs/cgroup', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/unified']) {
    const dir = path.join(root, `hutch-${prefix}`);
    if (!fs.existsSync(dir)) continue;
    dirs.push(dir);
    for (const e of fs.readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) children.push(path.join(dir, e.name));
  }
  return { dirs, children };
}

/** Entries of DATA/sandboxes that are not the runtime's golden disk images (kept on purpose). */
export function runDirs(dataDir) {
  const sbx = path.join(dataDir, 'sandboxes');
  if (!fs.existsSync(sbx)) return [];
  return fs.readdirSync(sbx).filter((e) => !/^\.hutch-disk-\d+M\.img$/.test(e));
}

/** Network links of this prefix. */
export function links(prefix) {
  const found = [];
  for (const l of sh('ip', ['-o', 'link', 'show']).split('\n')) {
    const name = l.split(':')[1]?.trim().split('@')[0];
    if (name && name.startsWith(prefix)) found.push(name);
  }
  return found;
}

/** Mount points under the data dir (the network namespaces' bind mounts live there). */
export function mounts(dataDir) {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .filter((l) => l.includes(dataDir)).map((l) => l.split(' ')[4]);
}

/** What a daemon with this data dir and prefix could have left behind. */
export function leftovers(dataDir, prefix) {
  const found = [];
  for (const m of mounts(dataDir)) found.push(`mount: ${m}`);
  for (const l of links(prefix)) found.push(`link: ${l}`);
  if (sh('nft', ['list', 'tables']).includes(`hutch_${prefix}`)) found.push(`nft table hutch_${prefix}`);
  const cg = cgroups(prefix);
  for (const d of cg.dirs) found.push(`cgroup dir: ${d}`);
  for (const c of cg.children) found.push(`cgroup: ${c}`);
  for (const s of shims(dataDir)) found.push(`shim pid ${s.pid} (${s.id})`);
  // Any other process that names the data dir (a daemon that did not exit, a stray helper).
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const argv = readArgv(e);
    if (argv && argv[1] !== 'shim' && argv.some((a) => a.includes(dataDir))) found.push(`process ${e}: ${argv.join(' ').slice(0, 200)}`);
  }
  // Loop devices of the sandboxes' disks.
  try {
    for (const b of fs.readdirSync('/sys/block')) {
      if (!b.startsWith('loop')) continue;
      let f = '';
      try { f = fs.readFileSync(`/sys/block/${b}/loop/backing_file`, 'utf8').trim(); } catch { continue; }
      if (f.startsWith(dataDir)) found.push(`loop device ${b}: ${f}`);
    }
  } catch {}
  for (const e of runDirs(dataDir)) found.push(`run dir: ${e}`);
  return found;
}

/** The targets of a process's open fds ("socket:[123]", "/path", "net:[…]"…). */
export function fdTargets(pid) {
  const out = [];
  let names = [];
  try { names = fs.readdirSync(`/proc/${pid}/fd`); } catch { return null; }
  for (const n of names) {
    try { out.push(fs.readlinkSync(`/proc/${pid}/fd/${n}`)); } catch {}
  }
  return out;
}

/** VmRSS of a process in KiB. */
export function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/**
 * A daemon's fds by kind, minus what live sandboxes and the pools explain: per live sandbox its
 * RUN_DIR, two pidfds (shim, init) and its network namespace; the warm network slots; the disks
 * made ahead. Counting what is left at two quiescent points finds a leak of any other kind.
 */
export function fdAccount(targets, { dataDir, live = [], warm = 0 }) {
  const kinds = new Map();
  const add = (k) => kinds.set(k, (kinds.get(k) ?? 0) + 1);
  let net = 0, pidfd = 0, disks = 0;
  const runRoot = path.join(dataDir, 'sandboxes') + '/';
  for (const t of targets) {
    if (t.startsWith('net:[')) net++;
    else if (t === 'anon_inode:[pidfd]') pidfd++;
    else if (t === '/') disks++;
    else if (t.startsWith(runRoot) && live.includes(t.slice(runRoot.length))) continue;
    else add(t.replace(/\[\d+\]$/, ''));
  }
  // The daemon's own namespace + warm slots + one per live sandbox.
  if (net > 1 + warm + live.length) kinds.set('net:', net - 1 - warm - live.length);
  if (pidfd > 2 * live.length) kinds.set('anon_inode:[pidfd]', pidfd - 2 * live.length);
  if (disks > DISK_POOL) kinds.set('/ (disk made ahead)', disks - DISK_POOL);
  return kinds;
}

/** Kinds whose count grew from `base` to `now`, as readable strings. */
export function fdGrowth(base, now) {
  const out = [];
  for (const [k, n] of now) {
    const b = base.get(k) ?? 0;
    if (n > b) out.push(`fd leak: ${k} ${b} -> ${n}`);
  }
  return out;
}

/** GET with a connection of its own (no keep-alive that would hold a daemon fd open). */
export function getOnce(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
  });
}

/** Ids of the sandboxes the daemon lists (every state). */
export async function listIds(h) {
  const res = await getOnce(`${h.apiUrl}/v2/sandboxes?limit=100`, { 'x-api-key': h.apiKey });
  if (res.status !== 200) throw new Error(`list sandboxes: ${res.status} ${res.body}`);
  return JSON.parse(res.body).map((s) => s.sandboxID ?? s.sandboxId);
}

/**
 * Starts hutch serve. Sets E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY for the SDK in this
 * process. Returns { apiUrl, sandboxUrl, apiKey, dataDir, prefix, proc, stop(), crash(),
 * fdCheck() }. opts.reuse: a handle whose daemon is gone; starts on its data dir, prefix, ports
 * and key (a restart).
 */
export async function startHutch(opts = {}) {
  const prev = opts.reuse;
  // opts.dataDir, opts.apiKey: those of an earlier daemon of this test (restart and crash tests).
  const dataDir = prev?.dataDir ?? opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-it-'));
  const apiPort = prev?.apiPort ?? await freePort();
  const sbPort = prev?.sbPort ?? await freePort();
  const apiKey = prev?.apiKey ?? opts.apiKey ?? 'e2b_' + randomBytes(20).toString('hex');
  const prefix = prev?.prefix ?? 't' + (process.pid % 1000).toString(36);
  const subnet = prev?.subnet ?? opts.subnet ?? '10.213.0.0';
  const warm = prev?.warm ?? opts.warm ?? 2;
  const extra = opts.args ?? prev?.extra ?? [];
  const args = ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${apiPort}`,
    '--sandbox-listen', `127.0.0.1:${sbPort}`, '--net-prefix', prefix,
    '--net-subnet', subnet, '--net-warm', String(warm), ...extra];
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
    try { if ((await getOnce(`${apiUrl}/health`)).status === 200) break; } catch {}
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`hutch serve did not become ready: ${log.slice(-3000)}`); }
    await sleep(100);
  }
  process.env.E2B_API_URL = apiUrl;
  process.env.E2B_SANDBOX_URL = sandboxUrl;
  process.env.E2B_API_KEY = apiKey;
  delete process.env.E2B_DEBUG;
  const h = {
    apiUrl, sandboxUrl, apiKey, dataDir, prefix, proc, apiPort, sbPort, subnet, warm, extra,
    log: () => log,
    exited,
    /** The daemon's fds by kind, net of live sandboxes and pools (see fdAccount). */
    async fdKinds() {
      // Listed sandboxes and the warm pool's members (run dirs with no record) hold the same fds.
      const live = [...new Set([...await listIds(h), ...runDirs(dataDir).filter((e) => !e.startsWith('.'))])];
      const t = fdTargets(proc.pid);
      return t ? fdAccount(t, { dataDir, live, warm }) : new Map();
    },
    /** fd kinds that grew since the start (or `base`), once the daemon has settled (up to
     *  `waitMs`: clients' keep-alive connections close by then). [] when none. */
    async fdCheck(base = h.fdBase, waitMs = 15000) {
      const until = Date.now() + waitMs;
      for (;;) {
        const growth = fdGrowth(base, await h.fdKinds());
        if (!growth.length || Date.now() > until) return growth;
        await sleep(250);
      }
    },
    /** kill -9 of the daemon; the data dir stays. */
    async crash() {
      proc.kill('SIGKILL');
      return exited;
    },
    async stop() {
      const fdLeaks = proc.exitCode === null && proc.signalCode === null ? await h.fdCheck().catch((e) => [`fd check: ${e.message}`]) : [];
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 30000);
      const res = await exited;
      clearTimeout(t);
      const left = [...fdLeaks, ...leftovers(dataDir, prefix)];
      if (!opts.keepDataDir) fs.rmSync(dataDir, { recursive: true, force: true });
      return { ...res, left, log };
    },
  };
  // The quiescent start: what later checks compare with.
  h.fdBase = await h.fdKinds();
  return h;
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
