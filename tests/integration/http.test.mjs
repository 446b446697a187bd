// Raw HTTP / Connect wire checks against envd without an access token, plus the SDK's
// unsigned download/upload URLs in debug mode.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { InvalidArgumentError } from 'e2b';

import { connectUnary, debugSandbox, startEnvd, stopChecked } from './helpers.mjs';

const T = { timeout: 30_000 };
let envd;
let sbx;
let W;

before(async () => {
  envd = await startEnvd({ config: { defaultWorkdir: true, envVars: { HUTCH_ENV: 'yes' } } });
  W = envd.workdir;
  sbx = await debugSandbox();
});

after(() => stopChecked(envd));

/** One Connect server-stream call; returns { status, contentType, messages[], end }. */
async function connectStream(method, body, headers = {}) {
  const json = Buffer.from(JSON.stringify(body));
  const env = Buffer.alloc(5 + json.length);
  env.writeUInt8(0, 0);
  env.writeUInt32BE(json.length, 1);
  json.copy(env, 5);
  const res = await fetch(`${envd.url}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1', ...headers },
    body: env,
  });
  const buf = Buffer.from(await res.arrayBuffer());
  const messages = [];
  let end;
  for (let off = 0; off < buf.length; ) {
    assert.ok(off + 5 <= buf.length, 'truncated envelope header');
    const flags = buf.readUInt8(off);
    const len = buf.readUInt32BE(off + 1);
    assert.ok(off + 5 + len <= buf.length, 'truncated envelope');
    const msg = JSON.parse(buf.subarray(off + 5, off + 5 + len).toString());
    off += 5 + len;
    if (flags & 2) {
      assert.equal(end, undefined, 'two end-stream envelopes');
      assert.equal(off, buf.length, 'data after the end-stream envelope');
      end = msg;
    } else {
      assert.equal(flags, 0);
      assert.equal(end, undefined, 'data after end-stream');
      messages.push(msg);
    }
  }
  return { status: res.status, contentType: res.headers.get('content-type'), messages, end };
}

test('GET /health → 204, empty, no-store', T, async () => {
  const res = await fetch(`${envd.url}/health`);
  assert.equal(res.status, 204);
  assert.equal(await res.text(), '');
  assert.equal(res.headers.get('cache-control'), 'no-store');
});

test('unknown Connect method or service → 404', T, async () => {
  assert.equal((await connectUnary(envd.url, 'process.Process/NoSuchMethod', {})).status, 404);
  assert.equal((await connectUnary(envd.url, 'nosuch.Service/List', {})).status, 404);
});

test('bad JSON → 400 invalid_argument', T, async () => {
  const r = await connectUnary(envd.url, 'filesystem.Filesystem/Stat', '{bad json');
  assert.equal(r.status, 400);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.equal(r.body.code, 'invalid_argument');
  assert.equal(typeof r.body.message, 'string');
});

test('unary success and error shapes (protojson)', T, async () => {
  const ok = await connectUnary(envd.url, 'filesystem.Filesystem/Stat', { path: W });
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('content-type'), /^application\/json/);
  assert.equal(ok.body.entry.type, 'FILE_TYPE_DIRECTORY');
  assert.equal(ok.body.entry.path, W);
  assert.equal(typeof ok.body.entry.size, 'string', 'int64 size must be a JSON string');
  assert.equal(ok.body.entry.mode, 0o755);
  assert.match(ok.body.entry.modifiedTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

  const missing = path.join(W, 'missing');
  const nf = await connectUnary(envd.url, 'filesystem.Filesystem/Stat', { path: missing });
  assert.equal(nf.status, 404);
  assert.equal(nf.body.code, 'not_found');
  assert.equal(nf.body.message, `file not found: lstat ${missing}: no such file or directory`);

  // snake_case and integer enums are accepted too.
  const sig = await connectUnary(envd.url, 'process.Process/SendSignal', { process: { pid: 999999 }, signal: 9 });
  assert.equal(sig.status, 404);
  assert.equal(sig.body.code, 'not_found');
  assert.equal(sig.body.message, 'process with pid 999999 not found');
});

test('server stream: start, data, end, end-stream {}', T, async () => {
  const r = await connectStream('process.Process/Start', {
    process: { cmd: '/bin/sh', args: ['-c', 'printf hi; printf oops >&2; exit 7'] },
  });
  assert.equal(r.status, 200);
  assert.match(r.contentType, /^application\/connect\+json/);
  const events = r.messages.map((m) => m.event);
  assert.ok(events[0].start && events[0].start.pid > 0, `first event ${JSON.stringify(events[0])}`);
  const out = events.filter((e) => e.data?.stdout).map((e) => Buffer.from(e.data.stdout, 'base64')).join('');
  const err = events.filter((e) => e.data?.stderr).map((e) => Buffer.from(e.data.stderr, 'base64')).join('');
  assert.equal(out, 'hi');
  assert.equal(err, 'oops');
  const last = events[events.length - 1];
  assert.deepEqual(last, { end: { exitCode: 7, exited: true, status: 'exit status 7', error: 'exit status 7' } });
  assert.deepEqual(r.end, {});

  const ok = await connectStream('process.Process/Start', { process: { cmd: '/bin/true' } });
  assert.deepEqual(ok.messages.at(-1), { event: { end: { exited: true, status: 'exit status 0' } } });
});

test('server stream errors: 200 + end-stream error', T, async () => {
  const r = await connectStream('process.Process/Start', { process: { cmd: '/bin/true', cwd: '/no/such/dir' } });
  assert.equal(r.status, 200);
  assert.equal(r.messages.length, 0);
  assert.equal(r.end.error.code, 'invalid_argument');
  assert.equal(r.end.error.message, "cwd '/no/such/dir' does not exist");
  const c = await connectStream('process.Process/Connect', { process: { pid: 999999 } });
  assert.equal(c.end.error.code, 'not_found');
});

test('Connect-Timeout-Ms ends the stream with deadline_exceeded; keepalives follow the header', T, async () => {
  const t0 = Date.now();
  const r = await connectStream(
    'process.Process/Start',
    { process: { cmd: '/bin/sleep', args: ['30'] } },
    { 'connect-timeout-ms': '2500', 'keepalive-ping-interval': '1' },
  );
  assert.ok(Date.now() - t0 < 6000);
  assert.equal(r.end.error.code, 'deadline_exceeded');
  const keepalives = r.messages.filter((m) => m.event?.keepalive);
  assert.ok(keepalives.length >= 1, `expected keepalives, got ${JSON.stringify(r.messages)}`);
});

test('GET /files errors: missing → 404, directory → 400, JSON bodies', T, async () => {
  const missing = path.join(W, 'nope.txt');
  const r = await fetch(`${envd.url}/files?path=${encodeURIComponent(missing)}`);
  assert.equal(r.status, 404);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.deepEqual(await r.json(), { code: 404, message: `path '${missing}' does not exist` });
  const d = await fetch(`${envd.url}/files?path=${encodeURIComponent(W)}`);
  assert.equal(d.status, 400);
  assert.deepEqual(await d.json(), { code: 400, message: `path '${W}' is a directory` });
  const u = await fetch(`${envd.url}/files?path=${encodeURIComponent(W)}&username=no-such-user-hutch`);
  assert.equal(u.status, 401);
  await u.arrayBuffer();
});

test('GET /files success headers; POST rejects unknown content types', T, async () => {
  await sbx.files.write(path.join(W, 'hello.txt'), 'hello world');
  const r = await fetch(`${envd.url}/files?path=${encodeURIComponent(path.join(W, 'hello.txt'))}`, {
    headers: { 'accept-encoding': 'identity' },
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-disposition'), 'inline; filename=hello.txt');
  assert.match(r.headers.get('vary') ?? '', /Accept-Encoding/i);
  assert.equal(r.headers.get('content-length'), '11');
  assert.equal(await r.text(), 'hello world');

  const bad = await fetch(`${envd.url}/files?path=${encodeURIComponent(path.join(W, 'x'))}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: 'x',
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).code, 400);
});

test('raw octet-stream upload returns a one-element array', T, async () => {
  const target = path.join(W, 'raw.bin');
  const r = await fetch(`${envd.url}/files?path=${encodeURIComponent(target)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.from('raw bytes'),
  });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), [{ name: 'raw.bin', path: target, type: 'file' }]);
});

test('chunked multipart uploads split like undici sends them (tiny parts too)', T, async () => {
  // undici (the SDK's fetch) sends FormData bodies chunked, with the part head, the file data,
  // the CRLF and the closing delimiter each in their own chunk. Exercise every small size.
  const { connect } = await import('node:net');
  const B = '----formdata-undici-012345678901';
  const send = (raw) =>
    new Promise((resolve) => {
      const s = connect(envd.port, '127.0.0.1', () => s.write(raw));
      let out = '';
      s.on('data', (d) => {
        out += d;
        const m = /\r\n\r\n/.exec(out);
        const len = /content-length: (\d+)/i.exec(out);
        if (m && len && out.length >= m.index + 4 + Number(len[1])) s.end();
      });
      s.on('close', () => resolve(out));
      setTimeout(() => s.destroy(), 3000);
    });
  for (let n = 0; n <= 8; n++) {
    const target = path.join(W, 'chunked', `f${n}.txt`);
    const head = `--${B}\r\nContent-Disposition: form-data; name="file"; filename="${target}"\r\nContent-Type: application/octet-stream\r\n\r\n`;
    const pieces = [head, 'x'.repeat(n), '\r\n', `--${B}--\r\n`].filter((c) => c.length);
    const body = pieces.map((c) => `${Buffer.byteLength(c).toString(16)}\r\n${c}\r\n`).join('') + '0\r\n\r\n';
    const raw = `POST /files HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: multipart/form-data; boundary=${B}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n${body}`;
    const res = await send(raw);
    assert.match(res, /^HTTP\/1\.1 200 /, `${n}-byte part: ${res.split('\r\n\r\n').pop() || '(no response)'}`);
    assert.ok(res.endsWith(JSON.stringify([{ path: target, name: `f${n}.txt`, type: 'file' }])) || res.includes(`"path":"${target}"`));
    assert.equal(await sbx.files.read(target), 'x'.repeat(n));
  }
});

test('GET /envs lists the global env vars', T, async () => {
  const r = await fetch(`${envd.url}/envs`);
  assert.equal(r.status, 200);
  const envs = await r.json();
  assert.equal(envs.HUTCH_ENV, 'yes');
});

test('debug mode: unsigned downloadUrl/uploadUrl work; signature expiration is refused', T, async () => {
  const target = path.join(W, 'url.txt');
  const up = await sbx.uploadUrl(target);
  assert.ok(up.startsWith('http://localhost:49983/files?'), up);
  assert.ok(!up.includes('signature'));
  const form = new FormData();
  form.append('file', 'via upload url');
  const u = await fetch(up, { method: 'POST', body: form });
  assert.equal(u.status, 200);
  assert.deepEqual(await u.json(), [{ name: 'url.txt', path: target, type: 'file' }]);
  const down = await sbx.downloadUrl(target);
  const d = await fetch(down);
  assert.equal(d.status, 200);
  assert.equal(await d.text(), 'via upload url');
  await assert.rejects(sbx.downloadUrl(target, { useSignatureExpiration: 60 }), InvalidArgumentError);

  // Without a path in the query, the multipart filename is the full destination path.
  const multi = path.join(W, 'by-filename', 'f.txt');
  const form2 = new FormData();
  form2.append('file', new Blob(['named']), multi);
  const u2 = await fetch(await sbx.uploadUrl(), { method: 'POST', body: form2 });
  assert.equal(u2.status, 200);
  assert.deepEqual(await u2.json(), [{ name: 'f.txt', path: multi, type: 'file' }]);
});
