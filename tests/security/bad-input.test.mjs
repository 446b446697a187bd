// Bad input on every route of the REST API, the front door and envd (reached through the front
// door, as a client on the internet reaches it): malformed, truncated, oversized and wrongly
// typed requests get a 4xx with a JSON error, never a 5xx, a crash or a hang.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startHutch, skipReason, Sandbox, rawHttp, envelope, envelopes } from './lib.mjs';

let h, sbx, token;
const opts = { skip: skipReason };
const MISSING = 'i0000000000000000000';

before(async () => {
  if (skipReason) return;
  h = await startHutch();
  sbx = await Sandbox.create('base');
  token = sbx.envdAccessToken ?? (await fetch(`${h.apiUrl}/sandboxes/${sbx.sandboxId}`, { headers: { 'x-api-key': h.apiKey } }).then((r) => r.json())).envdAccessToken;
  assert.ok(token, 'the sandbox has an envd access token');
});

after(async () => {
  if (!h) return;
  await sbx?.kill().catch(() => {});
  const res = await h.stop();
  assert.equal(res.code, 0, res.log.slice(-3000));
  assert.doesNotMatch(res.log, /AddressSanitizer|runtime error:|Segmentation/);
  assert.deepEqual(res.left, []);
});

/** fetch with a deadline: a hang fails the test instead of stalling the suite. */
async function call(url, init = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(15000) });
  const buf = Buffer.from(await res.arrayBuffer());
  let json;
  try { json = JSON.parse(buf.toString()); } catch {}
  return { status: res.status, json, buf, headers: res.headers };
}

/** GET through node:http, which sends the Host header it is given. */
function viaHttp(url, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, timeout: 15000 }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        let json;
        try { json = JSON.parse(buf.toString()); } catch {}
        resolve({ status: res.statusCode, json, buf });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in 15 s`)));
    req.on('error', reject);
  });
}

function assertJsonError(r, what, statuses = null) {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: status ${r.status} ${r.buf?.toString().slice(0, 300)}`);
  if (statuses) assert.ok(statuses.includes(r.status), `${what}: status ${r.status}, want ${statuses}`);
  assert.ok(r.json && typeof r.json === 'object', `${what}: JSON body, got ${r.buf?.toString().slice(0, 200)}`);
  assert.ok(typeof r.json.message === 'string' && r.json.message.length > 0, `${what}: message`);
  assert.ok(r.json.code !== undefined, `${what}: code`);
}

async function alive() {
  assert.equal(h.proc.exitCode, null, 'hutch serve is still running');
  assert.equal((await call(`${h.apiUrl}/health`)).status, 200);
  const r = await sbx.commands.run('echo alive');
  assert.equal(r.stdout, 'alive\n', 'the sandbox answers through the front door');
}

// Every REST route; {id} gets a sandbox that does not exist (DELETE must not kill ours).
const API_ROUTES = [
  ['POST', '/sandboxes', true], ['POST', '/v2/sandboxes', true], ['GET', '/sandboxes', false],
  ['GET', '/v2/sandboxes', false], ['GET', '/sandboxes/metrics', false], ['GET', '/sandboxes/{id}', false],
  ['DELETE', '/sandboxes/{id}', false], ['POST', '/sandboxes/{id}/connect', true],
  ['POST', '/v2/sandboxes/{id}/connect', true], ['POST', '/sandboxes/{id}/timeout', true],
  ['POST', '/sandboxes/{id}/refreshes', true], ['POST', '/sandboxes/{id}/pause', true],
  ['POST', '/sandboxes/{id}/resume', true], ['GET', '/sandboxes/{id}/metrics', false],
  ['GET', '/sandboxes/{id}/logs', false], ['GET', '/v2/sandboxes/{id}/logs', false],
];

const BAD_BODIES = [
  '{', '{"templateID":', '[]', '"text"', '123', 'null', 'true', 'not json at all', '\u0000\u00ff\u00fe',
  '{"templateID":123}', '{"templateID":["base"]}', '{"templateID":"base","timeout":"x"}',
  '{"templateID":"base","timeout":-1}', '{"templateID":"base","timeout":1e300}',
  '{"templateID":"base","timeout":99999999999999999999999}', '{"templateID":"base","metadata":[1]}',
  '{"templateID":"base","metadata":{"a":1}}', '{"templateID":"base","envVars":{"":"x"}}',
  '{"templateID":"base","autoPause":"yes"}', '{"templateID":"base","allow_internet_access":1}',
  '{"templateID":"../../etc"}', '{"templateID":"' + 'x'.repeat(5000) + '"}',
  '{"timeout":{"a":1}}', '{"duration":-5}', '{"duration":"1"}',
  '['.repeat(100000) + ']'.repeat(100000), '{"a":"\\ud800"}',
];

test('REST API: every route without a key, with a wrong key, with a wrong method', opts, async () => {
  for (const [method, pattern] of API_ROUTES) {
    const p = pattern.replace('{id}', MISSING);
    assertJsonError(await call(`${h.apiUrl}${p}`, { method }), `${method} ${p} no key`, [401]);
    assertJsonError(await call(`${h.apiUrl}${p}`, { method, headers: { 'x-api-key': 'e2b_' + '0'.repeat(40) } }), `${method} ${p} wrong key`, [401]);
    assertJsonError(await call(`${h.apiUrl}${p}`, { method, headers: { 'x-api-key': 'x'.repeat(8000) } }), `${method} ${p} long key`, [401]);
    assertJsonError(await call(`${h.apiUrl}${p}`, { method: 'PUT', headers: { 'x-api-key': h.apiKey } }), `PUT ${p}`, [405]);
  }
  for (const p of ['/', '/nope', '/sandboxes/a/b/c', '/v3/sandboxes', '/sandboxes/' + 'x'.repeat(300), '/sandboxes/%00', '/sandboxes/..%2f..%2fetc'])
    assertJsonError(await call(`${h.apiUrl}${p}`, { headers: { 'x-api-key': h.apiKey } }), `GET ${p}`, [404]);
  await alive();
});

test('REST API: malformed, wrongly typed and oversized JSON bodies on every route that takes one', opts, async () => {
  const headers = { 'x-api-key': h.apiKey, 'content-type': 'application/json' };
  for (const [method, pattern, body] of API_ROUTES) {
    if (!body) continue;
    for (const id of [MISSING, sbx.sandboxId]) {
      const p = pattern.replace('{id}', id);
      for (const b of BAD_BODIES) {
        const r = await call(`${h.apiUrl}${p}`, { method, headers, body: b });
        if (r.status === 204 || r.status === 200) {
          // Only a body with nothing wrong for this route may succeed (connect with {} fields
          // it ignores); never a create.
          assert.ok(!pattern.endsWith('/sandboxes'), `${method} ${p} accepted ${b.slice(0, 80)}`);
          continue;
        }
        // Pausing does not exist yet: a well-formed request to pause a live sandbox gets 501.
        if (r.status === 501 && /pause|resume/.test(p) && id === sbx.sandboxId && r.json?.code === 501) continue;
        assertJsonError(r, `${method} ${p} body ${JSON.stringify(b.slice(0, 60))}`);
      }
      const big = await call(`${h.apiUrl}${p}`, { method, headers, body: '{"templateID":"base","x":"' + 'a'.repeat(2 << 20) + '"}' });
      assertJsonError(big, `${method} ${p} 2 MiB body`, [413]);
    }
  }
  const list = await call(`${h.apiUrl}/v2/sandboxes`, { headers: { 'x-api-key': h.apiKey } });
  assert.deepEqual(list.json.map((s) => s.sandboxID), [sbx.sandboxId], 'no bad body created a sandbox');
  await alive();
});

test('REST API: bad query strings (metadata filter, state, paging token, limit, order, time)', opts, async () => {
  const qs = [
    'metadata=%zz', 'metadata=a', 'metadata=%25zz', 'metadata=a%3D%25', 'metadata=%3D%3D%26%26', 'state=bogus',
    'state=running,', 'state=' + ',running'.repeat(2000), 'limit=0', 'limit=-1', 'limit=abc', 'limit=101',
    'limit=99999999999999999999999', 'nextToken=garbage', 'nextToken=%00', 'nextToken=' + 'A'.repeat(5000),
    'nextToken=eyJ4IjoxfQ', 'nextToken=MTIzNDU2Nzg5MA', 'order=sideways', 'startedAfter=yesterday',
    'startedAfter=2024-13-45T99:99:99Z', 'startedAfter=-99999-01-01T00:00:00Z',
    'metadata=a%253Db%2500c', 'metadata=%25ff%253Db', 'metadata=a%253D%25ff',
  ];
  // Odd but well-formed: empty list items are skipped, an empty key is a key.
  const fine = new Set(['state=running,', 'state=' + ',running'.repeat(2000), 'metadata=%3D%3D%26%26']);
  for (const path of ['/v2/sandboxes', '/sandboxes']) {
    for (const q of qs) {
      const r = await call(`${h.apiUrl}${path}?${q}`, { headers: { 'x-api-key': h.apiKey } });
      if (fine.has(q) && r.status === 200) {
        assert.ok(Array.isArray(r.json), `${path}?${q.slice(0, 60)}: an array`);
        continue;
      }
      assertJsonError(r, `${path}?${q.slice(0, 60)}`, [400]);
    }
  }
  for (const q of ['', 'sandbox_ids=', 'sandbox_ids=' + Array.from({ length: 101 }, (_, i) => `s${i}`).join(',')])
    assertJsonError(await call(`${h.apiUrl}/sandboxes/metrics?${q}`, { headers: { 'x-api-key': h.apiKey } }), `metrics?${q.slice(0, 40)}`, [400]);
  const odd = await call(`${h.apiUrl}/sandboxes/metrics?sandbox_ids=${encodeURIComponent(',,,%00,../..,' + 'y'.repeat(500))}`, { headers: { 'x-api-key': h.apiKey } });
  assert.equal(odd.status, 200);
  assert.deepEqual(odd.json, { sandboxes: {} });
  await alive();
});

// Request bytes no HTTP parser should accept; libmicrohttpd answers some itself (its own HTML
// body), the rest reach our routes. Either way: a 4xx or a closed connection, quickly.
const RAW = [
  ['garbage line', 'GARBAGE\r\n\r\n'],
  ['binary', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0])],
  ['HTTP/0.9', 'GET /health\r\n\r\n'],
  ['HTTP/9.9', 'GET /health HTTP/9.9\r\nHost: x\r\n\r\n'],
  ['bad content-length', 'POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}'],
  ['negative content-length', 'POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}'],
  ['two content-lengths', 'POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}'],
  ['bad chunk size', 'POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'],
  ['huge chunk size', 'POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{}\r\n0\r\n\r\n'],
  ['header without colon', 'GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n'],
  ['256 KiB header', `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(256 << 10)}\r\n\r\n`],
  ['5000 headers', `GET /health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 5000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`],
  ['64 KiB URL', `GET /${'a'.repeat(64 << 10)} HTTP/1.1\r\nHost: x\r\n\r\n`],
  ['NUL in URL', 'GET /sandboxes/\u0000x HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['truncated body', 'POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"templateID":'],
  ['truncated headers', 'POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Le'],
];

test('raw protocol abuse on the API and the front door: 4xx or a close, never a hang or a crash', opts, async () => {
  for (const url of [h.apiUrl, h.sandboxUrl]) {
    for (const [what, bytes] of RAW) {
      const r = await rawHttp(url, bytes);
      assert.equal(r.hung, false, `${url} ${what}: answered or closed`);
      // 505 HTTP Version Not Supported is libmicrohttpd's right answer to HTTP/9.9.
      if (r.status !== null) assert.ok((r.status >= 400 && r.status < 500) || (r.status === 505 && /9\.9/.test(what)), `${url} ${what}: ${r.status}`);
    }
  }
  await alive();
});

test('front door: bad routing headers and Host names', opts, async () => {
  const cases = [
    [{ 'e2b-sandbox-id': MISSING }, [502]],
    [{ 'e2b-sandbox-id': '' }, null],
    [{ 'e2b-sandbox-id': '../../etc' }, null],
    [{ 'e2b-sandbox-id': 'x'.repeat(4000) }, null],
    [{ 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': 'abc' }, [400]],
    [{ 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '99999' }, [400]],
    [{ 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '-1' }, [400]],
    [{ 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '0' }, [400, 502]],
    [{ host: `49983-${MISSING}.${domain()}` }, [502]],
    [{ host: `abc-${sbx.sandboxId}.${domain()}` }, null],
    [{ host: `${'9'.repeat(50)}-${sbx.sandboxId}.${domain()}` }, null],
    [{ host: 'x'.repeat(4000) }, null],
  ];
  for (const [headers, statuses] of cases) {
    const r = await viaHttp(`${h.sandboxUrl}/health`, headers); // fetch would replace Host
    const what = JSON.stringify(headers).slice(0, 120);
    assert.ok(r.status >= 400 && r.status < 600 && r.status !== 500, `${what}: ${r.status}`);
    assert.ok(r.json && typeof r.json.message === 'string', `${what}: JSON error ${r.buf.toString().slice(0, 200)}`);
    if (statuses) assert.ok(statuses.includes(r.status), `${what}: ${r.status}, want ${statuses}`);
  }
  await alive();
});

const domain = () => `localhost:${new URL(h.sandboxUrl).port}`;

// envd's RPCs, through the front door with the sandbox's token.
const UNARY = ['/process.Process/List', '/process.Process/SendInput', '/process.Process/SendSignal',
  '/process.Process/CloseStdin', '/process.Process/Update', '/process.Process/StreamInput',
  '/filesystem.Filesystem/Stat', '/filesystem.Filesystem/MakeDir', '/filesystem.Filesystem/Move',
  '/filesystem.Filesystem/ListDir', '/filesystem.Filesystem/Remove', '/filesystem.Filesystem/CreateWatcher',
  '/filesystem.Filesystem/GetWatcherEvents', '/filesystem.Filesystem/RemoveWatcher'];
const STREAM = ['/process.Process/Start', '/process.Process/Connect', '/filesystem.Filesystem/WatchDir'];
const BAD_RPC = [
  '{', '[]', '"x"', '1', 'null', '\u0000', '{"process":{"cmd":123}}', '{"process":{"cmd":"/bin/true","args":"x"}}',
  '{"process":{"cmd":"/bin/true","envs":[1]}}', '{"process":{"selector":{"pid":"abc"}}}', '{"process":{"pid":-1}}',
  '{"selector":{"pid":1e99}}', '{"signal":"SIGKILL","process":{"pid":1}}', '{"input":{"stdin":"%%%"}}',
  '{"input":{"pty":"not base64!"}}', '{"pty":{"size":{"cols":-1,"rows":1e9}}}', '{"path":123}',
  '{"path":"' + 'a/'.repeat(5000) + '"}', '{"path":"\\u0000etc"}', '{"source":1,"destination":[]}',
  '{"path":"/etc/apt","depth":-1}', '{"path":"/etc/apt","depth":1e12}', '{"watcherId":{}}', '{"watcherId":"nope"}',
];

test('envd RPCs: bad JSON, wrong types, bad envelopes and headers on every method', opts, async () => {
  const base = { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '49983', 'x-access-token': token };
  for (const m of UNARY) {
    for (const b of BAD_RPC) {
      const r = await call(`${h.sandboxUrl}${m}`, { method: 'POST', headers: { ...base, 'content-type': 'application/json' }, body: b });
      if (r.status === 200) continue; // a well-formed request that happens to be valid (List)
      // envd answers an unset signal with unimplemented (501), as E2B's envd does.
      // and client streaming (StreamInput) over HTTP/1.1 with unimplemented, as Connect says.
      if (r.status === 501 && /SendSignal|StreamInput/.test(m) && r.json?.code === 'unimplemented') continue;
      assertJsonError(r, `${m} ${JSON.stringify(b.slice(0, 50))}`);
    }
    const noAuth = await call(`${h.sandboxUrl}${m}`, { method: 'POST', headers: { ...base, 'x-access-token': 'wrong', 'content-type': 'application/json' }, body: '{}' });
    assertJsonError(noAuth, `${m} wrong token`, [401]);
    const big = await call(`${h.sandboxUrl}${m}`, { method: 'POST', headers: { ...base, 'content-type': 'application/json' }, body: '{"path":"' + 'a'.repeat(17 << 20) + '"}' });
    assertJsonError(big, `${m} 17 MiB`, [413]);
    const gz = await call(`${h.sandboxUrl}${m}`, { method: 'POST', headers: { ...base, 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: 'not gzip' });
    assert.ok(gz.status >= 400 && gz.status < 500, `${m} gzip garbage: ${gz.status}`);
    // The Connect protocol answers a wrong content type with a bare 415 (as connect-go does).
    assert.equal((await call(`${h.sandboxUrl}${m}`, { method: 'POST', headers: { ...base, 'content-type': 'text/plain' }, body: '{}' })).status, 415);
  }
  for (const m of STREAM) {
    const bodies = [Buffer.alloc(0), Buffer.from('{}'), Buffer.from([0, 0, 0]), Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1]),
      envelope('{'), envelope('{}', 1), Buffer.concat([envelope('{}'), envelope('{}')]), envelope('[]'),
      envelope('{"process":{"cmd":42}}'), envelope('{"process":{"selector":{"pid":"x"}}}'), envelope('{"path":7}')];
    const cases = [...bodies.map((b) => [b, '5000']), ...['abc', '-1', '1e3', '99999999999999999999999', ' 5', '5000000000000'].map((t) => [envelope('{"process":{"selector":{"pid":999999}},"path":"/nonexistent"}'), t])];
    for (const [b, timeout] of cases) {
      const r = await call(`${h.sandboxUrl}${m}`, { method: 'POST', headers: { ...base, 'content-type': 'application/connect+json', 'connect-timeout-ms': timeout }, body: b });
      const what = `${m} ${b.toString('hex').slice(0, 40)} timeout ${timeout}`;
      if (r.status !== 200) { assertJsonError(r, what); continue; }
      const env = envelopes(r.buf);
      const end = env[env.length - 1];
      assert.ok(end && end.flags & 2, `${what}: ends with an end-stream message`);
      assert.ok(end.json?.error?.code, `${what}: an error, got ${JSON.stringify(end.json)}`);
    }
  }
  await alive();
});

test('envd HTTP endpoints: /files, /init, /envs, /metrics with bad input', opts, async () => {
  const base = { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '49983', 'x-access-token': token };
  const u = `${h.sandboxUrl}/files`;
  const cases = [
    [{ method: 'GET' }, 'no path'],
    [{ method: 'GET', q: 'path=/nope/nothing' }, 'missing'],
    [{ method: 'GET', q: 'path=/proc/self/mem' }, 'unreadable'],
    [{ method: 'GET', q: 'path=%00' }, 'NUL'],
    [{ method: 'GET', q: 'path=/etc&username=nosuchuser' }, 'unknown user'],
    [{ method: 'GET', q: 'path=/etc/hostname&signature=v1_x&signature_expiration=abc', headers: { 'x-access-token': '' } }, 'bad signature'],
    [{ method: 'GET', q: 'path=/etc/hostname&signature=v1_x', headers: { 'x-access-token': '' } }, 'wrong signature'],
    [{ method: 'POST', q: 'path=/tmp/x', headers: { 'content-type': 'multipart/form-data' }, body: 'x' }, 'multipart without boundary'],
    [{ method: 'POST', q: 'path=/tmp/x', headers: { 'content-type': 'multipart/form-data; boundary=zz' }, body: '--zz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc' }, 'truncated multipart'],
    [{ method: 'POST', q: 'path=/tmp/x', headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' }, body: 'not gzip' }, 'gzip garbage'],
    [{ method: 'POST', q: 'path=/tmp/x', headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'br' }, body: 'x' }, 'unknown encoding'],
    [{ method: 'POST', q: 'path=/tmp/x', headers: { 'content-type': 'application/octet-stream', ['x-metadata-' + 'k'.repeat(300)]: 'x' }, body: 'x' }, 'long metadata key'],
    [{ method: 'POST', q: 'path=/proc/sys/kernel/hostname', headers: { 'content-type': 'application/octet-stream' }, body: 'x' }, 'read-only target'],
    [{ method: 'POST', q: 'path=/tmp/x', headers: { 'content-type': 'image/png' }, body: 'x' }, 'wrong content type'],
    [{ method: 'POST', path: '/init', headers: { 'content-type': 'application/json', 'x-access-token': 'wrong' }, body: '{"accessToken":"mine"}' }, 'init with a wrong token'],
    [{ method: 'POST', path: '/init', headers: { 'content-type': 'application/json' }, body: '{"envVars":[1],"defaultUser":7}' }, 'init wrong types'],
    [{ method: 'POST', path: '/init', headers: { 'content-type': 'application/json' }, body: '{' }, 'init bad JSON'],
    [{ method: 'POST', path: '/init', headers: { 'content-type': 'application/json' }, body: '{"timestamp":"never"}' }, 'init bad time'],
    [{ method: 'PUT', path: '/envs' }, 'PUT /envs'],
    [{ method: 'DELETE', path: '/metrics' }, 'DELETE /metrics'],
  ];
  for (const [c, what] of cases) {
    const url = `${c.path ? h.sandboxUrl + c.path : u}${c.q ? '?' + c.q : ''}`;
    const r = await call(url, { method: c.method, headers: { ...base, ...(c.headers ?? {}) }, body: c.body });
    assertJsonError(r, what);
  }
  const noToken = await call(`${h.sandboxUrl}/envs`, { headers: { ...base, 'x-access-token': '' } });
  assert.equal(noToken.status, 401);
  // /init with a wrong token changed nothing: the SDK still works with the real one.
  await alive();
});
