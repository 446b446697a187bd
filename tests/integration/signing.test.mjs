// envd with an access token ("secure sandbox"): X-Access-Token on RPC and /files, signed
// download/upload URLs (mirrors js-sdk tests/sandbox/files/signing.test.ts).
//
// The SDK instance is built with the SDK's own Sandbox constructor (what create/connect do
// with the control plane's answer) given envdAccessToken, envdVersion and sandboxUrl, so no
// control plane is needed and every request goes through the SDK's normal code path.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { AuthenticationError, getSignature } from 'e2b';

import { connectUnary, freePort, startEnvd, tokenSandbox, stopChecked } from './helpers.mjs';

const T = { timeout: 30_000 };
// The token of the SDK's own signature test vector.
const TOKEN = '0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0';
const EXPIRED = '{"code":401,"message":"signature is already expired"}';
let envd;
let sbx;
let W;

before(async () => {
  envd = await startEnvd({
    port: await freePort(),
    config: { accessToken: TOKEN, defaultWorkdir: true, envVars: { SECURE_ENV: 'on' } },
  });
  W = envd.workdir;
  sbx = tokenSandbox({ url: envd.url, accessToken: TOKEN });
});

after(() => stopChecked(envd));

test('the SDK signature matches the published test vector', T, async () => {
  const sig = await getSignature({ path: 'hello.txt', operation: 'read', user: 'user', envdAccessToken: TOKEN });
  assert.equal(sig.signature, 'v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E');
});

test('SDK with the token: commands and files work', T, async () => {
  const res = await sbx.commands.run('echo Hello World!');
  assert.equal(res.stdout, 'Hello World!\n');
  assert.equal((await sbx.commands.run('echo $SECURE_ENV')).stdout, 'on\n');
  await sbx.files.write(path.join(W, 'secure.txt'), 'secret');
  assert.equal(await sbx.files.read(path.join(W, 'secure.txt')), 'secret');
  assert.equal((await sbx.files.list(W)).some((e) => e.name === 'secure.txt'), true);
});

test('SDK without or with a wrong token → AuthenticationError', T, async () => {
  for (const accessToken of [undefined, 'wrong-token']) {
    const bad = tokenSandbox({ url: envd.url, accessToken });
    await assert.rejects(bad.commands.run('true'), AuthenticationError, `token ${accessToken}`);
    await assert.rejects(bad.files.list(W), AuthenticationError, `token ${accessToken}`);
    await assert.rejects(bad.files.read(path.join(W, 'secure.txt')), AuthenticationError, `token ${accessToken}`);
  }
});

test('raw: RPC without/with a wrong token → 401; with it → 200; /health is open', T, async () => {
  const none = await connectUnary(envd.url, 'process.Process/List', {});
  assert.equal(none.status, 401);
  const wrong = await connectUnary(envd.url, 'process.Process/List', {}, { 'x-access-token': 'nope' });
  assert.equal(wrong.status, 401);
  const ok = await connectUnary(envd.url, 'process.Process/List', {}, { 'x-access-token': TOKEN });
  assert.equal(ok.status, 200);
  assert.ok(Array.isArray(ok.body.processes ?? []));
  assert.equal((await fetch(`${envd.url}/health`)).status, 204);
  const envs = await fetch(`${envd.url}/envs`);
  assert.equal(envs.status, 401);
  await envs.arrayBuffer();
  const envsOk = await fetch(`${envd.url}/envs`, { headers: { 'x-access-token': TOKEN } });
  assert.equal(envsOk.status, 200);
  assert.equal((await envsOk.json()).SECURE_ENV, 'on');
});

test('download via signed downloadUrl (default user, root, with expiration)', T, async () => {
  const file = path.join(W, 'hello.txt');
  await sbx.files.write(file, 'hello world');
  for (const opts of [undefined, { user: 'root' }, { useSignatureExpiration: 120 }]) {
    const url = await sbx.downloadUrl(file, opts);
    assert.ok(url.startsWith(`${envd.url}/files?`), url);
    assert.match(url, /signature=v1_/);
    const res = await fetch(url);
    assert.equal(res.status, 200, `${JSON.stringify(opts)}: ${url}`);
    assert.equal(await res.text(), 'hello world');
  }
});

test('upload via signed uploadUrl with a multipart form', T, async () => {
  const file = path.join(W, 'up', 'hello.txt');
  for (const opts of [undefined, { user: 'root' }, { useSignatureExpiration: 120 }]) {
    const url = await sbx.uploadUrl(file, opts);
    const form = new FormData();
    form.append('file', 'file content');
    const res = await fetch(url, { method: 'POST', body: form });
    assert.equal(res.status, 200, JSON.stringify(opts));
    assert.deepEqual(await res.json(), [{ name: 'hello.txt', path: file, type: 'file' }]);
    assert.equal(await sbx.files.read(file), 'file content');
  }
});

test('expired signature → 401 with the exact body', T, async () => {
  const file = path.join(W, 'hello.txt');
  const down = await fetch(await sbx.downloadUrl(file, { useSignatureExpiration: -120 }));
  assert.equal(down.status, 401);
  assert.equal((await down.text()).trim(), EXPIRED);
  const form = new FormData();
  form.append('file', 'late');
  const up = await fetch(await sbx.uploadUrl(file, { useSignatureExpiration: -120 }), { method: 'POST', body: form });
  assert.equal(up.status, 401);
  assert.equal((await up.text()).trim(), EXPIRED);
  assert.equal(await sbx.files.read(file), 'hello world');
});

test('missing, invalid or misused signatures → 401', T, async () => {
  const file = path.join(W, 'hello.txt');
  const q = `path=${encodeURIComponent(file)}`;
  const missing = await fetch(`${envd.url}/files?${q}`);
  assert.equal(missing.status, 401);
  assert.deepEqual(await missing.json(), { code: 401, message: 'missing signature query parameter' });

  const invalid = await fetch(`${envd.url}/files?${q}&signature=v1_AAAA`);
  assert.equal(invalid.status, 401);
  assert.deepEqual(await invalid.json(), { code: 401, message: 'invalid signature' });

  // A read signature does not authorise a write, nor another path, nor another user.
  const readUrl = await sbx.downloadUrl(file);
  const form = new FormData();
  form.append('file', 'x');
  const misuse = await fetch(readUrl, { method: 'POST', body: form });
  assert.equal(misuse.status, 401);
  await misuse.arrayBuffer();
  const other = new URL(readUrl);
  other.searchParams.set('path', path.join(W, 'secure.txt'));
  assert.equal((await fetch(other)).status, 401);
  const otherUser = new URL(readUrl);
  otherUser.searchParams.set('username', 'root');
  assert.equal((await fetch(otherUser)).status, 401);
  // Tampering with the expiration invalidates the signature.
  const exp = new URL(await sbx.downloadUrl(file, { useSignatureExpiration: 60 }));
  exp.searchParams.set('signature_expiration', String(Number(exp.searchParams.get('signature_expiration')) + 3600));
  assert.equal((await fetch(exp)).status, 401);

  // The X-Access-Token header works instead of a signature; a wrong one does not.
  const hdr = await fetch(`${envd.url}/files?${q}`, { headers: { 'x-access-token': TOKEN } });
  assert.equal(hdr.status, 200);
  assert.equal(await hdr.text(), 'hello world');
  const badHdr = await fetch(`${envd.url}/files?${q}&signature=${encodeURIComponent(new URL(readUrl).searchParams.get('signature'))}`, {
    headers: { 'x-access-token': 'wrong' },
  });
  assert.equal(badHdr.status, 401);
  assert.deepEqual(await badHdr.json(), { code: 401, message: 'access token present in header but does not match' });
});
