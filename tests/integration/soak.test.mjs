// Soak: concurrent clients loop create → commands.run → files write/read → kill against one
// hutch serve for a bounded time (HUTCH_SOAK_SECONDS, default 60; HUTCH_SOAK_CLIENTS, default 4).
// Asserts zero errors, the daemon's fds back to exactly the start's once idle (pools and live
// sandboxes accounted for), and its RSS flat after warm-up: the end (idle) may exceed the
// warm-up sample by at most 8 MiB + 10 % (allocator caches settle during warm-up; a leak of a
// few KiB per sandbox over hundreds of sandboxes does not fit). Prints sandboxes/s, p50/p99 of
// each operation and the RSS/fd samples.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Sandbox } from 'e2b';
import { startHutch, skipReason, fdTargets, rssKiB, listIds, HUTCH } from './hutch-helpers.mjs';
import { sleep } from './helpers.mjs';

const SECONDS = Number(process.env.HUTCH_SOAK_SECONDS ?? 60);
const CLIENTS = Number(process.env.HUTCH_SOAK_CLIENTS ?? 4);
const WARMUP_MS = Math.max(10_000, SECONDS * 200); // 20 %, at least 10 s
const RSS_SLACK_KIB = 8 * 1024;
const RSS_SLACK_RATIO = 0.10;
// A sanitizer build keeps freed memory in quarantine and its RSS only grows: flatness is
// measured and reported there, asserted on the normal build.
const sanitized = !skipReason && fs.readFileSync(HUTCH).includes('AddressSanitizer');

let h;
before(async () => { if (!skipReason) h = await startHutch(); });
after(async () => {
  if (!h) return;
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, [], 'nothing is left behind after SIGTERM');
});

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

test(`soak: ${CLIENTS} clients for ${SECONDS} s, zero errors, flat RSS and fds`, { skip: skipReason, timeout: (SECONDS + 180) * 1000 }, async (t) => {
  const ops = { create: [], run: [], write: [], read: [], kill: [] };
  const errors = [];
  let sandboxes = 0;
  const timed = async (name, fn) => {
    const t0 = performance.now();
    const r = await fn();
    ops[name].push(performance.now() - t0);
    return r;
  };
  const t0 = Date.now();
  const end = t0 + SECONDS * 1000;
  const client = async (c) => {
    for (let i = 0; Date.now() < end; i++) {
      let sbx;
      try {
        sbx = await timed('create', () => Sandbox.create('base', { metadata: { soak: String(c) } }));
        const out = await timed('run', () => sbx.commands.run(`echo $((${c} * 1000 + ${i % 1000}))`));
        assert.equal(out.stdout, `${c * 1000 + (i % 1000)}\n`);
        const data = randomBytes(64 * 1024);
        await timed('write', () => sbx.files.write('/home/user/data.bin', data));
        const back = await timed('read', () => sbx.files.read('/home/user/data.bin', { format: 'bytes' }));
        assert.ok(Buffer.from(back).equals(data), 'read back what was written');
        await timed('kill', () => sbx.kill());
        sbx = null;
        sandboxes++;
      } catch (e) {
        errors.push(`client ${c}: ${e?.message ?? e}`);
        if (sbx) await sbx.kill().catch(() => {});
      }
    }
  };
  const samples = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push({ s: (Date.now() - t0) / 1000, rss: rssKiB(h.proc.pid), fds: fdTargets(h.proc.pid)?.length ?? -1 });
      await sleep(2000);
    }
  })();
  let warm;
  const warmup = sleep(WARMUP_MS).then(() => { warm = { rss: rssKiB(h.proc.pid), fds: fdTargets(h.proc.pid).length }; });
  await Promise.all([...Array.from({ length: CLIENTS }, (_, c) => client(c)), warmup]);
  sampling = false;
  await sampler;
  const elapsed = (Date.now() - t0) / 1000;

  // Idle: no sandbox left, fds exactly as at the start (fdCheck waits for keep-alives to close).
  assert.deepEqual(await listIds(h), []);
  const fdLeaks = await h.fdCheck();
  await sleep(1000);
  const idle = { rss: rssKiB(h.proc.pid), fds: fdTargets(h.proc.pid).length };

  t.diagnostic(`${sandboxes} sandboxes in ${elapsed.toFixed(1)} s by ${CLIENTS} clients: ${(sandboxes / elapsed).toFixed(2)} sandboxes/s`);
  for (const [name, xs] of Object.entries(ops))
    t.diagnostic(`${name.padEnd(6)} n=${xs.length} p50=${pct(xs, 50).toFixed(1)} ms p99=${pct(xs, 99).toFixed(1)} ms`);
  t.diagnostic(`RSS KiB / fds: start ${samples[0]?.rss}/${samples[0]?.fds}, after warm-up (${WARMUP_MS / 1000} s) ${warm?.rss}/${warm?.fds}, idle end ${idle.rss}/${idle.fds}`);
  t.diagnostic(`samples (s: RSS KiB, fds): ${samples.map((x) => `${x.s.toFixed(0)}: ${x.rss}, ${x.fds}`).join('; ')}`);

  assert.deepEqual(errors.slice(0, 10), [], `${errors.length} errors`);
  assert.ok(sandboxes >= CLIENTS, `only ${sandboxes} sandboxes in ${SECONDS} s`);
  assert.deepEqual(fdLeaks, [], 'the idle daemon has the fds it started with');
  assert.ok(warm, 'a sample after warm-up');
  assert.ok(idle.fds <= warm.fds, `fds after warm-up ${warm.fds}, at the idle end ${idle.fds}`);
  const limit = warm.rss + RSS_SLACK_KIB + warm.rss * RSS_SLACK_RATIO;
  if (!sanitized)
    assert.ok(idle.rss <= limit, `RSS grew from ${warm.rss} KiB after warm-up to ${idle.rss} KiB (limit ${limit.toFixed(0)})`);
  else
    t.diagnostic(`sanitizer build: RSS ${idle.rss} KiB vs limit ${limit.toFixed(0)} KiB not asserted`);
});
