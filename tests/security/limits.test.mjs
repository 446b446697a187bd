// Connection limits of the API and the front door: a per-client-address cap, idle timeouts that
// close silent connections, and streams that stay open past the idle timeout because envd's
// keepalives flow through them. Small limits here so the test is quick; the defaults (512 per
// address, 60 s API, 620 s front door) are checked against the SDK in sdk-load.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startHutch, skipReason, Sandbox, rawHttp, envelope, envelopes, sleep } from './lib.mjs';

const CAP = 8;
let h, sbx;
const opts = { skip: skipReason };

before(async () => {
  if (skipReason) return;
  h = await startHutch({ args: ['--conns-per-ip', String(CAP), '--api-idle-timeout', '2', '--sandbox-idle-timeout', '3'] });
  sbx = await Sandbox.create('base');
});

after(async () => {
  if (!h) return;
  await sbx?.kill().catch(() => {});
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-2000));
  assert.deepEqual(res.left, []);
});

function open(url, localAddress) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: u.hostname, port: Number(u.port), localAddress }, () => resolve(s));
    s.on('error', reject);
  });
}

const health = (url, localAddress) =>
  rawHttp(url, `GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, { localAddress, timeoutMs: 5000 });

for (const which of ['apiUrl', 'sandboxUrl']) {
  test(`${which === 'apiUrl' ? 'API' : 'front door'}: at most ${CAP} connections per client address; others unaffected`, opts, async () => {
    const url = h[which];
    const held = [];
    for (let i = 0; i < CAP; i++) held.push(await open(url, '127.0.0.11'));
    await sleep(200);
    const over = await health(url, '127.0.0.11');
    assert.equal(over.status, null, `connection ${CAP + 1} from one address is refused`);
    const other = await health(url, '127.0.0.12');
    assert.equal(other.hung, false);
    assert.notEqual(other.status, null, 'another address is served');
    for (const s of held) s.destroy();
    await sleep(300);
    assert.notEqual((await health(url, '127.0.0.11')).status, null, 'served again once it closed some');
  });

  test(`${which === 'apiUrl' ? 'API' : 'front door'}: a silent connection is closed after the idle timeout`, opts, async () => {
    const s = await open(h[which], '127.0.0.13');
    const t = Date.now();
    await new Promise((r) => s.on('close', r));
    const ms = Date.now() - t;
    const want = which === 'apiUrl' ? 2000 : 3000;
    assert.ok(ms >= want - 500 && ms < want + 4000, `closed after ${ms} ms (timeout ${want} ms)`);
    console.log(`measured ${which}: idle connection closed after ${ms} ms (timeout ${want} ms)`);
  });
}

test('a quiet stream outlives the front door idle timeout through envd keepalives', opts, async () => {
  const token = (await fetch(`${h.apiUrl}/sandboxes/${sbx.sandboxId}`, { headers: { 'x-api-key': h.apiKey } }).then((r) => r.json())).envdAccessToken;
  const res = await fetch(`${h.sandboxUrl}/process.Process/Start`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': token, 'content-type': 'application/connect+json', 'keepalive-ping-interval': '1' },
    body: envelope(JSON.stringify({ process: { cmd: '/bin/bash', args: ['-c', 'sleep 7; echo done'] } })),
    signal: AbortSignal.timeout(30000),
  });
  const env = envelopes(Buffer.from(await res.arrayBuffer()));
  const events = env.map((e) => e.json?.event).filter(Boolean);
  assert.ok(events.filter((e) => e.keepalive).length >= 3, 'keepalives flowed');
  assert.ok(events.some((e) => e.end), 'the process end arrived after 7 s through a 3 s idle timeout');
  assert.equal(Buffer.from(events.find((e) => e.data?.stdout)?.data.stdout ?? '', 'base64').toString(), 'done\n');
  assert.deepEqual(env.at(-1).json, {}, 'a clean end-stream');
});
